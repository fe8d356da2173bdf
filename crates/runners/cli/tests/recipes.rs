//! The delivery-guarantee recipes of issue 11, each run as written against the real peers: the
//! `sagesync` binary against moto (SageMaker), the file sink and the ModelDB v1 peer.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sagesync_test_support::bin::private_bin;
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use sagesync_test_support::ports::HeldPort;
use serde_json::{json, Value};

fn sagesync(dir: &Path) -> Command {
    let mut c = Command::new(private_bin(env!("CARGO_BIN_EXE_sagesync")));
    c.current_dir(dir).envs(TEST_ENV).env("RUST_LOG", "warn");
    c
}

/// Runs `sagesync ARGS --config sagesync.toml --format json`; exit code, summary, stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = sagesync(dir).args(args).args(["--config", "sagesync.toml", "--format", "json"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| json!({"stdout": String::from_utf8_lossy(&out.stdout)}));
    (out.status.code(), summary, stderr)
}

fn backfill(dir: &Path) -> Value {
    let (code, s, err) = run(dir, &["backfill", "--since", "2000-01-01"]);
    assert_eq!(code, Some(0), "backfill failed: {s}\n{err}");
    s
}

fn write_config(dir: &Path, moto_url: &str, source_extra: &str, rest: &str) {
    std::fs::write(
        dir.join("sagesync.toml"),
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{moto_url}\"\n{source_extra}\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[state]\npath = \"state.db\"\n\n{rest}\n"
        ),
    )
    .unwrap();
}

fn file_sink(id: &str, dir: &str) -> String {
    format!("[[sinks]]\ntype = \"file\"\nid = \"{id}\"\ndir = \"{dir}\"\n")
}

/// Every finished document under `dir`: "project/file" → the job ARN it holds. Panics on a
/// leftover temporary file.
fn documents(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            assert!(!name.starts_with('.'), "left over in {}: {name}", p.path().display());
            let doc: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            out.insert(
                format!("{}/{name}", p.file_name().to_string_lossy()),
                doc["record"]["run"]["external_id"].as_str().unwrap().to_string(),
            );
        }
    }
    out
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339()
}

async fn arn_of(moto: &Moto, name: &str) -> String {
    moto.client().await.describe_training_job().training_job_name(name).send().await.unwrap().training_job_arn().unwrap().to_string()
}

async fn tag(moto: &Moto, name: &str, key: &str, value: &str) {
    let arn = arn_of(moto, name).await;
    let t = aws_sdk_sagemaker::types::Tag::builder().key(key).value(value).build();
    moto.client().await.add_tags().resource_arn(arn).tags(t).send().await.unwrap();
}

async fn untag(moto: &Moto, name: &str, key: &str) {
    let arn = arn_of(moto, name).await;
    moto.client().await.delete_tags().resource_arn(arn).tag_keys(key).send().await.unwrap();
}

fn tags_without(key: &str) -> Vec<(&'static str, &'static str)> {
    SYNC_TAGS.iter().copied().filter(|(k, _)| *k != key).collect()
}

/// Recipe 2: a job modified while a slow, one-job-per-page Search backfill runs moves later in
/// the listing; it is listed again, never skipped, and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_2_a_job_modified_during_a_paged_search_backfill_is_not_lost() {
    let moto = Moto::start();
    let names = moto.create_jobs("pg", 6, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    // Only Search is slow (the listing this recipe is about); the other kinds are not listed.
    let slow = "mode = \"search\"\npage_size = 1\nmax_requests_per_second = 0\nresources = [\"training_jobs\"]\n[source.rate_limits]\nSearch = 0.5";
    write_config(dir.path(), &moto.url(), slow, &file_sink("file", "out"));
    let child = sagesync(dir.path())
        .args(["backfill", "--since", "2000-01-01", "--config", "sagesync.toml", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two pages in (two seconds per call), the first job moves to the end of the listing.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    moto.edit(&names[0], json!({"LastModifiedTime": now_iso()}));
    let out = child.wait_with_output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    let docs = documents(&dir.path().join("out"));
    assert_eq!(docs.len(), 6, "every job written: {docs:?}");
    assert_eq!(s["synced"], 6, "six distinct jobs, the moved one counted once: {s}");
    // A re-run (at full speed) finds every job in the ledger, in its current state.
    write_config(
        dir.path(),
        &moto.url(),
        "mode = \"search\"\nmax_requests_per_second = 0\nresources = [\"training_jobs\"]",
        &file_sink("file", "out"),
    );
    let again = backfill(dir.path());
    assert_eq!((again["synced"].as_u64(), again["already_done"].as_u64()), (Some(0), Some(6)), "{again}");
}

/// Recipe 3: tag changes (which do not move LastModifiedTime), a new sink, a project move and
/// an untagged job all converge on the next reconciliation pass (`backfill`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_3_tag_changes_a_new_sink_a_move_and_an_untag_converge() {
    let moto = Moto::start();
    let skipped = moto.create_jobs("skip", 1, &tags_without("MODEL_DB_SYNC")).await.remove(0);
    let rejected = moto.create_jobs("rej", 1, &tags_without("MODEL_DB_PROJECT_NAME")).await.remove(0);
    let good = moto.create_jobs("good", 1, &SYNC_TAGS).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &moto.url(), "", &file_sink("a", "out-a"));
    let (code, s, err) = run(dir.path(), &["run"]);
    assert_eq!(code, Some(0), "{s}\n{err}");
    assert_eq!((s["synced"].as_u64(), s["skipped"].as_u64(), s["rejected"].as_u64()), (Some(1), Some(1), Some(1)), "{s}");

    // The skipped job is tagged, the rejected one gets its missing tag.
    tag(&moto, &skipped, "MODEL_DB_SYNC", "true").await;
    tag(&moto, &rejected, "MODEL_DB_PROJECT_NAME", "moto-project").await;
    let s = backfill(dir.path());
    assert_eq!(s["synced"], 2, "{s}");
    let a = dir.path().join("out-a");
    assert_eq!(documents(&a).len(), 3);

    // A second sink: only it is written.
    write_config(dir.path(), &moto.url(), "", &format!("{}\n{}", file_sink("a", "out-a"), file_sink("b", "out-b")));
    let before: Vec<_> =
        std::fs::read_dir(a.join("moto-project")).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    let s = backfill(dir.path());
    assert_eq!(s["synced"], 3, "{s}");
    // Sink `a` holds the current records: not called, not rewritten.
    let after: Vec<_> =
        std::fs::read_dir(a.join("moto-project")).unwrap().map(|e| e.unwrap().metadata().unwrap().modified().unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(documents(&dir.path().join("out-b")).len(), 3);

    // The good job moves to another project: one document per sink, in the new project.
    tag(&moto, &good, "MODEL_DB_PROJECT_NAME", "moved-project").await;
    let good_arn = arn_of(&moto, &good).await;
    backfill(dir.path());
    for out in ["out-a", "out-b"] {
        let docs = documents(&dir.path().join(out));
        let of_good: Vec<&String> = docs.iter().filter(|(_, arn)| **arn == good_arn).map(|(p, _)| p).collect();
        assert_eq!(of_good, [&format!("moved-project/{good}.json")], "{out}: {docs:?}");
    }

    // The skipped-then-tagged job loses its opt-in tag: its documents are retracted.
    untag(&moto, &skipped, "MODEL_DB_SYNC").await;
    let skipped_arn = arn_of(&moto, &skipped).await;
    let s = backfill(dir.path());
    assert_eq!(s["skipped"], 1, "{s}");
    for out in ["out-a", "out-b"] {
        let docs = documents(&dir.path().join(out));
        assert_eq!(docs.len(), 2, "{out}: {docs:?}");
        assert!(!docs.values().any(|a| *a == skipped_arn), "{out}: {docs:?}");
    }
    // And nothing more to do.
    let s = backfill(dir.path());
    assert_eq!((s["synced"].as_u64(), s["skipped"].as_u64(), s["already_done"].as_u64()), (Some(0), Some(0), Some(3)), "{s}");
}

/// Recipe 4: SIGINT (or SIGTERM) while jobs wait in a retry backoff records nothing against
/// them; the next run syncs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_4_an_interrupt_during_a_backoff_is_not_a_verdict() {
    let moto = Moto::start();
    let names = moto.create_jobs("intr", 3, &SYNC_TAGS).await;
    let held = HeldPort::new();
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\nconnect_timeout_secs = 1\n\n[pipeline]\nmax_attempts = 5\ninitial_backoff_ms = 20000\nmax_backoff_ms = 20000\n",
        held.port
    );
    write_config(dir.path(), &moto.url(), "", &sink);
    for sig in ["-INT", "-TERM"] {
        let child = sagesync(dir.path())
            .args(["run", "--config", "sagesync.toml", "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first attempts are refused at once; every job is then in a 20 s backoff.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
        let started = Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(15), "{sig}: the backoff was not interrupted");
        let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(s["failed"], 0, "{sig}: an interrupt is not a failure: {s}\n{}", String::from_utf8_lossy(&out.stderr));
        // Nothing counts against the jobs: at most the intent recorded before their first
        // write (the sink may hold a record), with no attempt counted and nothing parked.
        let (_, st, _) = run(dir.path(), &["status"]);
        for j in st["failed_jobs"].as_array().unwrap() {
            assert_eq!(
                (j["attempts"].as_u64(), j["permanent_failures"].as_u64(), j["parked"].as_bool()),
                (Some(0), Some(0), Some(false)),
                "{sig}: {st}"
            );
            assert!(j["error"].as_str().unwrap().contains("first write was interrupted"), "{sig}: {st}");
        }
        assert_eq!(st["counts"]["parked"], 0, "{sig}: {st}");
    }
    let peer = Peer::start_on(&held, &[]);
    let (code, s, err) = run(dir.path(), &["run"]);
    assert_eq!(code, Some(0), "{s}\n{err}");
    assert_eq!((s["synced"].as_u64(), s["already_done"].as_u64()), (Some(3), Some(0)), "{s}");
    let runs = peer.state()["runs"].as_array().unwrap().len();
    assert_eq!(runs, names.len());
}

