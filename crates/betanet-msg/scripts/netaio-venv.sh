#!/usr/bin/env bash
# Create target/netaio-venv with the pinned netaio (plus PyNaCl for the X25519 plugin).
# Usage: scripts/netaio-venv.sh [venv-dir]   (default: <workspace>/target/netaio-venv)
# Exit 0 and print the venv's python path on success; non-zero with a message otherwise.
set -euo pipefail
NETAIO_VERSION="${NETAIO_VERSION:-0.0.9}"
here="$(cd "$(dirname "$0")" && pwd)"
ws="$(cd "$here/../../.." && pwd)"
venv="${1:-$ws/target/netaio-venv}"
if ! command -v python3 >/dev/null 2>&1; then echo "netaio-venv: python3 not found" >&2; exit 2; fi
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import netaio, nacl" >/dev/null 2>&1; then
  echo "$venv/bin/python"; exit 0
fi
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" >&2 || { echo "netaio-venv: python3 -m venv failed" >&2; exit 3; }
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 10 --retries 1 \
  "netaio[asymmetric]==$NETAIO_VERSION" >&2 \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 10 --retries 1 "netaio==$NETAIO_VERSION" PyNaCl >&2 \
  || { echo "netaio-venv: pip install netaio==$NETAIO_VERSION failed (no PyPI?)" >&2; exit 4; }
"$venv/bin/python" -c "import netaio" >&2 || { echo "netaio-venv: import netaio failed" >&2; exit 5; }
echo "$venv/bin/python"
