"""Draws docs/operations.png: what a healthy sagesyncd looks like through a backlog, a store
outage and its recovery, from its own /metrics sampled during a real run.

It starts moto (tests/peers/moto_launcher.py) with a backlog of tagged training jobs, the
ModelDB v1 Thrift peer, and sagesyncd (the built binary) polling every 2 s into the peer with a
SQLite ledger. It scrapes /metrics every second. At OUTAGE_AT it stops the peer and adds more
jobs (they fail, retryably, and wait in the ledger); at RECOVER_AT it starts the peer again on
the same port, and the daemon's retries drain the failures. Every process it starts is stopped.

Usage: .venv/bin/python scripts/operations-picture.py [SAGESYNCD] [OUT.png]
  (defaults: $CARGO_TARGET_DIR/debug/sagesyncd, docs/operations.png; needs scripts/setup-peers.sh)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")
BACKLOG, LATER = 150, 40
OUTAGE_AT, RECOVER_AT, END_AT = 25, 50, 80
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                   "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "AWS_EC2_METADATA_DISABLED": "true"})


def start(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **kw)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        raise SystemExit("%s did not start: %r" % (args[1], line))
    return p, [int(x) for x in line.split()[1:]]


def create_jobs(sm, prefix, n):
    for i in range(n):
        sm.create_training_job(
            TrainingJobName="%s-%04d" % (prefix, i),
            AlgorithmSpecification={"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/sagemaker",
            OutputDataConfig={"S3OutputPath": "s3://moto-out/output"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            HyperParameters={"max_depth": "5"},
            Tags=[{"Key": k, "Value": v} for k, v in (("MODEL_DB_SYNC", "true"), ("MODEL_DB_PROJECT_NAME", "ops"), ("MODEL_DB_PROJECT_USER", "ops"),
                  ("MODEL_DB_PROJECT_DESC", "operations picture"), ("MODEL_DB_MODEL_NAME", "xgb"), ("MODEL_DB_MODEL_TYPE", "XGBoost"))],
        )


def scrape(addr):
    text = urllib.request.urlopen("http://%s/metrics" % addr, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "sagesync-target"))
    daemon_bin = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "debug", "sagesyncd")
    out_png = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "operations.png")
    work = tempfile.mkdtemp(prefix="sagesync-ops-")
    procs = []
    try:
        moto, (moto_port,) = start([PY, os.path.join(ROOT, "tests/peers/moto_launcher.py")], stderr=open(os.path.join(work, "moto.log"), "w"))
        procs.append(moto)
        url = "http://127.0.0.1:%d" % moto_port
        sm = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1")
        create_jobs(sm, "backlog", BACKLOG)
        peer_args = [PY, os.path.join(ROOT, "tests/peers/modeldb_v1_peer.py"), "--log", os.path.join(work, "rpc.jsonl")]
        peer_log = open(os.path.join(work, "peer.log"), "w")
        peer, (peer_port, _) = start(peer_args, stderr=peer_log)
        cfg = os.path.join(work, "sagesync.toml")
        with open(cfg, "w") as f:
            f.write(
                '[source]\ntype = "sagemaker"\nregion = "us-east-1"\nendpoint_url = "%s"\nmax_requests_per_second = 0\nresources = ["training_jobs"]\n\n'
                '[[validators]]\ntype = "required_tags"\n\n[[validators]]\ntype = "status"\n\n'
                '[[sinks]]\ntype = "modeldb_v1"\nhost = "127.0.0.1"\nport = %d\nrequest_timeout_secs = 2\n\n'
                '[state]\npath = "%s"\n\n[pipeline]\nmax_attempts = 1\nretry_backoff_secs = 5\nmax_retry_backoff_secs = 5\nmax_job_attempts = 50\n\n'
                '[daemon]\npoll_interval_secs = 2\nlisten = "127.0.0.1:0"\nreconcile_interval_secs = 0\n'
                % (url, peer_port, os.path.join(work, "ledger.db"))
            )
        listen_file = os.path.join(work, "listen")
        daemon = subprocess.Popen([daemon_bin, "--config", cfg, "--listen-file", listen_file], stderr=open(os.path.join(work, "daemon.log"), "w"))
        procs.append(daemon)
        for _ in range(100):
            if os.path.exists(listen_file):
                break
            time.sleep(0.1)
        addr = open(listen_file).read().strip()
        samples = []
        t0 = time.time()
        outage = recovered = False
        while time.time() - t0 < END_AT:
            t = time.time() - t0
            if not outage and t >= OUTAGE_AT:
                peer.kill()
                peer.wait()
                create_jobs(sm, "during", LATER)
                outage = True
            if outage and not recovered and t >= RECOVER_AT:
                peer, _ = start(peer_args + ["--port", str(peer_port), "--reuse-port"], stderr=peer_log)
                recovered = True
            samples.append((t, scrape(addr)))
            time.sleep(1)
        series = {
            "synced": [s.get('sagesync_jobs_total{outcome="synced"}', 0) for _, s in samples],
            "failed": [s.get('sagesync_jobs_total{outcome="failed"}', 0) for _, s in samples],
            "ledger failed": [s.get('sagesync_ledger_jobs{outcome="failed"}', 0) for _, s in samples],
            "ledger synced": [s.get('sagesync_ledger_jobs{outcome="synced"}', 0) for _, s in samples],
            "sink failures": [sum(v for k, v in s.items() if k.startswith("sagesync_sink_failures_total")) for _, s in samples],
            "healthy": [s.get("sagesync_healthy", 0) for _, s in samples],
            "poll seconds": [s.get("sagesync_poll_duration_seconds", 0) for _, s in samples],
            "calls": [sum(v for k, v in s.items() if k.startswith("sagesync_sagemaker_calls_total")) for _, s in samples],
        }
        ts = [t for t, _ in samples]
        fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
        for ax in axes:
            ax.axvspan(OUTAGE_AT, RECOVER_AT, color="#f4cccc", alpha=0.5, label="store down")
            ax.grid(alpha=0.3)
        axes[0].plot(ts, series["ledger synced"], label="ledger: synced (sagesync_ledger_jobs)")
        axes[0].plot(ts, series["ledger failed"], label="ledger: failed, waiting to retry")
        axes[0].set_ylabel("jobs")
        axes[0].set_title("sagesyncd through a backlog of %d jobs, a store outage (%d jobs arrive) and its recovery" % (BACKLOG, LATER))
        axes[0].legend(loc="center right", fontsize=8)
        axes[1].plot(ts, series["synced"], label="jobs synced (sagesync_jobs_total)")
        axes[1].plot(ts, series["failed"], label="job attempts failed")
        axes[1].plot(ts, series["sink failures"], label="sink failures (sagesync_sink_failures_total)", linestyle="--")
        axes[1].set_ylabel("cumulative")
        axes[1].legend(loc="center right", fontsize=8)
        axes[2].step(ts, series["healthy"], where="post", label="healthy (sagesync_healthy)")
        axes[2].plot(ts, series["poll seconds"], label="last poll, s (sagesync_poll_duration_seconds)")
        axes[2].set_ylabel("1 = healthy / seconds")
        axes[2].set_xlabel("seconds since the daemon started (polls every 2 s)")
        axes[2].legend(loc="center right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_png, dpi=80)
        last = samples[-1][1]
        print("wrote %s: %d samples; at the end synced %d, failed in the ledger %d, healthy %d, SageMaker calls %d" % (
            out_png, len(samples), series["ledger synced"][-1], series["ledger failed"][-1], series["healthy"][-1], series["calls"][-1]))
        json.dump({"t": ts, **series}, open(os.path.join(work, "series.json"), "w"))
        if series["ledger synced"][-1] != BACKLOG + LATER or series["ledger failed"][-1] != 0 or last.get("sagesync_healthy") != 1:
            raise SystemExit("the run did not recover as expected; see %s" % work)
        procs.append(peer)
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    finally:
        for p in procs + ([peer] if "peer" in dir() else []):
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


if __name__ == "__main__":
    main()
