#!/usr/bin/env bash
# Regenerates the hashed lock files of the Python test peers from the top-level pins:
#   tests/peers/requirements.txt        -> tests/peers/requirements.lock        (with every dependency)
#   tests/peers/requirements-nodeps.txt -> tests/peers/requirements-nodeps.lock (the package only)
# Run it after editing either requirements file, then commit the .lock files. The resolver (uv,
# pinned below) runs from its own throwaway virtualenv; the lock targets the CI interpreter
# (CPython 3.11 on x86_64 Linux). scripts/setup-peers.sh installs from the locks only, with
# `pip install --require-hashes`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
UV_PIN="uv==0.13.9"
PY_VERSION="${LOCK_PYTHON_VERSION:-3.11}"
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
"$PY" -m venv "$tool/venv"
"$tool/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_PIN"
compile() {
  "$tool/venv/bin/uv" pip compile --quiet --generate-hashes --no-header \
    --python-version "$PY_VERSION" --python-platform x86_64-unknown-linux-gnu "$@"
}
compile tests/peers/requirements.txt -o tests/peers/requirements.lock
compile --no-deps tests/peers/requirements-nodeps.txt -o tests/peers/requirements-nodeps.lock
echo "locked: $(grep -c '==' tests/peers/requirements.lock) packages in requirements.lock, $(grep -c '==' tests/peers/requirements-nodeps.lock) in requirements-nodeps.lock"
