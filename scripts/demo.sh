#!/usr/bin/env bash
# Builds rtlake and runs the whole pipeline on embedded defaults: broker, replay producer,
# processor. Ctrl-C stops it; running it again continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo build --locked --ignore-rust-version -p rtlake
exec "$CARGO_TARGET_DIR/debug/rtlake" demo "$@"
