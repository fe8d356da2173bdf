//! `sagesyncd` against moto (SageMaker), the file sink and the ModelDB v1 peer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagesync_core::{LedgerCounts, StateStore};
use sagesync_test_support::bin::private_bin;
use sagesync_test_support::locate::python;
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use sagesync_test_support::ports::HeldPort;
use sagesync_test_support::stderr::StderrLog;
use serde_json::{json, Value};

struct Daemon {
    child: Child,
    port: u16,
    /// sagesyncd's stderr (printed when the test panics).
    log: StderrLog,
}

impl Daemon {
    /// Starts sagesyncd in `dir` (with `listen = "127.0.0.1:0"`) and waits for the address it
    /// bound, which it writes to `--listen-file`.
    fn start(cfg: &Path, dir: &Path) -> Daemon {
        Daemon::start_with(cfg, dir, &[])
    }

    fn start_with(cfg: &Path, dir: &Path, env: &[(&str, &str)]) -> Daemon {
        let addr_file = dir.join("listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = StderrLog::new("sagesyncd");
        let mut child = Command::new(private_bin(env!("CARGO_BIN_EXE_sagesyncd")))
            .current_dir(dir)
            .args(["--config", cfg.to_str().unwrap(), "--listen-file", addr_file.to_str().unwrap()])
            .envs(TEST_ENV)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.stdio())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) =
                std::fs::read_to_string(&addr_file).ok().and_then(|t| t.trim().parse::<std::net::SocketAddr>().ok()).map(|a| a.port())
            {
                break port;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "sagesyncd exited ({status}) before it served /healthz (an unknown --listen-file means {} is not built from this tree: a target directory shared with another checkout replaces it); stderr:\n{}",
                    env!("CARGO_BIN_EXE_sagesyncd"),
                    log.text()
                );
            }
            assert!(Instant::now() < deadline, "sagesyncd did not report its address within 30 s; stderr:\n{}", log.text());
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon { child, port, log }
    }
    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success());
    }
    /// Waits for the daemon to exit; its status.
    fn wait_status(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "sagesyncd did not exit within {secs} s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        self.wait_status(secs).code()
    }
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = sagesync_test_support::http()
            .build()
            .unwrap()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    }
    /// The parsed /metrics (panics when the endpoint does not answer 200).
    async fn metrics(&self) -> BTreeMap<String, f64> {
        match self.get("/metrics").await {
            Some((200, text)) => parse_prometheus(&text),
            other => panic!("/metrics: {other:?}"),
        }
    }
    /// One sample of /metrics (0 while the series does not exist yet).
    async fn metric(&self, series: &str) -> f64 {
        self.metrics().await.get(series).copied().unwrap_or(0.0)
    }
    /// Waits until `series` satisfies `ok`; its value then.
    async fn wait_metric(&self, series: &str, secs: u64, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.metric(series).await;
            if ok(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {secs} s waiting on {series} (now {v})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    /// Waits until a whole poll started and finished successfully after the call (two more
    /// finished): everything an earlier poll started is then done and recorded, and a later
    /// poll found nothing else to do, or did it.
    async fn wait_next_poll(&self) {
        let ok = "sagesync_polls_total{result=\"ok\"}";
        let before = self.metric(ok).await;
        self.wait_metric(ok, 60, |v| v >= before + 2.0).await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(dir: &Path, moto: &Moto, sink: &str, extra: &str) -> PathBuf {
    let p = dir.join("sagesyncd.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\nmax_attempts = 2\ninitial_backoff_ms = 20\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n{sink}\n\n[state]\npath = \"state.db\"\n\n[daemon]\npoll_interval_secs = 0.5\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 10\n{extra}\n",
            moto.url(),
        ),
    )
    .unwrap();
    p
}

/// The ledger's counts, read from the daemon's state file.
fn ledger(path: &Path) -> Option<LedgerCounts> {
    if !path.exists() {
        return None;
    }
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?
            .block_on(async { sagesync_state_sqlite::SqliteState::new(p, 10_000).counts().await.ok() })
    })
    .join()
    .ok()
    .flatten()
}

/// Finished documents only (not the sink's temporary files, which are renamed into place).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.ends_with(".json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

