#!/usr/bin/env bash
# Soak: `rtlake demo` (embedded broker, replay producer, processor with the Kafka sink) for a
# while, optionally with both cores kept busy, sampling the processor's lag every 5 s.
#
#   bash bench/soak.sh [--speed 10] [--minutes 10] [--hog] [--out DIR] [--brokers LIST]
#
# --hog runs two busy loops beside it (one per core). --brokers runs the demo on that cluster
# instead of the embedded broker. At the end the demo is stopped (Ctrl-C), the rest of the
# topic is drained into the same lake (`rtlake run --trigger available-now`), and bronze is
# checked against the topic: every produced event exactly once. Prints the lag figures; writes
# DIR/lag.csv (seconds, lag, produced, committed) and DIR/lag.png.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SPEED=10; MINUTES=10; HOG=0; OUT=/tmp/rtlake-soak; BROKERS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --speed) SPEED=$2; shift ;;
    --minutes) MINUTES=$2; shift ;;
    --hog) HOG=1 ;;
    --out) OUT=$2; shift ;;
    --brokers) BROKERS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cargo build --release --locked --ignore-rust-version -p rtlake >&2
R="$CARGO_TARGET_DIR/release/rtlake"
rm -rf "$OUT"; mkdir -p "$OUT"
WEB=127.0.0.1:28080; BPORT=127.0.0.1:29192
export RTLAKE_LOG="${RTLAKE_LOG:-info,buoyant_kernel=off}"
extra=(); [ -n "$BROKERS" ] && extra=(--brokers "$BROKERS")
TOPIC=bike.station-status
if [ -n "$BROKERS" ]; then
  # A fresh topic name per soak on a shared cluster.
  TOPIC="soak-$(date +%s)"; export RTLAKE_KAFKA_TOPIC="$TOPIC" RTLAKE_RUN_GROUP_ID="soak-$TOPIC"
fi
"$R" demo --dir "$OUT/demo" --speed "$SPEED" --dashboard "$WEB" --listen "$BPORT" "${extra[@]}" > "$OUT/demo.log" 2>&1 &
DEMO=$!
hogs=()
if [ "$HOG" = 1 ]; then
  for _ in 1 2; do sh -c 'while :; do :; done' & hogs+=($!); done
fi
trap 'kill ${hogs[*]:-} 2>/dev/null; kill -INT $DEMO 2>/dev/null' EXIT
echo "seconds,lag,produced,committed" > "$OUT/lag.csv"
t0=$SECONDS
while [ $((SECONDS - t0)) -lt $((MINUTES * 60)) ]; do
  sleep 5
  kill -0 $DEMO 2>/dev/null || { echo "the demo exited (log: $OUT/demo.log)" >&2; break; }
  curl -s "http://$WEB/metrics" | awk -v t=$((SECONDS - t0)) '
    /^rtlake_run_consumer_lag_messages\{/ {lag += $2}
    /^rtlake_produce_events_total\{/ {prod += $2}
    /^rtlake_run_committed_offset\{/ {com += $2}
    END {printf "%d,%d,%d,%d\n", t, lag, prod, com}' >> "$OUT/lag.csv"
done
kill ${hogs[*]:-} 2>/dev/null
kill -INT $DEMO; wait $DEMO
trap - EXIT
# Drain what the processor had not read yet, then compare bronze with the topic.
B="${BROKERS:-$BPORT}"
BROKER=""
if [ -z "$BROKERS" ]; then
  "$R" broker --listen "$BPORT" --data "$OUT/demo/broker" > "$OUT/broker.log" 2>&1 & BROKER=$!
  sleep 2
fi
"$R" run --brokers "$B" --topic "$TOPIC" --lake "$OUT/demo/lake" --assignment static --trigger available-now --metrics-listen off > "$OUT/drain.log" 2>&1
held=$("$R" topics list --brokers "$B" | awk -v t="$TOPIC" '$1 == t {print $3}')
[ -n "$BROKER" ] && kill $BROKER
rows=$("$R" sql --lake "$OUT/demo/lake" --format csv "SELECT count(*) AS n, count(DISTINCT kafka_partition * 1000000000 + kafka_offset) AS d FROM bronze.station_status" | tail -1)
echo "topic holds $held events; bronze: rows,distinct = $rows"
"${RTLAKE_PYTHON}" - "$OUT" "$SPEED" "$MINUTES" "$HOG" <<'EOF'
import csv, sys
out, speed, minutes, hog = sys.argv[1:]
rows = [(int(r["seconds"]), int(r["lag"]), int(r["produced"]), int(r["committed"])) for r in csv.DictReader(open(f"{out}/lag.csv"))]
if not rows:
    sys.exit("no samples")
# The longest stretch in which the lag only grew, and the longest without a commit while lagging.
grow = best_grow = 0
still = best_still = 0
for (t0, l0, _, c0), (t1, l1, _, c1) in zip(rows, rows[1:]):
    grow = grow + (t1 - t0) if l1 > l0 else 0
    best_grow = max(best_grow, grow)
    still = still + (t1 - t0) if (c1 == c0 and l1 > 0) else 0
    best_still = max(best_still, still)
lags = sorted(r[1] for r in rows)
# The same from outside the consumer: produced minus committed (the gauge above comes from
# librdkafka's statistics, whose high watermark is the last one fetched, so it can read low).
behind = [(t, p - c) for t, _, p, c in rows]
grow2 = best_grow2 = 0
for (t0, a), (t1, b) in zip(behind, behind[1:]):
    grow2 = grow2 + (t1 - t0) if b > a else 0
    best_grow2 = max(best_grow2, grow2)
b_sorted = sorted(b for _, b in behind)
print(f"speed {speed}x, {minutes} min, hog={'yes' if hog == '1' else 'no'}: {len(rows)} samples, produced {rows[-1][2]}, "
      f"lag p50 {lags[len(lags)//2]}, max {lags[-1]}, last {rows[-1][1]}; longest growth {best_grow} s; "
      f"longest stretch without a commit while lagging {best_still} s")
print(f"produced - committed: p50 {b_sorted[len(b_sorted)//2]}, max {b_sorted[-1]}, last {behind[-1][1]}; longest growth {best_grow2} s")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], lw=1)
    ax.set_xlabel("seconds"); ax.set_ylabel("consumer lag (messages)")
    ax.set_title(f"rtlake demo at {speed}x for {minutes} min" + (", both cores busy" if hog == "1" else ""))
    fig.tight_layout(); fig.savefig(f"{out}/lag.png", dpi=100)
    print(f"plot: {out}/lag.png")
except ImportError:
    print("(no matplotlib: no plot)")
EOF
