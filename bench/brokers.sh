#!/usr/bin/env bash
# Embedded broker engines, side by side, on the 90-minute replay (979,560 events):
#
#   bash bench/brokers.sh [ENGINE...]
#
# ENGINE: rtlake-log (rtlake broker --storage log, the default), nisshi-sqlite
# (rtlake broker --storage sqlite), tansu-sqlite (tansu 0.6, what rtlake shipped before, from
# bench/broker-engines). Default: these three. nisshi-memory and nisshi-slatedb-memory need the
# harness built with --no-default-features --features nisshi (ENGINE_FEATURES below): tansu's
# and nisshi's libsql versions cannot be linked into one binary. For each, on a fresh data folder, with rtlake's release build as the client:
#
#   produce    rtlake produce bikes --source file (idempotent, lz4, linger 20 ms, 1 MiB batches)
#   consume    rtlake bench consume: a plain consumer reads the topic from the start
#   lake-only  rtlake run --pipeline bench/lake-only.toml --trigger available-now
#   pipeline   the default pipeline (bronze, silver, both gold tables and the Kafka sink
#              bike.station-changes) draining the backlog: read and write at once
#   rebalance  two group workers; SIGKILL one; seconds until the other holds all partitions
#   restart    SIGKILL the broker, start it again: seconds until it serves, messages kept
#
# Results: a table on stdout and $OUT/results.tsv (OUT defaults to /tmp/rtlake-bench-brokers).
# Each step is bounded (STEP_TIMEOUT, default 600 s); a step that does not finish is reported
# as a stall.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
OUT="${OUT:-/tmp/rtlake-bench-brokers}"
STEP_TIMEOUT="${STEP_TIMEOUT:-600}"
PORT="${PORT:-29092}"
ENGINES=("$@")
[ ${#ENGINES[@]} -eq 0 ] && ENGINES=(rtlake-log nisshi-sqlite tansu-sqlite)
mkdir -p "$OUT"

cargo build --release --locked --ignore-rust-version -p rtlake >&2
R="$CARGO_TARGET_DIR/release/rtlake"
ENGINES_TARGET="${RTLAKE_ENGINES_TARGET:-$(dirname "$CARGO_TARGET_DIR")/engines-target}"
HARNESS="$ENGINES_TARGET/release/broker-engines"
if printf '%s\n' "${ENGINES[@]}" | grep -qv '^rtlake-\|^nisshi-sqlite$'; then
  # ENGINE_FEATURES="--no-default-features --features nisshi" for nisshi's memory engines.
  cargo build --release --locked --ignore-rust-version --manifest-path bench/broker-engines/Cargo.toml --target-dir "$ENGINES_TARGET" ${ENGINE_FEATURES:-} >&2
fi
EV="$OUT/events.jsonl"
if [ ! -s "$EV" ]; then
  python3 ../shared/bench/gen_events.py --minutes 90 --out "$EV" >&2
fi
TOTAL=$(wc -l < "$EV")
export RTLAKE_LOG="${RTLAKE_LOG:-warn,buoyant_kernel=off}"

BROKER_PID=""
start_broker() { # engine dir
  case "$1" in
    rtlake-log) "$R" broker --listen "127.0.0.1:$PORT" --data "$2" --storage log > "$2.log" 2>&1 & ;;
    nisshi-sqlite) "$R" broker --listen "127.0.0.1:$PORT" --data "$2" --storage sqlite > "$2.log" 2>&1 & ;;
    *) "$HARNESS" "$1" "127.0.0.1:$PORT" "$2" > "$2.log" 2>&1 & ;;
  esac
  BROKER_PID=$!
  local t0=$SECONDS
  until "$R" topics list --brokers "127.0.0.1:$PORT" > /dev/null 2>&1; do
    sleep 0.2
    [ $((SECONDS - t0)) -gt 60 ] && { echo "broker $1 did not start" >&2; return 1; }
  done
}
stop_broker() { [ -n "$BROKER_PID" ] && kill -9 "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; BROKER_PID=""; }
rate() { sed -n "s/.*[^0-9]\([0-9][0-9]*\) events\/s.*/\1/p" "$1" | tail -1; }
now() { date +%s.%N; }

printf 'engine\tproduce\tconsume\tlake-only\tpipeline\trebalance_s\trestart_s\trestart_kept\n' > "$OUT/results.tsv"
for E in "${ENGINES[@]}"; do
  D="$OUT/$E"; rm -rf "$D" "$D.log"; mkdir -p "$D"
  B="127.0.0.1:$PORT"
  echo "== $E" >&2
  start_broker "$E" "$D/broker" || { printf '%s\tdid not start\n' "$E" >> "$OUT/results.tsv"; continue; }
  "$R" topics create bench --partitions 3 --brokers "$B" > /dev/null
  timeout "$STEP_TIMEOUT" "$R" produce bikes --source file "$EV" --brokers "$B" --topic bench --metrics-listen off > "$D/produce.out" 2>&1
  produce=$(rate "$D/produce.out"); produce=${produce:-stall}
  timeout "$STEP_TIMEOUT" "$R" bench consume --brokers "$B" --topic bench > "$D/consume.out" 2>&1
  consume=$(rate "$D/consume.out"); consume=${consume:-stall}
  timeout "$STEP_TIMEOUT" "$R" run --brokers "$B" --topic bench --lake "$D/lake1" --pipeline bench/lake-only.toml \
    --trigger available-now --metrics-listen off --group lake1 > "$D/lake-only.out" 2>&1
  lakeonly=$(rate "$D/lake-only.out"); lakeonly=${lakeonly:-stall}
  # The default pipeline with its Kafka sink: reading and writing at once.
  cat > "$D/pipeline.toml" <<EOF
pipeline = "bikes"
[[sinks]]
operator = "bronze"
[[sinks]]
operator = "changes"
[[sinks]]
operator = "station-hourly"
[[sinks]]
operator = "district-5min"
[[sinks]]
operator = "changes"
topic = "bench.station-changes"
EOF
  timeout "$STEP_TIMEOUT" "$R" run --brokers "$B" --topic bench --lake "$D/lake2" --pipeline "$D/pipeline.toml" \
    --trigger available-now --metrics-listen off --group lake2 > "$D/pipeline.out" 2>&1
  pipeline=$(rate "$D/pipeline.out"); pipeline=${pipeline:-stall}
  # Rebalance: two workers, one SIGKILLed; how long until the other holds all three partitions.
  RTLAKE_LOG=rtlake_stream=info,warn "$R" run --brokers "$B" --topic bench --lake "$D/lake3" --pipeline bench/lake-only.toml \
    --group reb --metrics-listen off > "$D/a.log" 2>&1 & A=$!
  sleep 5
  RTLAKE_LOG=rtlake_stream=info,warn "$R" run --brokers "$B" --topic bench --lake "$D/lake3" --pipeline bench/lake-only.toml \
    --group reb --metrics-listen off > "$D/b.log" 2>&1 & Bw=$!
  sleep 15
  kill -9 $A; t0=$(now); rebalance="none in 120 s"
  for _ in $(seq 1 1200); do
    if grep -a "partitions held" "$D/b.log" | tail -1 | grep -q "{0, 1, 2}"; then
      rebalance=$(python3 -c "print(round($(now) - $t0, 1))"); break
    fi
    sleep 0.1
  done
  kill -9 $Bw 2>/dev/null; wait $A $Bw 2>/dev/null
  # Restart: kill the broker, start it again, count what it holds.
  stop_broker
  t0=$(now)
  start_broker "$E" "$D/broker" && restart=$(python3 -c "print(round($(now) - $t0, 1))") || restart="failed"
  kept=$("$R" topics list --brokers "$B" 2>/dev/null | awk '$1 == "bench" {print $3}')
  stop_broker
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$E" "$produce" "$consume" "$lakeonly" "$pipeline" "$rebalance" "$restart" "${kept:-?}/$TOTAL" >> "$OUT/results.tsv"
  column -t -s $'\t' "$OUT/results.tsv" >&2
done
column -t -s $'\t' "$OUT/results.tsv"
