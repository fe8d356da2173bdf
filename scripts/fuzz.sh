#!/usr/bin/env bash
# Short, bounded fuzz runs of every target in fuzz/ (cargo-fuzz, libFuzzer), as part of the test
# suite: each target gets FUZZ_RUNS inputs (default 20000) from its seed corpus in
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
runs="${FUZZ_RUNS:-20000}"
# `--sanitizer none` works on a stable toolchain; coverage guidance stays on.
opts=(--fuzz-dir fuzz --sanitizer none --dev --target-dir "$TARGET_DIR")
cargo fuzz build "${opts[@]}"
status=0
for t in $(cargo fuzz list --fuzz-dir fuzz); do
  corpus=$(mktemp -d)
  if cargo fuzz run "${opts[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
      -runs="$runs" -seed=1 -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$corpus.log" 2>&1; then
    echo "fuzz $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | awk '{print $2}') inputs, no failure"
  else
    echo "fuzz $t: FAILED"; grep -v "^\s*\[" "$corpus.log" | cut -c1-400 | tail -40; status=1
  fi
  rm -rf "$corpus" "$corpus.log"
done
exit "$status"
