#!/usr/bin/env bash
# Reconciliation benchmark: N tagged jobs (default 1000) in moto, synced once, then
# reconciliation passes over the N unchanged jobs (what sagesyncd runs every
# reconcile_interval_secs, and `sagesync backfill` over its range): SageMaker requests counted
# on the wire by X-Amz-Target, requests per 1,000 jobs, wall time, sink writes (0 expected).
# The pass runs inside the example, so SAGESYNC_RELEASE=1 builds the example itself with the
# release profile (slow first build, in its own target directory); the debug build otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost"
scripts/setup-peers.sh
export SAGESYNC_PYTHON="${SAGESYNC_PYTHON:-$PWD/.venv/bin/python}"
if [ "${SAGESYNC_RELEASE:-0}" = 1 ]; then
  RELEASE_DIR="${SAGESYNC_RELEASE_TARGET_DIR:-$HOME/.cache/sagesync-release}"
  CARGO_TARGET_DIR="$RELEASE_DIR" cargo run -q --release -p sagesync-daemon --example bench_reconcile -- "${1:-1000}"
else
  cargo run -q -p sagesync-daemon --example bench_reconcile -- "${1:-1000}"
fi
