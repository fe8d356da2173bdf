"""Runs every test binary of the workspace, a few at a time.

Usage: python scripts/run-tests.py [--jobs N] [-- ARGS...]   (ARGS go to each test binary)

`cargo test` runs its test binaries one after another. Most of this suite's time is spent
waiting on peers (moto, MLflow, the ModelDB peers) and on subprocesses, not on the CPU, so
running two binaries at once nearly halves the wall time on a two-core machine. The binaries
are built first (`cargo test --no-run`), then run the way cargo runs them (working directory
the package's root), the slowest first; each binary's output is printed whole when it ends,
with cargo's `Running` line before it, so the log reads as cargo's does (and `test result:`
lines can be totalled). Exits 1 when any binary failed, naming them.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Seconds each of the slowest binaries took in a two-lane CI run (package, target): the longest
# start first so that the lanes end together. Others count as short.
WEIGHTS = {
    ("sagesync-cli", "operations"): 83,
    ("sagesync-sink-mlflow", "mlflow"): 59,
    ("sagesync-lambda", "dynamodb"): 59,
    ("sagesync-daemon", "soak"): 56,
    ("sagesync-sink-mlflow", "registry"): 52,
    ("sagesync-daemon", "dynamodb"): 50,
    ("sagesync-cli", "recipes"): 50,
    ("sagesync-sink-mlflow", "restart"): 47,
    ("sagesync-daemon", "daemon"): 44,
    ("sagesync-sink-mlflow", "family"): 38,
    ("sagesync-core", "engine"): 31,
    ("sagesync-cli", "backfill"): 28,
    ("sagesync-source-sagemaker", "tuning"): 26,
}


def package_name(package_id):
    """The package's name from a package id: `path+file:///x/core#sagesync-core@0.1.0`,
    `path+file:///x/sagesync-core#0.1.0` (the name is the directory's), or the older
    `sagesync-core 0.1.0 (path+file:///x/core)`."""
    if " " in package_id:
        return package_id.split(" ", 1)[0]
    path, _, frag = package_id.partition("#")
    if "@" in frag:
        return frag.split("@", 1)[0]
    return path.rstrip("/").rsplit("/", 1)[-1]


def build():
    """Builds every test binary; returns (package, target name, kind, src path, executable, cwd)."""
    # Libraries, binaries and tests: the benchmark examples are left to clippy (--all-targets
    # there checks that they compile); linking them is most of a minute on two cores.
    cmd = ["cargo", "test", "--workspace", "--lib", "--bins", "--tests", "--no-run", "--message-format=json-render-diagnostics"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    out = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable") or not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        name = package_name(msg["package_id"])
        cwd = os.path.dirname(msg["manifest_path"])
        out.append((name, target["name"], target["kind"][0], target["src_path"], msg["executable"], cwd))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    binaries = build()
    binaries.sort(key=lambda b: -WEIGHTS.get((b[0], b[1]), 5))
    lock = threading.Lock()
    failed = []

    def run(b):
        package, target, kind, src, exe, cwd = b
        started = time.monotonic()
        p = subprocess.run([exe] + a.args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        took = time.monotonic() - started
        rel = os.path.relpath(src, cwd)
        label = "unittests %s" % rel if kind in ("lib", "bin", "proc-macro") else rel
        with lock:
            sys.stdout.write("     Running %s (%s) [%s, %.1f s]\n" % (label, exe, package, took))
            sys.stdout.write(p.stdout.decode("utf-8", "replace"))
            sys.stdout.write("\n")
            sys.stdout.flush()
            if p.returncode != 0:
                failed.append("-p %s --%s %s" % (package, "lib" if kind == "lib" else "test" if kind == "test" else kind, target))

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        list(pool.map(run, binaries))
    if failed:
        sys.stdout.write("error: %d targets failed:\n" % len(failed))
        for f in failed:
            sys.stdout.write("    `%s`\n" % f)
        sys.exit(1)


if __name__ == "__main__":
    main()
