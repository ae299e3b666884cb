#!/usr/bin/env bash
# Apache Spark with delta-spark and Iceberg's runtime, to read rtlake's lake in the tests:
# pyspark (PyPI) in a virtualenv of its own, delta-spark's jars and iceberg-spark-runtime
# (Maven Central), fetched once into
# $RTLAKE_SPARK_HOME (default ~/.cache/rtlake/spark), outside the clone. Spark runs in local mode
# inside the test's Python process: nothing to start or stop.
#
#   scripts/spark.sh fetch     fetch what is missing; the last line of stdout is the Python to run
#   scripts/spark.sh python    that Python (pyspark importable)
#   scripts/spark.sh jars      the jars to give Spark (`spark.jars`), comma-separated
#
# Spark 4.0 runs on the machine's Java 17.
set -euo pipefail

PYSPARK_VERSION="${RTLAKE_PYSPARK_VERSION:-4.0.1}"
DELTA_VERSION="${RTLAKE_DELTA_SPARK_VERSION:-4.0.0}"
ICEBERG_VERSION="${RTLAKE_ICEBERG_VERSION:-1.10.0}"
HOME_DIR="${RTLAKE_SPARK_HOME:-$HOME/.cache/rtlake/spark}"
VENV="$HOME_DIR/venv-$PYSPARK_VERSION"
JARS="$HOME_DIR/delta-$DELTA_VERSION"
ICEBERG_JAR="$HOME_DIR/iceberg-spark-runtime-4.0_2.13-$ICEBERG_VERSION.jar"

die() { echo "spark.sh: $*" >&2; exit 1; }
say() { echo "spark.sh: $*" >&2; }

fetch_pyspark() {
  "$VENV/bin/python" -c "import pyspark" 2>/dev/null && return 0
  say "installing pyspark $PYSPARK_VERSION into $VENV (once, 430 MB)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
}

fetch_delta() {
  [ -f "$JARS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is missing: it fetches delta-spark from Maven Central (Debian: apt-get install maven)"
  say "fetching delta-spark $DELTA_VERSION from Maven Central into $JARS (once)"
  local work
  work=$(mktemp -d)
  # delta-spark's own jars: Spark (a `provided` dependency), Scala and ANTLR come with pyspark.
  cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rtlake</groupId><artifactId>spark-deps</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>io.delta</groupId><artifactId>delta-spark_2.13</artifactId><version>$DELTA_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DexcludeGroupIds=org.scala-lang,org.antlr -DoutputDirectory="$JARS.tmp" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    die "could not fetch io.delta:delta-spark_2.13:$DELTA_VERSION"
  fi
  rm -rf "$work" "$JARS" && mv "$JARS.tmp" "$JARS" && touch "$JARS/.complete"
}

fetch_iceberg() {
  [ -f "$ICEBERG_JAR" ] && return 0
  say "fetching iceberg-spark-runtime $ICEBERG_VERSION from Maven Central (once, 45 MB)"
  local work
  work=$(mktemp -d)
  if ! mvn -q -B dependency:copy -Dartifact="org.apache.iceberg:iceberg-spark-runtime-4.0_2.13:$ICEBERG_VERSION" \
      -DoutputDirectory="$work" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    die "could not fetch org.apache.iceberg:iceberg-spark-runtime-4.0_2.13:$ICEBERG_VERSION"
  fi
  mv "$work/iceberg-spark-runtime-4.0_2.13-$ICEBERG_VERSION.jar" "$ICEBERG_JAR.tmp" && mv "$ICEBERG_JAR.tmp" "$ICEBERG_JAR"
  rm -rf "$work"
}

jars() {
  local out=() j
  for j in "$JARS"/*.jar; do out+=("$j"); done
  [ -f "$ICEBERG_JAR" ] && out+=("$ICEBERG_JAR")
  (IFS=,; echo "${out[*]}")
}

case "${1:-}" in
  fetch) fetch_pyspark; fetch_delta; fetch_iceberg; echo "$VENV/bin/python" ;;
  python) echo "$VENV/bin/python" ;;
  jars) jars ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
