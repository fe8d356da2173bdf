//! The one engine every runner uses: source → validators → mapper → every sink, with bounded
//! concurrency, retries with exponential backoff and jitter, per-job outcomes and a run summary.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Stage, SyncError};
use crate::model::{RunRecord, TrainingJob};
use crate::traits::{Cursor, JobRef, Mapper, SinkReceipt, Sink, Source, Validator, Verdict};

/// `[pipeline]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Jobs processed at once (1..=256).
    pub concurrency: usize,
    /// Attempts per retryable step (fetch, each sink write), including the first (1..=100).
    pub max_attempts: u32,
    /// First backoff delay, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Backoff cap, in milliseconds.
    pub max_backoff_ms: u64,
    /// Map and validate only; write nothing.
    pub dry_run: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings { concurrency: 4, max_attempts: 5, initial_backoff_ms: 200, max_backoff_ms: 10_000, dry_run: false }
    }
}

impl PipelineSettings {
    /// Checks ranges; returns `(key, message)` pairs.
    pub fn check(&self) -> Result<(), Vec<(&'static str, String)>> {
        let mut p = Vec::new();
        if !(1..=256).contains(&self.concurrency) {
            p.push(("concurrency", format!("must be between 1 and 256, got {}", self.concurrency)));
        }
        if !(1..=100).contains(&self.max_attempts) {
            p.push(("max_attempts", format!("must be between 1 and 100, got {}", self.max_attempts)));
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            p.push(("max_backoff_ms", "must not be smaller than initial_backoff_ms".to_string()));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }

    /// The delay before attempt `attempt + 1` (attempt counts from 1): exponential, capped, with
    /// jitter in [50 %, 100 %].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
        let capped = exp.min(self.max_backoff_ms);
        let jittered = capped / 2 + fastrand::u64(0..=capped / 2);
        Duration::from_millis(jittered)
    }
}

/// A job's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written to every sink (or would be, in a dry run).
    Synced,
    /// Not meant to be synced.
    Skipped,
    /// Meant to be synced but unusable.
    Rejected,
    /// Something failed after retries.
    Failed,
}

impl Outcome {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Skipped => "skipped",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job name (or the origin of a malformed entry).
    pub job: String,
    /// ARN, when known.
    pub arn: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was skipped, rejected or failed (or a note for synced jobs).
    pub reason: Option<String>,
    /// The stage that failed, for failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Receipts of the sinks that wrote (also for failed jobs: what was written before the
    /// failure).
    #[serde(default)]
    pub receipts: Vec<SinkReceipt>,
    /// Attempts made at the step that took the most.
    pub attempts: u32,
    /// The job's `LastModifiedTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<crate::model::Timestamp>,
    /// Whether the error was retryable (a later run may succeed).
    #[serde(default)]
    pub retryable: bool,
    /// The sinks whose write failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_sinks: Vec<String>,
}

impl JobReport {
    fn new(job: &JobRef) -> Self {
        JobReport {
            job: job.name.clone(),
            arn: job.arn.clone(),
            outcome: Outcome::Synced,
            reason: None,
            stage: None,
            receipts: Vec::new(),
            attempts: 0,
            last_modified: job.last_modified,
            retryable: false,
            failed_sinks: Vec::new(),
        }
    }
    fn fail(mut self, stage: Stage, err: &SyncError) -> Self {
        self.outcome = Outcome::Failed;
        self.stage = Some(stage);
        self.retryable = err.is_retryable();
        self.reason = Some(format!("{stage}: {}", err.chain()));
        self
    }
}

/// The result of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSummary {
    /// Jobs synced.
    pub synced: usize,
    /// Jobs skipped.
    pub skipped: usize,
    /// Jobs rejected.
    pub rejected: usize,
    /// Jobs failed.
    pub failed: usize,
    /// Every job, in listing order.
    pub jobs: Vec<JobReport>,
    /// Remote API calls by operation.
    pub api_calls: BTreeMap<String, u64>,
    /// The cursor up to which every job has a final outcome (failed jobs hold it back).
    pub cursor: Cursor,
    /// Jobs listed but not processed because they were already done at this version (see
    /// [`JobObserver::decide`]).
    #[serde(default)]
    pub already_done: usize,
    /// Jobs listed but deferred (backing off after failures).
    #[serde(default)]
    pub deferred: usize,
    /// Whether the run stopped early because it was cancelled.
    pub cancelled: bool,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl RunSummary {
    /// A summary of the given reports (e.g. for one job synced by name).
    pub fn from_reports(reports: impl IntoIterator<Item = JobReport>, api_calls: BTreeMap<String, u64>) -> Self {
        let mut s = RunSummary { api_calls, ..Default::default() };
        for r in reports {
            s.add(r);
        }
        s
    }

    fn add(&mut self, r: JobReport) {
        match r.outcome {
            Outcome::Synced => self.synced += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Failed => self.failed += 1,
        }
        self.jobs.push(r);
    }
}

