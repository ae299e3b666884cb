#!/usr/bin/env bash
# The default pipeline (bronze, silver, both gold tables and its Kafka sink) draining the
# 90-minute backlog (979,560 events) with --trigger available-now, several times in a row, each
# into a fresh lake as a new pipeline; every run must end with bronze exact.
#
#   bash bench/drain.sh [--runs 3] [--brokers LIST] [--kill N] [--out DIR]
#
# Without --brokers it starts the embedded broker (`rtlake broker`, release build). With
# --brokers it uses that cluster (e.g. scripts/kafka.sh's three brokers); --kill N then
# SIGKILLs that cluster's broker N (scripts/kafka.sh kill N) 5 s into each drain and starts it
# again 20 s later. Prints, per run: seconds, events/s, bronze rows and distinct offsets, the
# Kafka sink's mode, and the longest time the processor made no progress (from its 5-second
# progress lines).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
RUNS=3; BROKERS=""; KILL=""; OUT=/tmp/rtlake-drain
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --brokers) BROKERS=$2; shift ;;
    --kill) KILL=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. bench/lib.sh
release_and_replay "$OUT"
TOPIC="drain-$(date +%s)"
BROKER=""
if [ -z "$BROKERS" ]; then
  rm -rf "$OUT/broker"
  BROKERS=127.0.0.1:29292
  "$R" broker --listen "$BROKERS" --data "$OUT/broker" > "$OUT/broker.log" 2>&1 & BROKER=$!
  sleep 2
fi
trap '[ -n "$BROKER" ] && kill $BROKER' EXIT
"$R" topics create "$TOPIC" --partitions 3 --brokers "$BROKERS" >&2
"$R" produce bikes --source file "$EV" --brokers "$BROKERS" --topic "$TOPIC" --metrics-listen off >&2
for i in $(seq 1 "$RUNS"); do
  L="$OUT/lake-$TOPIC-$i"
  cat > "$OUT/pipeline-$i.toml" <<EOF
pipeline = "drain$i"
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
topic = "$TOPIC-changes-$i"
EOF
  t0=$(date +%s.%N)
  RTLAKE_LOG=rtlake_stream=info,warn,buoyant_kernel=off "$R" run --brokers "$BROKERS" --topic "$TOPIC" --lake "$L" \
    --pipeline "$OUT/pipeline-$i.toml" --trigger available-now --metrics-listen off > "$OUT/run-$i.log" 2>&1 &
  RUN=$!
  if [ -n "$KILL" ]; then
    sleep 5; bash scripts/kafka.sh kill "$KILL" >&2
    sleep 20; bash scripts/kafka.sh start "$KILL" > /dev/null
  fi
  wait $RUN; code=$?
  secs=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
  rows=$("$R" sql --lake "$L" --format csv "SELECT count(*), count(DISTINCT kafka_partition * 1000000000 + kafka_offset) FROM bronze.station_status" | tail -1)
  mode=$(grep -ao "kafka sink: [a-z ]*" "$OUT/run-$i.log" | head -1)
  still=$(grep -a "processing" "$OUT/run-$i.log" | sed -n 's/.*events_per_sec=\([0-9]*\).*/\1/p' | awk '{ if ($1 == 0) { z += 5; if (z > m) m = z } else z = 0 } END { print m + 0 }')
  restarts=$(grep -ac "restarting the consumer" "$OUT/run-$i.log")
  echo "run $i: exit $code, $secs s, $(python3 -c "print(round($TOTAL / $secs))") events/s, bronze rows,distinct = $rows of $TOTAL, $mode, longest without progress ${still} s, consumer restarts $restarts"
done
