//! SageMaker Pipelines executions: listed after the tuning jobs, with their own cursor (a part
//! of the source's cursor), fetched with their steps; and the link from a training job to its
//! execution (SageMaker tags the jobs a pipeline starts with the execution's ARN) and to the
//! processing jobs whose outputs it reads.
//!
//! ListPipelineExecutions takes one pipeline and filters by creation time only, and an
//! execution's summary has no modification time. A page of the listing is one
//! ListPipelineExecutions page of one pipeline that ran since the bound: its executions created
//! since the bound ([`LOOKBACK`] before the watermark: executions run for days), oldest first;
//! the cursor's token says where the listing stands. A succeeded execution is listed with its
//! start time, which the ledger then knows (it is skipped without a request the next time); a
//! failed or stopped one too once [`RETRY_WINDOW`] has passed; a running one without a time, so
//! that each poll reads it again.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use sagesync_core::{Cursor, JobRef, ListScope, Page, ParentRef, Producer, ResourceKind, SyncError, TrainingJob};
use serde_json::{json, Value};

use super::client::map_sdk_error;
use super::convert;
use super::source::SageMakerSource;
use crate::document::{execution_from_document, execution_name, execution_parts, training_status_of_step, PIPELINE_EXECUTION_TAG};

/// The cursor part of the pipeline-execution listing.
pub const PIPELINES: &str = "pipeline_executions";

/// How far before the watermark a poll lists executions (by creation time): an execution
/// created earlier and still running is reached by its event or `sync-job`.
pub const LOOKBACK: chrono::Duration = chrono::Duration::days(30);

/// How long a failed or stopped execution is read on every poll (RetryPipelineExecution can
/// still run it to success without moving its start time); after that, its start time stands
/// for it, and a late retry is reached by its event or `sync-job`.
pub const RETRY_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// ListPipelines pages read for one engine page at most (pipelines that have not run since the
/// bound are passed over without a page of their own).
const MAX_PIPELINE_PAGES_PER_PAGE: usize = 10;

/// Where a two-level listing stands (the cursor's token, `pl:` and JSON): pipelines and their
/// executions, model package groups and their packages.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Place {
    /// Whether the outer listing was read in this listing.
    #[serde(default)]
    pub listed: bool,
    /// The next outer page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer: Option<String>,
    /// Names of the current outer page still to list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<String>,
    /// The one being listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Its next inner page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
}

/// What a two-level listing reads next.
pub(super) enum Step {
    /// An inner page of this name (a pipeline, a package group).
    Inner(String),
    /// Nothing: the listing is over.
    Done,
    /// Nothing in this page (the outer pages read for it listed nothing to go into).
    Later,
}

/// One outer page: the names to go into and the next page's token; `None` when the API
/// refused the saved token for good (the listing starts over).
pub(super) type OuterPage = Option<(Vec<String>, Option<String>)>;

/// An outer page `op` could not read: a saved page token refused for good (expired) starts
/// the listing over; anything else is the error.
pub(super) fn outer_refused(op: &str, with_token: bool, err: SyncError) -> Result<OuterPage, SyncError> {
    if with_token && !err.is_retryable() {
        tracing::warn!(error = %err.chain(), "{op} refused the saved page token; listing again from the start");
        return Ok(None);
    }
    Err(err)
}

impl Place {
    /// The name whose inner page comes next, reading outer pages (at most `max`) with
    /// `read_outer` as needed.
    pub(super) async fn step<F, Fut>(&mut self, max: usize, mut read_outer: F) -> Result<Step, SyncError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<OuterPage, SyncError>>,
    {
        let mut pages = 0;
        loop {
            if let Some(c) = &self.current {
                return Ok(Step::Inner(c.clone()));
            }
            if !self.queue.is_empty() {
                self.current = Some(self.queue.remove(0));
                self.inner = None;
                continue;
            }
            if self.listed && self.outer.is_none() {
                return Ok(Step::Done);
            }
            if pages == max {
                return Ok(Step::Later);
            }
            pages += 1;
            match read_outer(self.outer.clone()).await? {
                Some((names, next)) => {
                    self.listed = true;
                    self.queue = names;
                    self.outer = next.filter(|t| !t.is_empty() && Some(t) != self.outer.as_ref());
                }
                None => *self = Place::default(),
            }
        }
    }

