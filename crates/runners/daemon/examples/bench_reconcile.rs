//! Reconciliation benchmark (issue 11, "Tests"): N tagged jobs in moto (default 1,000), synced
//! once, then reconciliation passes over the N unchanged jobs — the pass `sagesyncd` runs every
//! `reconcile_interval_secs` (`PassRequest::reconcile` over `reconcile_lookback_secs`) and
//! `sagesync backfill` runs over its range: Search with tags in bulk, every job re-decided
//! against the ledger. Prints the SageMaker requests the pass made, counted on the wire by a
//! proxy in front of moto and broken down by `X-Amz-Target`, those per 1,000 jobs, the wall
//! time and the sink writes (0 expected). Prints figures; asserts nothing about time.
//!
//! Run with `scripts/bench-reconcile.sh [N]`. Usage: bench_reconcile [N]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{
    async_trait, CancellationToken, Engine, NoObserver, PassRequest, PipelineSettings, RunRecord, Sink, SinkReceipt, SyncError, TagKeys,
    WriteContext, WriteKind,
};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_state_sqlite::SqliteState;
use sagesync_test_support::moto;
use sagesync_test_support::proxy::Proxy;

/// The file sink, counting the calls it gets and the writes it makes.
struct Counting {
    inner: FileSink,
    upserts: AtomicU64,
    retracts: AtomicU64,
    writes: AtomicU64,
}

#[async_trait]
impl Sink for Counting {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        self.upserts.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.upsert(record, cx).await?;
        if r.write != WriteKind::Unchanged {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }
    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        self.retracts.fetch_add(1, Ordering::SeqCst);
        self.inner.retract(external_id, cx).await
    }
}

/// Requests forwarded to moto so far, by operation (`X-Amz-Target`'s after the last `.`, or
/// method and path without one), as the proxy in front of it logged them.
fn snapshot(proxy: &Proxy) -> BTreeMap<String, u64> {
    proxy.by_operation().into_iter().map(|(op, n)| (op, n as u64)).collect()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.trim_start_matches("SageMaker.").to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Every file under `dir` with its length and modification time.
fn files(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let moto = moto::Moto::start();
    let t = Instant::now();
    moto.create_jobs("recon", n, &moto::SYNC_TAGS).await;
    println!("seeded {n} tagged jobs into moto in {:.1} s", t.elapsed().as_secs_f64());
    // A loopback HTTP/1.1 proxy in front of moto that logs every request it forwards.
    let proxy = Proxy::start(moto.port).await;
    let endpoint = proxy.url();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let state = Arc::new(SqliteState::new(dir.path().join("state.db"), 10_000));
    let lookback = Duration::from_secs(604_800);

    // One engine per budget setting, over one ledger and one output directory, as a daemon
    // restarted with other settings would be (the source's budgets are not part of the config
    // digest, so the ledger stays valid).
    let engine = |settings: SageMakerSettings, sink: Arc<Counting>| {
        Engine::builder()
            .source(SageMakerSource::new(settings))
            .validator("required_tags", RequiredTags::new(&TagKeys::default()))
            .validator("status", StatusFilter::new(["Completed"]))
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink_arc("file", sink)
            .settings(PipelineSettings::default())
            .state(state.clone())
            .build()
            .unwrap()
    };
    let new_sink = || Arc::new(Counting { inner: FileSink::new(&out), upserts: 0.into(), retracts: 0.into(), writes: 0.into() });

    // The first sync: a reconciliation pass over jobs the ledger does not know yet.
    let sink = new_sink();
    let e = engine(SageMakerSettings::new(Mode::Search).endpoint(&endpoint, "us-east-1").unlimited(), sink.clone());
    let before = snapshot(&proxy);
    let t = Instant::now();
    let r = e.pass(&PassRequest::reconcile(lookback), &CancellationToken::new(), &NoObserver).await;
    let wall = t.elapsed().as_secs_f64();
    assert_eq!((r.synced, r.failed), (n, 0), "the first sync: {:?}", r.listing_error);
    println!(
        "first sync: {} jobs synced in {wall:.2} s; SageMaker requests {:?}; file sink writes {}",
        r.synced,
        delta(&snapshot(&proxy), &before),
        sink.writes.load(Ordering::SeqCst)
    );
    let files_before = files(&out);

    for (label, settings) in [
        ("no client-side budget", SageMakerSettings::new(Mode::Search).endpoint(&endpoint, "us-east-1").unlimited()),
        ("default budgets (Search 2/s)", SageMakerSettings::new(Mode::Search).endpoint(&endpoint, "us-east-1")),
    ] {
        let sink = new_sink();
        let e = engine(settings, sink.clone());
        let before = snapshot(&proxy);
        let t = Instant::now();
        let r = e.pass(&PassRequest::reconcile(lookback), &CancellationToken::new(), &NoObserver).await;
        let wall = t.elapsed().as_secs_f64();
        let calls = delta(&snapshot(&proxy), &before);
        let total: u64 = calls.values().sum();
        println!(
            "reconciliation pass over {n} unchanged jobs, {label}: wall {wall:.2} s ({:.0} jobs/s); SageMaker requests on the wire {total} {calls:?} = {:.1} per 1,000 jobs; sagesync's own count {:?}; pages {}; already done {}, synced {}, failed {}; sink upserts called {}, retracts {}, writes {}",
            n as f64 / wall,
            total as f64 * 1000.0 / n as f64,
            r.api_calls,
            r.pages,
            r.already_done,
            r.synced,
            r.failed,
            sink.upserts.load(Ordering::SeqCst),
            sink.retracts.load(Ordering::SeqCst),
            sink.writes.load(Ordering::SeqCst),
        );
    }
    let files_after = files(&out);
    println!(
        "file sink: {} documents before the reconciliation passes, {} after, {} changed",
        files_before.len(),
        files_after.len(),
        files_after.iter().filter(|(p, m)| files_before.get(*p) != Some(m)).count()
    );
}
