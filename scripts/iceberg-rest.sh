#!/usr/bin/env bash
# An Iceberg REST catalog on this machine, for the tests: the Iceberg project's own server
# (`RESTCatalogServer`, from org.apache.iceberg:iceberg-open-api's test fixtures, the one the
# project's `apache/iceberg-rest-fixture` image runs), backed by a JDBC catalog in a SQLite file.
#
#   scripts/iceberg-rest.sh start     fetch it (first run), start it, wait until it answers;
#                                     the last line of stdout is its URL
#   scripts/iceberg-rest.sh stop      stop it
#   scripts/iceberg-rest.sh status    whether it runs, and its URL
#   scripts/iceberg-rest.sh url       print its URL
#   scripts/iceberg-rest.sh reset     stop, and delete its catalog database and log
#
# The server and its runtime dependencies (Iceberg core, Jetty, SQLite's JDBC driver, Hadoop's
# client) come from Maven Central through `mvn dependency:copy-dependencies` into
# $RTLAKE_ICEBERG_REST_HOME (default ~/.cache/rtlake/iceberg-rest), outside the clone. It runs
# on the machine's Java 17. Port: $RTLAKE_ICEBERG_REST_PORT (default 18181). The server binds
# every interface (it takes no host setting); the tests talk to it on loopback.
set -euo pipefail

VERSION="${RTLAKE_ICEBERG_VERSION:-1.10.0}"
HOME_DIR="${RTLAKE_ICEBERG_REST_HOME:-$HOME/.cache/rtlake/iceberg-rest}"
JARS="$HOME_DIR/jars-$VERSION"
RUN="$HOME_DIR/run"
PORT="${RTLAKE_ICEBERG_REST_PORT:-18181}"

die() { echo "iceberg-rest.sh: $*" >&2; exit 1; }
say() { echo "iceberg-rest.sh: $*" >&2; }
url() { echo "http://127.0.0.1:$PORT"; }
STOP_SECONDS=10
# shellcheck source=scripts/service.sh
. "$(dirname "$0")/service.sh"

fetch() {
  [ -f "$JARS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is missing: it fetches the catalog from Maven Central (Debian: apt-get install maven)"
  say "fetching Iceberg's REST catalog server $VERSION from Maven Central into $JARS (once, 80 MB)"
  mkdir -p "$HOME_DIR"
  local work
  work=$(mktemp -d)
  # The test-fixtures jar declares no dependencies: these are the ones its classes use
  # (the adapter and servlet are in iceberg-core's test jar).
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rtlake</groupId><artifactId>iceberg-rest-deps</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-open-api</artifactId><version>$VERSION</version><classifier>test-fixtures</classifier></dependency>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-core</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-core</artifactId><version>$VERSION</version><classifier>tests</classifier></dependency>
    <dependency><groupId>org.eclipse.jetty</groupId><artifactId>jetty-servlet</artifactId><version>11.0.25</version></dependency>
    <dependency><groupId>org.xerial</groupId><artifactId>sqlite-jdbc</artifactId><version>3.50.3.0</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-client-api</artifactId><version>3.4.1</version></dependency>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-client-runtime</artifactId><version>3.4.1</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.17</version></dependency>
  </dependencies>
</project>
POM
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$JARS.tmp" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    die "could not fetch org.apache.iceberg:iceberg-open-api:$VERSION:test-fixtures and its dependencies"
  fi
  rm -rf "$work" "$JARS" && mv "$JARS.tmp" "$JARS" && touch "$JARS/.complete"
}

ready() { curl -sf "$(url)/v1/config" >/dev/null 2>&1; }

start() {
  if service_pid >/dev/null && ready; then url; return 0; fi
  fetch
  mkdir -p "$RUN/warehouse"
  say "starting the Iceberg REST catalog on $(url) (log: $RUN/server.log)"
  # CATALOG_* variables are the server's catalog properties (CATALOG_REST_PORT is rest.port).
  # Tables rtlake creates name their own location (under the lake); the warehouse is for others.
  # One SQLite connection (`clients`): with the default two, concurrent commits meet
  # SQLITE_BUSY ("database is locked") and the catalog answers 500.
  CATALOG_REST_PORT="$PORT" CATALOG_WAREHOUSE="file://$RUN/warehouse" \
    CATALOG_URI="jdbc:sqlite:$RUN/catalog.db" CATALOG_JDBC_SCHEMA__VERSION=V1 CATALOG_CLIENTS=1 \
    setsid java -Xmx512m -cp "$JARS/*" org.apache.iceberg.rest.RESTCatalogServer \
    > "$RUN/server.log" 2>&1 < /dev/null &
  echo $! > "$RUN/pid"
  service_await "the catalog" 30
}

case "${1:-}" in
  start) start ;;
  stop|status|url|reset) service_command "$1" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