    /// Where the current name's inner listing goes on (`None`, or a token that does not move:
    /// it is over).
    pub(super) fn advance(&mut self, next: Option<String>) {
        match next.filter(|t| Some(t) != self.inner.as_ref()) {
            Some(t) => self.inner = Some(t),
            None => {
                self.current = None;
                self.inner = None;
            }
        }
    }

    /// Whether nothing is left to list.
    pub(super) fn over(&self) -> bool {
        self.current.is_none() && self.queue.is_empty() && self.listed && self.outer.is_none()
    }
}

impl SageMakerSource {
    /// The page of a two-level listing after an inner page (`jobs`): the listing's end (a
    /// poll's next starts from this one's start less the overlap; a range starts over), or
    /// where it goes on.
    pub(super) fn place_page(&self, scope: &ListScope, cursor: &Cursor, started: DateTime<Utc>, place: &Place, jobs: Vec<JobRef>) -> Page {
        if place.over() {
            return Page { jobs, problems: Vec::new(), next: self.end_cursor(scope, started), done: true };
        }
        let next = Cursor { watermark: cursor.watermark, token: Some(place.encode()), started: Some(started), ..Default::default() };
        Page { jobs, problems: Vec::new(), next, done: false }
    }
}

impl Place {
    const PREFIX: &'static str = "pl:";
    pub(super) fn parse(token: Option<&str>) -> Place {
        token.and_then(|t| t.strip_prefix(Self::PREFIX)).and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
    }
    pub(super) fn encode(&self) -> String {
        format!("{}{}", Self::PREFIX, serde_json::to_string(self).unwrap_or_default())
    }
}

/// Executions whose processing outputs are kept (oldest dropped first).
const EXECUTIONS_KEPT: usize = 256;

/// What a training job of an execution needs of it: when its steps were read, and the
/// processing jobs' outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    /// When the steps were read.
    pub read_at: DateTime<Utc>,
    /// Processing outputs, with the step that made each.
    pub outputs: Vec<Producer>,
}

/// The processing outputs of each execution seen lately, by ARN. One read at a time per
/// execution (the others wait for it); a read is used for a job created before it (a job reads
/// what steps that ended before it started wrote, so the read saw them; a tuning step's
/// children too), else read again.
#[derive(Debug, Default)]
pub struct ExecutionCache(Mutex<IndexMap<String, Slot>>);

/// One execution's kept read, behind the lock its readers take in turn.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<ExecutionInfo>>>>;

impl ExecutionCache {
    fn cell(&self, arn: &str) -> Slot {
        let Ok(mut m) = self.0.lock() else { return Default::default() };
        // The latest used last: the oldest is dropped first.
        let cell = m.shift_remove(arn).unwrap_or_default();
        m.insert(arn.to_string(), cell.clone());
        while m.len() > EXECUTIONS_KEPT {
            m.shift_remove_index(0);
        }
        cell
    }
}

fn aws_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|x| DateTime::parse_from_rfc3339(x).ok()).map(|d| d.with_timezone(&Utc))
}

/// Whether a reference names a pipeline execution (by its ARN, or by the job it carries).
pub fn is_execution(r: &JobRef) -> bool {
    r.job.as_ref().is_some_and(|j| j.lineage.kind == ResourceKind::PipelineExecution)
        || execution_parts(r.arn.as_deref().unwrap_or(&r.name)).is_some()
}

/// Whether `uri` is `output` or lies under it.
fn under(uri: &str, output: &str) -> bool {
    let o = output.trim_end_matches('/');
    !o.is_empty() && (uri == o || uri.strip_prefix(o).is_some_and(|rest| rest.starts_with('/')))
}

