//! Engine tests: retries, the concurrency bound, isolation of bad jobs, decisions against the
//! ledger (tags, new sinks, retraction), pages and cursors, interruption, leases between two
//! engines on one store. The source and sinks here are in-memory plugins written for the test:
//! the engine's own contract, not a stand-in for a real store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone;
use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::config::PipelineSettings;
use sagesync_core::*;

fn tagged() -> Tags {
    [
        ("MODEL_DB_SYNC", "1"),
        ("MODEL_DB_PROJECT_NAME", "p"),
        ("MODEL_DB_PROJECT_USER", "u"),
        ("MODEL_DB_PROJECT_DESC", "d"),
        ("MODEL_DB_MODEL_NAME", "m"),
        ("MODEL_DB_MODEL_TYPE", "t"),
    ]
    .into_iter()
    .collect()
}

fn job(i: usize, status: &str) -> TrainingJob {
    let mut j = TrainingJob::new(format!("job-{i}"), format!("arn:aws:sagemaker:us-east-1:1:training-job/job-{i}"), status);
    j.last_modified_time = Some(chrono::Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap());
    j.tags = tagged();
    j
}

/// Jobs in memory, listed in pages of `page` by keyset on LastModifiedTime; `with_tags` makes
/// references carry the tags (like Search), else only times (like ListTrainingJobs). Jobs can be
/// changed between pages with `edit`.
struct MemSource {
    jobs: Mutex<Vec<TrainingJob>>,
    missing: Vec<String>,
    fetches: AtomicUsize,
    lists: AtomicUsize,
    page: usize,
    with_tags: bool,
    on_page: Mutex<Option<PageHook>>,
    /// How many jobs each `prepare` call was given, in order.
    prepared: Mutex<Vec<usize>>,
}

/// Changes the source's jobs before page N is listed.
type PageHook = Box<dyn FnMut(usize, &mut Vec<TrainingJob>) + Send>;

impl MemSource {
    fn new(jobs: Vec<TrainingJob>) -> Self {
        MemSource {
            jobs: Mutex::new(jobs),
            missing: vec![],
            fetches: AtomicUsize::new(0),
            lists: AtomicUsize::new(0),
            page: 100,
            with_tags: false,
            on_page: Mutex::new(None),
            prepared: Mutex::new(Vec::new()),
        }
    }
    fn edit(&self, f: impl FnOnce(&mut Vec<TrainingJob>)) {
        f(&mut self.jobs.lock().unwrap());
    }
}

#[async_trait]
impl Source for MemSource {
    async fn list(&self, _scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let n = self.lists.fetch_add(1, Ordering::SeqCst);
        let mut g = self.jobs.lock().unwrap();
        if let Some(f) = self.on_page.lock().unwrap().as_mut() {
            f(n, &mut g);
        }
        let mut all: Vec<&TrainingJob> = g.iter().filter(|j| !cursor.covers(j.last_modified_time, &j.arn)).collect();
        all.sort_by(|a, b| (a.last_modified_time, &a.arn).cmp(&(b.last_modified_time, &b.arn)));
        let done = all.len() <= self.page;
        let mut next = cursor.clone();
        let jobs = all
            .into_iter()
            .take(self.page)
            .map(|j| {
                next.advance(j.last_modified_time, &j.arn);
                JobRef {
                    name: j.name.clone(),
                    arn: Some(j.arn.clone()),
                    last_modified: j.last_modified_time,
                    tags: self.with_tags.then(|| j.tags.clone()),
                    ..Default::default()
                }
            })
            .collect();
        if done {
            next = Cursor::default();
        }
        Ok(Page { jobs, problems: vec![], next, done })
    }
    async fn prepare(&self, jobs: &[&JobRef]) {
        self.prepared.lock().unwrap().push(jobs.len());
    }
    async fn fetch(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.missing.contains(&r.name) {
            return Err(SyncError::NotFound(r.name.clone()));
        }
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .find(|j| Some(&j.arn) == r.arn.as_ref() || j.name == r.name)
            .cloned()
            .ok_or_else(|| SyncError::NotFound(r.name.clone()))
    }
    fn api_calls(&self) -> BTreeMap<String, u64> {
        [("Fetch".to_string(), self.fetches.load(Ordering::SeqCst) as u64)].into()
    }
}

/// Stores records by ARN; fails transiently `flaky` times per run name, permanently for
/// `broken`; `down` makes every call fail transiently.
#[derive(Default)]
struct MemSink {
    stored: Mutex<BTreeMap<String, RunRecord>>,
    calls: Mutex<BTreeMap<String, usize>>,
    writes: AtomicUsize,
    retracts: AtomicUsize,
    flaky: usize,
    broken: Vec<String>,
    down: std::sync::atomic::AtomicBool,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay_ms: u64,
    /// Keeps the records of ineligible jobs (`retract` answers `None`), like ModelDB v1.
    keeps: bool,
    /// The previous receipt each upsert was given, by run name (the last one).
    previous: Mutex<BTreeMap<String, Option<SinkReceipt>>>,
}

