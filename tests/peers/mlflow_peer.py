"""A real MLflow tracking server for sagesync's tests, on 127.0.0.1.

Starts `mlflow server --workers 1 --host 127.0.0.1 --port 0` on a SQLite store in DIR (the
server binds the port itself), waits until `GET /health` answers (up to --wait seconds), then
prints "READY <port>" on stdout. The server's output is relayed to this script's stderr.
The server is stopped (its whole process group) when this script's stdin closes (the test
process ended or dropped its handle), on SIGTERM, or when the server fails to start.

Usage: python mlflow_peer.py --dir DIR [--wait 90]
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

READY_LINE = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--wait", type=float, default=90.0)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "artifacts"), exist_ok=True)
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [
        mlflow, "server", "--workers", "1", "--host", "127.0.0.1", "--port", "0",
        "--backend-store-uri", "sqlite:///" + os.path.join(a.dir, "mlflow.db"),
        "--default-artifact-root", os.path.join(a.dir, "artifacts"),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_LOGGING_LEVEL="WARNING")
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    port = []
    found = threading.Event()

    def relay():
        for raw in server.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            sys.stderr.flush()
            m = READY_LINE.search(line)
            if m and not port:
                port.append(int(m.group(1)))
                found.set()
        found.set()

    def stop(*_):
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=relay, daemon=True).start()
    deadline = time.monotonic() + a.wait
    found.wait(max(0.0, deadline - time.monotonic()))
    if not port:
        sys.stderr.write("mlflow server did not report its port within %.0f s (exit code %s)\n" % (a.wait, server.poll()))
        stop()
    url = "http://127.0.0.1:%d/health" % port[0]
    while True:
        if server.poll() is not None:
            sys.stderr.write("mlflow server exited with code %s before /health answered\n" % server.returncode)
            os._exit(1)
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if time.monotonic() > deadline:
            sys.stderr.write("mlflow server /health did not answer within %.0f s\n" % a.wait)
            stop()
        time.sleep(0.2)
    print("READY %d" % port[0], flush=True)
    # Stay until the parent closes stdin (or kills us with SIGTERM).
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    stop()


if __name__ == "__main__":
    main()
