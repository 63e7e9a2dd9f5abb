#!/usr/bin/env bash
# Creates target/ticket-venv with the `cryptography` package from PyPI, for the Python
# cross-check in tests/vectors.rs (used when the system python3 lacks `cryptography`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../../../target/ticket-venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "cryptography>=41"
echo "ok: $venv"