/// A sink with its id.
#[derive(Clone)]
pub struct NamedSink {
    /// Id used in receipts and messages.
    pub id: String,
    /// The sink.
    pub sink: Arc<dyn Sink>,
}

/// Errors from assembling a pipeline in code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No source was given.
    #[error("a pipeline needs a source")]
    NoSource,
    /// No mapper was given.
    #[error("a pipeline needs a mapper")]
    NoMapper,
    /// No sink was given.
    #[error("a pipeline needs at least one sink")]
    NoSink,
    /// Bad settings.
    #[error("invalid pipeline setting `{0}`: {1}")]
    Settings(String, String),
    /// Two sinks share an id.
    #[error("duplicate sink id `{0}`")]
    DuplicateSink(String),
}

/// Assembles a [`Pipeline`] in code, without TOML.
#[derive(Default)]
pub struct PipelineBuilder {
    source: Option<Arc<dyn Source>>,
    validators: Vec<(String, Arc<dyn Validator>)>,
    mapper: Option<Arc<dyn Mapper>>,
    sinks: Vec<NamedSink>,
    settings: PipelineSettings,
}

impl PipelineBuilder {
    /// An empty builder with default settings.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the source.
    pub fn source(mut self, s: impl Source + 'static) -> Self {
        self.source = Some(Arc::new(s));
        self
    }
    /// Sets the source from an `Arc`.
    pub fn source_arc(mut self, s: Arc<dyn Source>) -> Self {
        self.source = Some(s);
        self
    }
    /// Appends a validator.
    pub fn validator(mut self, id: impl Into<String>, v: impl Validator + 'static) -> Self {
        self.validators.push((id.into(), Arc::new(v)));
        self
    }
    /// Appends a validator from an `Arc`.
    pub fn validator_arc(mut self, id: impl Into<String>, v: Arc<dyn Validator>) -> Self {
        self.validators.push((id.into(), v));
        self
    }
    /// Sets the mapper.
    pub fn mapper(mut self, m: impl Mapper + 'static) -> Self {
        self.mapper = Some(Arc::new(m));
        self
    }
    /// Sets the mapper from an `Arc`.
    pub fn mapper_arc(mut self, m: Arc<dyn Mapper>) -> Self {
        self.mapper = Some(m);
        self
    }
    /// Appends a sink.
    pub fn sink(mut self, id: impl Into<String>, s: impl Sink + 'static) -> Self {
        self.sinks.push(NamedSink { id: id.into(), sink: Arc::new(s) });
        self
    }
    /// Appends a sink from an `Arc`.
    pub fn sink_arc(mut self, id: impl Into<String>, s: Arc<dyn Sink>) -> Self {
        self.sinks.push(NamedSink { id: id.into(), sink: s });
        self
    }
    /// Replaces the settings.
    pub fn settings(mut self, s: PipelineSettings) -> Self {
        self.settings = s;
        self
    }
    /// Builds the pipeline.
    pub fn build(self) -> Result<Pipeline, BuildError> {
        if let Err(p) = self.settings.check() {
            let (k, m) = p.into_iter().next().unwrap_or(("?", String::new()));
            return Err(BuildError::Settings(k.to_string(), m));
        }
        let mut ids = std::collections::HashSet::new();
        for s in &self.sinks {
            if !ids.insert(s.id.clone()) {
                return Err(BuildError::DuplicateSink(s.id.clone()));
            }
        }
        if self.sinks.is_empty() {
            return Err(BuildError::NoSink);
        }
        Ok(Pipeline {
            source: self.source.ok_or(BuildError::NoSource)?,
            validators: self.validators,
            mapper: self.mapper.ok_or(BuildError::NoMapper)?,
            sinks: self.sinks,
            settings: self.settings,
        })
    }
}

impl Pipeline {
    /// A builder.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::new()
    }

    /// Builds a pipeline from a built configuration.
    pub fn from_config(built: crate::config::BuiltConfig) -> Result<Pipeline, BuildError> {
        let mut b = PipelineBuilder::new().source_arc(built.source.1).mapper_arc(built.mapper.1).settings(built.settings);
        for (id, v) in built.validators {
            b = b.validator_arc(id, v);
        }
        for (id, s) in built.sinks {
            b = b.sink_arc(id, s);
        }
        b.build()
    }
}

