#!/usr/bin/env bash
# Lambda benchmark: builds `bootstrap` in release (x86_64 here; arm64 needs a cross target),
# then measures cold start and per-invocation time against the local Runtime API emulation
# (SageMaker on moto, file sink) and prints the stripped binary size.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
RELEASE_DIR="${SAGESYNC_RELEASE_TARGET_DIR:-$HOME/.cache/sagesync-release}"
export NO_PROXY="127.0.0.1,localhost"
scripts/setup-peers.sh
CARGO_TARGET_DIR="$RELEASE_DIR" cargo build -q --release -p sagesync-lambda --bin bootstrap
SAGESYNC_PYTHON="$PWD/.venv/bin/python" cargo run -q -p sagesync-lambda --example bench_runtime -- "$RELEASE_DIR/release/bootstrap" "${1:-50}"
