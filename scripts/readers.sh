#!/usr/bin/env bash
# Every table of a lake read by Python deltalake, polars, DuckDB and `rtlake sql`: counts and a
# checksum each, and whether they agree (scripts/readers.py). Installs polars and DuckDB into
# the test virtualenv (scripts/setup.sh) on first use.
#
#   bash scripts/readers.sh LAKE [RTLAKE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RTLAKE_VENV:-$HOME/.cache/rtlake/venv}"
[ -x "$VENV/bin/python" ] || bash scripts/setup.sh
"$VENV/bin/python" -c "import polars, duckdb" 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check polars duckdb
. scripts/env.sh
exec "$VENV/bin/python" scripts/readers.py "$1" "${2:-$CARGO_TARGET_DIR/debug/rtlake}"
