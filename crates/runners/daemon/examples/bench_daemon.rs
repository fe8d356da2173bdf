//! Daemon benchmark. Backfill of N jobs from moto (Search mode, ledger, file sink): wall time,
//! jobs/s, SageMaker calls per job. Then `sagesyncd` idle over a minute of polling with nothing
//! new (5 s interval): RSS and CPU. Run with `scripts/bench-daemon.sh [N] [SECONDS]`.
//!
//! Usage: bench_daemon PATH/TO/sagesyncd [N] [SECONDS]

use std::time::{Duration, Instant};

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, NoObserver, PassRequest, PipelineSettings, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_state_sqlite::SqliteState;
use sagesync_test_support::moto;
use sagesync_test_support::stderr::StderrLog;

fn proc_stat(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks as f64 / 100.0, rss_kb))
}

#[tokio::main]
async fn main() {
    let bin = std::env::args().nth(1).expect("usage: bench_daemon PATH/TO/sagesyncd [N] [SECONDS]");
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let secs: u64 = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let moto = moto::Moto::start();
    let t = Instant::now();
    moto.create_jobs("bench", n, &moto::SYNC_TAGS).await;
    println!("seeded {n} jobs into moto in {:.1} s", t.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();

    // Backfill: what `sagesync backfill` runs.
    let mut settings = SageMakerSettings::new(Mode::Search).endpoint(&moto.url(), "us-east-1").unlimited();
    settings.filters.modified_after = Some("2000-01-01T00:00:00Z".parse().unwrap());
    let state = std::sync::Arc::new(SqliteState::new(dir.path().join("state.db"), 10_000));
    let p = Engine::builder()
        .source(SageMakerSource::new(settings))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("file", FileSink::new(dir.path().join("out")))
        .settings(PipelineSettings { concurrency: 8, ..Default::default() })
        .state(state)
        .build()
        .unwrap();
    let t = Instant::now();
    let s = p.pass(&PassRequest::backfill("2000-01-01T00:00:00Z".parse().unwrap(), None), &CancellationToken::new(), &NoObserver).await;
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(s.synced, n);
    let calls: u64 = s.api_calls.values().sum();
    println!(
        "backfill: {n} jobs in {wall:.2} s = {:.1} jobs/s, {:.3} SageMaker calls/job {:?} (ledger + file sink)",
        n as f64 / wall,
        calls as f64 / n as f64,
        s.api_calls
    );

    // Idle daemon over the same account: the ledger already has every job.
    let cfg = dir.path().join("d.toml");
    std::fs::write(&cfg, format!("[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n[state]\npath = \"state.db\"\n\n[daemon]\npoll_interval_secs = 5\nreconcile_interval_secs = 0\nlisten = \"127.0.0.1:0\"\n", moto.url())).unwrap();
    // sagesyncd binds a port of its own choosing and writes the address to --listen-file.
    let addr_file = dir.path().join("listen.addr");
    let log = StderrLog::new("sagesyncd");
    let mut child = std::process::Command::new(&bin)
        .current_dir(dir.path())
        .args(["--config", cfg.to_str().unwrap(), "--listen-file", addr_file.to_str().unwrap()])
        .envs(moto::TEST_ENV)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(log.stdio())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let port = loop {
        if let Some(a) = std::fs::read_to_string(&addr_file).ok().and_then(|t| t.trim().parse::<std::net::SocketAddr>().ok()) {
            break a.port();
        }
        assert!(child.try_wait().unwrap().is_none(), "sagesyncd exited before it listened:\n{}", log.text());
        assert!(t0.elapsed() < Duration::from_secs(120), "sagesyncd did not report its address");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Wait for the first poll (it lists all N jobs once and finds them in the ledger).
    let client = sagesync_test_support::http().build().expect("an HTTP client");
    let t0 = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "daemon not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("daemon first poll over {n} known jobs: {:.2} s (includes start-up)", t0.elapsed().as_secs_f64());
    let (cpu0, _) = proc_stat(child.id()).unwrap();
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some((_, rss)) = proc_stat(child.id()) {
            peak = peak.max(rss);
        }
    }
    let (cpu1, rss) = proc_stat(child.id()).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let field = |k: &str| status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
    let breakdown = format!("anonymous {} kB, file-backed {} kB, threads {}", field("RssAnon:"), field("RssFile:"), field("Threads:"));
    let metrics = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    let polls = metrics.lines().find(|l| l.starts_with("sagesync_polls_total{result=\"ok\"}")).unwrap_or("").to_string();
    println!(
        "idle daemon over {secs} s (5 s poll, nothing new): CPU {:.2} s = {:.2} % of one core, RSS {:.1} MiB (peak {:.1} MiB; {breakdown}); {polls}",
        cpu1 - cpu0,
        (cpu1 - cpu0) / secs as f64 * 100.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
