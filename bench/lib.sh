# Shared by the benchmark scripts (sourced, from the repository's root, after scripts/env.sh):
# builds the release binary and makes sure the 90-minute replay exists.
#
#   release_and_replay DIR    sets R (the release binary), EV (DIR/events.jsonl, generated
#                             once by ../shared/bench/gen_events.py) and TOTAL (its events)
release_and_replay() {
  cargo build --release --locked --ignore-rust-version -p rtlake >&2
  R="$CARGO_TARGET_DIR/release/rtlake"
  mkdir -p "$1"
  EV="$1/events.jsonl"
  [ -s "$EV" ] || python3 ../shared/bench/gen_events.py --minutes 90 --out "$EV" >&2
  TOTAL=$(wc -l < "$EV")
}
