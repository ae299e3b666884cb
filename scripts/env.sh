# Sourced by the scripts: a build directory outside the checkout, reused by every clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rtlake/target}"
export RTLAKE_PYTHON="${RTLAKE_PYTHON:-${RTLAKE_VENV:-$HOME/.cache/rtlake/venv}/bin/python}"