/// One step as the document [`execution_from_document`] reads.
fn step_document(s: &aws_sdk_sagemaker::types::PipelineExecutionStep) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("StepName".into(), json!(s.step_name().unwrap_or_default()));
    o.insert("StepStatus".into(), json!(s.step_status().map(|x| x.as_str()).unwrap_or_default()));
    if let Some(t) = s.start_time() {
        o.insert("StartTime".into(), convert::time(t));
    }
    if let Some(t) = s.end_time() {
        o.insert("EndTime".into(), convert::time(t));
    }
    if let Some(f) = s.failure_reason().filter(|f| !f.is_empty()) {
        o.insert("FailureReason".into(), json!(f));
    }
    if let Some(m) = s.metadata() {
        let arn = |a: Option<&str>| json!({"Arn": a.unwrap_or_default()});
        let meta = if let Some(x) = m.training_job() {
            Some(("TrainingJob", arn(x.arn())))
        } else if let Some(x) = m.processing_job() {
            Some(("ProcessingJob", arn(x.arn())))
        } else if let Some(x) = m.transform_job() {
            Some(("TransformJob", arn(x.arn())))
        } else if let Some(x) = m.tuning_job() {
            Some(("TuningJob", arn(x.arn())))
        } else if let Some(x) = m.model() {
            Some(("Model", arn(x.arn())))
        } else if let Some(x) = m.register_model() {
            Some(("RegisterModel", arn(x.arn())))
        } else if let Some(x) = m.auto_ml_job() {
            Some(("AutoMLJob", arn(x.arn())))
        } else if m.condition().is_some() {
            Some(("Condition", json!({})))
        } else if m.fail().is_some() {
            Some(("Fail", json!({})))
        } else {
            None
        };
        if let Some((k, v)) = meta {
            o.insert("Metadata".into(), json!({ k: v }));
        }
    }
    Value::Object(o)
}

impl SageMakerSource {
    /// One page of the pipeline-execution listing: one ListPipelineExecutions page (up to 100
    /// executions) of one pipeline that ran since the bound, its executions created since the
    /// bound, oldest first. Where the listing stands (the pipelines of the current
    /// ListPipelines page still to list, the one being listed and its page token) is the
    /// cursor's token, so a listing resumes where it stood and no pipeline's executions are cut.
    pub(super) async fn list_executions_page(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let f = &self.settings.filters;
        let started = cursor.started.unwrap_or_else(Utc::now);
        let (from, until) = match scope {
            ListScope::Range { from, until } => (*from, *until),
            ListScope::Incremental => (None, None),
        };
        // Executions by creation time: those created a while before the watermark (or the
        // range's start) may have ended since.
        let lower = [cursor.watermark.map(|w| w - LOOKBACK), from.map(|w| w - LOOKBACK), f.created_after].into_iter().flatten().max();
        let upper = [until, f.created_before].into_iter().flatten().min();
        let mut place = Place::parse(cursor.token.as_deref());
        let pipeline = match place.step(MAX_PIPELINE_PAGES_PER_PAGE, |token| self.pipelines_page(token, lower)).await? {
            Step::Inner(p) => p,
            // Many pipelines that have not run lately: go on in the next page.
            Step::Done | Step::Later => return Ok(self.place_page(scope, cursor, started, &place, Vec::new())),
        };
        let (jobs, next_token) = self.executions_page(&pipeline, place.inner.as_deref(), lower, upper).await?;
        place.advance(next_token);
        let jobs = jobs
            .into_iter()
            .filter(|r| f.name_contains.as_ref().is_none_or(|n| r.name.contains(n.as_str())))
            .filter(|r| r.status.as_deref().is_none_or(|st| self.status_ok(st)))
            .collect();
        Ok(self.place_page(scope, cursor, started, &place, jobs))
    }