/// What to do with a listed job before processing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Process it.
    Process,
    /// Already done at this version (e.g. the ledger has it): do not process; the cursor may
    /// move past it.
    Done,
    /// Not now (e.g. backing off after a failure): do not process; the cursor stays before it.
    Later,
}

/// Hooks into a run: each job's report as soon as it is known (progress bars, ledgers), a say
/// on whether to process a listed job, and the committed cursor after each page.
pub trait JobObserver: Send + Sync {
    /// Called once per processed job.
    fn on_job(&self, report: &JobReport);
    /// Whether to process a listed job (default: always).
    fn decide(&self, _job: &JobRef) -> Decision {
        Decision::Process
    }
    /// Called after each page with the cursor up to which every job has a final outcome.
    fn on_cursor(&self, _cursor: &Cursor) {}
}

impl<F: Fn(&JobReport) + Send + Sync> JobObserver for F {
    fn on_job(&self, report: &JobReport) {
        self(report)
    }
}

struct NoObserver;
impl JobObserver for NoObserver {
    fn on_job(&self, _: &JobReport) {}
}

/// The sync engine.
pub struct Pipeline {
    source: Arc<dyn Source>,
    validators: Vec<(String, Arc<dyn Validator>)>,
    mapper: Arc<dyn Mapper>,
    sinks: Vec<NamedSink>,
    settings: PipelineSettings,
}