#[async_trait]
impl Sink for MemSink {
    async fn upsert(&self, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        self.previous.lock().unwrap().insert(r.run.name.clone(), cx.previous.clone());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let n = {
            let mut c = self.calls.lock().unwrap();
            let n = c.entry(r.run.name.clone()).or_default();
            *n += 1;
            *n
        };
        if self.down.load(Ordering::SeqCst) {
            return Err(SyncError::transient("store down"));
        }
        if self.broken.contains(&r.run.name) {
            return Err(SyncError::permanent("store says no"));
        }
        if n <= self.flaky {
            return Err(SyncError::transient("connection reset"));
        }
        let mut s = self.stored.lock().unwrap();
        let kind = match s.insert(r.run.external_id.clone(), r.clone()) {
            None => WriteKind::Created,
            Some(old) if &old == r => WriteKind::Unchanged,
            Some(_) => WriteKind::Updated,
        };
        if kind != WriteKind::Unchanged {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(SinkReceipt::new(kind).id("run", &r.run.external_id))
    }
    async fn retract(&self, arn: &str, _cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        self.retracts.fetch_add(1, Ordering::SeqCst);
        if self.keeps {
            return Ok(None);
        }
        let removed = self.stored.lock().unwrap().remove(arn).is_some();
        Ok(Some(SinkReceipt::new(if removed { WriteKind::Removed } else { WriteKind::Unchanged })))
    }
}

fn fast() -> PipelineSettings {
    PipelineSettings {
        concurrency: 3,
        max_attempts: 4,
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        retry_backoff_secs: 1,
        max_retry_backoff_secs: 1,
        ..Default::default()
    }
}

fn engine_with(source: Arc<MemSource>, sinks: Vec<(&str, Arc<MemSink>)>, settings: PipelineSettings, state: Arc<dyn StateStore>) -> Engine {
    let mut b = Engine::builder()
        .source_arc(source)
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .settings(settings)
        .state(state);
    for (id, s) in sinks {
        b = b.sink_arc(id, s);
    }
    b.build().unwrap()
}

fn engine(source: Arc<MemSource>, sinks: Vec<(&str, Arc<MemSink>)>, settings: PipelineSettings) -> Engine {
    engine_with(source, sinks, settings, Arc::new(MemoryState::new()))
}

async fn poll(e: &Engine) -> PassReport {
    e.pass(&PassRequest::poll().collecting(), &CancellationToken::new(), &NoObserver).await
}

fn by_name(r: &PassReport) -> BTreeMap<String, &JobReport> {
    r.jobs.iter().map(|j| (j.job.clone(), j)).collect()
}

#[tokio::test]
async fn retries_transient_errors_and_isolates_bad_jobs() {
    let mut jobs: Vec<TrainingJob> = (0..10).map(|i| job(i, "Completed")).collect();
    jobs[3].status = "Failed".into();
    jobs[4].tags.0.retain(|t| t.key != "MODEL_DB_MODEL_TYPE");
    let sink = Arc::new(MemSink { flaky: 2, broken: vec!["job-7".into()], ..Default::default() });
    let mut src = MemSource::new(jobs);
    src.missing = vec!["job-8".into()];
    let src = Arc::new(src);
    let e = engine(src.clone(), vec![("mem", sink.clone())], fast());
    let s = poll(&e).await;
    assert_eq!((s.synced, s.skipped, s.rejected, s.failed), (6, 1, 1, 2), "{:#?}", s.jobs);
    let j = by_name(&s);
    assert_eq!(j["job-0"].attempts, 3, "two transient failures, then success");
    assert_eq!(j["job-7"].stage, Some(Stage::Sink));
    assert!(j["job-7"].reason.as_deref().unwrap().contains("store says no"));
    assert!(!j["job-7"].parked, "one permanent failure does not park yet (max_job_attempts = 5)");
    assert_eq!(sink.calls.lock().unwrap()["job-7"], 1, "permanent errors are not retried within a try");
    assert_eq!(j["job-8"].stage, Some(Stage::Source));
    assert!(j["job-8"].reason.as_deref().unwrap().contains("job not found"));
    assert_eq!(s.api_calls["Fetch"], 10);
    assert_eq!(sink.stored.lock().unwrap().len(), 6);
    assert!(s.jobs.iter().all(|j| j.recorded), "every outcome is in the ledger");
    // The failures are in the ledger: the cursor moved on, and the next poll re-drives them when
    // their retry time has come.
    let st = e.state().jobs(&[job(7, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!((st.outcome, st.attempts), (Outcome::Failed, 1));
    let at = st.next_attempt_at.expect("a retry time");
    assert_eq!(at - st.updated_at, fast().retry_delay(1), "retried after the first backoff (1 s)");
}

#[tokio::test]
async fn permanent_failures_park_after_max_job_attempts_and_retryable_ones_never_do() {
    let sink = Arc::new(MemSink { broken: vec!["job-1".into()], ..Default::default() });
    let src = Arc::new(MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]));
    let settings = PipelineSettings { max_job_attempts: 3, ..fast() };
    let e = engine(src.clone(), vec![("mem", sink.clone())], settings);
    let opts = RefOptions { urgent: true, collect: true, ..Default::default() };
    let refs = || vec![JobRef { name: "job-1".into(), arn: Some(job(1, "").arn), ..Default::default() }];
    // Retryable failures first (the store is down): they never count toward parking.
    sink.down.store(true, Ordering::SeqCst);
    for _ in 0..4 {
        let r = e.sync_refs(refs(), &opts, &CancellationToken::new(), &NoObserver).await;
        assert!(r.jobs[0].retryable && !r.jobs[0].parked);
    }
    sink.down.store(false, Ordering::SeqCst);
    for i in 1..=3 {
        let r = e.sync_refs(refs(), &opts, &CancellationToken::new(), &NoObserver).await;
        assert_eq!(r.jobs[0].parked, i == 3, "permanent failure {i} after four retryable ones");
    }
    let st = e.state().jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!((st.attempts, st.permanent_failures, st.parked), (7, 3, true));
    // Parked: a poll leaves it alone.
    let p = poll(&e).await;
    assert_eq!(p.synced, 1);
    // Each retryable try is retried in the pass (max_attempts = 4 in `fast`); permanent ones not.
    assert_eq!(sink.calls.lock().unwrap()["job-1"], 4 * 4 + 3);
    // A store that is down is not the job's fault: never parked.
    sink.down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let r = e
            .sync_refs(
                vec![JobRef { name: "job-2".into(), arn: Some(job(2, "").arn), ..Default::default() }],
                &RefOptions { force: true, urgent: true, collect: true, ..Default::default() },
                &CancellationToken::new(),
                &NoObserver,
            )
            .await;
        assert!(r.jobs[0].retryable && !r.jobs[0].parked);
    }
    let st = e.state().jobs(&[job(2, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!((st.attempts, st.permanent_failures, st.parked), (5, 0, false));
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let sink = Arc::new(MemSink { delay_ms: 20, ..Default::default() });
    let src = Arc::new(MemSource::new((0..12).map(|i| job(i, "Completed")).collect()));
    let e = engine(src, vec![("mem", sink.clone())], fast());
    let s = poll(&e).await;
    assert_eq!(s.synced, 12);
    let max = sink.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "at most `concurrency` jobs at once, saw {max}");
    assert!(max >= 2, "jobs do run concurrently, saw {max}");
}

/// Issue 24: the engine hands a page's jobs to the source before working on them (so that it
/// can batch what it reads per job), and tells it when the page is done (so that nothing kept
/// for the page outlives it); a page of one job, or of jobs all done, is not prepared.
#[tokio::test]
async fn a_page_is_prepared_and_then_released() {
    let sink = Arc::new(MemSink::default());
    let src = Arc::new(MemSource::new((0..5).map(|i| job(i, "Completed")).collect()));
    let e = engine(src.clone(), vec![("mem", sink.clone())], fast());
    assert_eq!(poll(&e).await.synced, 5);
    assert_eq!(*src.prepared.lock().unwrap(), [5, 0]);
    assert_eq!(poll(&e).await.already_done, 5);
    src.edit(|j| j[2].last_modified_time = Some(chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap()));
    assert_eq!(poll(&e).await.synced, 1);
    assert_eq!(*src.prepared.lock().unwrap(), [5, 0], "nothing to prepare for one job, nor for jobs done");
}

#[tokio::test]
async fn the_ledger_decides_a_second_pass_does_nothing() {
    let sink = Arc::new(MemSink::default());
    let src = Arc::new(MemSource::new((0..5).map(|i| job(i, "Completed")).collect()));
    let e = engine(src.clone(), vec![("mem", sink.clone())], fast());
    assert_eq!(poll(&e).await.synced, 5);
    let fetches = src.fetches.load(Ordering::SeqCst);
    let s2 = poll(&e).await;
    assert_eq!((s2.total(), s2.already_done), (0, 5));
    assert_eq!(src.fetches.load(Ordering::SeqCst), fetches, "nothing fetched again");
    // A modified job is worked on again, alone.
    src.edit(|j| j[2].last_modified_time = Some(chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap()));
    let s3 = poll(&e).await;
    assert_eq!((s3.synced, s3.already_done), (1, 4));
    let calls = sink.calls.lock().unwrap();
    assert_eq!(calls["job-2"], 2);
    assert_eq!(calls.values().sum::<usize>(), 6, "only the modified job was written again");
}

#[tokio::test]
async fn tag_changes_new_sinks_and_untagging_converge() {
    let file = Arc::new(MemSink::default());
    let mut src = MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]);
    src.with_tags = true;
    let src = Arc::new(src);
    src.edit(|j| j[1].tags.0.retain(|t| t.key != "MODEL_DB_SYNC"));
    let state: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let e = engine_with(src.clone(), vec![("file", file.clone())], fast(), state.clone());
    let s = poll(&e).await;
    assert_eq!((s.synced, s.skipped), (1, 1));
    // Tagged afterwards, without moving LastModifiedTime (AddTags does not).
    src.edit(|j| j[1].tags = tagged());
    let s = poll(&e).await;
    assert_eq!((s.synced, s.already_done), (1, 1), "{:#?}", s.jobs);
    assert_eq!(file.stored.lock().unwrap().len(), 2);
    // A sink added to the config: only it is written.
    let v1 = Arc::new(MemSink::default());
    let e2 = engine_with(src.clone(), vec![("file", file.clone()), ("v1", v1.clone())], fast(), state.clone());
    let s = poll(&e2).await;
    assert_eq!(s.synced, 2);
    assert_eq!(v1.stored.lock().unwrap().len(), 2);
    assert_eq!(file.calls.lock().unwrap().values().sum::<usize>(), 2, "the file sink already held both: not called again");
    // Untagged: its records are retracted from every sink.
    src.edit(|j| j[0].tags.0.retain(|t| t.key != "MODEL_DB_SYNC"));
    let s = poll(&e2).await;
    assert_eq!(s.skipped, 1);
    assert_eq!(by_name(&s)["job-1"].receipts.iter().map(|r| r.write).collect::<Vec<_>>(), [WriteKind::Removed, WriteKind::Removed]);
    assert!(!file.stored.lock().unwrap().contains_key(&job(1, "").arn));
    assert!(!v1.stored.lock().unwrap().contains_key(&job(1, "").arn));
    assert_eq!(poll(&e2).await.already_done, 2, "and then nothing more to do");
}

#[tokio::test]
async fn a_job_that_changes_while_listed_is_counted_once_and_nothing_is_lost() {
    // Pages of 1 by keyset; while page 2 is listed the first job moves to the end.
    let sink = Arc::new(MemSink::default());
    let mut src = MemSource::new((0..6).map(|i| job(i, "Completed")).collect());
    src.page = 1;
    *src.on_page.lock().unwrap() = Some(Box::new(|n, jobs: &mut Vec<TrainingJob>| {
        if n == 2 {
            jobs[0].last_modified_time = Some(chrono::Utc.timestamp_opt(1_900_000_000, 0).unwrap());
            jobs[0].hyperparameters.insert("eta".into(), "0.3".into());
        }
    }));
    let src = Arc::new(src);
    let e = engine(src.clone(), vec![("mem", sink.clone())], fast());
    let s = poll(&e).await;
    assert_eq!(s.synced, 6, "six distinct jobs: {:#?}", s.jobs);
    assert_eq!(s.jobs.len(), 6);
    let stored = sink.stored.lock().unwrap();
    assert_eq!(stored.len(), 6, "every job written");
    assert_eq!(stored[&job(0, "").arn].hyperparameters.len(), 1, "the moved job's latest state is what the sink holds");
}

#[tokio::test]
async fn duplicate_refs_of_one_job_never_run_concurrently() {
    let sink = Arc::new(MemSink { delay_ms: 15, ..Default::default() });
    let j = job(1, "Completed");
    let src = Arc::new(MemSource::new(vec![j.clone()]));
    let e = engine(src, vec![("mem", sink.clone())], fast());
    let refs: Vec<JobRef> = (0..3).map(|_| JobRef::with_job(j.clone(), None)).collect();
    let r = e.sync_refs(refs, &RefOptions { collect: true, ..Default::default() }, &CancellationToken::new(), &NoObserver).await;
    assert_eq!((r.synced, r.already_done), (1, 2), "{r:#?}");
    assert_eq!(sink.max_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(sink.calls.lock().unwrap()["job-1"], 1);
}

#[tokio::test]
async fn two_engines_on_one_store_write_each_job_once() {
    let sink = Arc::new(MemSink { delay_ms: 5, ..Default::default() });
    let src = Arc::new(MemSource::new((0..40).map(|i| job(i, "Completed")).collect()));
    let state: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let a = engine_with(src.clone(), vec![("mem", sink.clone())], fast(), state.clone());
    let b = engine_with(src.clone(), vec![("mem", sink.clone())], fast(), state.clone());
    let (ra, rb) = tokio::join!(poll(&a), poll(&b));
    assert_eq!(ra.synced + rb.synced, 40, "a: {} b: {}", ra.synced, rb.synced);
    assert_eq!(sink.writes.load(Ordering::SeqCst), 40);
    assert_eq!(sink.calls.lock().unwrap().values().sum::<usize>(), 40, "one write per job");
}

/// A store whose renewals fail: the lease lapses while the job is being written.
struct NoRenew(MemoryState);

#[async_trait]
impl StateStore for NoRenew {
    fn location(&self) -> String {
        self.0.location()
    }
    async fn cursor(&self, k: &str) -> Result<Option<Cursor>, StateError> {
        self.0.cursor(k).await
    }
    async fn save_cursor(&self, k: &str, c: &Cursor) -> Result<(), StateError> {
        self.0.save_cursor(k, c).await
    }
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        self.0.cursors().await
    }
    async fn jobs(&self, a: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        self.0.jobs(a).await
    }
    async fn acquire(&self, a: &str, o: &str, t: Duration) -> Result<Acquired, StateError> {
        self.0.acquire(a, o, t).await
    }
    async fn renew(&self, _: &Lease, _: Duration) -> Result<bool, StateError> {
        Err(StateError::Backend { location: "test".into(), message: "renewals are switched off".into(), retryable: true })
    }
    async fn commit(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.0.commit(l, e).await
    }
    async fn record(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.0.record(l, e).await
    }
    async fn release(&self, l: &Lease) -> Result<(), StateError> {
        self.0.release(l).await
    }
    async fn due(&self, n: Timestamp, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.0.due(n, a, l).await
    }
    async fn failed(&self, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.0.failed(a, l).await
    }
    async fn unpark(&self, j: &[String]) -> Result<Vec<String>, StateError> {
        self.0.unpark(j).await
    }
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        self.0.counts().await
    }
}

