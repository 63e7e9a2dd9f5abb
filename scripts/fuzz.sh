#!/usr/bin/env bash
# Builds every fuzz target in fuzz/ and runs each for SECONDS (default 20).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable toolchain use them.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
shift || true
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi
cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
echo "== building ${#targets[@]} targets"
cargo fuzz build -O --debug-assertions
for t in "${targets[@]}"; do
    echo "== $t (${secs}s)"
    mkdir -p "corpus/$t"
    cargo fuzz run -O --debug-assertions "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 \
        | grep -E "^(#[0-9]+ +DONE|Done|==[0-9]+==|SUMMARY|.*panicked)" || true
    if [ -n "$(ls -A "artifacts/$t" 2>/dev/null)" ]; then
        echo "!! $t produced crash artifacts in fuzz/artifacts/$t"
        exit 1
    fi
done
echo "== fuzzing finished without crashes"
