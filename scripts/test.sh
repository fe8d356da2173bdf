#!/usr/bin/env bash
# Runs the whole sagesync test suite on a fresh machine: installs the pinned test peers
# (Python packages into .venv), then runs every Rust test. Peers that cannot start make the
# tests that need them fail loudly; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

scripts/setup-peers.sh
export SAGESYNC_PYTHON="$PWD/.venv/bin/python"

cargo build --workspace --all-targets
cargo test --workspace --all-targets -- --test-threads="${SAGESYNC_TEST_THREADS:-4}"
