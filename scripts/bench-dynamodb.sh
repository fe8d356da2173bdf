#!/usr/bin/env bash
# DynamoDB state benchmark: one poll pass over N jobs (default 200) with the ledger in memory and
# in DynamoDB (moto, server mode); prints DynamoDB requests per synced job and the added latency
# per job. Uses $SAGESYNC_PYTHON for moto when set, else the .venv that scripts/setup-peers.sh
# makes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagesync-target}"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
if [ -z "${SAGESYNC_PYTHON:-}" ]; then
  scripts/setup-peers.sh
  export SAGESYNC_PYTHON="$PWD/.venv/bin/python"
fi
for k in AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB; do unset "$k"; done
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
cargo run -q -p sagesync-state-dynamodb --example bench_dynamodb -- "${1:-200}"
