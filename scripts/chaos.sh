#!/usr/bin/env bash
# The availability suite (crates/rtlake/tests/recovery/chaos.rs): the bike pipeline on the
# replay while faults are injected, every table compared row for row with an uninterrupted
# reference run.
# Prints the table the README shows.
#
#   bash scripts/chaos.sh           short form (as in CI): a few faults of each kind, ~4 min
#   bash scripts/chaos.sh long      long form: the 90-minute replay, 25 processor kills, 5 broker kills
#   RTLAKE_CHAOS_SEED=N ...         replays the fault moments of an earlier run (its log prints N)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export RTLAKE_CHAOS="${1:-short}"
export RTLAKE_CHAOS_OUT="${RTLAKE_CHAOS_OUT:-/tmp/rtlake-chaos-$RTLAKE_CHAOS.tsv}"
rm -f "$RTLAKE_CHAOS_OUT"
status=0
cargo test --locked --ignore-rust-version -p rtlake --test recovery -- chaos:: --test-threads 1 2>&1 | tee /tmp/rtlake-chaos.log || status=$?
echo
echo "| scenario | faults | events | rows lost | rows doubled | recovery p50 (s) | recovery max (s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
[ -s "$RTLAKE_CHAOS_OUT" ] && awk -F'\t' '{printf "| %s | %s | %\047d | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$RTLAKE_CHAOS_OUT"
exit "$status"
