#!/usr/bin/env bash
# Creates .venv with the locked Python packages the test peers need (idempotent; a link to an
# environment cached per lock in ~/.cache/sagesync-peers, see below).
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
# promtool, the Prometheus linter the daemon's /metrics test runs: Debian's prometheus package,
# pinned by version and checked by its SHA-256, unpacked (not installed) into .peers/.
PROM_DEB="prometheus=2.42.0+ds-5+b6"
PROM_SHA256="3b0e0255b059a7696bd4a139a4a4eb24d71df067936a61ece5093559cbc7991c"
if [ ! -x .peers/promtool/usr/bin/promtool ]; then
  dl=$(mktemp -d)
  (cd "$dl" && apt-get download "$PROM_DEB" >/dev/null 2>&1) || { echo "cannot download $PROM_DEB with apt-get download" >&2; rm -rf "$dl"; exit 1; }
  echo "$PROM_SHA256  $(ls "$dl"/*.deb)" | sha256sum --check --quiet || { echo "$PROM_DEB: checksum mismatch" >&2; rm -rf "$dl"; exit 1; }
  rm -rf .peers/promtool
  mkdir -p .peers/promtool
  dpkg-deb -x "$dl"/*.deb .peers/promtool
  rm -rf "$dl"
  echo "promtool unpacked in .peers/promtool"
fi
# The stamp covers every requirements and lock file and the exact interpreter.
stamp_input=$( { cat tests/peers/requirements*.txt tests/peers/requirements*.lock; "$PY" -c 'import sys, platform; print(sys.version, platform.machine())'; } | sha256sum | cut -c1-16)
STAMP=.venv/.installed-$stamp_input
if [ -f "$STAMP" ]; then
  exit 0
fi
# The environment itself lives in a cache shared by every clone on this machine, one per stamp
# (a fresh clone, as CI makes, links it instead of installing again); .venv links to it. It is
# built in place under a lock: console scripts name their interpreter by absolute path.
CACHE="${SAGESYNC_PEERS_CACHE:-$HOME/.cache/sagesync-peers}"
VENV="$CACHE/venv-$stamp_input"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$VENV/.installed-$stamp_input" ]; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --require-hashes "$@"; }
  pip_install -r "$LOCK"
  pip_install --no-deps -r "$NODEPS_LOCK"
  touch "$VENV/.installed-$stamp_input"
  echo "test peers installed in $VENV"
fi
flock -u 9
rm -rf .venv
ln -s "$VENV" .venv
echo "test peers: .venv -> $VENV"
