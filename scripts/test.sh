#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against a real (embedded) Kafka broker,
# real Delta tables, and Python's deltalake reader.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
cargo test --workspace --locked "$@"
