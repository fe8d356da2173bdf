//! The `sagemaker` source.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sagesync_core::{Cursor, JobRef, ListScope, ListingProblem, Page, Source, SyncError, Tags, TrainingJob};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::client::{map_sdk_error, CallCounter, ClientSettings, Clients, RateLimits};
use super::convert;
use super::history::{metric_names, read_history, Budget, HistoryOptions, HistorySourceMode};
use super::metrics::{read_series, JobQueries, ServiceOptions};
use crate::document::job_from_document;

/// How jobs are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// ListTrainingJobs with a LastModifiedTime watermark, then Describe + ListTags per job.
    #[default]
    List,
    /// Search(TrainingJob): full records with tags, up to 100 per call.
    Search,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Statuses to list (empty: all).
    pub statuses: Vec<String>,
    /// Name substring.
    pub name_contains: Option<String>,
    /// Created strictly after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub created_before: Option<DateTime<Utc>>,
    /// Modified at or after.
    pub modified_after: Option<DateTime<Utc>>,
    /// Modified strictly before.
    pub modified_before: Option<DateTime<Utc>>,
}

/// Operations with a client-side budget, and their default rates (calls per second). AWS
/// publishes 2 TPS (per account and region, not adjustable) for ListTrainingJobs; the others
/// have no published figure and share the account's quota with every other caller, so the
/// defaults stay modest and the SDK's retries absorb throttling.
pub const OPERATIONS: [(&str, f64); 19] = [
    ("ListTrainingJobs", 2.0),
    ("DescribeTrainingJob", 10.0),
    ("ListTags", 10.0),
    ("Search", 2.0),
    ("ListObjectsV2", 50.0),
    ("GetMetricData", 10.0),
    ("BatchGetMetrics", 10.0),
    ("ListHyperParameterTuningJobs", 2.0),
    ("DescribeHyperParameterTuningJob", 10.0),
    ("ListTrainingJobsForHyperParameterTuningJob", 2.0),
    ("ListPipelines", 2.0),
    ("ListPipelineExecutions", 2.0),
    ("DescribePipelineExecution", 10.0),
    ("ListPipelineExecutionSteps", 5.0),
    ("DescribeProcessingJob", 10.0),
    ("ListModelPackageGroups", 2.0),
    ("ListModelPackages", 2.0),
    ("DescribeModelPackage", 10.0),
    ("DescribeModelPackageGroup", 10.0),
];

/// Settings of the source.
#[derive(Debug, Clone)]
pub struct SageMakerSettings {
    /// Clients.
    pub client: ClientSettings,
    /// Listing mode of polls.
    pub mode: Mode,
    /// Filters.
    pub filters: Filters,
    /// Calls per second by operation; 0 = unlimited.
    pub rate_limits: BTreeMap<String, f64>,
    /// Page size (1..=100).
    pub page_size: i32,
    /// How far before the previous poll's start the next poll begins.
    pub watermark_overlap: std::time::Duration,
    /// List each S3 channel's objects.
    pub dataset_manifests: bool,
    /// Cap on objects listed per channel.
    pub max_manifest_objects: usize,
    /// Read each job's metric histories (`metrics = "history"`: SageMaker's metrics service,
    /// CloudWatch, or both), with these options; `None` keeps the final metrics only.
    pub history: Option<HistoryOptions>,
    /// List training jobs.
    pub training_jobs: bool,
    /// List hyperparameter tuning jobs (parents of the training jobs they launched), after the
    /// training jobs, with their own cursor.
    pub tuning_jobs: bool,
    /// List pipeline executions (parents of the training jobs their steps ran), after the
    /// tuning jobs, with their own cursor; link training jobs to the processing jobs whose
    /// output they read.
    pub pipeline_executions: bool,
    /// List the Model Registry's versioned model packages (entries of each store's registry,
    /// linked to the training job that made the model), after the other kinds.
    pub model_packages: bool,
}

impl SageMakerSettings {
    /// The defaults of the `sagemaker` plugin config in `mode` (standard credential chain, no
    /// endpoint override, each operation's default budget, pages of 100, no manifests), but
    /// training jobs only: a library user turns `tuning_jobs` and `pipeline_executions` on (the
    /// config's `resources` has all three by default).
    pub fn new(mode: Mode) -> Self {
        SageMakerSettings {
            client: ClientSettings {
                max_attempts: 1,
                initial_backoff: std::time::Duration::from_secs(1),
                connect_timeout: std::time::Duration::from_secs(10),
                attempt_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            },
            mode,
            filters: Filters::default(),
            rate_limits: OPERATIONS.iter().map(|(o, r)| (o.to_string(), *r)).collect(),
            page_size: 100,
            watermark_overlap: std::time::Duration::from_secs(300),
            dataset_manifests: false,
            max_manifest_objects: 1000,
            history: None,
            training_jobs: true,
            tuning_jobs: false,
            pipeline_executions: false,
            model_packages: false,
        }
    }
    /// Sends SageMaker (and S3 and CloudWatch) calls to `url` in `region` (emulators, VPC
    /// endpoints).
    pub fn endpoint(mut self, url: &str, region: &str) -> Self {
        self.client.endpoint_url = Some(url.to_string());
        self.client.s3_endpoint_url = Some(url.to_string());
        self.client.cloudwatch_endpoint_url = Some(url.to_string());
        self.client.metrics_endpoint_url = Some(url.to_string());
        self.client.region = Some(region.to_string());
        self
    }
    /// Removes every client-side budget.
    pub fn unlimited(mut self) -> Self {
        for v in self.rate_limits.values_mut() {
            *v = 0.0;
        }
        self
    }
}