    /// One ListPipelines page from `token`: the pipelines that ran since `lower`, and the next
    /// page's token.
    async fn pipelines_page(&self, token: Option<String>, lower: Option<DateTime<Utc>>) -> Result<OuterPage, SyncError> {
        self.before("ListPipelines").await;
        let refused = token.is_some();
        let sent = self
            .clients()
            .await
            .sagemaker
            .list_pipelines()
            .max_results(self.settings.page_size)
            .sort_by(aws_sdk_sagemaker::types::SortPipelinesBy::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .set_next_token(token)
            .send()
            .await;
        let page = match sent {
            Ok(p) => p,
            Err(e) => return outer_refused("ListPipelines", refused, map_sdk_error("ListPipelines", "", e)),
        };
        let names = page
            .pipeline_summaries()
            .iter()
            .filter(|p| {
                // A pipeline that has not run since the bound has no execution to list.
                let last_run = p.last_execution_time().and_then(|t| time_of(&convert::time(t)));
                match (last_run, lower) {
                    (None, _) => false,
                    (Some(t), Some(l)) => t >= l,
                    (Some(_), None) => true,
                }
            })
            .filter_map(|p| p.pipeline_name().map(str::to_string))
            .collect();
        Ok(Some((names, page.next_token().map(str::to_string))))
    }

    /// One ListPipelineExecutions page of `pipeline` in the bounds, oldest first, as
    /// references, and the next page's token. A finished execution carries its start time
    /// (the ledger then skips it without a request), but a failed or stopped one only once it
    /// is older than [`RETRY_WINDOW`] (RetryPipelineExecution can still finish it); one still
    /// running carries none (read each poll).
    async fn executions_page(
        &self,
        pipeline: &str,
        token: Option<&str>,
        after: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    ) -> Result<(Vec<JobRef>, Option<String>), SyncError> {
        self.before("ListPipelineExecutions").await;
        let page = self
            .clients()
            .await
            .sagemaker
            .list_pipeline_executions()
            .pipeline_name(pipeline)
            .max_results(100)
            .sort_by(aws_sdk_sagemaker::types::SortPipelineExecutionsBy::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .set_created_after(after.map(aws_time))
            .set_created_before(before.map(aws_time))
            .set_next_token(token.map(str::to_string))
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => match map_sdk_error("ListPipelineExecutions", pipeline, e) {
                // Deleted while listed: nothing of it to list.
                SyncError::NotFound(_) => return Ok((Vec::new(), None)),
                err => return Err(err),
            },
        };
        let now = Utc::now();
        let mut out = Vec::new();
        for e in page.pipeline_execution_summaries() {
            let Some(arn) = e.pipeline_execution_arn() else { continue };
            let Some(name) = execution_name(arn) else { continue };
            let raw = e.pipeline_execution_status().map(|s| s.as_str().to_string()).unwrap_or_default();
            let start = e.start_time().and_then(|t| time_of(&convert::time(t)));
            let settled = match raw.as_str() {
                "Succeeded" => true,
                "Failed" | "Stopped" => start.is_some_and(|t| now - t > RETRY_WINDOW),
                _ => false,
            };
            out.push(JobRef {
                name,
                arn: Some(arn.to_string()),
                // A millisecond before the start: never an execution's own LastModifiedTime
                // (which an entry read while it ran may hold), so the first listing after it
                // settled is worked on, and the ledger then knows this time.
                last_modified: if settled { start.map(|t| t - chrono::Duration::milliseconds(1)) } else { None },
                status: Some(training_status_of_step(&raw).to_string()),
                ..Default::default()
            });
        }
        Ok((out, page.next_token().filter(|t| !t.is_empty()).map(str::to_string)))
    }

    /// Every step of an execution (ListPipelineExecutionSteps, every page), as documents.
    async fn execution_steps(&self, arn: &str) -> Result<Vec<Value>, SyncError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = HashSet::new();
        loop {
            self.before("ListPipelineExecutionSteps").await;
            let page = self
                .clients()
                .await
                .sagemaker
                .list_pipeline_execution_steps()
                .pipeline_execution_arn(arn)
                .max_results(100)
                .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListPipelineExecutionSteps", arn, e))?;
            out.extend(page.pipeline_execution_steps().iter().map(step_document));
            if out.len() > crate::document::MAX_EXECUTION_STEPS {
                return Err(SyncError::permanent(format!(
                    "pipeline execution `{arn}`: more than {} steps",
                    crate::document::MAX_EXECUTION_STEPS
                )));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => {
                    if !seen.insert(t.to_string()) {
                        return Err(SyncError::transient(format!(
                            "ListPipelineExecutionSteps `{arn}`: a page token came back twice; stopping"
                        )));
                    }
                    token = Some(t.to_string());
                }
                _ => return Ok(out),
            }
        }
    }