/// Answers only once `gate` is open.
struct Gated {
    gate: Arc<std::sync::atomic::AtomicBool>,
    calls: AtomicUsize,
}

#[async_trait]
impl Sink for Gated {
    async fn upsert(&self, _: &RunRecord, _: &WriteContext) -> Result<SinkReceipt, SyncError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        while !self.gate.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(SinkReceipt::new(WriteKind::Created))
    }
}

#[tokio::test]
async fn a_writer_whose_lease_was_taken_over_records_nothing() {
    let state = Arc::new(NoRenew(MemoryState::new()));
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = Arc::new(Gated { gate: gate.clone(), calls: AtomicUsize::new(0) });
    let e = Engine::builder()
        .source(MemSource::new(vec![job(1, "Completed")]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink_arc("gated", sink.clone())
        .settings(PipelineSettings { lease_ttl_secs: 1, ..fast() })
        .state(state.clone())
        .build()
        .unwrap();
    // Another writer takes the job as soon as the engine's lease lapses, then lets the
    // engine's write finish.
    let thief = tokio::spawn({
        let state = state.clone();
        let gate = gate.clone();
        async move {
            let lease = loop {
                if let Ok(Acquired::Granted { lease, .. }) = state.acquire(&job(1, "").arn, "thief", Duration::from_secs(60)).await {
                    break lease;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            gate.store(true, Ordering::SeqCst);
            lease
        }
    });
    let r = e
        .sync_refs(
            vec![JobRef::by_name("job-1")],
            &RefOptions { collect: true, ..Default::default() },
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    let thief_lease = thief.await.unwrap();
    assert_eq!(sink.calls.load(Ordering::SeqCst), 1);
    assert_eq!(r.jobs[0].outcome, Outcome::Interrupted, "{r:#?}");
    assert!(!r.jobs[0].recorded);
    // The fenced-out writer recorded no outcome: at most the intent it wrote before writing.
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0);
    assert!(
        st.as_ref()
            .is_none_or(|e| e.outcome == Outcome::Failed && e.deliveries.values().all(|d| matches!(d.state, DeliveryState::Pending(_)))),
        "the fenced-out writer recorded nothing: {st:?}"
    );
    assert!(thief_lease.fence >= 2);
}

#[tokio::test]
async fn partial_sink_failure_says_what_was_written_and_retries_only_the_failed_sink() {
    let good = Arc::new(MemSink::default());
    let bad = Arc::new(MemSink { flaky: 4, ..Default::default() });
    let src = Arc::new(MemSource::new(vec![job(1, "Completed")]));
    let settings = PipelineSettings { retry_backoff_secs: 1, ..fast() };
    let e = engine(src, vec![("good", good.clone()), ("bad", bad.clone())], settings);
    let s = poll(&e).await;
    assert_eq!(s.failed, 1);
    let r = &s.jobs[0];
    assert_eq!(r.receipts.len(), 1);
    assert_eq!(r.receipts[0].sink, "good");
    assert!(r.reason.as_deref().unwrap().contains("sink `bad`"));
    assert!(r.reason.as_deref().unwrap().contains("written to: good"));
    assert!(r.retryable);
    let urgent = RefOptions { urgent: true, collect: true, ..Default::default() };
    let again = e
        .sync_refs(
            vec![JobRef { name: "job-1".into(), arn: r.arn.clone(), ..Default::default() }],
            &urgent,
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    assert_eq!(again.synced, 1, "{again:#?}");
    assert_eq!(good.calls.lock().unwrap()["job-1"], 1, "the sink that held the record was not called again");
}

#[tokio::test]
async fn an_interrupted_backoff_records_nothing() {
    let sink = Arc::new(MemSink { flaky: 1000, ..Default::default() });
    let settings =
        PipelineSettings { concurrency: 3, max_attempts: 100, initial_backoff_ms: 10_000, max_backoff_ms: 10_000, ..Default::default() };
    let src = Arc::new(MemSource::new((0..5).map(|i| job(i, "Completed")).collect()));
    let e = engine(src, vec![("mem", sink.clone())], settings);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let calls = sink.clone();
    // Cancel once each of the 3 slots has failed a write and is in its 10 s backoff.
    tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.calls.lock().unwrap().values().sum::<usize>() < 3 {
            assert!(std::time::Instant::now() < deadline, "3 first writes within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        c.cancel();
    });
    let s = tokio::time::timeout(Duration::from_secs(5), e.pass(&PassRequest::poll().collecting(), &cancel, &NoObserver))
        .await
        .expect("cancellation returns promptly");
    assert!(s.cancelled);
    assert_eq!(s.failed, 0, "an interruption is not a failure: {:#?}", s.jobs);
    assert!(s.interrupted >= 3, "the three jobs in their backoff at least: {:#?}", s.jobs);
    assert!(s.jobs.iter().all(|j| !j.recorded));
    assert_eq!(e.state().counts().await.unwrap().total(), 0, "nothing recorded against any job");
    assert_eq!(e.state().cursor(PassRequest::POLL).await.unwrap(), None, "the cursor did not move");
}

#[tokio::test]
async fn dry_run_writes_nothing_not_even_the_ledger() {
    let sink = Arc::new(MemSink::default());
    let settings = PipelineSettings { dry_run: true, ..fast() };
    let e = engine(Arc::new(MemSource::new(vec![job(1, "Completed")])), vec![("mem", sink.clone())], settings);
    let s = poll(&e).await;
    assert_eq!(s.synced, 1);
    assert!(sink.stored.lock().unwrap().is_empty());
    assert_eq!(e.state().counts().await.unwrap().total(), 0);
}

/// Issue 20 audit: a dry run, now an assembly, reports as it did: nothing recorded, no
/// receipts, "dry run: nothing written", no cursor, no ledger events; and what the scratch
/// ledger saved (a dry-run daemon's cursor) it reads back.
#[tokio::test]
async fn a_dry_run_reports_nothing_recorded_and_keeps_its_cursor_to_itself() {
    let sink = Arc::new(MemSink::default());
    let settings = PipelineSettings { dry_run: true, ..fast() };
    let e = engine(Arc::new(MemSource::new(vec![job(1, "Completed"), job(2, "Completed")])), vec![("mem", sink.clone())], settings);
    let events = Mutex::new(Vec::new());
    let obs = |ev: &Event<'_>| {
        if matches!(ev, Event::Recorded { .. } | Event::PageCommitted { .. }) {
            events.lock().unwrap().push(format!("{ev:?}").chars().take(40).collect::<String>());
        }
    };
    let s = e.pass(&PassRequest::poll().collecting(), &CancellationToken::new(), &obs).await;
    assert_eq!(s.synced, 2, "{s:#?}");
    for j in &s.jobs {
        assert!(!j.recorded && j.receipts.is_empty(), "{j:#?}");
        assert_eq!(j.reason.as_deref(), Some("dry run: nothing written"));
    }
    assert_eq!(s.cursor, None);
    assert!(events.lock().unwrap().is_empty(), "{:?}", events.lock().unwrap());
    let c = Cursor { token: Some("t".into()), ..Default::default() };
    e.state().save_cursor("k", &c).await.unwrap();
    assert_eq!(e.state().cursor("k").await.unwrap(), Some(c));
    assert!(sink.stored.lock().unwrap().is_empty());
}

#[test]
fn builder_rejects_incomplete_engines() {
    let e = Engine::builder().mapper(TagsMapper::new(TagKeys::default())).build().err().unwrap();
    assert_eq!(e, engine::BuildError::NoSink);
    let bad = PipelineSettings { concurrency: 0, ..Default::default() };
    let e = Engine::builder().settings(bad).sink("a", MemSink::default()).build().err().unwrap();
    assert!(matches!(e, engine::BuildError::Settings(..)));
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let s = PipelineSettings { initial_backoff_ms: 100, max_backoff_ms: 1000, ..Default::default() };
    for attempt in 1..10 {
        let d = s.backoff(attempt).as_millis() as u64;
        let full = (100u64 << (attempt - 1)).min(1000);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d} not in [{}, {full}]", full / 2);
    }
    assert_eq!(s.retry_delay(100).num_seconds(), 3600, "capped, no overflow");
}

#[test]
fn registry_lists_core_plugins_and_unknown_types() {
    assert_eq!(registry::names(PluginKind::Validator), ["required_tags", "status"]);
    assert_eq!(registry::names(PluginKind::State), ["memory"]);
    let e = registry::find(PluginKind::Sink, "nope").unwrap_err();
    assert_eq!(e.to_string(), "unknown sink type `nope`; available: (none registered: is the plugin crate linked?)");
    if let Err(errors) = registry::check_unique() {
        panic!("duplicate plugin registrations: {}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    }
    for d in registry::all() {
        config::check_example(d).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn a_deadline_records_nothing() {
    let sink = Arc::new(MemSink { flaky: 1000, ..Default::default() });
    let settings = PipelineSettings { max_attempts: 10, initial_backoff_ms: 1000, max_backoff_ms: 1000, ..fast() };
    let e = engine(Arc::new(MemSource::new(vec![job(1, "Completed")])), vec![("mem", sink.clone())], settings);
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    let r = e
        .sync_refs(
            vec![JobRef::by_name("job-1")],
            &RefOptions { deadline: Some(deadline), collect: true, ..Default::default() },
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    assert_eq!(r.jobs[0].outcome, Outcome::Interrupted, "{r:#?}");
    assert_eq!(e.state().counts().await.unwrap().total(), 0, "out of time is not a verdict");
}

/// A persistent-looking store that, while `forget` is set, loses every outcome (as a crash
/// between the sink write and the commit would) but keeps the intents recorded before first
/// writes.
struct Forgetful {
    inner: MemoryState,
    forget: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StateStore for Forgetful {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn cursor(&self, k: &str) -> Result<Option<Cursor>, StateError> {
        self.inner.cursor(k).await
    }
    async fn save_cursor(&self, k: &str, c: &Cursor) -> Result<(), StateError> {
        self.inner.save_cursor(k, c).await
    }
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        self.inner.cursors().await
    }
    async fn jobs(&self, a: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        self.inner.jobs(a).await
    }
    async fn acquire(&self, a: &str, o: &str, t: Duration) -> Result<Acquired, StateError> {
        self.inner.acquire(a, o, t).await
    }
    async fn renew(&self, l: &Lease, t: Duration) -> Result<bool, StateError> {
        self.inner.renew(l, t).await
    }
    async fn commit(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        let intent = e.deliveries.values().any(|d| matches!(d.state, DeliveryState::Pending(_)));
        if self.forget.load(Ordering::SeqCst) && !intent {
            return Ok(true);
        }
        self.inner.commit(l, e).await
    }
    async fn record(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.inner.record(l, e).await
    }
    async fn release(&self, l: &Lease) -> Result<(), StateError> {
        self.inner.release(l).await
    }
    async fn due(&self, n: Timestamp, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.inner.due(n, a, l).await
    }
    async fn failed(&self, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.inner.failed(a, l).await
    }
    async fn unpark(&self, j: &[String]) -> Result<Vec<String>, StateError> {
        self.inner.unpark(j).await
    }
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        self.inner.counts().await
    }
}

#[tokio::test]
async fn a_record_written_just_before_a_crash_is_known_to_the_ledger() {
    let sink = Arc::new(MemSink::default());
    let mut src = MemSource::new(vec![job(1, "Completed")]);
    src.with_tags = true;
    let src = Arc::new(src);
    let state = Arc::new(Forgetful { inner: MemoryState::new(), forget: std::sync::atomic::AtomicBool::new(true) });
    let e = engine_with(src.clone(), vec![("mem", sink.clone())], fast(), state.clone());
    let s = poll(&e).await;
    assert_eq!(s.synced, 1);
    assert_eq!(sink.stored.lock().unwrap().len(), 1, "written; its outcome is lost");
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).expect("the intent is in the ledger");
    assert!(matches!(st.deliveries["mem"].state, DeliveryState::Pending(_)), "{:?}", st.deliveries["mem"]);
    // The process comes back; meanwhile the job lost its opt-in tag: the record is retracted.
    state.forget.store(false, Ordering::SeqCst);
    src.edit(|j| j[0].tags.0.retain(|t| t.key != "MODEL_DB_SYNC"));
    let s = poll(&e).await;
    assert_eq!(s.skipped, 1, "{:#?}", s.jobs);
    assert_eq!(sink.retracts.load(Ordering::SeqCst), 1);
    assert!(sink.stored.lock().unwrap().is_empty(), "nothing else is in the sink");
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    assert!(st.deliveries.is_empty());
}

#[tokio::test]
async fn a_sink_that_keeps_records_keeps_its_receipt_for_when_the_job_comes_back() {
    let sink = Arc::new(MemSink { keeps: true, ..Default::default() });
    let mut src = MemSource::new(vec![job(1, "Completed")]);
    src.with_tags = true;
    let src = Arc::new(src);
    let state: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let e = engine_with(src.clone(), vec![("v1", sink.clone())], fast(), state.clone());
    assert_eq!(poll(&e).await.synced, 1);
    src.edit(|j| j[0].tags.0.retain(|t| t.key != "MODEL_DB_SYNC"));
    assert_eq!(poll(&e).await.skipped, 1);
    // Kept: not retracted again on every pass.
    let s = poll(&e).await;
    assert_eq!((s.skipped, s.already_done), (0, 1), "{:#?}", s.jobs);
    assert_eq!(sink.retracts.load(Ordering::SeqCst), 1);
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!(st.deliveries["v1"].state, DeliveryState::Kept(None));
    // Back, in another project: the sink is given its earlier receipt to find its record by.
    src.edit(|j| {
        j[0].tags = tagged();
        j[0].tags.0.retain(|t| t.key != "MODEL_DB_PROJECT_NAME");
        j[0].tags.0.push(sagesync_core::Tag { key: "MODEL_DB_PROJECT_NAME".into(), value: "elsewhere".into() });
    });
    assert_eq!(poll(&e).await.synced, 1);
    let previous = sink.previous.lock().unwrap()["job-1"].clone();
    assert_eq!(previous.map(|p| p.ids["run"].clone()), Some(job(1, "").arn));
}

/// A memory store whose commits can be refused (as a store refuses an entry it will never
/// take) and whose renewals can be answered "lost".
struct Hooked {
    inner: MemoryState,
    /// Commits whose entry holds a receipt id this long or longer are refused, non-retryably.
    refuse_receipts_over: Option<usize>,
    /// Every renewal answers "lost" (another writer took the job).
    lose_on_renew: bool,
    /// Every intent (`record`) is refused, non-retryably.
    refuse_records: bool,
    /// Every `acquire` fails, retryably or not.
    acquire_fails: Option<bool>,
    commits: AtomicUsize,
}

impl Hooked {
    fn new() -> Hooked {
        Hooked {
            inner: MemoryState::new(),
            refuse_receipts_over: None,
            lose_on_renew: false,
            refuse_records: false,
            acquire_fails: None,
            commits: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl StateStore for Hooked {
    fn location(&self) -> String {
        "hooked memory".into()
    }
    fn persistent(&self) -> bool {
        true
    }
    async fn cursor(&self, k: &str) -> Result<Option<Cursor>, StateError> {
        self.inner.cursor(k).await
    }
    async fn save_cursor(&self, k: &str, c: &Cursor) -> Result<(), StateError> {
        self.inner.save_cursor(k, c).await
    }
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        self.inner.cursors().await
    }
    async fn jobs(&self, a: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        self.inner.jobs(a).await
    }
    async fn acquire(&self, a: &str, o: &str, t: Duration) -> Result<Acquired, StateError> {
        if let Some(retryable) = self.acquire_fails {
            return Err(StateError::Backend {
                location: "hooked memory".into(),
                message: if retryable { "throttled".into() } else { "ValidationException: Size of hashkey has exceeded".into() },
                retryable,
            });
        }
        self.inner.acquire(a, o, t).await
    }
    async fn renew(&self, l: &Lease, t: Duration) -> Result<bool, StateError> {
        if self.lose_on_renew {
            return Ok(false);
        }
        self.inner.renew(l, t).await
    }
    async fn commit(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if let Some(max) = self.refuse_receipts_over {
            let len = e.deliveries.values().flat_map(|d| d.receipt.ids.values()).map(|v| v.len()).max().unwrap_or(0);
            if len >= max {
                return Err(StateError::Backend {
                    location: "hooked memory".into(),
                    message: format!("ValidationException: Item size has exceeded the maximum allowed size ({len})"),
                    retryable: false,
                });
            }
        }
        self.inner.commit(l, e).await
    }
    async fn record(&self, l: &Lease, e: &JobState) -> Result<bool, StateError> {
        if self.refuse_records {
            return Err(StateError::Backend {
                location: "hooked memory".into(),
                message: "ValidationException: Item size to update has exceeded the maximum allowed size".into(),
                retryable: false,
            });
        }
        self.inner.record(l, e).await
    }
    async fn release(&self, l: &Lease) -> Result<(), StateError> {
        self.inner.release(l).await
    }
    async fn due(&self, n: Timestamp, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.inner.due(n, a, l).await
    }
    async fn failed(&self, a: Option<&str>, l: usize) -> Result<Vec<JobState>, StateError> {
        self.inner.failed(a, l).await
    }
    async fn unpark(&self, j: &[String]) -> Result<Vec<String>, StateError> {
        self.inner.unpark(j).await
    }
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        self.inner.counts().await
    }
}

/// Audit of issue 19, finding 5: an intent the store refuses for good is recorded as a failure
/// of the state (small, never parking), not reported as an interruption on every pass, and
/// nothing reaches the sink before the ledger knows of the write.
#[tokio::test]
async fn an_intent_the_store_refuses_is_recorded_as_a_failure_not_an_interruption() {
    let state = Arc::new(Hooked { refuse_records: true, ..Hooked::new() });
    let sink = Arc::new(MemSink::default());
    let e = engine_with(
        Arc::new(MemSource::new(vec![job(1, "Completed")])),
        vec![("mem", sink.clone())],
        PipelineSettings { max_job_attempts: 1, ..fast() },
        state.clone(),
    );
    let s = poll(&e).await;
    assert_eq!((s.failed, s.interrupted), (1, 0), "{s:#?}");
    let j = &s.jobs[0];
    assert_eq!(j.stage, Some(Stage::State), "{j:#?}");
    assert!(j.recorded && !j.parked && !j.retryable, "{j:#?}");
    assert!(sink.stored.lock().unwrap().is_empty(), "no write before the intent is in the ledger");
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!((st.outcome, st.attempts, st.permanent_failures, st.parked), (Outcome::Failed, 1, 0, false));
    assert!(st.reason.as_deref().unwrap().contains("refused"), "{st:?}");
    assert_eq!(state.counts().await.unwrap().failed, 1, "counted as a failure, visible in status");
}

/// Audit of issue 19, finding 4: a lease the store refuses for good (a key it will never take)
/// is reported as not retryable; a throttled store as retryable.
#[tokio::test]
async fn a_lease_refused_for_good_is_not_reported_as_retryable() {
    for retryable in [false, true] {
        let state = Arc::new(Hooked { acquire_fails: Some(retryable), ..Hooked::new() });
        let e =
            engine_with(Arc::new(MemSource::new(vec![job(1, "Completed")])), vec![("mem", Arc::new(MemSink::default()))], fast(), state);
        let s = poll(&e).await;
        assert_eq!(s.failed, 1, "{s:#?}");
        assert_eq!(s.jobs[0].retryable, retryable, "{:#?}", s.jobs[0]);
        assert_eq!(s.jobs[0].stage, Some(Stage::State));
        assert!(!s.jobs[0].recorded);
    }
}

/// Audit of issue 19, finding 2: a source that hands back a cursor it gave before (a listing
/// going round in circles) ends the pass with a listing error instead of looping for ever.
#[tokio::test]
async fn a_listing_that_makes_no_progress_stops_the_pass() {
    struct Circles(AtomicUsize);
    #[async_trait]
    impl Source for Circles {
        async fn list(&self, _: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            // A, B, A, B...
            let next = Cursor { token: Some(if cursor.token.as_deref() == Some("a") { "b" } else { "a" }.into()), ..Default::default() };
            Ok(Page { jobs: vec![JobRef { name: format!("job-{n}"), ..Default::default() }], problems: vec![], next, done: false })
        }
        async fn fetch(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
            Err(SyncError::NotFound(r.name.clone()))
        }
    }
    let src = Arc::new(Circles(AtomicUsize::new(0)));
    let e = Engine::builder()
        .source_arc(src.clone())
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("mem", MemSink::default())
        .settings(fast())
        .build()
        .unwrap();
    let s = tokio::time::timeout(Duration::from_secs(20), poll(&e)).await.expect("the pass ends");
    let err = s.listing_error.expect("a listing error");
    assert!(err.message.contains("no progress"), "{}", err.message);
    assert!(src.0.load(Ordering::SeqCst) <= 4, "stopped at the first repeated cursor");
}

#[test]
fn sink_ids_and_counts_are_bounded() {
    let e = Engine::builder()
        .mapper(TagsMapper::new(TagKeys::default()))
        .source(MemSource::new(vec![]))
        .sink("odd\"id", MemSink::default())
        .build()
        .err()
        .unwrap();
    assert!(matches!(e, engine::BuildError::InvalidSinkId(_)), "{e}");
    let mut b = Engine::builder().mapper(TagsMapper::new(TagKeys::default())).source(MemSource::new(vec![]));
    for i in 0..=sagesync_core::config::MAX_SINKS {
        b = b.sink(format!("s{i}"), MemSink::default());
    }
    assert!(matches!(b.build().err().unwrap(), engine::BuildError::TooManySinks(17)));
}

/// A sink whose receipts carry one id of `len` characters.
struct BigReceipts {
    len: usize,
}

#[async_trait]
impl Sink for BigReceipts {
    async fn upsert(&self, _: &RunRecord, _: &WriteContext) -> Result<SinkReceipt, SyncError> {
        Ok(SinkReceipt::new(WriteKind::Created).id("notes", "x".repeat(self.len)).id("run_id", "r-1"))
    }
}

#[tokio::test]
async fn what_the_ledger_keeps_per_job_is_bounded() {
    // 500 000 characters in one receipt id, and 50 ids: the entry keeps at most 32 ids of at
    // most 1024 characters each.
    struct ManyIds;
    #[async_trait]
    impl Sink for ManyIds {
        async fn upsert(&self, _: &RunRecord, _: &WriteContext) -> Result<SinkReceipt, SyncError> {
            let mut rc = SinkReceipt::new(WriteKind::Created);
            for i in 0..50 {
                rc = rc.id(&format!("id{i:02}"), "y".repeat(10_000));
            }
            Ok(rc)
        }
    }
    let state = Arc::new(Hooked::new());
    let e = Engine::builder()
        .source(MemSource::new(vec![job(1, "Completed")]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("big", BigReceipts { len: 500_000 })
        .sink("many", ManyIds)
        .settings(fast())
        .state(state.clone())
        .build()
        .unwrap();
    assert_eq!(poll(&e).await.synced, 1);
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    let size = serde_json::to_vec(&st).unwrap().len();
    assert!(size < 80_000, "the entry is {size} bytes");
    assert!(st.deliveries["big"].receipt.ids["notes"].chars().count() <= sagesync_core::state::limits::ID_CHARS);
    assert!(st.deliveries["big"].receipt.ids["notes"].contains("more characters"));
    assert_eq!(st.deliveries["many"].receipt.ids.len(), sagesync_core::state::limits::RECEIPT_IDS);
    assert_eq!(st.deliveries["many"].receipt.ids["omitted_ids"], "19");
}

#[tokio::test]
async fn a_commit_the_store_refuses_releases_the_lease_and_is_recorded_as_what_it_is() {
    // The store refuses entries with a receipt id of 100 characters or more; the engine bounds
    // ids at 1024, so this store refuses this job's entry every time.
    let state = Arc::new(Hooked { refuse_receipts_over: Some(100), ..Hooked::new() });
    let e = Engine::builder()
        .source(MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("big", BigReceipts { len: 5_000 })
        .settings(PipelineSettings { max_job_attempts: 1, ..fast() })
        .state(state.clone())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let s = poll(&e).await;
    assert!(started.elapsed() < Duration::from_secs(5), "no wait on its own lease: {:?}", started.elapsed());
    assert_eq!((s.failed, s.synced, s.total()), (2, 0, 2), "each job counted once: {s:#?}");
    for j in &s.jobs {
        assert_eq!(j.stage, Some(Stage::State), "{j:#?}");
        assert!(j.reason.as_deref().unwrap_or("").contains("refused the job's entry"), "{j:#?}");
        assert!(j.recorded, "the refusal itself is recorded: {j:#?}");
        assert!(!j.parked, "a refused commit is the store's state, not the job's content: {j:#?}");
    }
    // The lease is free at once, for anyone.
    let other = state.acquire(&job(1, "").arn, "someone-else", Duration::from_secs(10)).await.unwrap();
    assert!(matches!(other, Acquired::Granted { .. }), "{other:?}");
    let st = state.jobs(&[job(1, "").arn]).await.unwrap().remove(0).unwrap();
    assert_eq!(st.outcome, Outcome::Failed);
    assert_eq!(st.permanent_failures, 0, "never counted toward parking");
    assert!(st.reason.as_deref().unwrap().contains("state store refused"), "{st:?}");
    assert!(st.deliveries["big"].receipt.ids.is_empty(), "the refused receipt is not kept");
    assert_eq!(st.deliveries["big"].record_digest(), st.record_digest.as_deref(), "the sink holds the record");
}

/// A sink that makes two requests per write, pausing between them, and records which it sent.
struct TwoRequests {
    pause: Duration,
    sent: Mutex<Vec<&'static str>>,
}

#[async_trait]
impl Sink for TwoRequests {
    async fn upsert(&self, _: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        cx.check()?;
        self.sent.lock().unwrap().push("first");
        tokio::time::sleep(self.pause).await;
        cx.check()?;
        self.sent.lock().unwrap().push("second");
        Ok(SinkReceipt::new(WriteKind::Created))
    }
}

#[tokio::test]
async fn after_a_lease_is_lost_no_request_of_the_job_reaches_a_store() {
    let state = Arc::new(Hooked { lose_on_renew: true, ..Hooked::new() });
    let sink = Arc::new(TwoRequests { pause: Duration::from_millis(1500), sent: Mutex::new(Vec::new()) });
    let e = Engine::builder()
        .source(MemSource::new(vec![job(1, "Completed")]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink_arc("two", sink.clone())
        .settings(PipelineSettings { lease_ttl_secs: 1, ..fast() })
        .state(state.clone())
        .build()
        .unwrap();
    let events = Mutex::new(Vec::new());
    let obs = |e: &Event<'_>| {
        if let Event::Recorded { after, .. } = e {
            events.lock().unwrap().push(after.outcome);
        }
    };
    let r = e
        .sync_refs(vec![JobRef::by_name("job-1")], &RefOptions { collect: true, ..Default::default() }, &CancellationToken::new(), &obs)
        .await;
    assert_eq!(*sink.sent.lock().unwrap(), ["first"], "the second request never went out");
    assert_eq!(r.jobs[0].outcome, Outcome::Interrupted, "{r:#?}");
    assert!(r.jobs[0].reason.as_deref().unwrap().contains("lease was lost"), "{r:#?}");
    assert_eq!(state.commits.load(Ordering::SeqCst), 0, "no outcome was committed");
    assert!(events.lock().unwrap().iter().all(|o| *o == Outcome::Failed), "at most the intent: {:?}", events.lock().unwrap());
}

#[tokio::test]
async fn a_duplicate_reference_is_done_and_a_parked_job_whose_content_did_not_change_stays_parked() {
    let sink = Arc::new(MemSink { broken: vec!["job-2".into()], ..Default::default() });
    let src = Arc::new(MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]));
    let state: Arc<dyn StateStore> = Arc::new(Hooked::new());
    let e = engine_with(src.clone(), vec![("mem", sink.clone())], PipelineSettings { max_job_attempts: 1, ..fast() }, state.clone());
    // An event carries a time of its own (older than the job's, here).
    let event = |i: usize| JobRef {
        name: format!("job-{i}"),
        arn: Some(job(i, "").arn),
        last_modified: Some(chrono::Utc.timestamp_opt(1_600_000_000, 0).unwrap()),
        tags: Some(tagged()),
        ..Default::default()
    };
    let urgent = RefOptions { urgent: true, collect: true, ..Default::default() };
    let first = e.sync_refs(vec![event(1), event(2)], &urgent, &CancellationToken::new(), &NoObserver).await;
    assert_eq!((first.synced, first.failed), (1, 1), "{first:#?}");
    assert!(first.jobs.iter().any(|j| j.parked), "job-2 parked after one failure of its content");
    let fetches = src.fetches.load(Ordering::SeqCst);
    let calls = sink.calls.lock().unwrap().clone();
    // The same events again: nothing read, nothing written.
    let again = e.sync_refs(vec![event(1), event(2)], &urgent, &CancellationToken::new(), &NoObserver).await;
    assert_eq!((again.already_done, again.total()), (2, 0), "{again:#?}");
    assert_eq!(src.fetches.load(Ordering::SeqCst), fetches, "a duplicate costs no fetch");
    // Another event time, same content: read once, but the parked job's sink is not tried again.
    let mut other = event(2);
    other.last_modified = Some(chrono::Utc.timestamp_opt(1_650_000_000, 0).unwrap());
    let r = e.sync_refs(vec![other], &urgent, &CancellationToken::new(), &NoObserver).await;
    assert_eq!(r.total(), 0, "{r:#?}");
    assert_eq!(*sink.calls.lock().unwrap(), calls, "no sink saw the parked job again");
    let st = state.jobs(&[job(2, "").arn]).await.unwrap().remove(0).unwrap();
    assert!(st.parked);
    // Its content changes: worked on again.
    src.edit(|j| j[1].last_modified_time = Some(chrono::Utc::now()));
    let r = e.sync_refs(vec![JobRef::by_name("job-2")], &urgent, &CancellationToken::new(), &NoObserver).await;
    assert_eq!(r.failed, 1, "{r:#?}");
}

#[tokio::test]
async fn a_redrive_works_on_failed_jobs_whose_time_has_come() {
    let sink = Arc::new(MemSink::default());
    sink.down.store(true, Ordering::SeqCst);
    let src = Arc::new(MemSource::new(vec![job(1, "Completed")]));
    let state: Arc<dyn StateStore> = Arc::new(Hooked::new());
    let e = engine_with(src, vec![("mem", sink.clone())], PipelineSettings { max_attempts: 1, ..fast() }, state.clone());
    let r = e
        .sync_refs(
            vec![JobRef::by_name("job-1")],
            &RefOptions { urgent: true, collect: true, ..Default::default() },
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    assert_eq!(r.failed, 1);
    sink.down.store(false, Ordering::SeqCst);
    // Not due yet: nothing.
    let early = e.redrive(&RefOptions::default(), &CancellationToken::new(), &NoObserver).await;
    assert_eq!(early.total(), 0, "{early:#?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = e.redrive(&RefOptions { collect: true, ..Default::default() }, &CancellationToken::new(), &NoObserver).await;
    assert_eq!((r.synced, r.key.as_str()), (1, PassRequest::REDRIVE), "{r:#?}");
    assert_eq!(state.counts().await.unwrap().synced, 1);
}

#[tokio::test]
async fn an_interrupted_first_write_is_counted_apart_from_failures() {
    let sink = Arc::new(TwoRequests { pause: Duration::from_millis(1500), sent: Mutex::new(Vec::new()) });
    let e = Engine::builder()
        .source(MemSource::new(vec![job(1, "Completed")]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink_arc("two", sink)
        .settings(PipelineSettings { lease_ttl_secs: 1, ..fast() })
        .state(Arc::new(Hooked { lose_on_renew: true, ..Hooked::new() }))
        .build()
        .unwrap();
    let _ = e.sync_refs(vec![JobRef::by_name("job-1")], &RefOptions::default(), &CancellationToken::new(), &NoObserver).await;
    let c = e.state().counts().await.unwrap();
    assert_eq!((c.failed, c.interrupted), (0, 1), "{c:?}");
}

/// A sink that stalls the write of one run until released, and writes the others at once.
struct Stalls {
    run: String,
    release: Arc<tokio::sync::Notify>,
    inner: MemSink,
}

#[async_trait]
impl Sink for Stalls {
    async fn upsert(&self, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        if r.run.name == self.run {
            self.release.notified().await;
        }
        self.inner.upsert(r, cx).await
    }
}

/// Issue 20: the jobs of a page are attempted as slots free up and recorded as each ends: one
/// job whose sink write stalls holds its own slot, never the others' (ordered completion let
/// one slow job hold every finished slot behind it). The page's cursor still waits for it.
#[tokio::test]
async fn a_stalled_write_does_not_delay_recording_the_rest_of_its_page() {
    let release = Arc::new(tokio::sync::Notify::new());
    let sink = Arc::new(Stalls { run: "job-0".into(), release: release.clone(), inner: MemSink::default() });
    let jobs: Vec<TrainingJob> = (0..10).map(|i| job(i, "Completed")).collect();
    let arns: Vec<String> = jobs.iter().map(|j| j.arn.clone()).collect();
    let state = Arc::new(MemoryState::new());
    let e = Arc::new(
        Engine::builder()
            .source(MemSource::new(jobs))
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink_arc("stalls", sink.clone())
            .settings(PipelineSettings { concurrency: 2, ..fast() })
            .state(state.clone())
            .build()
            .unwrap(),
    );
    let pass = tokio::spawn({
        let e = e.clone();
        async move { e.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await }
    });
    // While job-0's write hangs, the nine others are written and recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let recorded = state.jobs(&arns).await.unwrap().iter().flatten().filter(|s| s.outcome == Outcome::Synced).count();
        if recorded == 9 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {recorded} of the other 9 jobs recorded while one write stalls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pass.is_finished());
    assert_eq!(state.cursor(PassRequest::POLL).await.unwrap(), None, "the page's cursor waits for its last job");
    release.notify_one();
    let rep = pass.await.unwrap();
    assert_eq!(rep.synced, 10, "{rep:#?}");
}

/// Issue 20: `sync_refs` answers every reference it was given, in order, the same job given
/// twice included.
#[tokio::test]
async fn sync_refs_answers_each_reference_in_order() {
    let mut src = MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]);
    src.missing = vec!["ghost".into()];
    let e = engine(Arc::new(src), vec![("mem", Arc::new(MemSink::default()))], fast());
    let by_arn = |i: usize| JobRef { name: format!("job-{i}"), arn: Some(job(i, "").arn), ..Default::default() };
    let first = e.sync_refs(vec![by_arn(1)], &RefOptions::default(), &CancellationToken::new(), &NoObserver).await;
    assert!(matches!(&first.refs[..], [RefResult::Worked(j)] if j.outcome == Outcome::Synced), "{:?}", first.refs);
    let refs = vec![by_arn(1), JobRef::by_name("ghost"), by_arn(2), by_arn(2)];
    let r = e.sync_refs(refs, &RefOptions { urgent: true, ..Default::default() }, &CancellationToken::new(), &NoObserver).await;
    assert_eq!(r.refs.len(), 4, "{:?}", r.refs);
    assert_eq!(r.refs[0], RefResult::AlreadyDone, "already synced");
    assert!(matches!(&r.refs[1], RefResult::Worked(j) if j.outcome == Outcome::Failed && j.job == "ghost"), "{:?}", r.refs[1]);
    let outcomes: Vec<&RefResult> = r.refs[2..].iter().collect();
    assert!(
        outcomes.iter().any(|x| matches!(x, RefResult::Worked(j) if j.outcome == Outcome::Synced))
            && outcomes.contains(&&RefResult::AlreadyDone),
        "one job given twice: written once, then found done: {outcomes:?}"
    );
}

/// A sink with a fingerprint of its settings.
struct Printed(String, MemSink);

#[async_trait]
impl Sink for Printed {
    async fn upsert(&self, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        self.1.upsert(r, cx).await
    }
    fn fingerprint(&self) -> String {
        self.0.clone()
    }
}

/// Issue 20: an engine assembled in code digests its sinks by their fingerprints, as a config
/// digests them by their tables: a sink whose settings changed gets every job again; the same
/// settings get nothing.
#[tokio::test]
async fn a_builder_made_engine_redelivers_when_a_sinks_fingerprint_changes() {
    let state: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let src = Arc::new(MemSource::new(vec![job(1, "Completed"), job(2, "Completed")]));
    let build = |sink: Arc<Printed>| {
        Engine::builder()
            .source_arc(src.clone())
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink_arc("out", sink)
            .settings(fast())
            .state(state.clone())
            .build()
            .unwrap()
    };
    let a = Arc::new(Printed("dir=/a".into(), MemSink::default()));
    assert_eq!(poll(&build(a.clone())).await.synced, 2);
    let same = Arc::new(Printed("dir=/a".into(), MemSink::default()));
    let e = build(same.clone());
    let again = e.pass(&PassRequest::reconcile(Duration::from_secs(86_400 * 365 * 10)), &CancellationToken::new(), &NoObserver).await;
    assert_eq!((again.synced, again.already_done), (0, 2), "same settings: nothing to do");
    let b = Arc::new(Printed("dir=/b".into(), MemSink::default()));
    let e = build(b.clone());
    let moved = e.pass(&PassRequest::reconcile(Duration::from_secs(86_400 * 365 * 10)), &CancellationToken::new(), &NoObserver).await;
    assert_eq!(moved.synced, 2, "the sink's settings changed: every job delivered again");
    assert_eq!(b.1.stored.lock().unwrap().len(), 2);
}
