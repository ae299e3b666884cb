#!/usr/bin/env bash
# A real Apache Kafka cluster on this machine: three brokers in KRaft mode on loopback.
#
#   scripts/kafka.sh start        fetch Kafka (first run), format, start brokers 1-3, wait until
#                                 all serve; the last line of stdout is the bootstrap list
#   scripts/kafka.sh stop         stop every broker (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh kill N       SIGKILL broker N (1-3)
#   scripts/kafka.sh start N      start broker N again with its data
#   scripts/kafka.sh status       which brokers run, and the bootstrap list
#   scripts/kafka.sh bootstrap    print the bootstrap list
#   scripts/kafka.sh reset        stop, and delete the cluster's data and logs
#
# Kafka comes from Maven Central (org.apache.kafka:kafka_2.13, pinned below, with a log4j2
# binding) through `mvn dependency:copy-dependencies` into $RTLAKE_KAFKA_HOME/dist-<version>
# (default ~/.cache/rtlake/kafka), outside the clone and reused by later runs. The cluster's
# data, logs and configs live in $RTLAKE_KAFKA_HOME/cluster: broker N in nodeN/ (data/,
# server.properties, kafka.log). Ports: $RTLAKE_KAFKA_PORT (default 19092) + 0, 2, 4 for clients,
# + 1, 3, 5 for the controllers.
#
# Sized for a 2-core, 24 GiB machine that also builds and tests: each broker is a combined
# broker+controller with a 512 MiB heap (G1, 2 processors), 2 network and 2 I/O threads;
# replication factor 3 and min.insync.replicas 2 for every topic, internal ones included.
set -euo pipefail

VERSION="${RTLAKE_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION=2.25.3
HOME_DIR="${RTLAKE_KAFKA_HOME:-$HOME/.cache/rtlake/kafka}"
DIST="$HOME_DIR/dist-$VERSION"
CLUSTER="$HOME_DIR/cluster"
BASE_PORT="${RTLAKE_KAFKA_PORT:-19092}"
HEAP="${RTLAKE_KAFKA_HEAP:--Xms256m -Xmx512m}"
NODES=(1 2 3)

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

