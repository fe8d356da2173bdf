#!/usr/bin/env bash
# Runs the whole sagesync test suite on a fresh machine: installs the pinned test peers
# (Python packages into .venv), then runs every Rust test. Peers that cannot start make the
# tests that need them fail loudly; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# The build is shared with README command 1 (`cargo run`): cargo's own `./target`, unless
# CARGO_TARGET_DIR says otherwise (CI keeps a persistent one through .ci/run).
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# Each phase's time, for the closing notes (README command 2 stays under 15 minutes).
phase() { echo "== $1 at $((SECONDS / 60))m$((SECONDS % 60))s" >&2; }
phase "setting up peers"
scripts/setup-peers.sh
export SAGESYNC_PYTHON="$PWD/.venv/bin/python"
phase "lints and docs"

# Style and lints first: cheap, and they fail the run like a test would. Clippy's
# `incompatible_msrv` lint holds the code to the workspace's declared `rust-version`.
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The API documentation builds without a warning (broken links included).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
# A custom syncer links only what it uses: the example plugin crate needs neither the AWS SDK
# nor SQLite (sagesync-plugins' features, sagesync-cli without its standard plugins).
if cargo tree -e normal -p sagesync-example-custom-plugin --prefix none | grep -E '^(aws-sdk-|rusqlite) '; then
    echo "examples/custom-plugin pulls the AWS SDK or SQLite (above)" >&2
    exit 1
fi
phase "build"
# Everything the tests run (the benchmark examples are compiled by clippy above, not linked).
cargo build --workspace --lib --bins --tests
phase "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# Two test binaries at a time (SAGESYNC_TEST_JOBS): they mostly wait on their peers
# (scripts/run-tests.py says more); the build stays cargo's own.
"$SAGESYNC_PYTHON" scripts/run-tests.py --jobs "${SAGESYNC_TEST_JOBS:-2}" -- --test-threads="${SAGESYNC_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "TOTAL: %d passed, %d failed\n", p, f }' "$log"
# Short, bounded fuzz runs of every parser that takes outside input.
phase "fuzzing"
fuzz_status=0
scripts/fuzz.sh || fuzz_status=$?
phase "done"
[ "$status" -ne 0 ] && exit "$status"
exit "$fuzz_status"
