#!/usr/bin/env bash
# Spark Structured Streaming and rtlake draining the same Kafka topic, one after the other, on
# the same machine: the course's two Spark jobs (../shared/bench/spark_peer.py --kafka, Spark's
# spark-sql-kafka-0-10 source, trigger availableNow) and `rtlake run --trigger available-now`
# (bronze, silver, both gold tables, _rejected), on the 90-minute replay (979,560 events).
#
#   bash bench/kafka_vs_spark.sh [--brokers LIST] [--out DIR]
#
# Without --brokers it starts the three-broker Apache Kafka of scripts/kafka.sh (and stops it
# at the end). pyspark comes from $SPARK_PYTHON (default /tmp/peers4/bin/python; created with
# pyspark 4.0.0 when missing). Prints events/s of each, the ratio, and compares rtlake's silver
# and hourly tables with Spark's output row by row (bench/compare_spark.py).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
BROKERS=""; OUT=/tmp/rtlake-kafka-vs-spark
while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) BROKERS=$2; shift ;;
    --out) OUT=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# pyspark 4.0.0, not 4.0.1: the Maven Central reachable here lacks
# org.apache.spark:spark-token-provider-kafka-0-10_2.13:4.0.1, which the 4.0.1 Kafka source needs.
SPARK_PYTHON="${SPARK_PYTHON:-/tmp/peers4/bin/python}"
if ! "$SPARK_PYTHON" -c "import pyspark" 2>/dev/null; then
  python3 -m venv "$(dirname "$(dirname "$SPARK_PYTHON")")"
  "$SPARK_PYTHON" -m pip install -q pyspark==4.0.0
fi
# spark_peer.py has Maven fetch the Kafka connector into ~/.m2 for Spark's resolver, but Maven
# leaves out the jar of slf4j-api (provided scope there), which Spark's resolver then cannot find.
mvn -q -B dependency:get -Dartifact=org.slf4j:slf4j-api:2.0.16 >&2 || true
. bench/lib.sh
release_and_replay "$OUT"
if [ -z "$BROKERS" ]; then
  BROKERS=$(bash scripts/kafka.sh start | tail -1)
  trap 'bash scripts/kafka.sh stop' EXIT
fi
TOPIC="spark-$(date +%s)"
"$R" topics create "$TOPIC" --partitions 3 --brokers "$BROKERS" >&2
"$R" produce bikes --source file "$EV" --brokers "$BROKERS" --topic "$TOPIC" --metrics-listen off >&2

echo "== Spark (spark_peer.py --kafka, local[2])" >&2
"$SPARK_PYTHON" ../shared/bench/spark_peer.py --kafka "$BROKERS" --topic "$TOPIC" --out "$OUT/spark" 2>"$OUT/spark.err" | tee "$OUT/spark.out"
spark_secs=$(sed -n 's/.*spark [a-z]*: [0-9]* events in \([0-9.]*\) s.*/\1/p' "$OUT/spark.out" | paste -sd+ | bc)
# Without Spark's timings there is nothing to compare (e.g. a pyspark whose Kafka connector
# Maven Central does not serve here: 4.0.1): say so instead of failing later in the comparison.
if [ -z "$spark_secs" ]; then
  echo "Spark did not finish its jobs ($SPARK_PYTHON); the end of $OUT/spark.err:" >&2
  grep -v '^\s*at ' "$OUT/spark.err" | tail -15 >&2
  exit 1
fi

echo "== rtlake (run --trigger available-now)" >&2
rm -rf "$OUT/lake"
t0=$(date +%s.%N)
"$R" run --brokers "$BROKERS" --topic "$TOPIC" --lake "$OUT/lake" --pipeline bench/lake-only.toml --group "rtlake-$TOPIC" \
  --assignment static --trigger available-now --metrics-listen off 2>"$OUT/rtlake.err" | tee "$OUT/rtlake.out"
rt_secs=$(python3 -c "print($(date +%s.%N) - $t0)")

python3 - "$TOTAL" "$spark_secs" "$rt_secs" <<'EOF'
import sys
n, s, r = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"Spark, both jobs: {s:.1f} s = {n / s:,.0f} events/s")
print(f"rtlake (whole process): {r:.1f} s = {n / r:,.0f} events/s")
print(f"ratio: rtlake is {s / r:.1f}x Spark")
EOF
"$RTLAKE_PYTHON" bench/compare_spark.py --lake "$OUT/lake" --spark-out "$OUT/spark"