/// What a page's read got for one job: the metric names it asked for, the job's
/// `LastModifiedTime` as listed, and the series.
type Prepared = (Vec<String>, Option<DateTime<Utc>>, Vec<sagesync_core::MetricSeries>);

/// Jobs from the SageMaker API.
pub struct SageMakerSource {
    pub(super) settings: SageMakerSettings,
    clients: OnceCell<Clients>,
    pub(super) limits: RateLimits,
    pub(super) calls: CallCounter,
    /// Tuners' objectives, by ARN (bounded), for their children's objective status.
    pub(super) objectives: super::tuning::ObjectiveCache,
    /// Pipeline executions' processing outputs, by ARN (bounded), for their training jobs'
    /// datasets.
    pub(super) executions: super::pipelines::ExecutionCache,
    /// Histories read for the page being worked on, by ARN, with the metric names asked
    /// ([`Source::prepare`]); each is taken by the job's fetch, and the next page replaces them.
    prepared: std::sync::Mutex<std::collections::HashMap<String, Prepared>>,
}

fn aws_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A job name from a name or a training-job ARN.
pub fn job_name(name_or_arn: &str) -> &str {
    match name_or_arn.split_once(":training-job/") {
        Some((prefix, name)) if prefix.starts_with("arn:") => name,
        _ => name_or_arn,
    }
}

