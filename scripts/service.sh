# Sourced by the scripts that run one server in the background (scripts/trino.sh,
# scripts/iceberg-rest.sh): its pid in $RUN/pid, its output in $RUN/server.log. The sourcing
# script defines `ready` (whether the server answers), `url` and `die`.

# The server's pid, if it is alive.
service_pid() {
  local p
  p=$(cat "$RUN/pid" 2>/dev/null) || return 1
  kill -0 "$p" 2>/dev/null && echo "$p"
}

# Waits up to $2 seconds for the server named $1 to answer, then prints its URL; dies with the
# log's tail if it exits or stays silent.
service_await() {
  local what=$1 seconds=$2 i
  for i in $(seq 1 $((seconds * 2))); do
    if ready; then url; return 0; fi
    service_pid >/dev/null || { tail -30 "$RUN/server.log" >&2; die "$what exited during start (log: $RUN/server.log)"; }
    sleep 0.5
  done
  tail -30 "$RUN/server.log" >&2
  die "$what did not answer within $seconds s (log: $RUN/server.log)"
}

# Stops the server: SIGTERM, then SIGKILL after $1 seconds.
service_stop() {
  local p i
  p=$(service_pid) || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 $(($1 * 2))); do
    kill -0 "$p" 2>/dev/null || { rm -f "$RUN/pid"; return 0; }
    sleep 0.5
  done
  kill -KILL "$p" 2>/dev/null || true
  rm -f "$RUN/pid"
}

# The commands every such script takes besides `start`.
service_command() {
  case "$1" in
    stop) service_stop "$STOP_SECONDS" ;;
    status) if service_pid >/dev/null && ready; then echo "running: $(url)"; else echo "stopped"; return 1; fi ;;
    url) url ;;
    reset) service_stop "$STOP_SECONDS"; rm -rf "$RUN" ;;
    *) return 2 ;;
  esac
}
