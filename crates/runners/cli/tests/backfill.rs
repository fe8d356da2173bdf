//! `sagesync backfill`, `status` and `retry` against moto and the ModelDB v1 peer, including
//! the crash test: a 500-job backfill aborted (`SAGESYNC_CRASH_AT`) at each dangerous step, then
//! a final run.

use std::path::Path;
use std::process::{Command, Stdio};

use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use sagesync_test_support::ports::HeldPort;
use sagesync_test_support::stderr::StderrLog;
use serde_json::Value;

fn sagesync(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.current_dir(dir).envs(TEST_ENV).env_remove("RUST_LOG");
    c
}

fn config(dir: &Path, moto: &Moto, port: u16, pipeline: &str) -> std::path::PathBuf {
    let p = dir.join("backfill.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {port}\nconnect_timeout_secs = 2\n\n[pipeline]\nconcurrency = 4\nmax_attempts = 2\ninitial_backoff_ms = 20\nmax_job_attempts = 1\n{pipeline}\n\n[state]\npath = \"state/sagesync.db\"\n",
            moto.url()
        ),
    )
    .unwrap();
    p
}

fn status(dir: &Path, cfg: &Path) -> Value {
    let out = sagesync(dir).args(["status", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn runs_by_job(peer: &Peer) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in peer.state()["runs"].as_array().cloned().unwrap_or_default() {
        let d = r["description"].as_str().unwrap_or("").to_string();
        let name = d.rsplit('/').next().unwrap_or("").trim_end_matches(')').to_string();
        *m.entry(name).or_default() += 1;
    }
    m
}

/// Where the crash runs abort, in order: each step once, then later occurrences (chosen so that
/// every run still has that much work left).
const CRASH_POINTS: [&str; 8] = [
    "after-lease",
    "after-sink-write",
    "after-commit",
    "after-cursor",
    "after-sink-write:25",
    "after-commit:40",
    "after-lease:30",
    "after-cursor:2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_at_every_crash_point_then_every_job_exactly_once() {
    use std::os::unix::process::ExitStatusExt;
    let moto = Moto::start();
    let eligible = moto.create_jobs("crash", 450, &SYNC_TAGS).await;
    moto.create_jobs("untagged", 50, &[("team", "other")]).await;
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // Short leases: the leases an aborted run held lapse quickly for the next run.
    let cfg = config(dir.path(), &moto, peer.port, "lease_ttl_secs = 1");
    let mut progress = Vec::new();
    for at in CRASH_POINTS {
        let log = StderrLog::new(&format!("sagesync backfill ({at})"));
        let status = sagesync(dir.path())
            .args(["backfill", "--config", cfg.to_str().unwrap(), "--since", "2000-01-01"])
            .env("SAGESYNC_CRASH_AT", at)
            .stdout(Stdio::null())
            .stderr(log.stdio())
            .status()
            .unwrap();
        let step = at.split(':').next().unwrap();
        assert_eq!(status.signal(), Some(6), "{at}: the run must abort (SIGABRT), not exit ({status}) (no abort and no `{}` on stderr: is {} built from this tree? A target directory shared with another checkout replaces it); stderr:\n{}", "SAGESYNC_CRASH_AT", env!("CARGO_BIN_EXE_sagesync"), log.tail(8 << 10));
        assert!(log.text().contains(&format!("aborting at {step}")), "{at}: {}", log.tail(8 << 10));
        let runs = runs_by_job(&peer);
        assert!(runs.values().all(|n| *n == 1), "{at}: a job written twice: {runs:?}");
        progress.push((at, runs.len()));
    }
    eprintln!("crash runs (point, jobs in the store after it): {progress:?}");
    assert!(progress.windows(2).all(|w| w[0].1 <= w[1].1), "the store never loses a run: {progress:?}");
    assert!(progress.last().unwrap().1 < 450, "work is left for the final run: {progress:?}");
    // The final run finishes what is left. A job whose one-second lease lapsed under load (a
    // renewal late on a busy machine) is interrupted, not recorded: the next run takes it.
    let mut s = Value::Null;
    let mut first = None;
    for _ in 0..3 {
        let out = sagesync(dir.path())
            .args(["backfill", "--config", cfg.to_str().unwrap(), "--since", "2000-01-01", "--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}\n{progress:?}", String::from_utf8_lossy(&out.stderr));
        s = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["failed"], 0, "{s}");
        first.get_or_insert_with(|| s.clone());
        if s["interrupted"].as_u64().unwrap_or(0) == 0 && s["busy"].as_u64().unwrap_or(0) == 0 {
            break;
        }
    }
    let s = first.unwrap_or(s);
    let runs = runs_by_job(&peer);
    assert_eq!(runs.len(), 450, "every eligible job is in ModelDB ({progress:?})");
    for n in &eligible {
        assert_eq!(runs.get(n), Some(&1), "{n} must be in ModelDB exactly once ({progress:?})");
    }
    assert!(s["synced"].as_u64().unwrap() > 0, "the final run had work left: {s}");
    let st = status(dir.path(), &cfg);
    assert_eq!(st["counts"]["synced"], 450, "{st}");
    assert_eq!(st["counts"]["skipped"], 50);
    assert_eq!(st["counts"]["failed"], 0);
    // The same backfill again re-decides the range against the ledger: nothing to write, and
    // nothing but Search pages (and one empty page each of tuning jobs and pipelines).
    for since in ["2000-01-01", "1999-01-01"] {
        let out = sagesync(dir.path())
            .args(["backfill", "--config", cfg.to_str().unwrap(), "--since", since, "--format", "json"])
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((s["synced"].as_u64(), s["already_done"].as_u64()), (Some(0), Some(500)), "{s}");
        let calls = &s["api_calls"];
        assert_eq!(
            calls.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["ListHyperParameterTuningJobs".to_string(), "ListPipelines".to_string(), "Search".to_string()]),
            "{s}"
        );
        assert_eq!((calls["ListHyperParameterTuningJobs"].as_u64(), calls["ListPipelines"].as_u64()), (Some(1), Some(1)), "{calls}");
        assert!((5..=7).contains(&calls["Search"].as_u64().unwrap()), "about one Search page per 100 jobs: {calls}");
    }
    assert_eq!(peer.state()["runs"].as_array().unwrap().len(), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_retry_of_failed_jobs() {
    let moto = Moto::start();
    let names = moto.create_jobs("ret", 3, &SYNC_TAGS).await;
    // Held for the whole test; each peer takes it over in turn.
    let held = HeldPort::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, held.port, "");
    {
        // The store rejects every fit: a permanent error, parked at once (max_job_attempts = 1).
        let _peer = Peer::start_on(&held, &["--fail", "storeFitEvent"]);
        let out = sagesync(dir.path()).args(["backfill", "--config", cfg.to_str().unwrap(), "--since", "2000-01-01"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "failed jobs give exit code 1");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("3 jobs: 0 synced, 0 skipped, 0 rejected, 3 failed"), "{text}");
    }
    let st = status(dir.path(), &cfg);
    assert_eq!(st["counts"]["failed"], 3);
    assert_eq!(st["counts"]["parked"], 3);
    let failed = st["failed_jobs"].as_array().unwrap();
    assert!(failed.iter().all(|f| f["error"].as_str().unwrap().contains("injected failure in storeFitEvent")), "{st}");
    let text =
        String::from_utf8(sagesync(dir.path()).args(["status", "--config", cfg.to_str().unwrap()]).output().unwrap().stdout).unwrap();
    assert!(text.contains("3 failed (3 parked)") && text.contains(&names[0]), "{text}");
    // A parked job stays put on the next backfill.
    let peer = Peer::start_on(&held, &[]);
    let out = sagesync(dir.path())
        .args(["backfill", "--config", cfg.to_str().unwrap(), "--since", "2000-01-01", "--format", "json"])
        .output()
        .unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["already_done"], 3, "parked jobs wait for `retry`");
    // Retry one by name, then the rest.
    let out = sagesync(dir.path()).args(["retry", "--config", cfg.to_str().unwrap(), &names[1]]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status(dir.path(), &cfg)["counts"]["failed"], 2);
    let out = sagesync(dir.path()).args(["retry", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 2);
    let st = status(dir.path(), &cfg);
    assert_eq!((st["counts"]["synced"].as_u64(), st["counts"]["failed"].as_u64()), (Some(3), Some(0)));
    let runs = runs_by_job(&peer);
    assert_eq!(runs.len(), 3);
    // Nothing left to retry.
    let out = sagesync(dir.path()).args(["retry", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no failed jobs"));
}

#[test]
fn backfill_needs_valid_dates() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[source]\ntype = \"sagemaker_json\"\npaths = [\"x\"]\n[[sinks]]\ntype = \"file\"\ndir = \"o\"\n").unwrap();
    let out = sagesync(dir.path())
        .args(["backfill", "--config", p.to_str().unwrap(), "--since", "2026-02-01", "--until", "2026-01-01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--until must be after --since"));
    std::fs::write(&p, "[source]\ntype = \"sagemaker\"\n[[sinks]]\ntype = \"file\"\ndir = \"o\"\n").unwrap();
    let out = sagesync(dir.path()).args(["backfill", "--config", p.to_str().unwrap(), "--since", "last tuesday"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a date"), "{}", String::from_utf8_lossy(&out.stderr));
}
