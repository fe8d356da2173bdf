//! Issue 19's recipes against the built `sagesyncd`: an idle poll on DynamoDB reads no more of
//! the ledger than the jobs it lists (no Scan), the ledger gauges follow what the daemon records
//! or an opted-in recount, and `/metrics` passes Prometheus's own linter (classic text format)
//! and the OpenMetrics parser.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagesync_test_support::bin::private_bin;
use sagesync_test_support::locate::{python, repo_root};
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use sagesync_test_support::proxy::Proxy;
use sagesync_test_support::stderr::StderrLog;

struct Daemon {
    child: Child,
    port: u16,
    _log: StderrLog,
}

impl Daemon {
    fn start(cfg: &Path, dir: &Path) -> Daemon {
        let log = StderrLog::new("sagesyncd");
        let listen = dir.join("listen");
        let _ = std::fs::remove_file(&listen);
        let child = Command::new(private_bin(env!("CARGO_BIN_EXE_sagesyncd")))
            .current_dir(dir)
            .args(["--config", cfg.to_str().unwrap(), "--listen-file", listen.to_str().unwrap()])
            .envs(TEST_ENV)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.stdio())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&listen).ok().and_then(|t| t.trim().rsplit(':').next()?.parse().ok()) {
                break p;
            }
            assert!(Instant::now() < deadline, "sagesyncd did not serve /metrics; stderr:\n{}", log.tail(8 << 10));
            std::thread::sleep(Duration::from_millis(50));
        };
        Daemon { child, port, _log: log }
    }
    /// `/metrics` as a scraper asking for `accept` gets it: content type and body.
    async fn scrape(&self, accept: Option<&str>) -> (String, String) {
        let mut req = sagesync_test_support::http().build().unwrap().get(format!("http://127.0.0.1:{}/metrics", self.port));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.timeout(Duration::from_secs(5)).send().await.unwrap();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (ct, r.text().await.unwrap())
    }
    async fn metrics(&self) -> BTreeMap<String, f64> {
        parse(&self.scrape(None).await.1)
    }
    async fn wait_polls(&self, at_least: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.metrics().await.get("sagesync_polls_total{result=\"ok\"}").copied().unwrap_or(0.0) >= at_least {
                return;
            }
            assert!(Instant::now() < deadline, "{at_least} polls not done in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn config(dir: &Path, moto: &Moto, state: &str, daemon: &str) -> std::path::PathBuf {
    let p = dir.join("sagesync.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n{state}\n\n[daemon]\npoll_interval_secs = 1\nlisten = \"127.0.0.1:0\"\nreconcile_interval_secs = 0\n{daemon}\n",
            moto.url()
        ),
    )
    .unwrap();
    p
}

fn dynamodb(table: &str, url: &str) -> String {
    format!("[state]\ntype = \"dynamodb\"\ntable = \"{table}\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\ncreate_table = true\n")
}

fn documents(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("out/moto-project")).map(|d| d.count()).unwrap_or(0)
}