impl SageMakerSource {
    /// A source with these settings (clients are built on first use).
    pub fn new(settings: SageMakerSettings) -> Self {
        let limits = RateLimits::new(&settings.rate_limits);
        SageMakerSource {
            settings,
            clients: OnceCell::new(),
            limits,
            calls: CallCounter::default(),
            objectives: Default::default(),
            executions: Default::default(),
            prepared: Default::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &SageMakerSettings {
        &self.settings
    }

    pub(super) async fn clients(&self) -> &Clients {
        self.clients.get_or_init(|| self.settings.client.build()).await
    }

    /// The account of this source's credentials (STS GetCallerIdentity; a refusal is a setup
    /// failure, a throttle retryable).
    pub async fn caller_account(&self) -> Result<String, SyncError> {
        let shared = &self.clients().await.shared;
        let conf = match &self.settings.client.sts_endpoint_url {
            Some(url) => shared.to_builder().endpoint_url(url).build(),
            None => shared.clone(),
        };
        match sagesync_aws::caller_account(&conf).await {
            Ok(a) => Ok(a),
            Err(e) if e.is_retryable() => Err(SyncError::transient(format!("STS GetCallerIdentity: {}", e.message))),
            Err(e) => Err(SyncError::setup(format!("STS GetCallerIdentity: {}", e.message))),
        }
    }

    /// The region its clients use: the configured one, else the credential chain's.
    pub async fn region_in_use(&self) -> Option<String> {
        match &self.settings.client.region {
            Some(r) => Some(r.clone()),
            None => self.clients().await.shared.region().map(|r| r.as_ref().to_string()),
        }
    }

    pub(super) async fn before(&self, op: &str) {
        self.limits.acquire(op).await;
        self.calls.count(op);
    }

    /// DescribeTrainingJob: the job without tags, and its document.
    pub async fn describe(&self, name: &str) -> Result<(TrainingJob, Value), SyncError> {
        let name = job_name(name);
        self.before("DescribeTrainingJob").await;
        let out = self
            .clients()
            .await
            .sagemaker
            .describe_training_job()
            .training_job_name(name)
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeTrainingJob", &format!("training job `{name}`"), e))?;
        let doc = convert::describe_document(&out);
        let job = job_from_document(&doc)
            .map_err(|e| SyncError::Malformed { origin: format!("DescribeTrainingJob {name}"), message: e.to_string() })?;
        Ok((job, doc))
    }

    /// ListTags on a job, every page.
    pub async fn list_tags(&self, arn: &str) -> Result<Value, SyncError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            self.before("ListTags").await;
            let out = self
                .clients()
                .await
                .sagemaker
                .list_tags()
                .resource_arn(arn)
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListTags", arn, e))?;
            if let Value::Array(a) = convert::tags(out.tags()) {
                all.extend(a);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => {
                    if !seen.insert(t.to_string()) {
                        return Err(SyncError::transient(format!(
                            "ListTags {arn}: the API returned a page token it had already returned; stopping"
                        )));
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
            if all.len() > 10_000 {
                return Err(SyncError::permanent(format!("ListTags {arn}: more than 10000 tags")));
            }
        }
        Ok(Value::Array(all))
    }

    /// One job by name: Describe + ListTags (+ manifests).
    pub async fn fetch_by_name(&self, name: &str) -> Result<TrainingJob, SyncError> {
        self.fetch(&JobRef::by_name(name)).await
    }

    /// Adds manifests (when enabled), reads the document, then adds metric histories (when
    /// enabled).
    pub async fn finish(&self, mut doc: Value) -> Result<TrainingJob, SyncError> {
        if self.settings.dataset_manifests {
            self.add_manifests(&mut doc).await?;
        }
        let name = doc.get("TrainingJobName").and_then(Value::as_str).unwrap_or("?").to_string();
        let job =
            job_from_document(&doc).map_err(|e| SyncError::Malformed { origin: format!("training job {name}"), message: e.to_string() })?;
        if job.arn.is_empty() || job.status.is_empty() {
            return Err(SyncError::Malformed {
                origin: format!("training job {name}"),
                message: "the API returned no ARN or status".into(),
            });
        }
        let mut job = job;
        if let Some(opts) = &self.settings.history {
            self.add_history(&mut job, opts).await?;
        }
        self.add_objective(&mut job).await?;
        self.add_pipeline(&mut job).await?;
        Ok(job)
    }

    /// Reads the job's metric histories: from the metrics service by iteration number (what
    /// [`Source::prepare`] read for its page, else one call for the job), then from CloudWatch,
    /// between its training start and its end (or now, for a job still running), when the
    /// service has nothing for it (`auto`) or is not asked (`cloudwatch`).
    async fn add_history(&self, job: &mut TrainingJob, opts: &HistoryOptions) -> Result<(), SyncError> {
        let names = metric_names(job);
        if names.is_empty() {
            return Ok(());
        }
        let mut from_service: Vec<sagesync_core::MetricSeries> = Vec::new();
        if opts.source != HistorySourceMode::Cloudwatch {
            let read = match self.take_prepared(job, &names) {
                Some(series) => Ok(series),
                None => {
                    let q = [JobQueries { arn: job.arn.clone(), names: names.clone() }];
                    self.read_service(&q, opts).await.pop().unwrap_or_else(|| Ok(Vec::new()))
                }
            };
            // A refusal (no permission, an endpoint that is not the service) is the setup's,
            // also in `auto`: falling back would record CloudWatch's series for good, and
            // granting the permission later would change nothing. Only a job the service
            // answered nothing for goes to CloudWatch.
            from_service = read?;
        }
        let has_points = from_service.iter().any(|s| !s.points.is_empty());
        if has_points || opts.source == HistorySourceMode::Sagemaker {
            job.metric_history = from_service;
            return Ok(());
        }
        let Some(start) = job.start_time.or(job.creation_time) else {
            job.metric_history = from_service;
            return Ok(());
        };
        let end = job.end_time.unwrap_or_else(Utc::now);
        let budget = Budget { limits: &self.limits, calls: &self.calls };
        let mut series = read_history(&self.clients().await.cloudwatch, budget, &job.name, &names, start, end, opts).await?;
        // What the service refused stays said, for the metrics CloudWatch has nothing for.
        for s in from_service {
            if s.problem.is_some() && !series.iter().any(|c| c.name == s.name) {
                series.push(s);
            }
        }
        job.metric_history = series;
        Ok(())
    }

    async fn read_service(&self, jobs: &[JobQueries], opts: &HistoryOptions) -> Vec<Result<Vec<sagesync_core::MetricSeries>, SyncError>> {
        let budget = Budget { limits: &self.limits, calls: &self.calls };
        let service = ServiceOptions { stat: opts.service_stat.clone(), max_points: opts.max_points_per_metric };
        read_series(&self.clients().await.metrics, budget, jobs, &service).await
    }

    /// The series [`Source::prepare`] read for this job, if it read them for this version of
    /// the job (its `LastModifiedTime`) and these names.
    fn take_prepared(&self, job: &TrainingJob, names: &[String]) -> Option<Vec<sagesync_core::MetricSeries>> {
        let mut m = self.prepared.lock().ok()?;
        match m.remove(&job.arn) {
            Some((asked, modified, series)) if asked == names && modified == job.last_modified_time => Some(series),
            _ => None,
        }
    }

    /// Reads, in as few `BatchGetMetrics` calls as the page allows, the histories of the page's
    /// training jobs that came with their metric names (Search pages, recorded jobs). What it
    /// keeps lasts until the next call: the engine calls with no jobs when the page is done.
    async fn prepare_histories(&self, jobs: &[&JobRef]) {
        let Some(opts) = &self.settings.history else { return };
        if let Ok(mut m) = self.prepared.lock() {
            m.clear();
        }
        if opts.source == HistorySourceMode::Cloudwatch {
            return;
        }
        let wanted: Vec<(Option<DateTime<Utc>>, JobQueries)> = jobs
            .iter()
            .filter_map(|r| {
                let j = r.job.as_ref()?;
                if !j.arn.contains(":training-job/") {
                    return None;
                }
                let names = metric_names(j);
                (!names.is_empty()).then(|| (j.last_modified_time, JobQueries { arn: j.arn.clone(), names }))
            })
            .collect();
        let (modified, wanted): (Vec<Option<DateTime<Utc>>>, Vec<JobQueries>) = wanted.into_iter().unzip();
        if wanted.len() < 2 {
            return;
        }
        let results = self.read_service(&wanted, opts).await;
        if let Ok(mut m) = self.prepared.lock() {
            for ((q, r), at) in wanted.into_iter().zip(results).zip(modified) {
                match r {
                    Ok(series) => {
                        m.insert(q.arn, (q.names, at, series));
                    }
                    Err(e) => {
                        tracing::debug!(job = %q.arn, error = %e.chain(), "reading the page's histories failed for this job; its fetch reads them")
                    }
                }
            }
        }
    }

    async fn add_manifests(&self, doc: &mut Value) -> Result<(), SyncError> {
        let Some(channels) = doc.get_mut("InputDataConfig").and_then(Value::as_array_mut) else { return Ok(()) };
        for ch in channels.iter_mut() {
            let Some(uri) = ch.pointer("/DataSource/S3DataSource/S3Uri").and_then(Value::as_str).map(str::to_string) else { continue };
            let Some((bucket, prefix)) = uri.strip_prefix("s3://").and_then(|r| r.split_once('/').or(Some((r, "")))) else { continue };
            match self.list_objects(bucket, prefix).await {
                Ok(m) => {
                    if let Some(o) = ch.as_object_mut() {
                        o.insert("Manifest".into(), m);
                    }
                }
                Err(e @ SyncError::Transient { .. }) => return Err(e),
                Err(e) => tracing::warn!(uri = %uri, error = %e.chain(), "cannot list the channel's objects; no manifest recorded"),
            }
        }
        Ok(())
    }

    async fn list_objects(&self, bucket: &str, prefix: &str) -> Result<Value, SyncError> {
        let cap = self.settings.max_manifest_objects;
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        let mut truncated = false;
        loop {
            self.before("ListObjectsV2").await;
            let want = (cap - objects.len()).clamp(1, 1000) as i32;
            let out = self
                .clients()
                .await
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .max_keys(want)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListObjectsV2", &format!("s3://{bucket}/{prefix}"), e))?;
            for o in out.contents() {
                if objects.len() >= cap {
                    truncated = true;
                    break;
                }
                objects.push(json!({
                    "key": o.key(),
                    "size": o.size().unwrap_or(0).max(0),
                    "etag": o.e_tag().unwrap_or("").trim_matches('"'),
                    "last_modified": o.last_modified().map(convert::time),
                }));
            }
            let more = out.is_truncated().unwrap_or(false);
            if objects.len() >= cap {
                truncated |= more;
                break;
            }
            match out.next_continuation_token() {
                Some(t) if more => {
                    if !seen.insert(t.to_string()) {
                        return Err(SyncError::transient(format!(
                            "ListObjectsV2 s3://{bucket}/{prefix}: a continuation token came back twice; stopping"
                        )));
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
        }
        Ok(json!({"objects": objects, "truncated": truncated}))
    }

    /// Where the next poll of a listing that started at `started` begins: `watermark_overlap`
    /// before that start (not after the last job seen), so that what changed while it ran, or
    /// whose time lagged, is listed again and the ledger skips what it already has.
    pub(super) fn next_poll_cursor(&self, started: DateTime<Utc>) -> Cursor {
        let overlap = chrono::Duration::from_std(self.settings.watermark_overlap).unwrap_or_default();
        Cursor { watermark: Some(started - overlap), ..Default::default() }
    }

    pub(super) fn status_ok(&self, status: &str) -> bool {
        self.settings.filters.statuses.is_empty() || self.settings.filters.statuses.iter().any(|s| s == status)
    }

    fn single_status(&self) -> Option<aws_sdk_sagemaker::types::TrainingJobStatus> {
        match self.settings.filters.statuses.as_slice() {
            [one] => Some(aws_sdk_sagemaker::types::TrainingJobStatus::from(one.as_str())),
            _ => None,
        }
    }

    /// One ListTrainingJobs page of a poll. The next poll starts `watermark_overlap` before
    /// this listing started (not after the last job seen): jobs listed while it ran, and jobs
    /// whose Describe came later, are listed again and the ledger skips what it already has.
    async fn list_page(&self, cursor: &Cursor) -> Result<Page, SyncError> {
        let f = &self.settings.filters;
        let started = cursor.started.unwrap_or_else(Utc::now);
        let lower = match (cursor.watermark, f.modified_after) {
            (Some(w), Some(m)) => Some(w.max(m)),
            (w, m) => w.or(m),
        };
        // ListTrainingJobs' bound is strict: start a second early.
        let after = lower.map(|t| t - chrono::Duration::seconds(1));
        self.before("ListTrainingJobs").await;
        let sent = self
            .clients()
            .await
            .sagemaker
            .list_training_jobs()
            .max_results(self.settings.page_size)
            .sort_by(aws_sdk_sagemaker::types::SortBy::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .set_last_modified_time_after(after.map(aws_time))
            .set_last_modified_time_before(f.modified_before.map(aws_time))
            .set_creation_time_after(f.created_after.map(aws_time))
            .set_creation_time_before(f.created_before.map(aws_time))
            .set_name_contains(f.name_contains.clone())
            .set_status_equals(self.single_status())
            .set_next_token(cursor.token.clone())
            .send()
            .await;
        let page = match sent {
            Ok(p) => p,
            Err(e) => {
                let err = map_sdk_error("ListTrainingJobs", "", e);
                if cursor.token.is_some() && !err.is_retryable() {
                    // A page token that no longer works (expired): start the listing again.
                    tracing::warn!(error = %err.chain(), "ListTrainingJobs refused the saved page token; listing again from the watermark");
                    let restart = Cursor { watermark: cursor.watermark, ..Default::default() };
                    return Box::pin(self.list_page(&restart)).await;
                }
                return Err(err);
            }
        };
        let mut jobs = Vec::new();
        for s in page.training_job_summaries() {
            let status = s.training_job_status().map(|x| x.as_str().to_string()).unwrap_or_default();
            if !self.status_ok(&status) {
                continue;
            }
            let lm = s
                .last_modified_time()
                .or(s.creation_time())
                .map(convert::time)
                .and_then(|v| v.as_str().and_then(|x| DateTime::parse_from_rfc3339(x).ok()).map(|d| d.with_timezone(&Utc)));
            jobs.push(JobRef {
                name: s.training_job_name().unwrap_or_default().to_string(),
                arn: s.training_job_arn().map(str::to_string),
                last_modified: lm,
                status: Some(status),
                ..Default::default()
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() && Some(t) != cursor.token.as_deref() => Ok(Page {
                jobs,
                problems: Vec::new(),
                next: Cursor { watermark: cursor.watermark, token: Some(t.to_string()), started: Some(started), ..Default::default() },
                done: false,
            }),
            _ => Ok(Page { jobs, problems: Vec::new(), next: self.next_poll_cursor(started), done: true }),
        }
    }

    /// One Search page, by keyset on (LastModifiedTime, ARN): each page asks again from the
    /// last time seen, so a job modified while the listing runs moves later in it and is listed
    /// again, never skipped.
    ///
    /// More jobs may share one time than a page holds (bulk imports). Search can only continue
    /// such a group with its page token, which is an offset: a member modified meanwhile leaves
    /// the group and shifts the rest, so a following page can step over a member never read.
    /// The group is therefore read in *sweeps*, each from its first member (offset 0) to its
    /// end, until two sweeps in a row find the same members (a count and an order-independent
    /// digest of their ARNs): only then does the listing move past the group's time. A member
    /// that left the group was modified, and is listed again at its new time.
    async fn search_page(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        use aws_sdk_sagemaker::types::{Filter, Operator, ResourceType, SearchExpression, SearchSortOrder};
        let f = &self.settings.filters;
        let started = cursor.started.unwrap_or_else(Utc::now);
        let (from, until) = match scope {
            ListScope::Range { from, until } => (*from, *until),
            ListScope::Incremental => (None, None),
        };
        let lower = [cursor.watermark, from, f.modified_after].into_iter().flatten().max();
        let upper = [until, f.modified_before].into_iter().flatten().min();
        let filter = |name: &str, op: Operator, value: String| Filter::builder().name(name).operator(op).value(value).build();
        let mut filters = Vec::new();
        if let Some(t) = lower {
            filters.push(filter("LastModifiedTime", Operator::GreaterThanOrEqualTo, iso(t)));
        }
        if let Some(t) = upper {
            filters.push(filter("LastModifiedTime", Operator::LessThan, iso(t)));
        }
        if let Some(t) = f.created_after {
            filters.push(filter("CreationTime", Operator::GreaterThan, iso(t)));
        }
        if let Some(t) = f.created_before {
            filters.push(filter("CreationTime", Operator::LessThan, iso(t)));
        }
        if let Some(n) = &f.name_contains {
            filters.push(filter("TrainingJobName", Operator::Contains, n.clone()));
        }
        if let [one] = f.statuses.as_slice() {
            filters.push(filter("TrainingJobStatus", Operator::Equals, one.clone()));
        }
        let tie = Tie::parse(cursor.token.as_deref());
        let expr = if filters.is_empty() { None } else { Some(SearchExpression::builder().set_filters(Some(filters)).build()) };
        self.before("Search").await;
        let sent = self
            .clients()
            .await
            .sagemaker
            .search()
            .resource(ResourceType::TrainingJob)
            .set_search_expression(expr)
            .sort_by("LastModifiedTime")
            .sort_order(SearchSortOrder::Ascending)
            .max_results(self.settings.page_size)
            .set_next_token(tie.as_ref().and_then(|t| t.page.clone()))
            .send()
            .await;
        let (records, token) = match sent {
            Ok(page) => {
                let records = page
                    .results()
                    .iter()
                    .filter_map(|r| r.training_job())
                    .map(|tj| Record::of_doc(convert::search_document(tj)))
                    .collect::<Vec<_>>();
                (records, page.next_token().filter(|t| !t.is_empty()).map(str::to_string))
            }
            // A page the SDK cannot read (one record it cannot parse fails the whole page):
            // read the body as plain JSON, so that the bad record fails alone, with its job,
            // and the rest of the page syncs.
            Err(aws_sdk_sagemaker::error::SdkError::ResponseError(re)) => match re.raw().body().bytes().and_then(raw_search_page) {
                Some(page) => {
                    tracing::warn!(records = page.0.len(), "the SDK could not read a Search page; read from its JSON instead");
                    page
                }
                None => {
                    let e: aws_sdk_sagemaker::error::SdkError<aws_sdk_sagemaker::operation::search::SearchError, _> =
                        aws_sdk_sagemaker::error::SdkError::ResponseError(re);
                    return Err(map_sdk_error("Search", "TrainingJob", e));
                }
            },
            Err(e) => return Err(map_sdk_error("Search", "TrainingJob", e)),
        };
        let group_time = cursor.watermark.or(lower);
        let mut next = Cursor {
            watermark: cursor.watermark.or(lower),
            seen_at_watermark: cursor.seen_at_watermark.clone(),
            started: Some(started),
            token: None,
            parts: Default::default(),
        };
        let mut jobs = Vec::new();
        let mut problems = Vec::new();
        let mut sweep = tie.clone().unwrap_or_default();
        // In a sweep, what comes after the group on this page waits until the group is read
        // whole (then it is listed; else the next sweep shows it again).
        let mut after_group: Vec<(usize, Record)> = Vec::new();
        for (i, rec) in records.into_iter().enumerate() {
            let lm = rec.last_modified;
            // Every member of the group this page shows counts toward the sweep (a page read
            // from the group's start begins one, in keyset paging too).
            // Inside a sweep, a record whose time cannot be read stays with the group: Search
            // sorted it there, and only a record known to come later ends the sweep.
            let in_group = lm == group_time || (tie.is_some() && lm.is_none());
            if in_group && group_time.is_some() {
                sweep.count(&rec.arn);
            }
            if cursor.covers(lm, &rec.arn) {
                continue;
            }
            match tie {
                Some(_) if in_group => {
                    next.seen_at_watermark.insert(rec.arn.clone());
                }
                Some(_) => {
                    after_group.push((i, rec));
                    continue;
                }
                None => next.advance(lm, &rec.arn),
            }
            self.yield_record(i, rec, &mut jobs, &mut problems);
        }
        let listing_done = token.is_none();
        let finish = |next: Cursor| -> Cursor {
            match scope {
                // The next poll begins a little before this one started (eventual consistency,
                // clocks), never after the last job seen.
                ListScope::Incremental => {
                    let overlap = chrono::Duration::from_std(self.settings.watermark_overlap).unwrap_or_default();
                    let w = [next.watermark, Some(started - overlap)].into_iter().flatten().min();
                    Cursor { watermark: w, ..Default::default() }
                }
                // A range listed to its end starts over next time.
                ListScope::Range { .. } => Cursor::default(),
            }
        };
        match tie {
            // Keyset paging.
            None => {
                if listing_done {
                    return Ok(Page { jobs, problems, next: finish(next), done: true });
                }
                if next.watermark == group_time {
                    // No progress in time: the page was all one group, larger than a page.
                    // This page was the first of a sweep (it was read from the group's start).
                    sweep.page = token;
                    next.token = Some(sweep.encode());
                }
                Ok(Page { jobs, problems, next, done: false })
            }
            // Inside a sweep of the group at `group_time`.
            Some(_) => {
                let ended = !after_group.is_empty() || listing_done;
                if !ended {
                    sweep.page = token;
                    next.token = Some(sweep.encode());
                    return Ok(Page { jobs, problems, next, done: false });
                }
                if !sweep.stable() {
                    // Not yet two equal sweeps: read the group again from its start.
                    tracing::debug!(members = sweep.cur.0, "Search: reading a group of jobs with one LastModifiedTime again");
                    next.token = Some(sweep.restart().encode());
                    return Ok(Page { jobs, problems, next, done: false });
                }
                // The group is read whole: list what followed it, and go on by keyset.
                for (i, rec) in after_group {
                    next.advance(rec.last_modified, &rec.arn);
                    self.yield_record(i, rec, &mut jobs, &mut problems);
                }
                if listing_done {
                    return Ok(Page { jobs, problems, next: finish(next), done: true });
                }
                Ok(Page { jobs, problems, next, done: false })
            }
        }
    }

    /// A record of a Search page as a job (when its status passes the filter) or, when it
    /// cannot be read, a problem of its own: one bad record fails alone, with its reason, and
    /// the rest of the page syncs.
    fn yield_record(&self, i: usize, rec: Record, jobs: &mut Vec<JobRef>, problems: &mut Vec<ListingProblem>) {
        let name = rec.name.clone();
        match rec.job {
            Ok(job) if !job.arn.is_empty() && !job.status.is_empty() => {
                if self.status_ok(&job.status) {
                    jobs.push(JobRef::with_job(job, None));
                }
            }
            Ok(_) => problems.push(ListingProblem {
                origin: format!("Search record {i} ({name})"),
                job: Some(name),
                arn: (!rec.arn.is_empty()).then_some(rec.arn),
                last_modified: rec.last_modified,
                error: SyncError::Malformed { origin: "Search".into(), message: "the record has no ARN or status".into() },
                lists_again: false,
            }),
            Err(message) => problems.push(ListingProblem {
                origin: format!("Search record {i} ({name})"),
                job: Some(name.clone()),
                arn: (!rec.arn.is_empty()).then_some(rec.arn),
                last_modified: rec.last_modified,
                error: SyncError::Malformed { origin: format!("training job {name}"), message },
                lists_again: false,
            }),
        }
    }
}

/// One Search record, read through the SDK or from the raw JSON.
struct Record {
    name: String,
    arn: String,
    last_modified: Option<DateTime<Utc>>,
    job: Result<TrainingJob, String>,
}

impl Record {
    /// A record from a Describe-shaped document.
    fn of_doc(doc: Value) -> Record {
        let name = doc.get("TrainingJobName").and_then(Value::as_str).unwrap_or("?").to_string();
        let arn = doc.get("TrainingJobArn").and_then(Value::as_str).unwrap_or_default().to_string();
        let last_modified =
            doc.get("LastModifiedTime").and_then(|v| crate::document::parse_timestamp(v, "LastModifiedTime").ok()).flatten();
        let job = job_from_document(&doc).map_err(|e| e.to_string());
        Record { name, arn, last_modified, job }
    }
}

/// The records and page token of a Search reply the SDK could not read, from its JSON (bare
/// `NaN` and `Infinity` tokens, which some emulators write, read as the strings the service
/// sends). `None` when the body is not JSON at all.
fn raw_search_page(body: &[u8]) -> Option<(Vec<Record>, Option<String>)> {
    let text = std::str::from_utf8(body).ok()?;
    let v: Value = serde_json::from_str(text).or_else(|_| serde_json::from_str(&crate::document::quote_bare_non_finite(text))).ok()?;
    let results = v.get("Results")?.as_array()?;
    let records = results
        .iter()
        .filter_map(|r| r.get("TrainingJob"))
        .map(|tj| {
            let mut doc = tj.clone();
            // As the SDK path orders them (it gets an unordered map), so that both paths give
            // the same job.
            if let Some(Value::Object(hp)) = doc.get_mut("HyperParameters") {
                let mut sorted: Vec<(String, Value)> = std::mem::take(hp).into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                hp.extend(sorted);
            }
            Record::of_doc(doc)
        })
        .collect();
    let token = v.get("NextToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
    Some((records, token))
}

/// Where a sweep of a group of jobs sharing one `LastModifiedTime` stands (kept in the cursor's
/// token as `tie:<json>`): the page token within the sweep, and the members of this sweep and of
/// the previous one, as a count and the sum (modulo 2^256) of their ARNs' SHA-256 digests. A sum
/// depends on no order and, unlike an XOR, a member read twice does not cancel out: two sweeps
/// agree only when they read the same members the same number of times.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Tie {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    #[serde(default)]
    cur: (u64, String),
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev: Option<(u64, String)>,
}

impl Tie {
    const PREFIX: &'static str = "tie:";

    /// The sweep a cursor token stands for: `None` outside a sweep; a token of an older
    /// release (a bare page token) continues as a sweep that is not yet known to be stable.
    fn parse(token: Option<&str>) -> Option<Tie> {
        let t = token?;
        match t.strip_prefix(Self::PREFIX) {
            Some(json) => serde_json::from_str(json).ok().or(Some(Tie::default())),
            None => Some(Tie { page: Some(t.to_string()), ..Default::default() }),
        }
    }
    fn encode(&self) -> String {
        format!("{}{}", Self::PREFIX, serde_json::to_string(self).unwrap_or_default())
    }
    /// Counts one member read in this sweep.
    fn count(&mut self, arn: &str) {
        let hex = |s: &str| -> Vec<u8> { (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0)).collect() };
        let d = hex(&sagesync_core::digest::of_bytes(arn.as_bytes()));
        let mut acc = hex(&self.cur.1);
        acc.resize(d.len(), 0);
        // Big-endian addition with carry, modulo 2^(8 * len).
        let mut carry = 0u16;
        for (a, b) in acc.iter_mut().zip(&d).rev() {
            let s = u16::from(*a) + u16::from(*b) + carry;
            *a = (s & 0xff) as u8;
            carry = s >> 8;
        }
        self.cur = (self.cur.0 + 1, acc.iter().map(|b| format!("{b:02x}")).collect());
    }
    /// Whether this sweep found the same members as the one before it.
    fn stable(&self) -> bool {
        self.prev.as_ref() == Some(&self.cur)
    }
    /// The next sweep, from the group's start.
    fn restart(&self) -> Tie {
        Tie { page: None, cur: (0, String::new()), prev: Some(self.cur.clone()) }
    }
}

impl SageMakerSource {
    /// One page of the training-job listing.
    pub(super) async fn list_training(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        match (scope, self.settings.mode) {
            (ListScope::Incremental, Mode::List) => self.list_page(cursor).await,
            _ => self.search_page(scope, cursor).await,
        }
    }
}

#[async_trait]
impl Source for SageMakerSource {
    async fn list(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        self.list_kinds(scope, cursor).await
    }

    async fn child(&self, _parent: &TrainingJob, child: &sagesync_core::ChildSummary) -> Result<TrainingJob, SyncError> {
        self.tuner_child(child).await
    }

    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError> {
        if super::tuning::is_tuner(job) {
            if !self.settings.tuning_jobs {
                // A tuner's event (or name) given to a source that does not sync tuners: the
                // setup's choice, not the job's content; it is tried again once the setup says so.
                return Err(SyncError::setup(format!(
                    "`{}` is a tuning job, and this source does not sync them: add \"tuning_jobs\" to [source] resources",
                    job.name
                )));
            }
            return self.fetch_tuner(job).await;
        }
        if super::pipelines::is_execution(job) {
            if !self.settings.pipeline_executions {
                return Err(SyncError::setup(format!(
                    "`{}` is a pipeline execution, and this source does not sync them: add \"pipeline_executions\" to [source] resources",
                    job.name
                )));
            }
            return self.fetch_execution(job).await;
        }
        if super::packages::is_package(job) {
            if !self.settings.model_packages {
                return Err(SyncError::setup(format!(
                    "`{}` is a model package, and this source does not sync them: add \"model_packages\" to [source] resources",
                    job.name
                )));
            }
            return self.fetch_package(job).await;
        }
        if let Some(j) = &job.job {
            if !self.settings.dataset_manifests && self.settings.history.is_none() {
                let mut j = Arc::unwrap_or_clone(j.clone());
                self.add_objective(&mut j).await?;
                self.add_pipeline(&mut j).await?;
                return Ok(j);
            }
            let mut doc = j.original.clone();
            if let Some(o) = doc.as_object_mut() {
                o.insert("Tags".into(), tags_value(&j.tags));
            }
            return self.finish(doc).await;
        }
        let name = job.arn.as_deref().map(job_name).unwrap_or(&job.name);
        let (_, mut doc) = self.describe(name).await?;
        let tags = match &job.tags {
            Some(t) => tags_value(t),
            None => {
                let arn =
                    doc.get("TrainingJobArn").and_then(Value::as_str).map(str::to_string).or_else(|| job.arn.clone()).unwrap_or_default();
                self.list_tags(&arn).await?
            }
        };
        if let Some(o) = doc.as_object_mut() {
            o.insert("Tags".into(), tags);
        }
        self.finish(doc).await
    }

    async fn prepare(&self, jobs: &[&JobRef]) {
        self.prepare_histories(jobs).await;
    }

    fn api_calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }

    fn clock_tolerance(&self) -> std::time::Duration {
        self.settings.watermark_overlap
    }

    fn fingerprint(&self) -> String {
        let history = match &self.settings.history {
            None => "final".to_string(),
            Some(h) if h.source == HistorySourceMode::Cloudwatch => {
                format!("history:{}:{}:{}:{}", h.period_secs, h.stat, h.max_points_per_metric, h.host)
            }
            Some(h) => format!(
                "history:{}:{}:{}:{}:{}:{}",
                h.source.as_str(),
                h.service_stat,
                h.period_secs,
                h.stat,
                h.max_points_per_metric,
                h.host
            ),
        };
        // The kinds listed change training jobs' records (a tuner's or execution's child is
        // linked to it only when its kind is on): turning one on or off re-decides every job.
        let lineage = match (self.settings.tuning_jobs, self.settings.pipeline_executions) {
            (false, false) => String::new(),
            (t, p) => format!(";lineage={}{}", if t { "t" } else { "" }, if p { "p" } else { "" }),
        };
        // Model packages only add records of their own: a training job's record is the same.
        format!("manifests={}:{};metrics={history}{lineage}", self.settings.dataset_manifests, self.settings.max_manifest_objects)
    }
}

fn tags_value(t: &Tags) -> Value {
    Value::Array(t.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_non_finite_tokens_are_quoted_outside_strings_only() {
        let t = r#"{"a": NaN, "b": -Infinity, "c": [Infinity, 1.5], "d": "NaN \" Infinity", "e": "x"}"#;
        let v: Value = serde_json::from_str(&crate::document::quote_bare_non_finite(t)).unwrap();
        assert_eq!(v["a"], "NaN");
        assert_eq!(v["b"], "-Infinity");
        assert_eq!(v["c"][0], "Infinity");
        assert_eq!(v["d"], "NaN \" Infinity");
    }

    #[test]
    fn a_sweep_is_stable_when_two_in_a_row_find_the_same_members() {
        let mut t = Tie::default();
        for a in ["a", "b", "c"] {
            t.count(a);
        }
        assert!(!t.stable(), "a first sweep is never enough");
        let mut t2 = t.restart();
        for a in ["c", "a", "b"] {
            t2.count(a);
        }
        assert!(t2.stable(), "the same members in another order");
        let mut t3 = t2.restart();
        for a in ["c", "a"] {
            t3.count(a);
        }
        assert!(!t3.stable(), "a member left");
        // A member read twice (the offsets shifted) does not cancel out: {d, d, z} and
        // {n, n, z} are different sweeps, and so are {d, d, z} and {d, m, z}.
        let sweep = |prev: &Tie, members: &[&str]| {
            let mut t = prev.restart();
            for a in members {
                t.count(a);
            }
            t
        };
        let ddz = sweep(&Tie::default(), &["d", "d", "z"]);
        assert!(!sweep(&ddz, &["n", "n", "z"]).stable(), "duplicates cancelled out");
        assert!(!sweep(&ddz, &["d", "m", "z"]).stable(), "a duplicate hid a missed member");
        assert!(sweep(&ddz, &["z", "d", "d"]).stable());
        let enc = t3.encode();
        assert_eq!(Tie::parse(Some(&enc)), Some(t3));
        assert_eq!(Tie::parse(Some("raw-token")).unwrap().page.as_deref(), Some("raw-token"));
        assert_eq!(Tie::parse(None), None);
    }

    #[test]
    fn names_from_arns() {
        assert_eq!(super::job_name("arn:aws:sagemaker:us-east-1:1:training-job/abc-1"), "abc-1");
        assert_eq!(super::job_name("abc-1"), "abc-1");
    }
}
