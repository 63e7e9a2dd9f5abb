#!/usr/bin/env bash
# The project's test command (README): every test of every crate.
# Uses cargo-nextest when it is installed, plain `cargo test` otherwise; doc tests run
# separately because nextest does not run them.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi
