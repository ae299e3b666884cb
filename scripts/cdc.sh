#!/usr/bin/env bash
# Change data capture on this machine: a PostgreSQL server with logical replication, and
# Debezium's Postgres connector in a Kafka Connect worker writing to a Kafka cluster.
#
#   scripts/cdc.sh start BOOTSTRAP   start PostgreSQL and a Connect worker for the cluster at
#                                    BOOTSTRAP (fetching Debezium on the first run); the last line
#                                    of stdout is "<postgres URL> <Connect REST URL>"
#   scripts/cdc.sh stop              stop both (SIGTERM, then SIGKILL)
#   scripts/cdc.sh reset             stop, and delete the database and the worker's state
#   scripts/cdc.sh fetch             only fetch Debezium and Kafka Connect
#   scripts/cdc.sh connector NAME DB TABLES TOPIC
#                                    register a Debezium connector NAME capturing TABLES
#                                    (comma-separated, e.g. public.orders) of database DB, every
#                                    table's changes routed to the one topic TOPIC (keyed by the
#                                    row's key and its table), JSON without schemas
#
# PostgreSQL is the machine's (Debian's postgresql package, /usr/lib/postgresql/<v>/bin), a
# cluster of its own in $RTLAKE_CDC_DATA (default /tmp/rtlake-cdc: the server runs as the
# `postgres` user when this script runs as root, and that user cannot enter /root), on
# 127.0.0.1:$RTLAKE_CDC_PG_PORT (default 17432), wal_level = logical, trust auth on loopback.
# Debezium 3.6.1.Final (io.debezium:debezium-connector-postgres) and Kafka Connect
# (org.apache.kafka:connect-runtime, the version of scripts/kafka.sh) come from Maven Central into
# ~/.cache/rtlake/debezium-<version>, outside the clone; the worker runs standalone (offsets in
# a file), its REST API on 127.0.0.1:$RTLAKE_CDC_CONNECT_PORT (default 17083).
set -euo pipefail

DBZ_VERSION="${RTLAKE_DEBEZIUM_VERSION:-3.6.1.Final}"
KAFKA_VERSION="${RTLAKE_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION=2.25.3
JARS="${RTLAKE_CACHE:-$HOME/.cache/rtlake}/debezium-$DBZ_VERSION"
DATA="${RTLAKE_CDC_DATA:-/tmp/rtlake-cdc}"
# Below the kernel's ephemeral range (32768-60999 here): a listening port inside it can be taken
# at any moment by an outgoing connection's local port (55432 was, once, and Postgres failed).
PG_PORT="${RTLAKE_CDC_PG_PORT:-17432}"
CONNECT_PORT="${RTLAKE_CDC_CONNECT_PORT:-17083}"
CONNECT="$DATA/connect"

die() { echo "cdc.sh: $*" >&2; exit 1; }
say() { echo "cdc.sh: $*" >&2; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || die "PostgreSQL is missing (Debian: apt-get install postgresql)"
  echo "$d"
}

# Runs a PostgreSQL program as the server's owner: `postgres` when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

