#!/usr/bin/env bash
# Short, bounded fuzz runs of every target in fuzz/ (cargo-fuzz, libFuzzer), as part of the test
# suite: each target gets FUZZ_RUNS inputs (default 10000) from its seed corpus in
# fuzz/seeds/<target>, with a fixed seed so a run is repeatable. A crash, a panic, a timeout or an
# allocation over the bounds in fuzz/fuzz_targets/bounded.rs fails the run and leaves the input
# in fuzz/artifacts/<target>/. Longer runs: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
TOOLS="${SAGESYNC_TOOLS_DIR:-$HOME/.cache/sagesync-tools}"
if ! "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  cargo install --quiet --locked --root "$TOOLS" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
export PATH="$TOOLS/bin:$PATH"
# Instrumented builds differ from the workspace's: a target directory of their own.
TARGET_DIR="${SAGESYNC_FUZZ_TARGET_DIR:-$HOME/.cache/sagesync-fuzz}"
runs="${FUZZ_RUNS:-10000}"
# `--sanitizer none` works on a stable toolchain; coverage guidance stays on.
opts=(--fuzz-dir fuzz --sanitizer none --dev --target-dir "$TARGET_DIR")
cargo fuzz build "${opts[@]}"
# The built targets run straight from the target directory, two at a time (FUZZ_JOBS): each is
# one CPU-bound process, and the machines this runs on have two cores.
bin_dir="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/debug"
run_one() {
  local t=$1 corpus
  corpus=$(mktemp -d)
  mkdir -p "fuzz/artifacts/$t"
  if "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" \
      -runs="$runs" -seed=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "$corpus" "fuzz/seeds/$t" >"$corpus.log" 2>&1; then
    echo "fuzz $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | awk '{print $2}') inputs, no failure"
    rm -rf "$corpus" "$corpus.log"
  else
    echo "fuzz $t: FAILED"; grep -v "^\s*\[" "$corpus.log" | cut -c1-400 | tail -40
    rm -rf "$corpus" "$corpus.log"
    return 1
  fi
}
export -f run_one
export bin_dir runs
cargo fuzz list --fuzz-dir fuzz | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'run_one "$@"' _ {}