impl Pipeline {
    /// The settings.
    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }
    /// Changes the settings (e.g. `--dry-run`).
    pub fn settings_mut(&mut self) -> &mut PipelineSettings {
        &mut self.settings
    }
    /// The source.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }
    /// The sink ids, in order.
    pub fn sink_ids(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.id.clone()).collect()
    }

    /// Syncs every job the source lists after `start`, page by page, until the listing ends or
    /// `cancel` fires (jobs already started finish; none start after).
    pub async fn run(&self, start: Cursor, cancel: &CancellationToken) -> RunSummary {
        self.run_observed(start, cancel, &NoObserver).await
    }

    /// [`Pipeline::run`] with an observer told about each job as it finishes.
    pub async fn run_observed(&self, start: Cursor, cancel: &CancellationToken, observer: &dyn JobObserver) -> RunSummary {
        let started = Instant::now();
        let mut summary = RunSummary { cursor: start.clone(), ..Default::default() };
        let mut listing_cursor = start;
        let mut committed_ok = true;
        loop {
            if cancel.is_cancelled() {
                summary.cancelled = true;
                break;
            }
            let listed = self.retry(cancel, || self.source.list(&listing_cursor)).await;
            let listing = match listed {
                Ok((l, _)) => l,
                Err((e, attempts)) => {
                    if matches!(e, SyncError::Cancelled) {
                        summary.cancelled = true;
                        break;
                    }
                    let r = JobReport {
                        job: "<listing>".into(),
                        arn: None,
                        outcome: Outcome::Failed,
                        reason: Some(format!("source: listing failed: {}", e.chain())),
                        stage: Some(Stage::Source),
                        receipts: vec![],
                        attempts,
                        last_modified: None,
                        retryable: e.is_retryable(),
                        failed_sinks: Vec::new(),
                    };
                    observer.on_job(&r);
                    summary.add(r);
                    break;
                }
            };
            for p in listing.problems {
                let r = JobReport {
                    job: p.origin.clone(),
                    arn: None,
                    outcome: Outcome::Failed,
                    reason: Some(format!("source: {}", p.error.chain())),
                    stage: Some(Stage::Source),
                    receipts: vec![],
                    attempts: 1,
                    last_modified: None,
                    retryable: p.error.is_retryable(),
                    failed_sinks: Vec::new(),
                };
                observer.on_job(&r);
                summary.add(r);
            }
            // Decide per job, keeping listing order for the cursor.
            let mut order: Vec<(Decision, Option<String>, Option<crate::model::Timestamp>)> = Vec::with_capacity(listing.jobs.len());
            let mut to_process = Vec::new();
            for j in listing.jobs {
                let d = observer.decide(&j);
                order.push((d, j.arn.clone(), j.last_modified));
                match d {
                    Decision::Process => to_process.push(j),
                    Decision::Done => summary.already_done += 1,
                    Decision::Later => summary.deferred += 1,
                }
            }
            let reports = self.process_many(to_process, cancel, observer).await;
            let processed = reports.len();
            let mut reports = reports.into_iter();
            let mut seen = 0;
            for (d, arn, lm) in order {
                match d {
                    Decision::Process => {
                        let Some(r) = reports.next() else {
                            // Cancelled before this job started.
                            committed_ok = false;
                            continue;
                        };
                        seen += 1;
                        if committed_ok {
                            if r.outcome == Outcome::Failed {
                                committed_ok = false;
                            } else if let Some(arn) = r.arn.as_deref() {
                                summary.cursor.advance(r.last_modified, arn);
                            }
                        }
                        summary.add(r);
                    }
                    Decision::Done => {
                        if committed_ok {
                            if let Some(arn) = arn.as_deref() {
                                summary.cursor.advance(lm, arn);
                            }
                        }
                    }
                    Decision::Later => committed_ok = false,
                }
            }
            debug_assert_eq!(seen, processed);
            if cancel.is_cancelled() {
                summary.cancelled = true;
                break;
            }
            if committed_ok {
                // Keep the source's own continuation state, but never move the watermark back.
                let mut next = listing.next.clone();
                if next.watermark < summary.cursor.watermark {
                    next.watermark = summary.cursor.watermark;
                    next.seen_at_watermark = summary.cursor.seen_at_watermark.clone();
                }
                summary.cursor = next;
            }
            observer.on_cursor(&summary.cursor);
            listing_cursor = listing.next;
            if !listing.more {
                break;
            }
        }
        summary.api_calls = self.source.api_calls();
        summary.elapsed_ms = started.elapsed().as_millis() as u64;
        summary
    }

    /// Processes a batch of job references with bounded concurrency. References to the same job
    /// (same ARN, else same name) run one after another, never concurrently, so a sink's
    /// look-up-then-create cannot race with itself. Reports come back in input order.
    pub async fn process_many(&self, jobs: Vec<JobRef>, cancel: &CancellationToken, observer: &dyn JobObserver) -> Vec<JobReport> {
        let n = jobs.len();
        let mut groups: Vec<Vec<(usize, JobRef)>> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (i, j) in jobs.into_iter().enumerate() {
            let key = j.arn.clone().unwrap_or_else(|| format!("name:{}", j.name));
            match by_key.get(&key) {
                Some(&g) => groups[g].push((i, j)),
                None => {
                    by_key.insert(key, groups.len());
                    groups.push(vec![(i, j)]);
                }
            }
        }
        let mut out: Vec<Option<JobReport>> = (0..n).map(|_| None).collect();
        let results: Vec<Vec<(usize, JobReport)>> = stream::iter(groups)
            .map(|group| async move {
                let mut done = Vec::new();
                for (i, j) in group {
                    if cancel.is_cancelled() {
                        break;
                    }
                    let r = self.process(j, cancel).await;
                    observer.on_job(&r);
                    done.push((i, r));
                }
                done
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for group in results {
            for (i, r) in group {
                out[i] = Some(r);
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Processes one job reference: fetch (unless the listing carried the job), validate, map,
    /// write to every sink.
    pub async fn process(&self, job_ref: JobRef, cancel: &CancellationToken) -> JobReport {
        let mut report = JobReport::new(&job_ref);
        let job: Arc<TrainingJob> = match &job_ref.job {
            Some(j) => j.clone(),
            None => match self.retry(cancel, || self.source.fetch(&job_ref)).await {
                Ok((j, attempts)) => {
                    report.attempts = attempts;
                    Arc::new(j)
                }
                Err((e, attempts)) => {
                    report.attempts = attempts;
                    tracing::warn!(job = %job_ref.name, error = %e.chain(), "fetching the job failed");
                    return report.fail(Stage::Source, &e);
                }
            },
        };
        self.process_job(job, report, cancel).await
    }

    /// Processes a job already in hand (the Lambda runner's path).
    pub async fn sync_job(&self, job: TrainingJob, cancel: &CancellationToken) -> JobReport {
        let r = JobRef::with_job(job, None);
        self.process(r, cancel).await
    }

    async fn process_job(&self, job: Arc<TrainingJob>, mut report: JobReport, cancel: &CancellationToken) -> JobReport {
        report.job = job.name.clone();
        report.arn = Some(job.arn.clone());
        report.last_modified = job.last_modified_time.or(report.last_modified);
        let record = match self.validate_and_map(&job).await {
            Ok(rec) => rec,
            Err((outcome, reason)) => {
                tracing::info!(job = %job.name, outcome = outcome.as_str(), reason = %reason, "job not synced");
                report.outcome = outcome;
                report.reason = Some(reason);
                return report;
            }
        };
        if self.settings.dry_run {
            report.reason = Some("dry run: nothing written".into());
            return report;
        }
        let writes = self.sinks.iter().map(|s| {
            let record = &record;
            async move {
                let cx = crate::traits::WriteContext::new();
                let res = self.retry(cancel, || s.sink.upsert(record, &cx)).await;
                (s.id.clone(), res)
            }
        });
        let results = futures::future::join_all(writes).await;
        let mut failures = Vec::new();
        let mut retryable = false;
        for (id, res) in results {
            match res {
                Ok((mut receipt, attempts)) => {
                    receipt.sink = id;
                    report.attempts = report.attempts.max(attempts);
                    report.receipts.push(receipt);
                }
                Err((e, attempts)) => {
                    report.attempts = report.attempts.max(attempts);
                    retryable |= e.is_retryable();
                    tracing::warn!(job = %job.name, sink = %id, error = %e.chain(), "sink write failed");
                    failures.push(format!("sink `{}`: {}", id, e.chain()));
                    report.failed_sinks.push(id.clone());
                }
            }
        }
        if !failures.is_empty() {
            report.outcome = Outcome::Failed;
            report.stage = Some(Stage::Sink);
            report.retryable = retryable;
            let written: Vec<String> = report.receipts.iter().map(|r| r.sink.clone()).collect();
            let mut reason = failures.join("; ");
            if !written.is_empty() {
                reason.push_str(&format!(" (written to: {})", written.join(", ")));
            }
            report.reason = Some(reason);
        } else {
            tracing::info!(job = %job.name, "job synced");
        }
        report
    }

    /// Runs the validators and the mapper; `Err` carries the skipped/rejected outcome.
    pub async fn validate_and_map(&self, job: &TrainingJob) -> Result<RunRecord, (Outcome, String)> {
        for (id, v) in &self.validators {
            match v.validate(job).await {
                Verdict::Sync => {}
                Verdict::Skip { reason } => return Err((Outcome::Skipped, reason)),
                Verdict::Reject { problems } => {
                    return Err((Outcome::Rejected, format!("{}: {}", id, problems.join("; "))));
                }
            }
        }
        self.mapper.map(job).await.map_err(|e| (Outcome::Rejected, format!("map: {}", e.chain())))
    }

    /// Runs `f` until it succeeds, fails permanently, or `max_attempts` is reached, sleeping
    /// with the pipeline's backoff between attempts (for runner-side calls such as the Lambda
    /// runner's event fetch). Returns the value or the last error, with the attempts made.
    pub async fn with_retries<T, F, Fut>(&self, cancel: &CancellationToken, f: F) -> Result<(T, u32), (SyncError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SyncError>>,
    {
        self.retry(cancel, f).await
    }

    async fn retry<T, F, Fut>(&self, cancel: &CancellationToken, mut f: F) -> Result<(T, u32), (SyncError, u32)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, SyncError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok((v, attempt)),
                Err(e) if e.is_retryable() && attempt < self.settings.max_attempts => {
                    let delay = self.settings.backoff(attempt);
                    tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %e.chain(), "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Err((SyncError::Cancelled, attempt)),
                    }
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }
}

impl RunSummary {
    /// Total jobs reported.
    pub fn total(&self) -> usize {
        self.synced + self.skipped + self.rejected + self.failed
    }

    /// A human-readable report: one line per job, then the counts.
    pub fn render_text(&self) -> String {
        let width = self.jobs.iter().map(|j| j.job.chars().count()).max().unwrap_or(0).min(60);
        let mut out = String::new();
        for j in &self.jobs {
            let detail = match (&j.reason, j.receipts.is_empty()) {
                (Some(r), true) => r.clone(),
                (reason, false) => {
                    let rs: Vec<String> = j.receipts.iter().map(|r| format!("{}: {}", r.sink, serde_json::to_value(r.write).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())).collect();
                    match reason {
                        Some(r) => format!("{} — {}", rs.join(", "), r),
                        None => rs.join(", "),
                    }
                }
                (None, true) => String::new(),
            };
            out.push_str(&format!("{:<8}  {:<width$}  {}\n", j.outcome.as_str(), j.job, detail, width = width));
        }
        out.push_str(&format!(
            "{} job{}: {} synced, {} skipped, {} rejected, {} failed",
            self.total(),
            if self.total() == 1 { "" } else { "s" },
            self.synced,
            self.skipped,
            self.rejected,
            self.failed
        ));
        if !self.api_calls.is_empty() {
            let calls: Vec<String> = self.api_calls.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("\nAPI calls: {}", calls.join(", ")));
        }
        if self.cancelled {
            out.push_str("\n(cancelled before the listing ended)");
        }
        out.push('\n');
        out
    }
}