fetch() {
  [ -f "$JARS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is missing: it fetches Debezium from Maven Central (Debian: apt-get install maven)"
  say "fetching Debezium $DBZ_VERSION and Kafka Connect $KAFKA_VERSION from Maven Central into $JARS (once)"
  local work
  work=$(mktemp -d)
  cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rtlake</groupId><artifactId>debezium-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-json</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>io.debezium</groupId><artifactId>debezium-connector-postgres</artifactId><version>$DBZ_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$JARS.tmp"
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$JARS.tmp" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    rm -rf "$work" "$JARS.tmp"
    die "the download of Debezium from Maven Central failed (log above)"
  fi
  ls "$JARS.tmp"/debezium-connector-postgres-*.jar >/dev/null || die "Maven finished but the Debezium connector is missing"
  # Kafka Connect logs through log4j2 here; drop other SLF4J bindings so only one is found.
  rm -f "$JARS.tmp"/slf4j-reload4j-*.jar "$JARS.tmp"/reload4j-*.jar
  rm -rf "$work" "$JARS"
  mv "$JARS.tmp" "$JARS"
  touch "$JARS/.complete"
}

pg_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres"; }
connect_url() { echo "http://127.0.0.1:$CONNECT_PORT"; }

pg_start() {
  local bin; bin=$(pg_bin)
  mkdir -p "$DATA"
  [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
  if [ ! -f "$DATA/pg/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$DATA/pg" -U postgres --auth=trust -E UTF8 > "$DATA/initdb.log" 2>&1 \
      || { cat "$DATA/initdb.log" >&2; die "initdb failed"; }
    cat >> "$DATA/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DATA'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
shared_buffers = 128MB
fsync = off
synchronous_commit = off
EOF
    echo "host replication all 127.0.0.1/32 trust" >> "$DATA/pg/pg_hba.conf"
  fi
  if as_pg "$bin/pg_ctl" -D "$DATA/pg" status >/dev/null 2>&1; then
    say "PostgreSQL already runs"
  else
    as_pg "$bin/pg_ctl" -D "$DATA/pg" -l "$DATA/pg.log" -w -t 60 start >/dev/null \
      || { tail -20 "$DATA/pg.log" >&2; die "PostgreSQL did not start (log: $DATA/pg.log)"; }
  fi
}

pg_stop() {
  local bin; bin=$(pg_bin)
  [ -f "$DATA/pg/PG_VERSION" ] || return 0
  as_pg "$bin/pg_ctl" -D "$DATA/pg" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

connect_pid() { [ -f "$CONNECT/connect.pid" ] && cat "$CONNECT/connect.pid" || true; }
connect_running() { local p; p=$(connect_pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

connect_start() {
  local bootstrap=$1
  mkdir -p "$CONNECT"
  if connect_running; then say "Kafka Connect already runs (pid $(connect_pid))"; return 0; fi
  cat > "$CONNECT/worker.properties" <<EOF
bootstrap.servers=$bootstrap
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
offset.storage.file.filename=$CONNECT/offsets
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:$CONNECT_PORT
plugin.discovery=only_scan
# Exactly the changes Debezium makes, once each in the usual case: an idempotent producer.
producer.enable.idempotence=true
producer.acks=all
producer.linger.ms=5
EOF
  cat > "$CONNECT/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.dbz.name = io.debezium
logger.dbz.level = info
EOF
  nohup java -Xms128m -Xmx512m -XX:+UseG1GC -XX:ActiveProcessorCount=2 -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$CONNECT/log4j2.properties" -cp "$JARS/*" \
    org.apache.kafka.connect.cli.ConnectStandalone "$CONNECT/worker.properties" \
    >> "$CONNECT/connect.log" 2>&1 < /dev/null &
  echo $! > "$CONNECT/connect.pid"
  local deadline=$((SECONDS + 120))
  until curl -sf "$(connect_url)/connectors" >/dev/null 2>&1; do
    connect_running || { tail -30 "$CONNECT/connect.log" >&2; die "Kafka Connect exited during start-up (log: $CONNECT/connect.log)"; }
    [ $SECONDS -lt $deadline ] || die "Kafka Connect did not answer within 120 s (log: $CONNECT/connect.log)"
    sleep 1
  done
}

connect_stop() {
  local p; p=$(connect_pid)
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$CONNECT/connect.pid"
}

connector() {
  local name=$1 db=$2 tables=$3 topic=$4
  # The slot and publication are named after the connector, so connectors do not share them.
  local slot; slot=$(echo "$name" | tr -c 'a-z0-9_\n' '_')
  python3 - "$name" "$db" "$tables" "$topic" "$slot" "$PG_PORT" <<'EOF' | curl -sf -X POST -H 'Content-Type: application/json' --data @- "$(connect_url)/connectors" >/dev/null \
    || die "Kafka Connect refused connector $name (log: $CONNECT/connect.log)"
import json, sys
name, db, tables, topic, slot, port = sys.argv[1:]
print(json.dumps({"name": name, "config": {
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    "plugin.name": "pgoutput",
    "database.hostname": "127.0.0.1",
    "database.port": port,
    "database.user": "postgres",
    "database.password": "unused",
    "database.dbname": db,
    "topic.prefix": slot,
    "slot.name": slot,
    "publication.name": slot,
    "publication.autocreate.mode": "filtered",
    "table.include.list": tables,
    "snapshot.mode": "initial",
    "decimal.handling.mode": "string",
    "tombstones.on.delete": "true",
    "transforms": "route",
    "transforms.route.type": "io.debezium.transforms.ByLogicalTableRouter",
    "transforms.route.topic.regex": ".*",
    "transforms.route.topic.replacement": topic,
}}))
EOF
  say "connector $name captures $tables of $db into topic $topic"
}

cmd="${1:-}"
case "$cmd" in
  fetch) fetch; echo "$JARS" ;;
  start)
    [ -n "${2:-}" ] || die "usage: scripts/cdc.sh start BOOTSTRAP"
    command -v java >/dev/null || die "java is missing (Kafka Connect needs Java 17 or later)"
    fetch
    pg_start
    connect_start "$2"
    say "PostgreSQL on 127.0.0.1:$PG_PORT, Kafka Connect on $(connect_url); data and logs in $DATA"
    echo "$(pg_url) $(connect_url)"
    ;;
  stop) connect_stop; pg_stop; say "stopped" ;;
  reset) connect_stop; pg_stop; rm -rf "$DATA"; say "reset" ;;
  connector)
    [ $# -eq 5 ] || die "usage: scripts/cdc.sh connector NAME DB TABLES TOPIC"
    connector "$2" "$3" "$4" "$5"
    ;;
  *) die "usage: scripts/cdc.sh start BOOTSTRAP | stop | reset | fetch | connector NAME DB TABLES TOPIC" ;;
esac
