#!/usr/bin/env bash
# The change-data-capture benchmark: the CDC test's workload (crates/rtlake/tests/it/cdc.rs) at
# full size, on scripts/kafka.sh's three-broker Apache Kafka with PostgreSQL and Debezium from
# scripts/cdc.sh, `rtlake run` SIGKILLed twice in the middle; at the end both lake tables must
# equal their Postgres tables row for row. Prints the time from
# the workload's end until the lake equals Postgres, the pipeline's own summary, and rtlake's
# drain rate: the whole topic again into a new lake with `--trigger available-now`.
#
#   bash bench/cdc.sh [path/to/rtlake] [SCALE]     (default: the release build, scale 10)
#
# SCALE 1 is the test's size (about 28,000 changes); 10 is about 270,000.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/rtlake/target}/release/rtlake}
SCALE=${2:-10}
W=${RTLAKE_BENCH_DIR:-/tmp/cdc-bench}
[ -x "$R" ] || { echo "no rtlake at $R: cargo build --release -p rtlake" >&2; exit 1; }
BOOT=$(bash scripts/kafka.sh start | tail -1)
read -r PG CONNECT < <(bash scripts/cdc.sh start "$BOOT" | tail -1)
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | tail -1)
ID=$(date +%s)
DB=bench_$ID
TOPIC=cdc-bench-$ID
CUSTOMERS=$((2000 * SCALE)); ORDERS=$((3000 * SCALE)); BATCH=$((500 * SCALE))
# RTLAKE_CDC_ROUNDS=60 RTLAKE_CDC_KILL_EVERY=10: a longer run, killed every 10 rounds.
ROUNDS=${RTLAKE_CDC_ROUNDS:-6}; KILL_EVERY=${RTLAKE_CDC_KILL_EVERY:-2}
rm -rf "$W"; mkdir -p "$W"
q() { "$PSQL" "${PG%/*}/$DB" -v ON_ERROR_STOP=1 -qAt -c "$1"; }
"$PSQL" "$PG" -qc "CREATE DATABASE $DB"
q "CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT NOT NULL, tier INT, vip BOOLEAN);
   CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT, cents INT, status TEXT);
   INSERT INTO customers SELECT g, 'c' || g, g % 5, g % 7 = 0 FROM generate_series(1, $CUSTOMERS) g;
   INSERT INTO orders SELECT g, g % $CUSTOMERS + 1, g * 3 % 10000, 'new' FROM generate_series(1, $ORDERS) g;"
"$R" topics create "$TOPIC" --brokers "$BOOT" --partitions 3 >/dev/null
bash scripts/cdc.sh connector "cdc_$ID" "$DB" public.customers,public.orders "$TOPIC"
start() {
  RTLAKE_LOG=warn,deltalake_core::operations::merge=error "$R" run --brokers "$BOOT" --topic "$TOPIC" \
    --group "cdc-bench-$ID" \
    --lake "$W/lake" --pipeline pipelines/shop-cdc.toml --metrics-listen off >> "$W/run.out" 2>> "$W/run.log" &
  PID=$!
}
start
for r in $(seq 1 $ROUNDS); do
  first=$((CUSTOMERS + (r - 1) * BATCH + 1))
  sql="INSERT INTO customers SELECT g, 'c' || g, 0, false FROM generate_series($first, $((first + BATCH - 1))) g;
       UPDATE customers SET tier = tier + 1 WHERE id % 6 = $((r % 6));"
  for _ in $(seq 1 30); do sql="$sql UPDATE customers SET tier = tier + 1, vip = NOT vip WHERE id <= 10;"; done
  sql="$sql DELETE FROM customers WHERE id % 13 = $((r % 13));
       INSERT INTO customers SELECT g, 're' || g, $r, true FROM generate_series(1, $CUSTOMERS) g WHERE g % 13 = $(((r - 1) % 13)) ON CONFLICT (id) DO NOTHING;
       INSERT INTO orders SELECT g, g % $CUSTOMERS + 1, g * 3 % 10000, 'new' FROM generate_series($((ORDERS + (r - 1) * BATCH + 1)), $((ORDERS + r * BATCH))) g;
       UPDATE orders SET status = 'paid', cents = cents + 1 WHERE id % 4 = $((r % 4));
       DELETE FROM orders WHERE id % 11 = $((r % 11));"
  q "$sql"
  if [ $((r % KILL_EVERY)) = 0 ] && [ "$r" -lt "$ROUNDS" ]; then
    sleep 2; kill -9 "$PID"; wait "$PID" 2>/dev/null || true; echo "round $r: rtlake run SIGKILLed, restarted"; start
  fi
done
ended=$(date +%s.%N)
want_c=$(q "COPY (SELECT id, name, tier, vip::text FROM customers) TO STDOUT WITH CSV" | sort | sha256sum)
want_o=$(q "COPY (SELECT id, customer_id, cents, status FROM orders) TO STDOUT WITH CSV" | sort | sha256sum)
lake() { "$R" sql --lake "$W/lake" --format csv "$1" | tail -n +2 | sort | sha256sum; }
until [ "$(lake 'SELECT id, name, tier, vip FROM cdc.customers')" = "$want_c" ] && [ "$(lake 'SELECT id, customer_id, cents, status FROM cdc.orders')" = "$want_o" ]; do
  (( $(date +%s) - ${ended%.*} < 600 )) || { echo "the lake did not equal Postgres within 600 s"; kill "$PID"; exit 1; }
  sleep 1
done
caught=$(date +%s.%N)
kill -TERM "$PID"; wait "$PID" || true
echo "customers: $(q 'SELECT count(*) FROM customers') rows, orders: $(q 'SELECT count(*) FROM orders') rows: the lake equals Postgres"
echo "lake equal to Postgres $(echo "$caught - $ended" | bc) s after the workload's last statement"
echo "runs (the last one's summary; two were SIGKILLed):"; tail -2 "$W/run.out"
# rtlake's own rate: the whole topic again, drained into a new lake at once; equal again.
"$R" run --brokers "$BOOT" --topic "$TOPIC" --group "cdc-drain-$ID" --lake "$W/drained" \
  --pipeline pipelines/shop-cdc.toml --trigger available-now --metrics-listen off > "$W/drain.out" 2> "$W/drain.log"
echo "the whole topic drained into a new lake (available-now): $(grep '^processed' "$W/drain.out")"
W_LAKE=$W/drained
[ "$("$R" sql --lake "$W_LAKE" --format csv 'SELECT id, name, tier, vip FROM cdc.customers' | tail -n +2 | sort | sha256sum)" = "$want_c" ] \
  && echo "  and that lake equals Postgres too" || { echo "  but that lake DIFFERS from Postgres"; exit 1; }
