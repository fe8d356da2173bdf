//! Engine tests: retries, concurrency bound, isolation of bad jobs, per-job serialisation,
//! cursor semantics and cancellation. The source and sinks here are in-memory plugins written
//! for the test (the engine's own contract, not a stand-in for a real store).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone;
use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::*;

fn job(i: usize, status: &str) -> TrainingJob {
    let mut j = TrainingJob::new(format!("job-{i}"), format!("arn:aws:sagemaker:us-east-1:1:training-job/job-{i}"), status);
    j.last_modified_time = Some(chrono::Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap());
    j.tags = [
        ("MODEL_DB_SYNC", "1"),
        ("MODEL_DB_PROJECT_NAME", "p"),
        ("MODEL_DB_PROJECT_USER", "u"),
        ("MODEL_DB_PROJECT_DESC", "d"),
        ("MODEL_DB_MODEL_NAME", "m"),
        ("MODEL_DB_MODEL_TYPE", "t"),
    ]
    .into_iter()
    .collect();
    j
}

/// Lists refs by name only; `fetch` fails for names in `missing`.
struct MemSource {
    jobs: Vec<TrainingJob>,
    missing: Vec<String>,
    fetches: AtomicUsize,
}

#[async_trait]
impl Source for MemSource {
    async fn list(&self, cursor: &Cursor) -> Result<Listing, SyncError> {
        let mut next = cursor.clone();
        let jobs = self
            .jobs
            .iter()
            .filter(|j| !cursor.covers(j.last_modified_time, &j.arn))
            .map(|j| {
                next.advance(j.last_modified_time, &j.arn);
                JobRef { name: j.name.clone(), arn: Some(j.arn.clone()), last_modified: j.last_modified_time, origin: None, job: None }
            })
            .collect();
        Ok(Listing { jobs, problems: vec![], next, more: false })
    }
    async fn fetch(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if self.missing.contains(&r.name) {
            return Err(SyncError::NotFound(r.name.clone()));
        }
        self.jobs.iter().find(|j| j.name == r.name).cloned().ok_or_else(|| SyncError::NotFound(r.name.clone()))
    }
    fn api_calls(&self) -> BTreeMap<String, u64> {
        [("Fetch".to_string(), self.fetches.load(Ordering::SeqCst) as u64)].into()
    }
}

/// Records upserts; fails transiently `flaky` times per run name, permanently for `broken`.
#[derive(Default)]
struct MemSink {
    stored: Mutex<BTreeMap<String, RunRecord>>,
    calls: Mutex<BTreeMap<String, usize>>,
    flaky: usize,
    broken: Vec<String>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay_ms: u64,
}

#[async_trait]
impl Sink for MemSink {
    async fn upsert(&self, r: &RunRecord, _cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
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
        Ok(SinkReceipt::new(kind).id("run", &r.run.external_id))
    }
}

fn fast() -> PipelineSettings {
    PipelineSettings { concurrency: 3, max_attempts: 4, initial_backoff_ms: 1, max_backoff_ms: 5, dry_run: false }
}