async fn wait_documents(dir: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while documents(dir) < n {
        assert!(Instant::now() < deadline, "{n} documents not written in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Recipe of item 1: ten synced jobs, a daemon on DynamoDB polling every second; over ten idle
/// polls it sends no Scan, and a handful of requests per poll whatever the ledger's size. The
/// ledger gauges are absent (no count exists), the outcomes it recorded are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_1_an_idle_poll_on_dynamodb_sends_no_scan() {
    let moto = Moto::start();
    moto.create_jobs("idle", 10, &SYNC_TAGS).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, &dynamodb("idle-polls", &proxy.url()), "");
    let d = Daemon::start(&cfg, dir.path());
    wait_documents(dir.path(), 10).await;
    let m = d.metrics().await;
    d.wait_polls(m.get("sagesync_polls_total{result=\"ok\"}").copied().unwrap_or(0.0) + 2.0).await;
    proxy.clear();
    let p0 = d.metrics().await["sagesync_polls_total{result=\"ok\"}"];
    d.wait_polls(p0 + 10.0).await;
    let ops = proxy.by_operation();
    let polls = d.metrics().await["sagesync_polls_total{result=\"ok\"}"] - p0;
    let total: usize = ops.values().sum();
    eprintln!("DynamoDB requests over {polls} idle polls: {ops:?} = {:.2} per poll", total as f64 / polls);
    assert_eq!(ops.get("Scan"), None, "an idle poll never scans: {ops:?}");
    assert!((total as f64) / polls <= 5.0, "a few requests per idle poll: {ops:?} over {polls} polls");
    let m = d.metrics().await;
    assert!(!m.keys().any(|k| k.starts_with("sagesync_ledger_jobs")), "no count, no gauge: {m:?}");
    assert_eq!(m.get("sagesync_ledger_recorded_total{outcome=\"synced\"}"), Some(&10.0), "{m:?}");
    assert_eq!(m.get("sagesync_ledger_last_count_timestamp_seconds"), Some(&0.0));
}

/// Item 1: with `ledger_recount_secs`, a daemon on DynamoDB counts the ledger (paged, at
/// `scan_pages_per_second`) and its gauges are the ledger's counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_1_an_opted_in_recount_gives_the_gauges_on_dynamodb() {
    let moto = Moto::start();
    moto.create_jobs("counted", 10, &SYNC_TAGS).await;
    let untagged: Vec<(&str, &str)> = SYNC_TAGS.iter().copied().filter(|(k, _)| *k != "MODEL_DB_SYNC").collect();
    moto.create_jobs("skipped", 2, &untagged).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, &dynamodb("recounted", &proxy.url()), "ledger_recount_secs = 2");
    let d = Daemon::start(&cfg, dir.path());
    wait_documents(dir.path(), 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = d.metrics().await;
        if m.get("sagesync_ledger_jobs{outcome=\"synced\"}") == Some(&10.0)
            && m.get("sagesync_ledger_jobs{outcome=\"skipped\"}") == Some(&2.0)
        {
            assert_eq!(m.get("sagesync_ledger_jobs{outcome=\"failed\"}"), Some(&0.0));
            assert!(m["sagesync_ledger_last_count_timestamp_seconds"] > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "the gauges never matched the ledger: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(proxy.count("Scan") > 0, "the recount scans, as configured");
}

/// Item 6: a live `/metrics` passes `promtool check metrics` (Debian's prometheus package,
/// pinned) in the classic text format a scraper gets by default, and the strict OpenMetrics
/// parser of prometheus-client when asked for OpenMetrics; every series has help text, and the
/// poll duration is in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_6_metrics_pass_promtool_and_the_openmetrics_parser() {
    let moto = Moto::start();
    moto.create_jobs("lint", 3, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, "[state]\npath = \"state.db\"\n", "");
    let d = Daemon::start(&cfg, dir.path());
    wait_documents(dir.path(), 3).await;
    d.wait_polls(2.0).await;
    let (ct, text) = d.scrape(None).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let promtool = repo_root().join(".peers/promtool/usr/bin/promtool");
    assert!(promtool.exists(), "promtool is not unpacked: run scripts/setup-peers.sh");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n---\n{text}");
    for series in
        ["sagesync_jobs_already_done_total", "sagesync_jobs_busy_total", "sagesync_jobs_deferred_total", "sagesync_poll_duration_seconds"]
    {
        assert!(text.contains(&format!("# HELP {series} ")), "{series} has help text:\n{text}");
    }
    assert!(!text.contains("milliseconds"), "{text}");
    // Issue 25: the alerting rules pass `promtool check rules`, and every series they and the
    // Grafana dashboard name is one this daemon serves (with help text), `up` (Prometheus's
    // own) aside; every series served has help text and, where one applies, a unit.
    let rules = repo_root().join("deploy/daemon/alerts.yml");
    let out = Command::new(&promtool).args(["check", "rules"]).arg(&rules).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let served: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|r| r.split_whitespace().next()).collect();
    let names = |t: &str| -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (i, _) in t.match_indices("sagesync_") {
            let name: String = t[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            out.insert(name);
        }
        out
    };
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let exprs: String = rules_text.lines().filter_map(|l| l.trim().strip_prefix("expr:")).collect::<Vec<_>>().join("\n");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("deploy/daemon/grafana-dashboard.json")).unwrap()).unwrap();
    let queries: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .chain(dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["query"].as_str().unwrap().to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    let named: std::collections::BTreeSet<String> = names(&exprs).into_iter().chain(names(&queries)).collect();
    assert!(named.len() >= 15, "{named:?}");
    for n in &named {
        assert!(served.contains(n.as_str()), "{n} (alerts.yml or grafana-dashboard.json) is not served:\n{text}");
        assert!(text.contains(&format!("# HELP {n} ")), "{n} has no help text");
    }
    for n in &served {
        assert!(text.contains(&format!("# HELP {n} ")), "{n} has no help text");
        if n.contains("duration") || n.contains("interval") || n.ends_with("timestamp") {
            assert!(n.ends_with("_seconds"), "{n}: a time is in seconds, and says so");
        }
        if n.contains("memory") {
            assert!(n.ends_with("_bytes"), "{n}");
        }
    }
    let (ct, open) = d.scrape(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    let mut py = Command::new(python())
        .args(["-c", "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nfams = list(p(sys.stdin.read()))\nmissing = [f.name for f in fams if not f.documentation]\nassert not missing, missing\nprint(len(fams))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(open.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "OpenMetrics parser:\n{}\n---\n{open}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim().parse::<usize>().unwrap_or(0) >= 15);
}