    /// A pipeline execution in full: DescribePipelineExecution, its pipeline's tags (from the
    /// reference, else ListTags on the pipeline) and its steps.
    pub(super) async fn fetch_execution(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
        let arn = r.arn.clone().unwrap_or_else(|| r.name.clone());
        self.before("DescribePipelineExecution").await;
        let out = self
            .clients()
            .await
            .sagemaker
            .describe_pipeline_execution()
            .pipeline_execution_arn(&arn)
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribePipelineExecution", &format!("pipeline execution `{arn}`"), e))?;
        let mut doc = serde_json::Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                doc.insert(k.into(), json!(v));
            }
        };
        put("PipelineArn", out.pipeline_arn());
        put("PipelineExecutionArn", out.pipeline_execution_arn());
        put("PipelineExecutionDisplayName", out.pipeline_execution_display_name());
        put("PipelineExecutionStatus", out.pipeline_execution_status().map(|s| s.as_str()));
        put("PipelineExecutionDescription", out.pipeline_execution_description());
        put("FailureReason", out.failure_reason());
        for (k, t) in [("CreationTime", out.creation_time()), ("LastModifiedTime", out.last_modified_time())] {
            if let Some(t) = t {
                doc.insert(k.into(), convert::time(t));
            }
        }
        let exec_arn = out.pipeline_execution_arn().unwrap_or(&arn).to_string();
        let tags = match (&r.tags, out.pipeline_arn()) {
            (Some(t), _) => Value::Array(t.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect()),
            (None, Some(p)) => self.list_tags(p).await?,
            (None, None) => Value::Array(Vec::new()),
        };
        doc.insert("Tags".into(), tags);
        doc.insert("Steps".into(), Value::Array(self.execution_steps(&exec_arn).await?));
        let doc = Value::Object(doc);
        let job = execution_from_document(&doc)
            .map_err(|e| SyncError::Malformed { origin: format!("pipeline execution {exec_arn}"), message: e.to_string() })?;
        if job.status.is_empty() {
            return Err(SyncError::Malformed {
                origin: format!("pipeline execution {exec_arn}"),
                message: "the API returned no status".into(),
            });
        }
        Ok(job)
    }

    /// Links a training job started by a pipeline to its execution (by the tag SageMaker puts
    /// on it), and each S3 channel it reads to the processing job whose output it is. Without
    /// `pipeline_executions`, nothing.
    pub(super) async fn add_pipeline(&self, job: &mut TrainingJob) -> Result<(), SyncError> {
        if !self.settings.pipeline_executions {
            return Ok(());
        }
        let Some(arn) = job.tags.get(PIPELINE_EXECUTION_TAG).map(str::to_string) else { return Ok(()) };
        let Some(name) = execution_name(&arn) else {
            tracing::info!(job = %job.name, tag = %arn, "the job's pipeline tag names no execution ARN; not linked");
            return Ok(());
        };
        // A tuner's child started by a pipeline's tuning step stays its tuner's child.
        if job.lineage.parent.is_none() {
            job.lineage.parent = Some(ParentRef { kind: ResourceKind::PipelineExecution, arn: arn.clone(), name });
        }
        if !job.channels.iter().any(|c| matches!(c.source, sagesync_core::DataSource::S3 { .. })) {
            return Ok(());
        }
        let Some(info) = self.execution_info(&arn, job.creation_time, &job.name).await? else { return Ok(()) };
        for c in job.channels.iter_mut() {
            let sagesync_core::DataSource::S3 { uri, .. } = &c.source else { continue };
            // The closest output (the longest URI) that holds the channel's data.
            c.produced_by = info.outputs.iter().filter(|o| under(uri, &o.uri)).max_by_key(|o| o.uri.trim_end_matches('/').len()).cloned();
        }
        Ok(())
    }

    /// The execution's steps and processing outputs, read once per execution while they cover
    /// `job` (`None`: the execution is gone or cannot be read for good).
    async fn execution_info(
        &self,
        arn: &str,
        created: Option<DateTime<Utc>>,
        job_name: &str,
    ) -> Result<Option<Arc<ExecutionInfo>>, SyncError> {
        let cell = self.executions.cell(arn);
        let mut held = cell.lock().await;
        if let Some(info) = held.as_ref().filter(|i| created.is_some_and(|c| c < i.read_at)) {
            return Ok(Some(info.clone()));
        }
        let read_at = Utc::now();
        let steps = match self.execution_steps(arn).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(job = %job_name, execution = %arn, error = %e.chain(), "cannot read the job's pipeline execution; its datasets are not linked");
                return Ok(None);
            }
        };
        let mut info = ExecutionInfo { read_at, outputs: Vec::new() };
        let mut processing: BTreeMap<String, String> = BTreeMap::new();
        for s in &steps {
            let Some((kind, meta)) = s.get("Metadata").and_then(Value::as_object).and_then(|m| m.iter().next()) else { continue };
            let Some(a) = meta.get("Arn").and_then(Value::as_str).filter(|a| !a.is_empty()) else { continue };
            if kind == "ProcessingJob" {
                processing.insert(a.to_string(), s.get("StepName").and_then(Value::as_str).unwrap_or_default().to_string());
            }
        }
        for (pj, step) in processing {
            let name = crate::document::name_in_arn(&pj).to_string();
            self.before("DescribeProcessingJob").await;
            let out = match self.clients().await.sagemaker.describe_processing_job().processing_job_name(&name).send().await {
                Ok(o) => o,
                Err(e) => match map_sdk_error("DescribeProcessingJob", &format!("processing job `{name}`"), e) {
                    e if e.is_retryable() => return Err(e),
                    e => {
                        tracing::info!(job = %job_name, processing_job = %name, error = %e.chain(), "cannot read a processing job of the pipeline; its outputs are not linked");
                        continue;
                    }
                },
            };
            let Some(cfg) = out.processing_output_config() else { continue };
            for o in cfg.outputs() {
                let Some(uri) = o.s3_output().and_then(|s| s.s3_uri()).filter(|u| !u.is_empty()) else { continue };
                info.outputs.push(Producer {
                    processing_job: out.processing_job_name().unwrap_or(&name).to_string(),
                    processing_job_arn: out.processing_job_arn().unwrap_or(&pj).to_string(),
                    output: o.output_name().unwrap_or_default().to_string(),
                    uri: uri.to_string(),
                    step: (!step.is_empty()).then(|| step.clone()),
                    pipeline_execution_arn: Some(arn.to_string()),
                });
            }
        }
        let info = Arc::new(info);
        *held = Some(info.clone());
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::execution_parts;

    #[test]
    fn a_uri_lies_under_an_output_at_a_path_boundary() {
        assert!(under("s3://b/prep/train", "s3://b/prep/train"));
        assert!(under("s3://b/prep/train/part-0.csv", "s3://b/prep/train/"));
        assert!(under("s3://b/prep/train/", "s3://b/prep/train"));
        assert!(!under("s3://b/prep/training", "s3://b/prep/train"), "a longer name is another prefix");
        assert!(!under("s3://b/other", "s3://b/prep"));
        assert!(!under("s3://b/x", ""));
    }

    #[test]
    fn executions_are_told_by_their_arn() {
        assert!(is_execution(&JobRef::by_name("arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc")));
        assert!(!is_execution(&JobRef::by_name("arn:aws:sagemaker:us-east-1:123456789012:pipeline/p")));
        assert!(!is_execution(&JobRef::by_name("arn:aws:sagemaker:us-east-1:1:training-job/t")));
        assert_eq!(execution_name("arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc").as_deref(), Some("p-abc"));
        for bad in [
            "arn:aws:sagemaker:us-east-1:1:pipeline/p/execution/abc",
            "arn:aws:s3:us-east-1:123456789012:pipeline/p/execution/abc",
            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/../x/execution/abc",
            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/a/b",
            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/-p/execution/abc",
            "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/",
            "arn:evil:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc",
        ] {
            assert!(execution_parts(bad).is_none(), "{bad}");
        }
        let long = format!("arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/{}", "a".repeat(3000));
        assert!(execution_parts(&long).is_none());
    }
}
