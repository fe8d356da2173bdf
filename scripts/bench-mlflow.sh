#!/usr/bin/env bash
# Benchmarks the mlflow sink against a local MLflow server (the locked test peer, started here
# on a fresh SQLite store with --workers 1): requests and writes per new job and per unchanged
# re-sync, jobs/s, and metric-history points/s.
#   scripts/bench-mlflow.sh [JOBS] [POINTS]     (defaults: 200 jobs, 20000 points)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
scripts/setup-peers.sh
# Release builds share one directory of their own (as the daemon bench's), apart from the debug one.
RELEASE_DIR="${SAGESYNC_RELEASE_TARGET_DIR:-$HOME/.cache/sagesync-release}"
CARGO_TARGET_DIR="$RELEASE_DIR" cargo build -q --release -p sagesync-sink-mlflow --example bench_mlflow
dir=$(mktemp -d)
fifo="$dir/stdin"
mkfifo "$fifo"
# The peer stops when its stdin closes: its stdin is the fifo's read end only, and this script
# holds the write end for the benchmark's lifetime (a read-write descriptor shared with the peer
# would be a writer of its own, and the peer would never see the end).
.venv/bin/python tests/peers/mlflow_peer.py --dir "$dir" --wait 90 <"$fifo" >"$dir/ready" 2>"$dir/server.log" &
peer=$!
exec 3>"$fifo"
cleanup() { exec 3>&-; wait "$peer" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
deadline=$((SECONDS + 120))
until grep -q '^READY ' "$dir/ready" 2>/dev/null; do
  if ! kill -0 "$peer" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
    echo "MLflow server did not start:" >&2; cat "$dir/server.log" >&2; exit 1
  fi
  sleep 0.2
done
port=$(awk '/^READY/ {print $2}' "$dir/ready")
echo "MLflow $(.venv/bin/python -c 'import mlflow; print(mlflow.__version__)') on 127.0.0.1:$port (--workers 1, SQLite)"
"$RELEASE_DIR/release/examples/bench_mlflow" "http://127.0.0.1:$port" "${1:-200}" "${2:-20000}"
