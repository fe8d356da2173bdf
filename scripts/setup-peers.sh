#!/usr/bin/env bash
# Creates .venv with the locked Python packages the test peers need (idempotent).
# Every package, transitive ones included, comes from the hashed lock files
# tests/peers/requirements.lock and tests/peers/requirements-nodeps.lock (the latter installed
# with --no-deps), checked with `pip install --require-hashes`. Regenerate the locks with
# scripts/lock-peers.sh after editing tests/peers/requirements*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOCK=tests/peers/requirements.lock
NODEPS_LOCK=tests/peers/requirements-nodeps.lock
for f in tests/peers/requirements.txt tests/peers/requirements-nodeps.txt; do
  lock="${f%.txt}.lock"
  grep -qE '^[A-Za-z0-9_.-]+==' "$lock" 2>/dev/null || { echo "$lock is missing or empty: run scripts/lock-peers.sh" >&2; exit 1; }
  # Every top-level pin must be in its lock (catches a requirements edit without a re-lock).
  for pin in $(sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | grep -E '==' | tr -d ' ' | tr 'A-Z_' 'a-z-'); do
    grep -qiE "^${pin//./\\.}( |\$)" "$lock" || { echo "$lock does not pin $pin from $f: run scripts/lock-peers.sh" >&2; exit 1; }
  done
done
# The stamp covers every requirements and lock file and the exact interpreter.
stamp_input=$( { cat tests/peers/requirements*.txt tests/peers/requirements*.lock; "$PY" -c 'import sys, platform; print(sys.version, platform.machine())'; } | sha256sum | cut -c1-16)
STAMP=.venv/.installed-$stamp_input
if [ -f "$STAMP" ]; then
  exit 0
fi
rm -rf .venv
"$PY" -m venv .venv
pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input --require-hashes "$@"; }
pip_install -r "$LOCK"
pip_install --no-deps -r "$NODEPS_LOCK"
touch "$STAMP"
echo "test peers installed in .venv"
