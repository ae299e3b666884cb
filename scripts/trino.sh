#!/usr/bin/env bash
# Trino (the engine behind Amazon Athena) on this machine, to read rtlake's lake in the tests:
# one coordinator on loopback with a `delta` catalog (the Delta Lake connector on a file
# metastore, tables registered with `rtlake lake ddl --for trino`) and, when
# $RTLAKE_ICEBERG_REST_URL names an Iceberg REST catalog (scripts/iceberg-rest.sh), an
# `iceberg` catalog on it.
#
#   scripts/trino.sh start     fetch Trino (first run), start it, wait until it answers queries;
#                              the last line of stdout is its URL
#   scripts/trino.sh stop      stop it (SIGTERM, then SIGKILL after 30 s)
#   scripts/trino.sh status    whether it runs, and its URL
#   scripts/trino.sh url       print its URL
#   scripts/trino.sh reset     stop, and delete its metastore, data and logs
#
# Trino's server (io.trino:trino-server, a tar.gz pinned below) comes from Maven Central through
# `mvn dependency:copy` into $RTLAKE_TRINO_HOME (default ~/.cache/rtlake/trino), outside the
# clone and reused by later runs; only the plugins rtlake's tests use are kept (Trino loads every
# plugin at start: 50 of them took most of a minute on 2 cores). Trino needs Java 24 or later:
# $RTLAKE_TRINO_JAVA_HOME, else the newest JDK under /usr/lib/jvm, for this process only.
#
# Sized for a 2-core, 24 GiB machine that also builds and tests: a 2 GiB heap, the coordinator
# doing the work too. Port: $RTLAKE_TRINO_PORT (default 18080).
set -euo pipefail

VERSION="${RTLAKE_TRINO_VERSION:-476}"
HOME_DIR="${RTLAKE_TRINO_HOME:-$HOME/.cache/rtlake/trino}"
DIST="$HOME_DIR/trino-server-$VERSION"
RUN="$HOME_DIR/run"
PORT="${RTLAKE_TRINO_PORT:-18080}"
HEAP="${RTLAKE_TRINO_HEAP:-2G}"
# The plugins kept: the table formats rtlake writes.
PLUGINS=(delta-lake iceberg hive)

die() { echo "trino.sh: $*" >&2; exit 1; }
say() { echo "trino.sh: $*" >&2; }
url() { echo "http://127.0.0.1:$PORT"; }
STOP_SECONDS=30
# shellcheck source=scripts/service.sh
. "$(dirname "$0")/service.sh"

java_home() {
  if [ -n "${RTLAKE_TRINO_JAVA_HOME:-}" ]; then echo "$RTLAKE_TRINO_JAVA_HOME"; return; fi
  local best="" best_major=0 d major
  for d in /usr/lib/jvm/*/; do
    [ -x "$d/bin/java" ] || continue
    major=$("$d/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ -n "$major" ] && [ "$major" -gt "$best_major" ]; then best="${d%/}"; best_major=$major; fi
  done
  [ "$best_major" -ge 24 ] || die "Trino $VERSION needs Java 24 or later; the newest under /usr/lib/jvm is ${best_major} (set RTLAKE_TRINO_JAVA_HOME)"
  echo "$best"
}

fetch() {
  [ -f "$DIST/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is missing: it fetches Trino from Maven Central (Debian: apt-get install maven)"
  say "fetching Trino $VERSION from Maven Central into $DIST (once, 800 MB)"
  mkdir -p "$HOME_DIR"
  local work
  work=$(mktemp -d)
  if ! mvn -q -B dependency:copy -Dartifact="io.trino:trino-server:$VERSION:tar.gz" \
      -DoutputDirectory="$work" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    die "could not fetch io.trino:trino-server:$VERSION"
  fi
  rm -rf "$DIST.tmp" && mkdir -p "$DIST.tmp"
  tar xzf "$work/trino-server-$VERSION.tar.gz" -C "$DIST.tmp" --strip-components 1
  local p keep
  for p in "$DIST.tmp"/plugin/*/; do
    keep=0
    for k in "${PLUGINS[@]}"; do [ "$(basename "$p")" = "$k" ] && keep=1; done
    [ "$keep" = 1 ] || rm -rf "$p"
  done
  rm -rf "$work" "$DIST" && mv "$DIST.tmp" "$DIST" && touch "$DIST/.complete"
}

configure() {
  mkdir -p "$RUN/etc/catalog" "$RUN/data" "$RUN/metastore"
  cat > "$RUN/etc/node.properties" <<EOF
node.environment=rtlake_test
node.id=rtlake-trino-1
node.data-dir=$RUN/data
node.bind-ip=127.0.0.1
node.internal-address=127.0.0.1
EOF
  cat > "$RUN/etc/jvm.config" <<EOF
-server
-Xmx$HEAP
-XX:+UseG1GC
-XX:+ExitOnOutOfMemoryError
-XX:ActiveProcessorCount=2
-Djdk.attach.allowAttachSelf=true
-Dfile.encoding=UTF-8
EOF
  cat > "$RUN/etc/config.properties" <<EOF
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port=$PORT
discovery.uri=$(url)
query.max-memory=1GB
query.max-memory-per-node=1GB
EOF
  cat > "$RUN/etc/log.properties" <<EOF
io.trino=WARN
EOF
  # Tables live wherever the lake is: `file://` paths go through Hadoop's local file system.
  cat > "$RUN/etc/catalog/delta.properties" <<EOF
connector.name=delta_lake
hive.metastore=file
hive.metastore.catalog.dir=file://$RUN/metastore
delta.register-table-procedure.enabled=true
fs.hadoop.enabled=true
EOF
  rm -f "$RUN/etc/catalog/iceberg.properties"
  if [ -n "${RTLAKE_ICEBERG_REST_URL:-}" ]; then
    cat > "$RUN/etc/catalog/iceberg.properties" <<EOF
connector.name=iceberg
iceberg.catalog.type=rest
iceberg.rest-catalog.uri=$RTLAKE_ICEBERG_REST_URL
iceberg.register-table-procedure.enabled=true
fs.hadoop.enabled=true
EOF
  fi
}

ready() {
  curl -sf "$(url)/v1/info" 2>/dev/null | grep -q '"starting":false'
}

start() {
  if service_pid >/dev/null; then url; return 0; fi
  fetch
  configure
  local jh
  jh=$(java_home)
  say "starting Trino $VERSION on $(url) (log: $RUN/server.log)"
  # The launcher refuses to start while its own pid file names a live process; after a crash
  # that pid may be anyone's. This script keeps its own pid file.
  rm -f "$RUN/data/var/run/launcher.pid"
  # `launcher run` replaces itself with the server's JVM: the pid is the server's.
  JAVA_HOME="$jh" PATH="$jh/bin:$PATH" setsid "$DIST/bin/launcher" run --etc-dir "$RUN/etc" \
    --data-dir "$RUN/data" > "$RUN/server.log" 2>&1 < /dev/null &
  echo $! > "$RUN/pid"
  service_await "Trino" 180
}

case "${1:-}" in
  start) start ;;
  stop|status|url|reset) service_command "$1" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