fn pipeline(source: MemSource, sinks: Vec<(&str, Arc<MemSink>)>, settings: PipelineSettings) -> Pipeline {
    let mut b = Pipeline::builder()
        .source(source)
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .settings(settings);
    for (id, s) in sinks {
        b = b.sink_arc(id, s);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn retries_transient_errors_and_isolates_bad_jobs() {
    let mut jobs: Vec<TrainingJob> = (0..10).map(|i| job(i, "Completed")).collect();
    jobs[3].status = "Failed".into();
    jobs[4].tags.0.retain(|t| t.key != "MODEL_DB_MODEL_TYPE");
    let sink = Arc::new(MemSink { flaky: 2, broken: vec!["job-7".into()], ..Default::default() });
    let p = pipeline(MemSource { jobs, missing: vec!["job-8".into()], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], fast());
    let s = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!((s.synced, s.skipped, s.rejected, s.failed), (6, 1, 1, 2), "{:#?}", s.jobs);
    let by_name: BTreeMap<_, _> = s.jobs.iter().map(|j| (j.job.clone(), j)).collect();
    assert_eq!(by_name["job-0"].attempts, 3, "two transient failures, then success");
    assert_eq!(by_name["job-7"].stage, Some(Stage::Sink));
    assert!(by_name["job-7"].reason.as_deref().unwrap().contains("store says no"));
    assert_eq!(sink.calls.lock().unwrap()["job-7"], 1, "permanent errors are not retried");
    assert_eq!(by_name["job-8"].stage, Some(Stage::Source));
    assert!(by_name["job-8"].reason.as_deref().unwrap().contains("job not found"));
    assert_eq!(s.api_calls["Fetch"], 10);
    assert_eq!(sink.stored.lock().unwrap().len(), 6);
    // Reports come back in listing order.
    let order: Vec<_> = s.jobs.iter().map(|j| j.job.clone()).collect();
    assert_eq!(order, (0..10).map(|i| format!("job-{i}")).collect::<Vec<_>>());
    // The cursor stops before the first failed job (job-7), so a later run retries it.
    assert_eq!(s.cursor.watermark, Some(chrono::Utc.timestamp_opt(1_700_000_006, 0).unwrap()));
}

#[tokio::test]
async fn exhausted_retries_fail_with_retryable_flag() {
    let sink = Arc::new(MemSink { flaky: 100, ..Default::default() });
    let p = pipeline(MemSource { jobs: vec![job(1, "Completed")], missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], fast());
    let s = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!(s.failed, 1);
    assert!(s.jobs[0].retryable);
    assert_eq!(s.jobs[0].attempts, 4);
    assert_eq!(sink.calls.lock().unwrap()["job-1"], 4);
    assert_eq!(s.cursor, Cursor::default(), "nothing committed");
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let sink = Arc::new(MemSink { delay_ms: 20, ..Default::default() });
    let jobs = (0..12).map(|i| job(i, "Completed")).collect();
    let p = pipeline(MemSource { jobs, missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], fast());
    let s = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!(s.synced, 12);
    let max = sink.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "at most `concurrency` jobs at once, saw {max}");
    assert!(max >= 2, "jobs do run concurrently, saw {max}");
}

#[tokio::test]
async fn second_run_from_cursor_lists_nothing_and_rerun_is_idempotent() {
    let sink = Arc::new(MemSink::default());
    let jobs: Vec<_> = (0..5).map(|i| job(i, "Completed")).collect();
    let p = pipeline(MemSource { jobs: jobs.clone(), missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], fast());
    let s1 = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!(s1.synced, 5);
    let s2 = p.run(s1.cursor.clone(), &CancellationToken::new()).await;
    assert_eq!(s2.total(), 0);
    let s3 = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert!(s3.jobs.iter().all(|j| j.receipts[0].write == WriteKind::Unchanged));
    assert_eq!(sink.stored.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn duplicate_refs_of_one_job_never_run_concurrently() {
    // The same job listed three times in one page (duplicate events) with a slow sink.
    let sink = Arc::new(MemSink { delay_ms: 15, ..Default::default() });
    let j = job(1, "Completed");
    let refs: Vec<JobRef> = (0..3).map(|_| JobRef::with_job(j.clone(), None)).collect();
    let p = pipeline(MemSource { jobs: vec![], missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], fast());
    let reports = p.process_many(refs, &CancellationToken::new(), &|_: &JobReport| {}).await;
    assert_eq!(reports.len(), 3);
    assert_eq!(sink.max_in_flight.load(Ordering::SeqCst), 1);
    let kinds: Vec<_> = reports.iter().map(|r| r.receipts[0].write).collect();
    assert_eq!(kinds, [WriteKind::Created, WriteKind::Unchanged, WriteKind::Unchanged]);
}

#[tokio::test]
async fn partial_sink_failure_says_what_was_written() {
    let good = Arc::new(MemSink::default());
    let bad = Arc::new(MemSink { broken: vec!["job-1".into()], ..Default::default() });
    let p = pipeline(MemSource { jobs: vec![job(1, "Completed")], missing: vec![], fetches: AtomicUsize::new(0) }, vec![("good", good), ("bad", bad)], fast());
    let s = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!(s.failed, 1);
    let r = &s.jobs[0];
    assert_eq!(r.receipts.len(), 1);
    assert_eq!(r.receipts[0].sink, "good");
    assert!(r.reason.as_deref().unwrap().contains("sink `bad`"));
    assert!(r.reason.as_deref().unwrap().contains("written to: good"));
}

#[tokio::test]
async fn cancellation_stops_new_work_and_interrupts_backoff() {
    let sink = Arc::new(MemSink { flaky: 1000, ..Default::default() });
    let settings = PipelineSettings { concurrency: 1, max_attempts: 100, initial_backoff_ms: 10_000, max_backoff_ms: 10_000, dry_run: false };
    let jobs = (0..5).map(|i| job(i, "Completed")).collect();
    let p = pipeline(MemSource { jobs, missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], settings);
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.cancel();
    });
    let s = tokio::time::timeout(Duration::from_secs(5), p.run(Cursor::default(), &cancel)).await.expect("cancellation returns promptly");
    assert!(s.cancelled);
    assert!(s.jobs.len() <= 1, "no new jobs start after cancellation: {:?}", s.jobs);
    assert_eq!(s.cursor, Cursor::default());
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let sink = Arc::new(MemSink::default());
    let mut settings = fast();
    settings.dry_run = true;
    let p = pipeline(MemSource { jobs: vec![job(1, "Completed")], missing: vec![], fetches: AtomicUsize::new(0) }, vec![("mem", sink.clone())], settings);
    let s = p.run(Cursor::default(), &CancellationToken::new()).await;
    assert_eq!(s.synced, 1);
    assert!(sink.stored.lock().unwrap().is_empty());
}

#[test]
fn builder_rejects_incomplete_pipelines() {
    let e = Pipeline::builder().mapper(TagsMapper::new(TagKeys::default())).build().err().unwrap();
    assert_eq!(e, sagesync_core::pipeline::BuildError::NoSink);
    let bad = PipelineSettings { concurrency: 0, ..Default::default() };
    let e = Pipeline::builder().settings(bad).sink("a", MemSink::default()).build().err().unwrap();
    assert!(matches!(e, sagesync_core::pipeline::BuildError::Settings(..)));
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let s = PipelineSettings { initial_backoff_ms: 100, max_backoff_ms: 1000, ..Default::default() };
    for attempt in 1..10 {
        let d = s.backoff(attempt).as_millis() as u64;
        let full = (100u64 << (attempt - 1)).min(1000);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d} not in [{}, {full}]", full / 2);
    }
}

#[test]
fn registry_reports_duplicates_and_unknown_types() {
    let names = registry::names(PluginKind::Validator);
    assert_eq!(names, ["required_tags", "status"]);
    let e = registry::find(PluginKind::Sink, "nope").unwrap_err();
    assert_eq!(e.to_string(), "unknown sink type `nope`; available: (none registered: is the plugin crate linked?)");
    let d = registry::find(PluginKind::Mapper, "tags").unwrap();
    let dup = vec![d, d];
    let errs = registry::check_unique_in(dup).unwrap_err();
    assert!(errs[0].to_string().contains("duplicate mapper type `tags` registered 2 times"));
    assert!(registry::check_unique().is_ok());
}
