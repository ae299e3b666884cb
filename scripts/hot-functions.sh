#!/usr/bin/env bash
# Makes crates/rtlake/link/hot-functions.txt again: the functions the release binary runs in a
# pipeline's drain, hottest first, which build.rs hands to lld so that they lie together (see
# crates/rtlake/build.rs for why). Runs the binary under valgrind's callgrind, which sees every
# function executed, not a sample: the embedded broker, and against it the producer, the
# default pipeline, the lake-only one, and a low-latency run for 45 s; the lake-only pipeline
# from a file; on the first 200,000 events of the 90-minute replay. About ten minutes.
#
#   bash scripts/hot-functions.sh        then: cargo build --release -p rtlake (the rtlake crate only)
#
# Run it after a dependency or the toolchain changed (their names carry new hashes): names the
# build no longer has are skipped, so a stale list only costs memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v valgrind > /dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
. bench/lib.sh
W=/tmp/rtlake-hot-functions
release_and_replay "$W"
rm -rf "$W/broker" "$W"/cg.* "$W"/lake-*
head -200000 "$EV" > "$W/head.jsonl"
PORT=127.0.0.1:29397
export RTLAKE_LOG=warn
CALLGRIND=(valgrind --tool=callgrind --demangle=no --dump-instr=no)
# The embedded broker is the same binary: its functions are profiled too.
"${CALLGRIND[@]}" --callgrind-out-file="$W/cg.broker.%p" \
  "$R" broker --listen "$PORT" --data "$W/broker" > "$W/broker.log" 2>&1 & BROKER=$!
trap 'kill $BROKER 2>/dev/null' EXIT
until "$R" topics list --brokers "$PORT" > /dev/null 2>&1; do sleep 1; done
"$R" topics create hot --partitions 3 --brokers "$PORT" > /dev/null
cg() { local name=$1; shift; "${CALLGRIND[@]}" --callgrind-out-file="$W/cg.$name.%p" "$R" "$@" > "$W/$name.log" 2>&1; }
echo "profiling: produce" >&2
cg produce produce bikes --source file "$W/head.jsonl" --brokers "$PORT" --topic hot --metrics-listen off
echo "profiling: the default pipeline from the topic" >&2
cg default run --brokers "$PORT" --topic hot --group hot-default --lake "$W/lake-default" --trigger available-now --metrics-listen off
echo "profiling: the lake-only pipeline from the topic and from the file" >&2
cg lake-only run --brokers "$PORT" --topic hot --group hot-lake-only --lake "$W/lake-only" \
  --pipeline bench/lake-only.toml --trigger available-now --metrics-listen off
cg file run --source "file:$W/head.jsonl" --lake "$W/lake-file" --pipeline bench/lake-only.toml --metrics-listen off
echo "profiling: a low-latency run, 45 s" >&2
timeout -s INT 45 "${CALLGRIND[@]}" --callgrind-out-file="$W/cg.live.%p" \
  "$R" run --brokers "$PORT" --topic hot --group hot-live --lake "$W/lake-live" --trigger low-latency \
  --metrics-listen 127.0.0.1:0 > "$W/live.log" 2>&1 || true
kill -INT $BROKER; wait $BROKER || true  # the broker stops cleanly on Ctrl-C, and callgrind writes its profile
# Each function's own cost (instructions outside its calls), summed over the runs; callgrind
# marks recursion depth with a quote ("f'2"), which is dropped.
python3 - "$(realpath "$R")" "$W"/cg.* > crates/rtlake/link/hot-functions.txt <<'PY'
import collections, re, sys
binary, files = sys.argv[1], sys.argv[2:]
cost = collections.Counter()
named = re.compile(r"(c?(?:ob|fn))=\((\d+)\)(?: (.*))?")
for path in files:
    names = {"ob": {}, "fn": {}}
    ob = fn = None
    after_calls = False
    for line in open(path, errors="replace"):
        m = named.match(line.rstrip("\n"))
        if m:
            kind, key, name = m.groups()
            table = names[kind.lstrip("c")]
            if name:
                table[key] = name
            if kind == "ob":
                ob = table.get(key)
            elif kind == "fn":
                fn = (ob, table.get(key))
            continue
        if line.startswith("calls="):
            after_calls = True  # the next cost line is the call's, not the function's own
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:
                after_calls = False
            elif fn and fn[0] == binary:
                parts = line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    cost[re.sub(r"'\d+$", "", fn[1])] += int(parts[1])
for name, _ in cost.most_common():
    print(name)
PY
echo "crates/rtlake/link/hot-functions.txt: $(wc -l < crates/rtlake/link/hot-functions.txt) functions" >&2