client_port() { echo $((BASE_PORT + 2 * ($1 - 1))); }
controller_port() { echo $((BASE_PORT + 2 * ($1 - 1) + 1)); }
bootstrap() {
  local out=() n
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(client_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

need_tools() {
  command -v java >/dev/null || die "java is missing: Kafka $VERSION needs Java 17 or later (Debian: apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -XX:+IgnoreUnrecognizedVMOptions -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [ -n "$major" ] && [ "$major" -ge 17 ] || die "java is version ${major:-unknown}; Kafka $VERSION needs 17 or later"
}

fetch() {
  [ -f "$DIST/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is missing: it fetches Kafka from Maven Central (Debian: apt-get install maven)"
  say "fetching Apache Kafka $VERSION from Maven Central into $DIST (once)"
  local work
  work=$(mktemp -d)
  cat > "$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rtlake</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$DIST.tmp"
  mkdir -p "$DIST.tmp"
  if ! mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$DIST.tmp/libs" > "$work/mvn.log" 2>&1; then
    tail -20 "$work/mvn.log" >&2
    rm -rf "$work" "$DIST.tmp"
    die "the download of Kafka $VERSION from Maven Central failed (log above); is Maven Central reachable?"
  fi
  [ -f "$DIST.tmp/libs/kafka_2.13-$VERSION.jar" ] || die "Maven finished but kafka_2.13-$VERSION.jar is missing"
  rm -rf "$work" "$DIST"
  mv "$DIST.tmp" "$DIST"
  touch "$DIST/.complete"
}

java_args() {
  # shellcheck disable=SC2206
  JAVA=(java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:ActiveProcessorCount=2
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$CLUSTER/log4j2.properties" -cp "$DIST/libs/*")
}

write_configs() {
  mkdir -p "$CLUSTER"
  cat > "$CLUSTER/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = warn
logger.org.name = org.apache.kafka
logger.org.level = warn
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
EOF
  local voters=() n
  for n in "${NODES[@]}"; do voters+=("$n@127.0.0.1:$(controller_port "$n")"); done
  for n in "${NODES[@]}"; do
    mkdir -p "$CLUSTER/node$n"
    cat > "$CLUSTER/node$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(IFS=,; echo "${voters[*]}")
listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$CLUSTER/node$n/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=4
log.retention.hours=168
log.segment.bytes=268435456
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
unclean.leader.election.enable=false
EOF
  done
}

pid_of() { local f="$CLUSTER/node$1/kafka.pid"; [ -f "$f" ] && cat "$f" || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

format() {
  [ -f "$CLUSTER/cluster.id" ] || {
    # An id that starts with "-" reads as an option to the format tool (one in 64 did, and
    # failed the run); Kafka's own random-uuid never starts with one either.
    python3 -c '
import base64, uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        print(i)
        break
' > "$CLUSTER/cluster.id"
  }
  local id n
  id=$(cat "$CLUSTER/cluster.id")
  for n in "${NODES[@]}"; do
    [ -f "$CLUSTER/node$n/data/meta.properties" ] && continue
    java_args
    "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$CLUSTER/node$n/server.properties" \
      > "$CLUSTER/node$n/format.log" 2>&1 || { cat "$CLUSTER/node$n/format.log" >&2; die "formatting broker $n failed"; }
  done
}

start_node() {
  local n=$1
  if running "$n"; then say "broker $n already runs (pid $(pid_of "$n"))"; return 0; fi
  java_args
  nohup "${JAVA[@]}" kafka.Kafka "$CLUSTER/node$n/server.properties" >> "$CLUSTER/node$n/kafka.log" 2>&1 < /dev/null &
  echo $! > "$CLUSTER/node$n/kafka.pid"
}

# Waits until the broker answers a metadata request that lists all three brokers.
wait_serving() {
  local n=$1 deadline=$((SECONDS + ${RTLAKE_KAFKA_START_TIMEOUT:-180}))
  local port; port=$(client_port "$n")
  while [ $SECONDS -lt $deadline ]; do
    running "$n" || { tail -30 "$CLUSTER/node$n/kafka.log" >&2; die "broker $n exited during start-up (log: $CLUSTER/node$n/kafka.log)"; }
    if python3 - "$port" <<'EOF' 2>/dev/null
import socket, struct, sys
# A Metadata v4 request (all topics, no auto-creation): the answer lists the brokers the
# cluster knows. v4 is the oldest version Kafka 4 still answers and the newest without tagged fields.
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
body = struct.pack(">hhih", 3, 4, 1, 7) + b"rtlake-" + struct.pack(">ib", -1, 0)
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit(1)
        b += c
    return b
size = struct.unpack(">i", read(4))[0]
resp = read(size)
brokers = struct.unpack(">i", resp[8:12])[0]
raise SystemExit(0 if brokers == 3 else 1)
EOF
    then return 0; fi
    sleep 1
  done
  die "broker $n did not serve within ${RTLAKE_KAFKA_START_TIMEOUT:-180} s (log: $CLUSTER/node$n/kafka.log)"
}

stop_node() {
  local n=$1 p
  p=$(pid_of "$n")
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$CLUSTER/node$n/kafka.pid"
}

check_node() { [[ "$1" =~ ^[123]$ ]] || die "broker number must be 1, 2 or 3, not '$1'"; }

cmd="${1:-}"
case "$cmd" in
  start)
    need_tools
    if [ -n "${2:-}" ]; then
      check_node "$2"
      [ -f "$CLUSTER/node$2/data/meta.properties" ] || die "broker $2 has no data yet: run 'scripts/kafka.sh start' first"
      start_node "$2"; wait_serving "$2"
      say "broker $2 serves on 127.0.0.1:$(client_port "$2")"
    else
      t0=$SECONDS
      fetch
      write_configs
      format
      for n in "${NODES[@]}"; do start_node "$n"; done
      for n in "${NODES[@]}"; do wait_serving "$n"; done
      say "three brokers serve (Kafka $VERSION, KRaft) after $((SECONDS - t0)) s; data and logs in $CLUSTER"
    fi
    bootstrap
    ;;
  stop)
    for n in "${NODES[@]}"; do stop_node "$n"; done
    say "stopped"
    ;;
  kill)
    check_node "${2:-}"
    p=$(pid_of "$2")
    [ -n "$p" ] && kill -9 "$p" 2>/dev/null && say "killed broker $2 (pid $p)" || say "broker $2 was not running"
    rm -f "$CLUSTER/node$2/kafka.pid"
    ;;
  status)
    for n in "${NODES[@]}"; do
      if running "$n"; then echo "broker $n: running (pid $(pid_of "$n")) on 127.0.0.1:$(client_port "$n")"; else echo "broker $n: stopped"; fi
    done
    bootstrap
    ;;
  bootstrap) bootstrap ;;
  reset)
    for n in "${NODES[@]}"; do stop_node "$n"; done
    rm -rf "$CLUSTER"
    say "cluster data deleted"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac
