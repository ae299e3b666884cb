#!/usr/bin/env bash
# The upsert benchmark: changes per second into an upsert table of 1M keys and the files each
# epoch rewrites, beside the append rate of the same rows; Delta and Iceberg.
#
#   bash bench/upsert/run.sh [path/to/rtlake]     (default: the release build)
#
# Work in $RTLAKE_BENCH_DIR (default /tmp/upsert-bench). Steps, per format: load 1M keys through
# the upsert pipeline (an empty table, epochs of 50,000); then, each from a copy of that table,
# 200,000 changes (one in 20 a delete) on keys drawn from all 1M (`random`) or from the newest 2%
# (`recent`); then the same 200,000 rows appended to a new table. Each line gives the rtlake
# run's own summary (events/s) and, from its `upserted` log lines, the files read and rewritten
# per epoch; each upserted table is checked against the state the changes make (gen_changes.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
R=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/rtlake/target}/release/rtlake}
W=${RTLAKE_BENCH_DIR:-/tmp/upsert-bench}
[ -x "$R" ] || { echo "no rtlake at $R: cargo build --release -p rtlake" >&2; exit 1; }
mkdir -p "$W"
cd "$W"
for k in load random recent; do
  [ -s "$k.jsonl" ] || python3 "$HERE/gen_changes.py" "$k" --keys 1000000 --changes 200000 > "$k.jsonl"
done
export RTLAKE_LOG="warn,rtlake_stream::upsert=debug,deltalake_core::operations::merge=error"

# Runs the pipeline $1 over file $2 into lake $3 (format $4); prints the summary and epochs.
# Each file's run is a pipeline of its own name: the file source's positions are per pipeline,
# and a run over a second file must not start at the first file's position.
run() {
  local log="$3.log"
  sed "s/^pipeline = .*/pipeline = \"${2%.jsonl}\"/" "$HERE/$1" > "$W/$1"
  "$R" run --pipeline "$W/$1" --source "file:$W/$2" --lake "$3" --lake-format "$4" \
    --metrics-listen off --max-batch-events 50000 > "$log.out" 2> "$log"
  local summary; summary=$(grep '^processed ' "$log.out")
  local rewritten; rewritten=$(grep -o 'files_rewritten=[0-9]*' "$log" | cut -d= -f2 | paste -sd' ' || true)
  local scanned; scanned=$(grep -o 'files_scanned=[0-9]*' "$log" | cut -d= -f2 | paste -sd' ' || true)
  printf '%-8s %-8s %-7s %s\n' "$4" "$1" "$2" "$summary"
  [ -n "$rewritten" ] && printf '%26s files read per epoch: %s\n%26s files rewritten per epoch: %s\n' '' "$scanned" '' "$rewritten"
  return 0
}

for fmt in delta iceberg; do
  rm -rf "base-$fmt" "lake-$fmt" "append-$fmt"
  [ "$fmt" = delta ] && run upsert.toml load.jsonl "base-$fmt" "$fmt"
  for kind in random recent; do
    rm -rf "lake-$fmt"
    # A Delta table copies; an Iceberg table names its files by full path, so it is loaded again.
    if [ "$fmt" = delta ]; then cp -r "base-$fmt" "lake-$fmt"; else run upsert.toml load.jsonl "lake-$fmt" "$fmt"; fi
    run upsert.toml "$kind.jsonl" "lake-$fmt" "$fmt"
    [ -s "$kind.state" ] || python3 "$HERE/gen_changes.py" state "$kind" --keys 1000000 --changes 200000 > "$kind.state"
    got=$("$R" sql --lake "lake-$fmt" --format csv "SELECT id, v FROM bench.state ORDER BY id" | tail -n +2 | sha256sum)
    want=$(sha256sum < "$kind.state")
    [ "$got" = "$want" ] && same="equals the model, row for row" || same="DIFFERS from the model"
    echo "                           table after: $(wc -l < "$kind.state") rows expected; it $same"
  done
  run append.toml random.jsonl "append-$fmt" "$fmt"
done
