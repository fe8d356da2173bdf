#!/usr/bin/env bash
# Daemon benchmark: backfill of N jobs (default 1000) from moto, then sagesyncd idle for
# SECONDS (default 60) of polling with nothing new: RSS and CPU. Uses the shipped sagesyncd
# (`--profile dist`: release, size-optimised, thin LTO) when SAGESYNC_RELEASE=1 (slow first
# build), the debug one otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost"
scripts/setup-peers.sh
if [ "${SAGESYNC_RELEASE:-0}" = 1 ]; then
  RELEASE_DIR="${SAGESYNC_RELEASE_TARGET_DIR:-$HOME/.cache/sagesync-release}"
  CARGO_TARGET_DIR="$RELEASE_DIR" cargo build -q --profile dist -p sagesync-daemon --bin sagesyncd
  BIN="$RELEASE_DIR/dist/sagesyncd"
else
  cargo build -q -p sagesync-daemon --bin sagesyncd
  BIN="$CARGO_TARGET_DIR/debug/sagesyncd"
fi
SAGESYNC_PYTHON="$PWD/.venv/bin/python" cargo run -q -p sagesync-daemon --example bench_daemon -- "$BIN" "${1:-1000}" "${2:-60}"
