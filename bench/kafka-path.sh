#!/usr/bin/env bash
# The Kafka path against the engine, in one run (issue 32's figures): the 90-minute replay
# (979,560 events, 3 partitions) read by a plain consumer, drained by the lake-only pipeline
# from the topic and from the file (pairs in turn, medians), drained by the default pipeline;
# then the replay live at 10x and 40x into the default pipeline with --trigger low-latency,
# quiet and with two busy loops beside it, and the event-to-lake latency the processor reports.
#
#   bash bench/kafka-path.sh [--pairs 3] [--brokers LIST] [--live-secs 300] [--no-live] [--out DIR]
#
# Without --brokers everything runs on the embedded broker (`rtlake broker`). With --brokers
# (e.g. scripts/kafka.sh's three brokers, 127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096) the
# drains also run on that cluster, and its plain consumer's rate is the one the lake-only
# pipeline is compared with. Every drain's bronze is checked: each event exactly once.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
PAIRS=3; BROKERS=""; LIVE=300; NOLIVE=0; OUT=/tmp/rtlake-kafka-path
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift ;;
    --brokers) BROKERS=$2; shift ;;
    --live-secs) LIVE=$2; shift ;;
    --no-live) NOLIVE=1 ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. bench/lib.sh
release_and_replay "$OUT"
EMBEDDED=127.0.0.1:29392
export RTLAKE_LOG="${RTLAKE_LOG:-info,buoyant_kernel=off}"
rm -rf "$OUT/broker"
"$R" broker --listen "$EMBEDDED" --data "$OUT/broker" > "$OUT/broker.log" 2>&1 & BROKER=$!
hogs=()
trap 'kill ${hogs[*]:-} $BROKER 2>/dev/null' EXIT
sleep 2

# Seconds a command takes (its output in $OUT/last.log; a failure stops the benchmark); its
# peak RSS in MB (10^6 bytes, the goal's unit; time's %M is in KiB) is added to $OUT/rss.log.
timed() {
  local t0; t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$OUT/rss.one" "$@" > "$OUT/last.log" 2>&1 || { echo "failed: $* (log: $OUT/last.log)" >&2; exit 1; }
  python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')"
  echo $(( $(tail -1 "$OUT/rss.one") * 1024 / 1000000 )) >> "$OUT/rss.log"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rate() { python3 -c "print(round($TOTAL / $1))"; }
exact() {
  local n; n=$("$R" sql --lake "$1" --format csv "SELECT count(*), count(DISTINCT kafka_partition * 1000000000 + kafka_offset) FROM bronze.station_status" | tail -1)
  [ "$n" = "$TOTAL,$TOTAL" ] || { echo "bronze of $1 holds $n rows,distinct, not $TOTAL: not exact" >&2; exit 1; }
}

# One cluster's figures: plain consumer, lake-only pairs against the file, default pipeline.
cluster() {
  local name=$1 brokers=$2 topic="kp-$(date +%s)"
  : > "$OUT/rss.log"
  "$R" topics create "$topic" --partitions 3 --brokers "$brokers" > /dev/null
  "$R" produce bikes --source file "$EV" --brokers "$brokers" --topic "$topic" --metrics-listen off > "$OUT/produce.log" 2>&1
  local consume; consume=$(timed "$R" bench consume --brokers "$brokers" --topic "$topic")
  local files=() kafkas=()
  for i in $(seq 1 "$PAIRS"); do
    rm -rf "$OUT/flake" "$OUT/klake"
    files+=("$(timed "$R" run --source "file:$EV" --lake "$OUT/flake" --pipeline bench/lake-only.toml --metrics-listen off)")
    kafkas+=("$(timed "$R" run --brokers "$brokers" --topic "$topic" --group "$topic-$i" --lake "$OUT/klake" \
      --pipeline bench/lake-only.toml --trigger available-now --metrics-listen off)")
    exact "$OUT/klake"
  done
  rm -rf "$OUT/dlake"
  local default; default=$(timed "$R" run --brokers "$brokers" --topic "$topic" --group "$topic-default" --lake "$OUT/dlake" \
    --trigger available-now --metrics-listen off)
  exact "$OUT/dlake"
  local f k; f=$(median "${files[@]}"); k=$(median "${kafkas[@]}")
  echo "== $name ($brokers), $TOTAL events"
  echo "plain consumer:              $consume s, $(rate "$consume") events/s"
  echo "lake-only from the file:     $f s, $(rate "$f") events/s (median of ${files[*]})"
  echo "lake-only from Kafka:        $k s, $(rate "$k") events/s (median of ${kafkas[*]})"
  echo "default pipeline from Kafka: $default s, $(rate "$default") events/s"
  echo "peak RSS of these runs: $(sort -n "$OUT/rss.log" | tail -1) MB (goal < 300)"
  python3 -c "print(f'ratios: lake-only Kafka/file {$f / $k:.2f} (goal >= 0.8), Kafka/plain consumer {$consume / $k:.2f} (goal >= 0.8 on Apache Kafka), default {$TOTAL / $default / 250000:.2f} of 250,000/s')"
}

cluster embedded "$EMBEDDED"
[ -n "$BROKERS" ] && cluster "Apache Kafka" "$BROKERS"
[ "$NOLIVE" = 1 ] && exit 0

# Live: the recorded data replayed at SPEED x while the default pipeline follows with low latency; the
# processor's report (at Ctrl-C) gives the event-to-lake latency over the whole run.
live() {
  local speed=$1 hog=$2 topic="kl-$(date +%s)"
  "$R" topics create "$topic" --partitions 3 --brokers "$EMBEDDED" > /dev/null
  rm -rf "$OUT/llake"
  /usr/bin/time -f %M -o "$OUT/live.rss" "$R" run --brokers "$EMBEDDED" --topic "$topic" --group "$topic" \
    --lake "$OUT/llake" --trigger low-latency --metrics-listen off > "$OUT/live.log" 2>&1 & local run=$!
  sleep 3
  if [ "$hog" = yes ]; then for _ in 1 2; do sh -c 'while :; do :; done' & hogs+=($!); done; fi
  timeout -s INT "$LIVE" "$R" produce bikes --speed "$speed" --brokers "$EMBEDDED" --topic "$topic" \
    --metrics-listen off > "$OUT/live-produce.log" 2>&1
  sleep 5
  kill ${hogs[*]:-} 2>/dev/null; hogs=()
  pkill -INT -P $run; wait $run
  echo "live ${speed}x, busy loops: $hog, ${LIVE} s: $(grep -ao 'p50 [0-9]* ms, p99 [0-9]* ms' "$OUT/live.log" | tail -1), peak RSS $(( $(tail -1 "$OUT/live.rss") * 1024 / 1000000 )) MB"
}
echo "== freshness (embedded broker, default pipeline, --trigger low-latency)"
for speed in 10 40; do
  for hog in no yes; do live "$speed" "$hog"; done
done
