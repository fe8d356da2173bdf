#!/usr/bin/env bash
# Syncs N jobs (default 1000) from moto into the file sink in list and search mode and prints
# wall time, jobs/s and SageMaker calls per job. moto (Python) is the bottleneck: the figures
# measure the calls sagesync makes more than its own speed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost"
scripts/setup-peers.sh
SAGESYNC_PYTHON="$PWD/.venv/bin/python" cargo run -q -p sagesync-source-sagemaker --example bench_moto -- "${1:-1000}"
