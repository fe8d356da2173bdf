#!/usr/bin/env bash
# Peak RSS of a backfill of N jobs through the whole engine (release build), each N in a fresh
# process, against a fast local SageMaker Search stand-in. Usage: scripts/bench-memory.sh [N ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost"
RELEASE_DIR="${SAGESYNC_RELEASE_TARGET_DIR:-$HOME/.cache/sagesync-release}"
CARGO_TARGET_DIR="$RELEASE_DIR" cargo run -q --release -p sagesync-daemon --example bench_memory -- "$@"
