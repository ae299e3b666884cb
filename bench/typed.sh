#!/usr/bin/env bash
# Avro (and Protobuf) beside JSON: the 90-minute bike replay (979,560 events) produced once in
# each format (`rtlake produce bikes --format json|avro|protobuf`), then drained by the same declared pipeline (the
# event's eight columns, as they come, into one Delta table) with --trigger available-now.
#
#   bash bench/typed.sh setup          # broker, schema registry, both topics (release build)
#   bash bench/typed.sh run json|avro|protobuf  # one drain into a fresh lake and group: the figure
#   bash bench/typed.sh stop
#
# RTLAKE_BIN picks the binary (default: the release build in $CARGO_TARGET_DIR). The pair is
# timed run by run in turn, A B A B ..., as bench/README.md says.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
R="${RTLAKE_BIN:-$CARGO_TARGET_DIR/release/rtlake}"
OUT=/tmp/rtlake-typed-bench
BROKERS=127.0.0.1:29492
COLS="rackTotCnt STRING, stationName STRING, parkingBikeTotCnt STRING, shared STRING, stationLatitude STRING, stationLongitude STRING, stationId STRING, polledAt STRING"

case "${1:-}" in
  setup)
    [ -n "${RTLAKE_BIN:-}" ] || cargo build --release --locked --ignore-rust-version -p rtlake >&2
    rm -rf "$OUT" && mkdir -p "$OUT"
    "$R" broker --listen "$BROKERS" --data "$OUT/broker" >"$OUT/broker.log" 2>&1 &
    echo $! >"$OUT/broker.pid"
    bash scripts/schema-registry.sh reset >/dev/null 2>&1 || true
    REG=$(bash scripts/schema-registry.sh start | tail -1)
    echo "$REG" >"$OUT/registry.url"
    sleep 2
    for f in json avro protobuf; do
      "$R" topics create "bikes-$f" --partitions 3 --brokers "$BROKERS" >&2
      extra=()
      [ "$f" = json ] || extra=(--schema-registry "$REG")
      "$R" produce bikes --brokers "$BROKERS" --topic "bikes-$f" --speed max --minutes 90 \
        --format "$f" "${extra[@]}" --metrics-listen off
      if [ "$f" = json ]; then
        input="format = \"json\"
schema = \"$COLS\""
      else
        input="format = \"$f\"
schema-registry = \"$REG\""
      fi
      cat >"$OUT/$f.toml" <<TOML
pipeline = "bench-$f"
[input]
$input
[[stages]]
name = "events"
sql = "SELECT * FROM input"
[[sinks]]
operator = "events"
table = "raw.events"
TOML
    done
    ;;
  run)
    f="${2:?json, avro or protobuf}"
    rm -rf "$OUT/lake-$f"
    exec "$R" run --brokers "$BROKERS" --topic "bikes-$f" --group "bench-$f-$(date +%s%N)" \
      --pipeline "$OUT/$f.toml" --lake "$OUT/lake-$f" --trigger available-now --metrics-listen off
    ;;
  stop)
    [ -f "$OUT/broker.pid" ] && kill "$(cat "$OUT/broker.pid")" 2>/dev/null || true
    bash scripts/schema-registry.sh stop >/dev/null 2>&1 || true
    ;;
  *)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
