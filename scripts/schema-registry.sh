#!/usr/bin/env bash
# A schema registry on this machine, for the tests: Conduit's Schema Registry
# (github.com/conduitio/conduit-schema-registry, from the Go module proxy), which serves the
# Confluent Schema Registry REST API, in memory, wrapped by scripts/schema-registry/main.go
# (listen address, optional HTTP basic auth). docs/schema-registry.md says why not Apicurio.
#
#   scripts/schema-registry.sh build     build it (first run; cached), print the binary's path
#   scripts/schema-registry.sh start     build, start it, wait until it answers; the last line
#                                        of stdout is its URL
#   scripts/schema-registry.sh stop      stop it
#   scripts/schema-registry.sh status    whether it runs, and its URL
#   scripts/schema-registry.sh url       print its URL
#   scripts/schema-registry.sh reset     stop it and delete its log (its schemas live in memory)
#
# The binary goes to $RTLAKE_SCHEMA_REGISTRY_HOME (default ~/.cache/rtlake/schema-registry),
# outside the clone, keyed by the wrapper's sources. Port: $RTLAKE_SCHEMA_REGISTRY_PORT (default
# 18081). With SCHEMA_REGISTRY_BASIC_AUTH=user:password every request must carry them. The
# tests start their own servers from the built binary (RTLAKE_TEST_SCHEMA_REGISTRY_BIN).
set -euo pipefail

SRC="$(cd "$(dirname "$0")/schema-registry" && pwd)"
HOME_DIR="${RTLAKE_SCHEMA_REGISTRY_HOME:-$HOME/.cache/rtlake/schema-registry}"
RUN="$HOME_DIR/run"
PORT="${RTLAKE_SCHEMA_REGISTRY_PORT:-18081}"

die() { echo "schema-registry.sh: $*" >&2; exit 1; }
say() { echo "schema-registry.sh: $*" >&2; }
url() { echo "http://127.0.0.1:$PORT"; }
STOP_SECONDS=5
# shellcheck source=scripts/service.sh
. "$(dirname "$0")/service.sh"

build() {
  local key bin
  key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
  bin="$HOME_DIR/bin-$key/schema-registry"
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || die "go is missing: it builds the registry from the Go module proxy"
    say "building the schema registry into $bin (once)"
    mkdir -p "$(dirname "$bin")"
    (cd "$SRC" && GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" .) || die "go build failed"
    mv "$bin.tmp" "$bin"
  fi
  echo "$bin"
}

ready() { local c; c=$(curl -s -o /dev/null -w '%{http_code}' "$(url)/config" 2>/dev/null) || true; [ -n "$c" ] && [ "$c" != 000 ]; }

start() {
  if service_pid >/dev/null && ready; then url; return 0; fi
  local bin
  bin=$(build | tail -1)
  mkdir -p "$RUN"
  say "starting the schema registry on $(url) (log: $RUN/server.log)"
  setsid "$bin" -addr "127.0.0.1:$PORT" > "$RUN/server.log" 2>&1 < /dev/null &
  echo $! > "$RUN/pid"
  service_await "the schema registry" 20
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop|status|url|reset) service_command "$1" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
