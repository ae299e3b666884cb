#!/usr/bin/env bash
# Runs every test: unit tests and integration tests against the embedded broker, real Delta
# and Iceberg tables read by Python's deltalake and PyIceberg, Spark (scripts/spark.sh), Trino
# (scripts/trino.sh) and an Iceberg REST catalog (scripts/iceberg-rest.sh); then
# the Kafka-facing integration tests again against a real three-broker Apache Kafka
# (scripts/kafka.sh), and says how many ran on each broker.
#
#   bash scripts/test.sh                 both
#   RTLAKE_TEST_PHASES=embedded bash scripts/test.sh     only the first
#   RTLAKE_TEST_PHASES=kafka bash scripts/test.sh        only the Apache Kafka phase
#   bash scripts/test.sh -- --nocapture  extra arguments go to the test binaries
#
# To run the suite against any other cluster: RTLAKE_TEST_BROKERS=host:port,... cargo test
# --ignore-rust-version -p rtlake --test it -- <subject>:: (topics are created with the cluster's
# default replication factor; the broker-restart test needs RTLAKE_TEST_KAFKA_SH=1, i.e. this script's
# cluster, and is skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
PHASES="${RTLAKE_TEST_PHASES:-embedded kafka}"
# Each phase's tests get at most this long (after the build), so a test that hangs fails its phase
# and the other phase still runs; the tests bound their own runs too (common::OutputWithin).
PHASE_LIMIT="${RTLAKE_TEST_PHASE_LIMIT:-35m}"
[ "${1:-}" = "--" ] && shift
LOGS="${CARGO_TARGET_DIR}/test-logs"
mkdir -p "$LOGS"

# The subjects (modules of the `it` and `recovery` test binaries) that talk to a Kafka cluster:
# the demo and dashboard tests start the embedded broker themselves, and the chaos suite kills
# it, so they run in the first phase only.
KAFKA_TESTS=(backfill bronze broker_restart cdc declared exactly_once gbfs gold group healing producers rejected second_client security serve sources transactions typed)

# A test that returns early because it cannot run here records itself (rtlake_core::testing)
# in $RTLAKE_TEST_SKIPS: cargo counts it as passed, the summary counts it as skipped.
count() {
  local skipped=0
  [ -f "$2" ] && skipped=$(wc -l <"$2")
  grep -h "^test result:" "$1" | awk -v s="$skipped" '{p += $4; f += $6; i += $8} END {printf "%d passed, %d failed, %d skipped, %d ignored", p - s, f, s, i}'
}
skips() { [ -s "$1" ] && sed 's/^/      skipped: /' "$1" || true; }

# The typed-topic tests start their own schema registries from this binary (Go, built once).
export RTLAKE_TEST_SCHEMA_REGISTRY_BIN="$(bash scripts/schema-registry.sh build | tail -1)"

summary=()
status=0
if [[ " $PHASES " == *" embedded "* ]]; then
  echo "== tests on the embedded broker"
  cargo test --workspace --locked --ignore-rust-version --no-run
  # Engines we did not write read the lake (crates/rtlake/tests/it/engines.rs): Spark with
  # delta-spark and Iceberg's runtime in the test's process, one Iceberg REST catalog and one
  # Trino server (its `iceberg` catalog on that REST catalog) for the phase.
  SPARK_PYTHON=$(bash scripts/spark.sh fetch | tail -1)
  bash scripts/iceberg-rest.sh reset
  ICEBERG_REST=$(bash scripts/iceberg-rest.sh start | tail -1)
  trap 'bash scripts/iceberg-rest.sh stop' EXIT
  bash scripts/trino.sh reset
  TRINO=$(RTLAKE_ICEBERG_REST_URL="$ICEBERG_REST" bash scripts/trino.sh start | tail -1)
  trap 'bash scripts/trino.sh stop; bash scripts/iceberg-rest.sh stop' EXIT
  : >"$LOGS/embedded.skips"
  RTLAKE_TEST_SKIPS="$LOGS/embedded.skips" RTLAKE_TEST_TRINO="$TRINO" RTLAKE_TEST_ICEBERG_REST="$ICEBERG_REST" \
    RTLAKE_TEST_SPARK_PYTHON="$SPARK_PYTHON" RTLAKE_TEST_SPARK_JARS="$(bash scripts/spark.sh jars)" \
    timeout -k 30 "$PHASE_LIMIT" cargo test --workspace --locked --ignore-rust-version --no-fail-fast -- "$@" 2>&1 | tee "$LOGS/embedded.log" || status=1
  bash scripts/trino.sh stop
  bash scripts/iceberg-rest.sh stop
  trap - EXIT
  summary+=("embedded broker: $(count "$LOGS/embedded.log" "$LOGS/embedded.skips")")
  summary+=("$(skips "$LOGS/embedded.skips")")
fi

if [[ " $PHASES " == *" kafka "* ]]; then
  echo "== tests on Apache Kafka (three brokers, scripts/kafka.sh)"
  cargo build --locked --ignore-rust-version -p rtlake --tests
  bash scripts/kafka.sh reset
  BOOTSTRAP=$(bash scripts/kafka.sh start | tail -1)
  # PostgreSQL and Debezium (in Kafka Connect) for the change-data-capture test, once per phase.
  bash scripts/cdc.sh reset
  CDC=$(bash scripts/cdc.sh start "$BOOTSTRAP" | tail -1)
  trap 'bash scripts/cdc.sh stop; bash scripts/kafka.sh stop' EXIT
  filters=()
  for t in "${KAFKA_TESTS[@]}"; do filters+=("$t::"); done
  : >"$LOGS/kafka.skips"
  RTLAKE_TEST_BROKERS="$BOOTSTRAP" RTLAKE_TEST_KAFKA_SH=1 RTLAKE_TEST_SKIPS="$LOGS/kafka.skips" RTLAKE_TEST_CDC="$CDC" \
    timeout -k 30 "$PHASE_LIMIT" cargo test --locked --ignore-rust-version --no-fail-fast -p rtlake --test it --test recovery -- "${filters[@]}" "$@" 2>&1 | tee "$LOGS/kafka.log" || status=1
  summary+=("Apache Kafka $BOOTSTRAP: $(count "$LOGS/kafka.log" "$LOGS/kafka.skips")")
  summary+=("$(skips "$LOGS/kafka.skips")")
fi

echo "== test summary"
for s in "${summary[@]}"; do [ -n "$s" ] && echo "  $s"; done
[ "$status" = 0 ] || echo "some tests failed: see the logs above (also in $LOGS)"
exit "$status"