/// Recipe 5: one job whose FinalMetricDataList holds a null Value fails alone, with its
/// reason; the good jobs of the same Search page sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_5_a_null_metric_value_fails_alone_in_search_mode() {
    let moto = Moto::start();
    let names = moto.create_jobs("null", 5, &SYNC_TAGS).await;
    moto.edit(&names[2], json!({"FinalMetricDataList": [{"MetricName": "validation:auc", "Value": null, "Timestamp": now_iso()}]}));
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &moto.url(),
        "mode = \"search\"",
        &format!("{}\n[pipeline]\nmax_job_attempts = 1\n", file_sink("file", "out")),
    );
    for round in 0..2 {
        let (code, s, _) = run(dir.path(), &["backfill", "--since", "2000-01-01"]);
        assert_eq!(code, Some(1), "a failed job makes the exit code 1: {s}");
        assert!(s.get("listing_error").is_none(), "not a listing failure: {s}");
        if round == 0 {
            assert_eq!((s["synced"].as_u64(), s["failed"].as_u64()), (Some(4), Some(1)), "{s}");
            let bad = s["jobs"].as_array().unwrap().iter().find(|j| j["outcome"] == "failed").unwrap();
            assert_eq!(bad["job"], names[2].as_str());
            let reason = bad["reason"].as_str().unwrap();
            assert!(reason.contains("FinalMetricDataList") && reason.contains("Value"), "{reason}");
        } else {
            // Parked after one permanent failure: reported again, nothing else re-done.
            assert_eq!((s["synced"].as_u64(), s["already_done"].as_u64()), (Some(0), Some(4)), "{s}");
        }
    }
    assert_eq!(documents(&dir.path().join("out")).len(), 4);
}

/// Recipe 7: eight processes syncing the same job at once, one ledger, one ModelDB v1 peer:
/// one run, its metrics stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_7_eight_processes_on_one_job_write_one_run() {
    let moto = Moto::start();
    let name = moto.create_jobs("eight", 1, &SYNC_TAGS).await.remove(0);
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &moto.url(),
        "",
        &format!("[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n\n[pipeline]\nlease_wait_secs = 60\n", peer.port),
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            sagesync(dir.path())
                .args(["sync-job", &name, "--config", "sagesync.toml", "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let st = peer.state();
    let runs: Vec<&Value> = st["runs"].as_array().unwrap().iter().filter(|r| r["description"].as_str().unwrap().contains(&name)).collect();
    assert_eq!(runs.len(), 1, "one run for eight writers: {st}");
    let metrics = st["metric_events"].as_array().unwrap();
    let mut per_metric: BTreeMap<String, usize> = BTreeMap::new();
    for m in metrics {
        *per_metric.entry(m["metricType"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(!per_metric.is_empty() && per_metric.values().all(|n| *n == 1), "every metric stored once: {per_metric:?}");
}

/// A server that accepts connections and never answers.
fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    (port, h)
}

/// Recipe 9: a SageMaker endpoint that accepts and never answers ends the run with a clear
/// timeout error instead of hanging.
#[test]
fn recipe_9_a_sagemaker_endpoint_that_never_answers_times_out() {
    let (port, _h) = black_hole();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &format!("http://127.0.0.1:{port}"),
        "request_timeout_secs = 1\nconnect_timeout_secs = 1\nmax_attempts = 2\ninitial_backoff_ms = 10",
        &file_sink("file", "out"),
    );
    let started = Instant::now();
    let (code, s, err) = run(dir.path(), &["run"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_ne!(code, Some(0), "{s}\n{err}");
    let text = format!("{s} {err}").to_lowercase();
    assert!(text.contains("timeout") || text.contains("timed out"), "the error says it timed out: {s}\n{err}");
}