/// Parses Prometheus text exposition; panics on any malformed line.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE" || kind == "UNIT", "bad comment: {line}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "bad name: {line}");
            if kind == "TYPE" {
                assert!(["counter", "gauge"].contains(&parts.next().unwrap()), "bad type: {line}");
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(typed.contains(name) || typed.contains(name.trim_end_matches("_total")), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line}");
            for kv in labels[1..labels.len() - 1].split(',') {
                let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad label name: {line}");
                assert!(v.starts_with('"') && v.ends_with('"'), "unquoted label value: {line}");
            }
        }
        let v: f64 = if value == "NaN" { f64::NAN } else { value.parse().unwrap_or_else(|_| panic!("bad value: {line}")) };
        out.insert(series.to_string(), v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_up_existing_new_and_modified_jobs_with_health_and_metrics() {
    let moto = Moto::start();
    let names = moto.create_jobs("d", 3, &SYNC_TAGS).await;
    moto.create_jobs("untagged", 1, &[("team", "x")]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/moto-project");
    let cfg = config(dir.path(), &moto, "[[sinks]]\ntype = \"file\"\ndir = \"out\"", "");
    let mut d = Daemon::start(&cfg, dir.path());
    wait_until("3 existing jobs", 30, || count_files(&out) == 3).await;
    let mut health = None;
    for _ in 0..50 {
        if let Some((200, body)) = d.get("/healthz").await {
            health = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h: Value = serde_json::from_str(&health.expect("/healthz ready")).unwrap();
    assert_eq!(h["status"], "ok");
    assert!(h["last_successful_poll"].is_string() && h["seconds_since_last_successful_poll"].is_number(), "{h}");

    // Jobs created after the daemon started.
    let late = moto.create_jobs("late", 2, &SYNC_TAGS).await;
    wait_until("2 new jobs", 30, || count_files(&out) == 5).await;
    assert!(late.iter().all(|n| out.join(format!("{n}.json")).exists()));

    // A job modified after it was synced is synced again.
    let later = (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    moto.edit(
        &names[0],
        json!({"LastModifiedTime": later, "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.5, "Timestamp": later}]}),
    );
    let f0 = out.join(format!("{}.json", names[0]));
    wait_until("the modified job re-synced", 30, || std::fs::read_to_string(&f0).map(|t| t.contains("validation:auc")).unwrap_or(false))
        .await;

    // /metrics parses and matches the ledger, once the re-sync is counted and a poll finished
    // after it (so that nothing more is on its way).
    d.wait_metric("sagesync_jobs_total{outcome=\"synced\"}", 30, |v| v >= 6.0).await;
    d.wait_next_poll().await;
    let m = d.metrics().await;
    let counts = ledger(&dir.path().join("state.db")).unwrap();
    assert_eq!((counts.synced, counts.skipped, counts.failed), (5, 1, 0));
    assert_eq!(m["sagesync_ledger_jobs{outcome=\"synced\"}"], counts.synced as f64);
    assert_eq!(m["sagesync_ledger_jobs{outcome=\"skipped\"}"], counts.skipped as f64);
    assert_eq!(m["sagesync_ledger_jobs{outcome=\"failed\"}"], 0.0);
    assert_eq!(m["sagesync_jobs_total{outcome=\"synced\"}"], 6.0, "5 jobs + 1 re-sync");
    assert_eq!(m["sagesync_jobs_total{outcome=\"skipped\"}"], 1.0, "the untagged job once; afterwards the ledger has it");
    assert_eq!(m["sagesync_sink_writes_total{sink=\"file\",write=\"updated\"}"], 1.0);
    assert!(m["sagesync_sagemaker_calls_total{operation=\"ListTrainingJobs\"}"] >= 3.0);
    assert_eq!(
        m["sagesync_sagemaker_calls_total{operation=\"DescribeTrainingJob\"}"], 7.0,
        "each job described once, the modified one twice"
    );
    assert!(m["sagesync_polls_total{result=\"ok\"}"] >= 3.0);

    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_batch_exits_cleanly_and_a_restart_finishes_the_rest() {
    let moto = Moto::start();
    let names = moto.create_jobs("t", 300, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &moto,
        &format!("[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n\n[pipeline]\nconcurrency = 1", peer.port),
        "",
    );
    let runs = |p: &Peer| p.state().get("runs").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    let mut d = Daemon::start(&cfg, dir.path());
    wait_until("some runs", 60, || runs(&peer) >= 20).await;
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0), "SIGTERM exits 0");
    let at_stop = runs(&peer);
    assert!(at_stop < 300, "stopped mid-batch ({at_stop} of 300)");
    let mut d = Daemon::start(&cfg, dir.path());
    wait_until("all 300 runs", 120, || runs(&peer) >= 300).await;
    let state_path = dir.path().join("state.db");
    wait_until("300 synced in the ledger", 60, || ledger(&state_path).is_some_and(|c| c.synced >= 300)).await;
    // A whole poll after that: a duplicate write would have happened by now.
    d.wait_next_poll().await;
    d.signal("-INT");
    assert_eq!(d.wait_exit(15), Some(0), "SIGINT exits 0");
    let st = peer.state();
    let descs: Vec<String> = st["runs"].as_array().unwrap().iter().map(|r| r["description"].as_str().unwrap().to_string()).collect();
    assert_eq!(descs.len(), 300, "no duplicates");
    for n in &names {
        assert_eq!(descs.iter().filter(|d| d.contains(&format!("/{n})"))).count(), 1, "{n}");
    }
    assert_eq!(ledger(&dir.path().join("state.db")).unwrap().synced, 300);
}

/// The daemon aborted (SIGABRT, no cleanup) at a chosen step, twice, then restarted: every
/// job is in ModelDB once and the ledger agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_at_chosen_steps_then_restarted_every_job_exactly_once() {
    use std::os::unix::process::ExitStatusExt;
    let moto = Moto::start();
    let names = moto.create_jobs("ab", 20, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &moto,
        &format!(
            "[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n\n[pipeline]\nconcurrency = 2\nlease_ttl_secs = 1",
            peer.port
        ),
        "",
    );
    let runs = |p: &Peer| p.state().get("runs").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    let state_path = dir.path().join("state.db");
    let mut before = 0;
    for at in ["after-sink-write:4", "after-commit:3", "after-lease:2", "after-cursor"] {
        let mut d = Daemon::start_with(&cfg, dir.path(), &[("SAGESYNC_CRASH_AT", at)]);
        let status = d.wait_status(60);
        assert_eq!(status.signal(), Some(6), "{at}: aborted (SIGABRT), not {status}; stderr:\n{}", d.log.text());
        assert!(d.log.text().contains(&format!("aborting at {}", at.split(':').next().unwrap())), "{at}: {}", d.log.text());
        let now = runs(&peer);
        assert!(now >= before, "{at}: runs went from {before} to {now}");
        if at == "after-sink-write:4" {
            assert!(now < 20, "the first abort stopped the daemon mid-way ({now} of 20)");
        }
        before = now;
    }
    let mut d = Daemon::start(&cfg, dir.path());
    wait_until("all 20 runs", 60, || runs(&peer) >= 20).await;
    wait_until("20 synced in the ledger", 60, || ledger(&state_path).is_some_and(|c| c.synced >= 20)).await;
    d.wait_next_poll().await;
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
    let st = peer.state();
    let descs: Vec<String> = st["runs"].as_array().unwrap().iter().map(|r| r["description"].as_str().unwrap().to_string()).collect();
    assert_eq!(descs.len(), 20, "no duplicates");
    for n in &names {
        assert_eq!(descs.iter().filter(|d| d.contains(&format!("/{n})"))).count(), 1, "{n}");
    }
    let c = ledger(&state_path).unwrap();
    assert_eq!((c.synced, c.failed), (20, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_for_a_while_loses_nothing() {
    let moto = Moto::start();
    let names = moto.create_jobs("down", 12, &SYNC_TAGS).await;
    // Refuses connections until the peer takes it over.
    let held = HeldPort::new();
    let port = held.port;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &moto,
        &format!("[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {port}\nconnect_timeout_secs = 1\n\n[pipeline]\nmax_attempts = 1\nretry_backoff_secs = 1\nmax_retry_backoff_secs = 2\nmax_job_attempts = 100"),
        "",
    );
    let mut d = Daemon::start(&cfg, dir.path());
    let state_path = dir.path().join("state.db");
    wait_until("the daemon's state file", 30, || state_path.exists()).await;
    wait_until("failed jobs in the ledger", 30, || ledger(&state_path).is_some_and(|c| c.failed == 12)).await;
    let (_, text) = d.get("/metrics").await.unwrap();
    let m = parse_prometheus(&text);
    assert!(m["sagesync_sink_failures_total{sink=\"modeldb_v1\"}"] >= 12.0);
    // The store comes back.
    let peer = Peer::start_on(&held, &[]);
    wait_until("every job synced", 60, || peer.state().get("runs").and_then(Value::as_array).is_some_and(|r| r.len() == 12)).await;
    wait_until("the ledger agrees", 30, || ledger(&state_path).is_some_and(|c| c.synced == 12 && c.failed == 0)).await;
    let descs: Vec<String> =
        peer.state()["runs"].as_array().unwrap().iter().map(|r| r["description"].as_str().unwrap().to_string()).collect();
    for n in &names {
        assert_eq!(descs.iter().filter(|d| d.contains(&format!("/{n})"))).count(), 1);
    }
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_foreign_state_is_a_clear_error_never_a_reset() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, "[[sinks]]\ntype = \"file\"\ndir = \"out\"", "");
    for (name, content) in
        [("garbage", b"not a database, definitely not, some text to fill the first page header.....".to_vec()), ("foreign", Vec::new())]
    {
        let state = dir.path().join("state.db");
        let _ = std::fs::remove_file(&state);
        if name == "foreign" {
            let c = rusqlite_free_foreign(&state);
            assert!(c);
        } else {
            std::fs::write(&state, &content).unwrap();
        }
        let before = std::fs::read(&state).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sagesyncd"))
            .current_dir(dir.path())
            .args(["--config", cfg.to_str().unwrap()])
            .envs(TEST_ENV)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("state.db") && (err.contains("not a usable sagesync state database") || err.contains("another application")),
            "{name}: {err}"
        );
        assert_eq!(std::fs::read(&state).unwrap(), before, "{name}: the file was modified");
    }
}

/// Writes a SQLite database of "another application" with the sqlite3 CLI-free route: open it
/// through the state store's own SQLite with a different schema.
fn rusqlite_free_foreign(path: &Path) -> bool {
    // A minimal valid SQLite file with one foreign table, built by the `sqlite3` shell when
    // present, else by Python's sqlite3 module (the test peers' interpreter).
    let py = python();
    Command::new(py).args(["-c", &format!("import sqlite3; c = sqlite3.connect({:?}); c.execute('create table invoices (id integer primary key, total real)'); c.commit()", path.display().to_string())]).status().map(|s| s.success()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_now_skips_existing_jobs() {
    let moto = Moto::start();
    // Existing jobs, last modified well before the start (more than the source's clock
    // tolerance, its 300 s watermark overlap).
    for n in moto.create_jobs("old", 2, &SYNC_TAGS).await {
        moto.edit(&n, json!({"LastModifiedTime": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()}));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/moto-project");
    let cfg = config(dir.path(), &moto, "[[sinks]]\ntype = \"file\"\ndir = \"out\"", "start_from = \"now\"");
    let mut d = Daemon::start(&cfg, dir.path());
    // The first poll fixes "now"; the fresh job comes after it.
    d.wait_metric("sagesync_polls_total{result=\"ok\"}", 30, |v| v >= 1.0).await;
    assert_eq!(count_files(&out), 0, "the first poll synced existing jobs");
    let fresh = moto.create_jobs("fresh", 1, &SYNC_TAGS).await;
    wait_until("the fresh job", 30, || out.join(format!("{}.json", fresh[0])).exists()).await;
    d.wait_next_poll().await;
    assert_eq!(count_files(&out), 1, "existing jobs were not synced");
    assert_eq!(d.metric("sagesync_jobs_total{outcome=\"synced\"}").await, 1.0);
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
}

/// Issue 19, item 14: `start_from = "now"` keeps the source's clock tolerance. A job created
/// after the daemon started, whose LastModifiedTime is 2.5 s behind the daemon's clock (clock
/// skew, eventual consistency), is synced; a job last modified an hour before the start is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_from_now_keeps_a_job_stamped_just_before_the_daemons_clock() {
    let moto = Moto::start();
    let old = moto.create_jobs("old", 1, &SYNC_TAGS).await.remove(0);
    moto.edit(&old, json!({"LastModifiedTime": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()}));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/moto-project");
    let cfg = config(dir.path(), &moto, "[[sinks]]\ntype = \"file\"\ndir = \"out\"", "start_from = \"now\"");
    let started = chrono::Utc::now();
    let mut d = Daemon::start(&cfg, dir.path());
    d.wait_metric("sagesync_polls_total{result=\"ok\"}", 30, |v| v >= 1.0).await;
    // Created after the start without its opt-in tag (so no poll can sync it before its time
    // is set), stamped 2.5 s before the daemon started, then opted in.
    let untagged: Vec<(&str, &str)> = SYNC_TAGS.iter().copied().filter(|(k, _)| *k != "MODEL_DB_SYNC").collect();
    let skewed = moto.create_jobs("skewed", 1, &untagged).await.remove(0);
    moto.edit(&skewed, json!({"LastModifiedTime": (started - chrono::Duration::milliseconds(2500)).to_rfc3339()}));
    let c = moto.client().await;
    let arn = c.describe_training_job().training_job_name(&skewed).send().await.unwrap().training_job_arn().unwrap().to_string();
    c.add_tags()
        .resource_arn(arn)
        .tags(aws_sdk_sagemaker::types::Tag::builder().key("MODEL_DB_SYNC").value("true").build())
        .send()
        .await
        .unwrap();
    wait_until("the skewed job", 30, || out.join(format!("{skewed}.json")).exists()).await;
    d.wait_next_poll().await;
    assert!(!out.join(format!("{old}.json")).exists(), "the hour-old job is before start_from");
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
}

#[test]
fn every_plugin_crate_is_linked() {
    let names = sagesync_daemon::registered();
    for want in [
        ("sink", "file"),
        ("sink", "mlflow"),
        ("sink", "modeldb_v1"),
        ("sink", "modeldb_v2"),
        ("source", "sagemaker"),
        ("source", "sagemaker_json"),
        ("mapper", "tags"),
        ("validator", "required_tags"),
        ("validator", "status"),
        ("state", "sqlite"),
        ("state", "dynamodb"),
        ("state", "memory"),
        ("secret", "file"),
        ("secret", "exec"),
        ("secret", "aws_secrets_manager"),
        ("secret", "aws_ssm_parameter"),
    ] {
        assert!(names.contains(&want), "{want:?} missing from {names:?}");
    }
}

#[test]
fn bad_daemon_settings_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[source]\ntype = \"sagemaker_json\"\npaths = [\"x\"]\n[[sinks]]\ntype = \"file\"\ndir = \"o\"\n[daemon]\npoll_interval_secs = 0\nlisten = \"nowhere\"\nstart_from = \"someday\"\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_sagesyncd")).current_dir(dir.path()).args(["--config", p.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["daemon.poll_interval_secs", "daemon.listen", "`nowhere`", "daemon.start_from"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let p2 = dir.path().join("c2.toml");
    std::fs::write(
        &p2,
        "[source]\ntype = \"sagemaker_json\"\npaths = [\"x\"]\n[[sinks]]\ntype = \"file\"\ndir = \"o\"\n[daemon]\npoll_intervall = 3\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_sagesyncd")).current_dir(dir.path()).args(["--config", p2.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("c2.toml:8:1: key `daemon.poll_intervall`: unknown field"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_builds_through_its_plugin_config() {
    assert!(!sagesync_daemon::registered().is_empty());
    for d in sagesync_core::registry::all() {
        sagesync_core::config::check_example(d).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A config of sagesyncd writing to the file sink in `out`, with `source` and `daemon` lines.
fn file_config(dir: &Path, endpoint: &str, source: &str, daemon: &str) -> PathBuf {
    let p = dir.join("sagesyncd.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n{source}\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n[state]\npath = \"state.db\"\n\n[daemon]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 10\n{daemon}\n"
        ),
    )
    .unwrap();
    p
}

/// Recipe 1 of issue 11: list mode, one request a second, a 3 s poll interval, no
/// reconciliation. While the first poll is still describing the 20 jobs it listed, a new job is
/// created (at ~4 s) and the last of the 20 is modified (at ~6 s). Both are synced by polls
/// alone: a poll lists from the previous poll's start, not from the last job it described.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_1_list_mode_loses_nothing_created_or_modified_during_a_slow_poll() {
    let moto = Moto::start();
    let names = moto.create_jobs("wm", 20, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_config(
        dir.path(),
        &moto.url(),
        "mode = \"list\"\nmax_requests_per_second = 1",
        "poll_interval_secs = 3\nreconcile_interval_secs = 0",
    );
    let d = Daemon::start(&cfg, dir.path());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let late = moto.create_jobs("wm-late", 1, &SYNC_TAGS).await.remove(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let modified_at = chrono::Utc::now().to_rfc3339();
    moto.edit(&names[19], json!({"LastModifiedTime": modified_at, "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.75, "Timestamp": modified_at}]}));
    let out = dir.path().join("out/moto-project");
    let f19 = out.join(format!("{}.json", names[19]));
    // ~45 requests at one a second for the first poll, then the next polls.
    wait_until("the late job and the modified one synced", 240, || {
        out.join(format!("{late}.json")).exists() && std::fs::read_to_string(&f19).is_ok_and(|t| t.contains("0.75"))
    })
    .await;
    assert_eq!(count_files(&out), 21, "every job once");
    let state_path = dir.path().join("state.db");
    wait_until("21 synced in the ledger", 30, || ledger(&state_path).is_some_and(|c| c.synced == 21)).await;
    drop(d);
}

/// Recipe 6: a daemon and a backfill on one SQLite ledger, side by side, both writing to one
/// ModelDB v1 peer: the daemon never exits on a busy database, the backfill writes nothing the
/// ledger does not hold, and every job ends in the store exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_6_a_daemon_and_a_backfill_share_one_sqlite_ledger() {
    // The CLI of the same build (the daemon's tests cannot name another package's binary).
    let built = Path::new(env!("CARGO_BIN_EXE_sagesyncd")).with_file_name("sagesync");
    assert!(built.exists(), "{} is not built: build the workspace (`cargo build --workspace`) first", built.display());
    let bin_dir = tempfile::tempdir().unwrap();
    let cli = bin_dir.path().join("sagesync");
    if std::fs::hard_link(&built, &cli).is_err() {
        std::fs::copy(&built, &cli).unwrap();
    }
    let moto = Moto::start();
    let names = moto.create_jobs("share", 120, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &moto,
        &format!("[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n\n[pipeline]\nconcurrency = 4", peer.port),
        "",
    );
    let mut d = Daemon::start(&cfg, dir.path());
    let backfill = Command::new(&cli)
        .current_dir(dir.path())
        .args(["backfill", "--since", "2000-01-01", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .envs(TEST_ENV)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&backfill.stdout).unwrap_or(Value::Null);
    assert_eq!(backfill.status.code(), Some(0), "{summary}\n{}", String::from_utf8_lossy(&backfill.stderr));
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon is still running; stderr:\n{}", d.log.text());
    let state_path = dir.path().join("state.db");
    wait_until("120 synced in the ledger", 120, || ledger(&state_path).is_some_and(|c| c.synced == 120)).await;
    d.wait_next_poll().await;
    d.signal("-TERM");
    assert_eq!(d.wait_exit(15), Some(0));
    let descs: Vec<String> =
        peer.state()["runs"].as_array().unwrap().iter().map(|r| r["description"].as_str().unwrap().to_string()).collect();
    assert_eq!(descs.len(), 120, "one run per job, none without a ledger row");
    for n in &names {
        assert_eq!(descs.iter().filter(|x| x.contains(&format!("/{n})"))).count(), 1, "{n}");
    }
}

/// A TCP proxy to `to` that can be switched to accept and never answer (cutting the
/// connections it forwards).
struct Stall {
    port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Tells the forwarding tasks to drop their connections.
    cut: std::sync::Arc<tokio::sync::Notify>,
}

impl Stall {
    async fn start(to: u16) -> Stall {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let (s, c) = (stalled.clone(), cut.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = l.accept().await {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(inbound);
                    continue;
                }
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = c.notified() => {}
                    }
                });
            }
        });
        Stall { port, stalled, cut }
    }
    fn stall(&self) {
        self.stalled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }
}

/// Recipe 9: SageMaker stops answering (connections accepted, nothing sent back). Polls fail
/// on their timeouts instead of hanging, and /healthz turns unhealthy once the last successful
/// poll is older than `unhealthy_after_polls` intervals (+30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_9_a_stalled_sagemaker_makes_health_fail_and_polls_time_out() {
    let moto = Moto::start();
    moto.create_jobs("stall", 2, &SYNC_TAGS).await;
    let proxy = Stall::start(moto.port).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = file_config(
        dir.path(),
        &format!("http://127.0.0.1:{}", proxy.port),
        "max_requests_per_second = 0\nmax_attempts = 1\nrequest_timeout_secs = 1\nconnect_timeout_secs = 1",
        "poll_interval_secs = 0.5\nunhealthy_after_polls = 1\nreconcile_interval_secs = 0",
    );
    let d = Daemon::start(&cfg, dir.path());
    d.wait_metric("sagesync_polls_total{result=\"ok\"}", 60, |v| v >= 1.0).await;
    assert_eq!(d.get("/healthz").await.map(|(s, _)| s), Some(200));
    proxy.stall();
    let stalled_at = Instant::now();
    // Polls keep ending (in errors), each within its timeouts.
    let errors = d.wait_metric("sagesync_polls_total{result=\"failed\"}", 30, |v| v >= 3.0).await;
    assert!(errors >= 3.0);
    // Unhealthy at once (the last poll failed), then stale once the last success is older
    // than one interval + 30 s.
    let health = |want: &'static str| {
        let d = &d;
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let (status, body) = d.get("/healthz").await.expect("/healthz answers");
                let h: Value = serde_json::from_str(&body).unwrap();
                if h["status"] == want || Instant::now() > deadline {
                    return (status, h);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let (status, h) = health("degraded").await;
    assert_eq!((status, h["status"].as_str()), (503, Some("degraded")), "{h}");
    let (status, h) = health("stale").await;
    assert_eq!((status, h["status"].as_str()), (503, Some("stale")), "{h}");
    assert!(stalled_at.elapsed() >= Duration::from_secs(30), "stale only after the documented age");
    assert!(
        h["last_error"].as_str().is_some_and(|e| e.to_lowercase().contains("timeout") || e.to_lowercase().contains("timed out")),
        "{h}"
    );
}

/// Issue 23: the daemon over two accounts (the second through an assumed role) and two regions:
/// every job of every pair once, a namesake in the other account kept apart; the next polls
/// write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_syncs_every_account_and_region_once() {
    let moto = Moto::start();
    let role = "arn:aws:iam::111111111111:role/sagesync-reader";
    let mut arns = Vec::new();
    for (r, account, region, prefix) in [
        (None, "123456789012", "us-east-1", "d-shared"),
        (None, "123456789012", "eu-west-1", "d-west"),
        (Some(role), "111111111111", "us-east-1", "d-shared"),
        (Some(role), "111111111111", "eu-west-1", "d-bwest"),
    ] {
        for n in moto.create_jobs_in(r, region, prefix, 2, &SYNC_TAGS).await {
            arns.push(format!("arn:aws:sagemaker:{region}:{account}:training-job/{n}"));
        }
    }
    arns.sort();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, "[[sinks]]\ntype = \"file\"\ndir = \"out\"", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("region = \"us-east-1\"\n", &format!("regions = [\"us-east-1\", \"eu-west-1\"]\nsts_endpoint_url = \"{}\"\n", moto.url()))
        .replacen("\n[[validators]]", &format!("\n[[source.accounts]]\nrole_arn = \"{role}\"\n\n[[validators]]"), 1);
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg, dir.path());
    d.wait_next_poll().await;
    let mut held = Vec::new();
    for project in std::fs::read_dir(dir.path().join("out")).unwrap() {
        for f in std::fs::read_dir(project.unwrap().path()).unwrap() {
            let v: Value = serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            held.push(v["record"]["run"]["external_id"].as_str().unwrap().to_string());
        }
    }
    held.sort();
    assert_eq!(held, arns, "every job of every pair, once; stderr:\n{}", d.log.text());
    let synced = d.metric("sagesync_jobs_total{outcome=\"synced\"}").await;
    d.wait_next_poll().await;
    assert_eq!(d.metric("sagesync_jobs_total{outcome=\"synced\"}").await, synced, "the next polls write nothing");
    d.signal("-TERM");
}
