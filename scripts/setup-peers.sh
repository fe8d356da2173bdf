#!/usr/bin/env bash
# Creates .venv with the pinned Python packages the test peers need (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
REQ=tests/peers/requirements.txt
STAMP=.venv/.installed-$(sha256sum "$REQ" | cut -c1-16)
if [ -f "$STAMP" ]; then
  exit 0
fi
rm -rf .venv
"$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQ"
if [ -f tests/peers/requirements-nodeps.txt ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r tests/peers/requirements-nodeps.txt
fi
touch "$STAMP"
echo "test peers installed in .venv"
