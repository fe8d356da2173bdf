//! Daemons sharing one DynamoDB table (moto, server mode): two `sagesyncd` with SIGKILL of one or
//! the other at random moments during a 300-job sync, and a lease left by a killed process that
//! expires before its job is synced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sagesync_core::StateStore;
use sagesync_state_dynamodb::{DynamoSettings, DynamoState};
use sagesync_test_support::bin::private_bin;
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::Value;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Daemon(Child);

impl Daemon {
    fn start(cfg: &Path, dir: &Path) -> Daemon {
        Daemon(
            Command::new(private_bin(env!("CARGO_BIN_EXE_sagesyncd")))
                .current_dir(dir)
                .args(["--config", cfg.to_str().unwrap()])
                .envs(TEST_ENV)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    fn kill_9(&mut self) {
        assert!(Command::new("kill").args(["-9", &self.0.id().to_string()]).status().unwrap().success());
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One daemon's config: its own metrics port, the shared table.
fn config(dir: &Path, name: &str, moto: &Moto, sink_port: u16, table: &str, pipeline: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_requests_per_second = 0\nmax_attempts = 2\ninitial_backoff_ms = 20\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {sink_port}\nconnect_timeout_secs = 2\nrequest_timeout_secs = 60\n\n[state]\ntype = \"dynamodb\"\ntable = \"{table}\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\ncreate_table = true\n\n[pipeline]\nlease_wait_secs = 1\nretry_backoff_secs = 1\nmax_retry_backoff_secs = 2\n{pipeline}\n\n[daemon]\npoll_interval_secs = 0.5\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 10\n",
            url = moto.url(),
            port = free_port()
        ),
    )
    .unwrap();
    p
}

fn store(moto: &Moto, table: &str) -> DynamoState {
    let mut s = DynamoSettings::new(table);
    s.endpoint_url = Some(moto.url());
    s.region = Some("us-east-1".into());
    s.create_table = true;
    DynamoState::new(s)
}

/// Reads the store from a thread of its own (the test's runtime may be busy waiting).
fn counts(moto_url: &str, table: &str) -> Option<sagesync_core::LedgerCounts> {
    let (url, table) = (moto_url.to_string(), table.to_string());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?.block_on(async {
            let mut s = DynamoSettings::new(table);
            s.endpoint_url = Some(url);
            s.region = Some("us-east-1".into());
            DynamoState::new(s).counts().await.ok()
        })
    })
    .join()
    .ok()
    .flatten()
}

fn runs(p: &Peer) -> Vec<String> {
    p.state()
        .get("runs")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(|r| r["description"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_table_killed_at_random_sync_every_job_exactly_once() {
    let moto = Moto::start();
    let names = moto.create_jobs("ha", 300, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let table = "ha-daemons";
    store(&moto, table).open().await.unwrap();
    let cfgs = [
        config(dir.path(), "a", &moto, peer.port, table, "concurrency = 2\nlease_ttl_secs = 3"),
        config(dir.path(), "b", &moto, peer.port, table, "concurrency = 2\nlease_ttl_secs = 3"),
    ];
    let mut ds = [Daemon::start(&cfgs[0], dir.path()), Daemon::start(&cfgs[1], dir.path())];
    // Random kills; set SAGESYNC_CRASH_SEED to replay a run.
    let seed: u64 = std::env::var("SAGESYNC_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("SAGESYNC_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = Vec::new();
    let first = rng.usize(0..2);
    for i in 0..6 {
        // Each daemon at least once, then either.
        let target = if i < 2 { (first + i) % 2 } else { rng.usize(0..2) };
        let at = rng.usize(10..60);
        let before = runs(&peer).len();
        if before >= 290 {
            break;
        }
        // Kill once the sink has grown by a random amount (not at a fixed time).
        wait_until("progress before a kill", 120, || runs(&peer).len() >= (before + at).min(299)).await;
        ds[target].kill_9();
        kills.push((target, runs(&peer).len()));
        ds[target] = Daemon::start(&cfgs[target], dir.path());
    }
    eprintln!("kills (daemon, runs at kill): {kills:?}");
    assert!(
        kills.len() >= 3 && kills.iter().any(|k| k.0 == 0) && kills.iter().any(|k| k.0 == 1),
        "both daemons were killed mid-sync: {kills:?}"
    );
    wait_until("all 300 runs", 180, || runs(&peer).len() >= 300).await;
    wait_until("the ledger agrees", 60, || counts(&moto.url(), table).is_some_and(|c| c.synced == 300)).await;
    // Both still running: give them a few more polls to (not) write anything twice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let descs = runs(&peer);
    assert_eq!(descs.len(), 300, "no duplicates");
    for n in &names {
        assert_eq!(descs.iter().filter(|d| d.contains(&format!("/{n})"))).count(), 1, "{n}");
    }
    let c = counts(&moto.url(), table).unwrap();
    assert_eq!((c.synced, c.failed, c.skipped), (300, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_a_killed_process_expires_then_the_job_is_synced() {
    let moto = Moto::start();
    let names = moto.create_jobs("held", 1, &SYNC_TAGS).await;
    let arn = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", names[0]);
    // A sink that accepts and never answers: the first daemon is stuck in the write, lease held.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    hole.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = "held-lease";
    let st = store(&moto, table);
    st.open().await.unwrap();
    let cfg = config(dir.path(), "a", &moto, port, table, "concurrency = 1\nlease_ttl_secs = 6");
    let mut a = Daemon::start(&cfg, dir.path());
    let mut held = Vec::new();
    wait_until("the first daemon writing to the sink", 60, || {
        if let Ok((s, _)) = hole.accept() {
            held.push(s);
        }
        !held.is_empty()
    })
    .await;
    let lease = st.lease_of(&arn).await.unwrap().expect("the writer holds the lease");
    a.kill_9();
    // Its lease is still there after the kill, with its last renewal's expiry.
    let lease = st.lease_of(&arn).await.unwrap().filter(|l| l.owner == lease.owner).expect("the dead writer's lease remains");
    drop(held);
    drop(hole);
    let peer = Peer::start(&["--port", &port.to_string()]);
    let _b = Daemon::start(&config(dir.path(), "b", &moto, port, table, "concurrency = 1\nlease_ttl_secs = 6"), dir.path());
    wait_until("the job synced by the second daemon", 60, || runs(&peer).len() == 1).await;
    wait_until("its ledger entry", 30, || counts(&moto.url(), table).is_some_and(|c| c.synced == 1)).await;
    let e = st.jobs(std::slice::from_ref(&arn)).await.unwrap().remove(0).expect("entry");
    let d = e.deliveries.values().next().expect("one delivery");
    assert!(d.at >= lease.expires_at, "written at {} only after the dead writer's lease lapsed at {}", d.at, lease.expires_at);
    let now = st.lease_of(&arn).await.unwrap();
    assert!(now.is_none(), "released at commit: {now:?}");
}
