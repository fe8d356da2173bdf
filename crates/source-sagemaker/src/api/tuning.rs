//! Hyperparameter tuning jobs: listed after the training jobs, with their own cursor (a part of
//! the source's cursor), fetched with their children, and linked to from their children.
//!
//! A listing runs the training jobs to their end, then the tuning jobs from the cursor part
//! [`TUNERS`]; a cursor saved in between (a page of each) resumes where it stood. A tuner's
//! `LastModifiedTime` moves as its children finish, so a poll lists it again when one does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use sagesync_core::{ChildSummary, Cursor, JobRef, ListScope, Objective, Page, SyncError, TrainingJob};
use serde_json::Value;

use super::client::map_sdk_error;
use super::convert;
use super::packages::PACKAGES;
use super::pipelines::PIPELINES;
use super::source::SageMakerSource;
use crate::document::{child_objective, name_in_arn, tuner_from_document};

/// The cursor part of the tuning-job listing.
pub const TUNERS: &str = "tuning_jobs";

/// Children read per tuner at most: SageMaker runs at most a few hundred training jobs per
/// tuner; a reply that keeps paging past this is refused rather than held in memory.
pub const MAX_CHILDREN: usize = 10_000;

/// Pages of running tuners read per poll at most (100 each).
const MAX_RUNNING_PAGES: usize = 10;

/// Tuners' objectives kept for their children (entries, oldest dropped first).
const OBJECTIVES_KEPT: usize = 256;

/// The objective of each tuner seen lately, by ARN (`None`: the tuner has none, or is gone).
/// One read per tuner however many of its children are worked on at once: the first reads,
/// the others wait for its answer (a failed read is not kept; the next child reads again).
#[derive(Debug, Default)]
pub struct ObjectiveCache(Mutex<IndexMap<String, Arc<OnceCell<TunerInfo>>>>);

/// What a tuner's children need of it: its name as SageMaker spells it (an ARN lower-cases it)
/// and its objective (`None`: it has none, or it is gone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TunerInfo {
    /// `HyperParameterTuningJobName`, when the tuner was read.
    pub name: Option<String>,
    /// Its objective.
    pub objective: Option<Objective>,
}

impl ObjectiveCache {
    fn cell(&self, arn: &str) -> Arc<OnceCell<TunerInfo>> {
        let Ok(mut m) = self.0.lock() else { return Arc::new(OnceCell::new()) };
        let cell = m.entry(arn.to_string()).or_default().clone();
        while m.len() > OBJECTIVES_KEPT {
            m.shift_remove_index(0);
        }
        cell
    }
    fn put(&self, arn: &str, o: TunerInfo) {
        let fresh = Arc::new(OnceCell::new_with(Some(o)));
        if let Ok(mut m) = self.0.lock() {
            m.insert(arn.to_string(), fresh);
            while m.len() > OBJECTIVES_KEPT {
                m.shift_remove_index(0);
            }
        }
    }
    #[cfg(test)]
    fn get(&self, arn: &str) -> Option<TunerInfo> {
        self.0.lock().ok()?.get(arn).and_then(|c| c.get().cloned())
    }
}

fn aws_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

/// Whether a reference names a tuning job (by its ARN, or by the job it carries).
pub fn is_tuner(r: &JobRef) -> bool {
    r.job.as_ref().is_some_and(|j| j.lineage.kind == sagesync_core::ResourceKind::TuningJob)
        || r.arn.as_deref().unwrap_or(&r.name).contains(":hyper-parameter-tuning-job/")
}

impl SageMakerSource {
    /// The kinds listed after the training jobs, in order: their cursor part, what they are,
    /// and whether they are on.
    fn later_kinds(&self) -> [(&'static str, &'static str, bool); 3] {
        let s = &self.settings;
        [
            (TUNERS, "tuning jobs", s.tuning_jobs),
            (PIPELINES, "pipeline executions", s.pipeline_executions),
            (PACKAGES, "model packages", s.model_packages),
        ]
    }

    /// One page of the whole listing: training jobs to their end, then tuning jobs, pipeline
    /// executions and model packages (each kind that is on). A later kind's cursor part has a
    /// start time while it is being listed. A kind's last page that lists nothing goes straight
    /// on to the next kind in the same page: an idle poll saves its cursor once, not once per
    /// kind.
    pub(super) async fn list_kinds(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let kinds = self.later_kinds();
        let phase = |c: &Cursor| -> usize {
            (0..kinds.len()).rev().find(|&i| c.parts.get(kinds[i].0).is_some_and(|p| p.started.is_some())).map_or(0, |i| i + 1)
        };
        let mut at = cursor.clone();
        // A kind turned off since the cursor was saved leaves no place behind.
        for (part, _, on) in kinds {
            if !on {
                at.parts.remove(part);
            }
        }
        for _ in 0..kinds.len() {
            let page = self.list_phase(scope, &at).await?;
            let moved_on = !page.done && page.jobs.is_empty() && page.problems.is_empty() && phase(&page.next) > phase(&at);
            if !moved_on {
                return Ok(page);
            }
            at = page.next;
        }
        self.list_phase(scope, &at).await
    }

    /// One page of the kind `cursor` stands in.
    async fn list_phase(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let kinds = self.later_kinds();
        let started = |i: usize| cursor.parts.get(kinds[i].0).is_some_and(|p| p.started.is_some());
        let current = (0..kinds.len()).rev().find(|&i| kinds[i].2 && started(i)).or_else(|| {
            if self.settings.training_jobs {
                None
            } else {
                (0..kinds.len()).find(|&i| kinds[i].2)
            }
        });
        let (mut page, after) = match current {
            Some(i) => {
                let part = cursor.parts.get(kinds[i].0).cloned().unwrap_or_default();
                let listed = match i {
                    0 => self.list_tuners_page(scope, &part).await,
                    1 => self.list_executions_page(scope, &part).await,
                    _ => self.list_packages_page(scope, &part).await,
                };
                let mut page = match listed {
                    Ok(p) => p,
                    Err(e) => kind_failed(kinds[i].1, &part, e)?,
                };
                let mut next = cursor.clone();
                next.parts.insert(kinds[i].0.into(), std::mem::take(&mut page.next));
                page.next = next;
                (page, i + 1)
            }
            None => {
                let main = Cursor { parts: BTreeMap::new(), ..cursor.clone() };
                let mut page = self.list_training(scope, &main).await?;
                page.next.parts = cursor.parts.clone();
                (page, 0)
            }
        };
        if page.done {
            // The next kind that is on, from its own watermark.
            if let Some(j) = (after..kinds.len()).find(|&j| kinds[j].2) {
                let part = cursor.parts.get(kinds[j].0).cloned().unwrap_or_default();
                page.next.parts.insert(kinds[j].0.into(), Cursor { started: Some(Utc::now()), ..part });
                page.done = false;
            }
        }
        Ok(page)
    }

    /// One ListHyperParameterTuningJobs page, by the tuners' own watermark (as training jobs
    /// are listed in `list` mode, whatever the mode: SageMaker's Search has no tag-bearing
    /// records of tuners to save calls with).
    async fn list_tuners_page(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError> {
        let f = &self.settings.filters;
        let started = cursor.started.unwrap_or_else(Utc::now);
        let (from, until) = match scope {
            ListScope::Range { from, until } => (*from, *until),
            ListScope::Incremental => (None, None),
        };
        let lower = [cursor.watermark, from, f.modified_after].into_iter().flatten().max();
        let upper = [until, f.modified_before].into_iter().flatten().min();
        // The API's bound is strict: start a second early.
        let after = lower.map(|t| t - chrono::Duration::seconds(1));
        self.before("ListHyperParameterTuningJobs").await;
        let sent = self
            .clients()
            .await
            .sagemaker
            .list_hyper_parameter_tuning_jobs()
            .max_results(self.settings.page_size)
            .sort_by(aws_sdk_sagemaker::types::HyperParameterTuningJobSortByOptions::CreationTime)
            .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
            .set_last_modified_time_after(after.map(aws_time))
            .set_last_modified_time_before(upper.map(aws_time))
            .set_creation_time_after(f.created_after.map(aws_time))
            .set_creation_time_before(f.created_before.map(aws_time))
            .set_name_contains(f.name_contains.clone())
            .set_next_token(cursor.token.clone())
            .send()
            .await;
        let page = match sent {
            Ok(p) => p,
            Err(e) => {
                let err = map_sdk_error("ListHyperParameterTuningJobs", "", e);
                let restart = refused_token("ListHyperParameterTuningJobs", cursor, err)?;
                return Box::pin(self.list_tuners_page(scope, &restart)).await;
            }
        };
        let mut jobs: Vec<JobRef> = page.hyper_parameter_tuning_job_summaries().iter().map(tuner_ref).collect();
        if cursor.token.is_none() && matches!(scope, ListScope::Incremental) {
            // A running tuner's children finish without moving its LastModifiedTime (it tells
            // its status's changes): each poll lists the running ones again, without a time,
            // so that each is fetched and its content compared with the ledger's.
            for r in self.running_tuners().await? {
                match jobs.iter_mut().find(|j| j.arn == r.arn) {
                    Some(j) => j.last_modified = None,
                    None => jobs.push(r),
                }
            }
        }
        Ok(self.kind_page(scope, jobs, page.next_token(), cursor, started))
    }

    /// Every tuner in progress (ListHyperParameterTuningJobs, StatusEquals InProgress, every
    /// page up to a bound), as references without a time.
    async fn running_tuners(&self) -> Result<Vec<JobRef>, SyncError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_RUNNING_PAGES {
            self.before("ListHyperParameterTuningJobs").await;
            let page = self
                .clients()
                .await
                .sagemaker
                .list_hyper_parameter_tuning_jobs()
                .max_results(100)
                .status_equals(aws_sdk_sagemaker::types::HyperParameterTuningJobStatus::InProgress)
                .set_name_contains(self.settings.filters.name_contains.clone())
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListHyperParameterTuningJobs", "InProgress", e))?;
            out.extend(page.hyper_parameter_tuning_job_summaries().iter().map(|t| JobRef { last_modified: None, ..tuner_ref(t) }));
            match page.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// A tuning job in full: DescribeHyperParameterTuningJob, its tags (from the reference,
    /// else ListTags) and its children (ListTrainingJobsForHyperParameterTuningJob, oldest
    /// first, every page).
    pub(super) async fn fetch_tuner(&self, r: &JobRef) -> Result<TrainingJob, SyncError> {
        // By ARN, or by a name that is one (`sagesync sync-job <ARN>`).
        let name = name_in_arn(r.arn.as_deref().unwrap_or(&r.name)).to_string();
        self.before("DescribeHyperParameterTuningJob").await;
        let out = self
            .clients()
            .await
            .sagemaker
            .describe_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(&name)
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeHyperParameterTuningJob", &format!("tuning job `{name}`"), e))?;
        let mut doc = convert::tuner_document(&out);
        let arn = out.hyper_parameter_tuning_job_arn().unwrap_or_default().to_string();
        let tags = match &r.tags {
            Some(t) => Value::Array(t.iter().map(|t| serde_json::json!({"Key": t.key, "Value": t.value})).collect()),
            None => self.list_tags(&arn).await?,
        };
        let mut children = self.tuner_children(out.hyper_parameter_tuning_job_name().unwrap_or(&name)).await?;
        // Oldest first, ties by ARN: the same order on every read (the first eligible child
        // decides a parent's project).
        let key = |v: &Value| {
            let t = v.get("CreationTime").and_then(Value::as_str).and_then(|t| time_of(&Value::String(t.to_string())));
            (t, v.get("TrainingJobArn").and_then(Value::as_str).unwrap_or_default().to_string())
        };
        children.sort_by_key(key);
        if let Some(o) = doc.as_object_mut() {
            o.insert("Tags".into(), tags);
            o.insert("Children".into(), Value::Array(children));
        }
        let job =
            tuner_from_document(&doc).map_err(|e| SyncError::Malformed { origin: format!("tuning job {name}"), message: e.to_string() })?;
        if job.arn.is_empty() || job.status.is_empty() {
            return Err(SyncError::Malformed { origin: format!("tuning job {name}"), message: "the API returned no ARN or status".into() });
        }
        let objective = job.lineage.tuning.as_ref().and_then(|t| t.objective.clone());
        self.objectives.put(&job.arn, TunerInfo { name: Some(job.name.clone()), objective });
        Ok(job)
    }

    /// Every child of a tuner, oldest first, as summary documents.
    async fn tuner_children(&self, tuner: &str) -> Result<Vec<Value>, SyncError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            self.before("ListTrainingJobsForHyperParameterTuningJob").await;
            let page = self
                .clients()
                .await
                .sagemaker
                .list_training_jobs_for_hyper_parameter_tuning_job()
                .hyper_parameter_tuning_job_name(tuner)
                .max_results(100)
                .sort_by(aws_sdk_sagemaker::types::TrainingJobSortByOptions::CreationTime)
                .sort_order(aws_sdk_sagemaker::types::SortOrder::Ascending)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListTrainingJobsForHyperParameterTuningJob", &format!("tuning job `{tuner}`"), e))?;
            out.extend(page.training_job_summaries().iter().map(convert::child_document));
            if out.len() > MAX_CHILDREN {
                return Err(SyncError::permanent(format!("tuning job `{tuner}`: more than {MAX_CHILDREN} training jobs")));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => {
                    if !seen.insert(t.to_string()) {
                        return Err(SyncError::transient(format!(
                            "ListTrainingJobsForHyperParameterTuningJob `{tuner}`: a page token came back twice; stopping"
                        )));
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// A child of a tuner with what validators read: its status (from the summary) and tags.
    pub(super) async fn tuner_child(&self, c: &ChildSummary) -> Result<TrainingJob, SyncError> {
        let tags = self.list_tags(&c.arn).await?;
        let mut job = TrainingJob::new(c.name.clone(), c.arn.clone(), c.status.clone());
        job.tags = crate::document::parse_tags(&tags, "Tags")
            .map_err(|e| SyncError::Malformed { origin: format!("ListTags {}", c.arn), message: e.to_string() })?;
        Ok(job)
    }

    /// Sets a tuner's child's objective status and value, from its tuner's objective (read once
    /// per tuner, then kept). A tuner that is gone leaves the child without one; a tuner that
    /// cannot be read fails the attempt as the read did. Without `tuning_jobs`, a training job
    /// gets no lineage at all.
    pub(super) async fn add_objective(&self, job: &mut TrainingJob) -> Result<(), SyncError> {
        if !self.settings.tuning_jobs {
            // Without `tuning_jobs`, a training job's record is what it was before tuners.
            job.lineage = Default::default();
            return Ok(());
        }
        let Some(parent) = job.lineage.parent.clone() else { return Ok(()) };
        let cell = self.objectives.cell(&parent.arn);
        let info = cell
            .get_or_try_init(|| async {
                self.before("DescribeHyperParameterTuningJob").await;
                let sent = self
                    .clients()
                    .await
                    .sagemaker
                    .describe_hyper_parameter_tuning_job()
                    .hyper_parameter_tuning_job_name(&parent.name)
                    .send()
                    .await;
                match sent {
                    Ok(out) => Ok(TunerInfo {
                        name: out.hyper_parameter_tuning_job_name().map(str::to_string),
                        objective: out.hyper_parameter_tuning_job_config().and_then(|c| c.hyper_parameter_tuning_job_objective()).map(
                            |o| Objective {
                                metric: o.metric_name().unwrap_or_default().to_string(),
                                objective_type: o.r#type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                            },
                        ),
                    }),
                    Err(e) => match map_sdk_error("DescribeHyperParameterTuningJob", &format!("tuning job `{}`", parent.name), e) {
                        // A tuner that is gone has no objective to stand against.
                        SyncError::NotFound(m) => {
                            tracing::info!(job = %job.name, error = %m, "the job's tuner is gone; no objective status recorded");
                            Ok(TunerInfo::default())
                        }
                        // Throttling, a timeout: not kept; the child's attempt fails as the read
                        // did, and the next reads again.
                        err if err.is_retryable() => Err(err),
                        // A tuner that cannot be read for good (an unreadable reply, no
                        // permission) is no fault of the child's content: it syncs without an
                        // objective status rather than fail with its tuner.
                        err => {
                            tracing::warn!(job = %job.name, error = %err.chain(), "cannot read the job's tuner; no objective status recorded");
                            Ok(TunerInfo::default())
                        }
                    },
                }
            })
            .await?
            .clone();
        job.lineage.objective = info.objective.as_ref().map(|o| child_objective(job, o));
        // The name as SageMaker spells it: the ARN the child names its tuner by is lower-case,
        // and the tuner's own record (a run, an experiment) goes by its real name.
        if let (Some(name), Some(p)) = (info.name, job.lineage.parent.as_mut()) {
            p.name = name;
        }
        Ok(())
    }
}

/// A later kind whose listing failed for good (a role without its permissions, a refused
/// request): reported as a problem, and that kind's listing ends here, its own watermark where
/// it stood, so that the kinds before it are listed on the next poll as always and this one is
/// tried again. Transient failures stay errors: the engine retries them.
fn kind_failed(what: &str, part: &Cursor, err: SyncError) -> Result<Page, SyncError> {
    if err.is_retryable() || err.is_cancelled() {
        return Err(err);
    }
    tracing::error!(error = %err.chain(), "listing {what} failed; the other kinds are listed, and this one again on the next poll");
    Ok(Page {
        jobs: Vec::new(),
        problems: vec![sagesync_core::ListingProblem {
            lists_again: true,
            ..sagesync_core::ListingProblem::at(format!("listing {what}"), err)
        }],
        next: Cursor { watermark: part.watermark, ..Default::default() },
        done: true,
    })
}

/// The cursor to list a later kind again from its watermark when the API refused the saved
/// page token for good (an expired token); the error itself otherwise.
pub(super) fn refused_token(op: &str, cursor: &Cursor, err: SyncError) -> Result<Cursor, SyncError> {
    if cursor.token.is_some() && !err.is_retryable() {
        tracing::warn!(error = %err.chain(), "{op} refused the saved page token; listing again from the watermark");
        return Ok(Cursor { watermark: cursor.watermark, started: cursor.started, ..Default::default() });
    }
    Err(err)
}

impl SageMakerSource {
    /// Where a later kind's listing that started at `started` and ran to its end leaves its
    /// cursor part: a poll's next starts from this one's start less the overlap; a range listed
    /// to its end starts over.
    pub(super) fn end_cursor(&self, scope: &ListScope, started: DateTime<Utc>) -> Cursor {
        match scope {
            ListScope::Incremental => self.next_poll_cursor(started),
            ListScope::Range { .. } => Cursor::default(),
        }
    }

    /// A later kind's page: with the API's next token (one that moves on), the listing goes on
    /// from it; at its end, a poll's next listing starts from this one's start less the
    /// overlap, and a range listed to its end starts over.
    pub(super) fn kind_page(
        &self,
        scope: &ListScope,
        jobs: Vec<JobRef>,
        token: Option<&str>,
        cursor: &Cursor,
        started: DateTime<Utc>,
    ) -> Page {
        match token {
            Some(t) if !t.is_empty() && Some(t) != cursor.token.as_deref() => Page {
                jobs,
                problems: Vec::new(),
                next: Cursor { watermark: cursor.watermark, token: Some(t.to_string()), started: Some(started), ..Default::default() },
                done: false,
            },
            _ => Page { jobs, problems: Vec::new(), next: self.end_cursor(scope, started), done: true },
        }
    }
}

/// A listed tuner as a reference (with its time: the listing's order).
fn tuner_ref(t: &aws_sdk_sagemaker::types::HyperParameterTuningJobSummary) -> JobRef {
    JobRef {
        name: t.hyper_parameter_tuning_job_name().unwrap_or_default().to_string(),
        arn: t.hyper_parameter_tuning_job_arn().map(str::to_string),
        last_modified: t.last_modified_time().or(t.creation_time()).and_then(|d| time_of(&convert::time(d))),
        status: t.hyper_parameter_tuning_job_status().map(|x| x.as_str().to_string()),
        ..Default::default()
    }
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|x| DateTime::parse_from_rfc3339(x).ok()).map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_latest_tuners() {
        let c = ObjectiveCache::default();
        for i in 0..(OBJECTIVES_KEPT + 10) {
            c.put(&format!("t{i}"), TunerInfo::default());
        }
        assert!(c.cell("new").get().is_none(), "an unknown tuner is read");
        assert_eq!(c.get("t0"), None, "the oldest went");
        assert_eq!(c.get(&format!("t{}", OBJECTIVES_KEPT + 9)), Some(TunerInfo::default()));
    }

    #[test]
    fn tuners_are_told_by_their_arn() {
        assert!(is_tuner(&JobRef { arn: Some("arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/t".into()), ..Default::default() }));
        assert!(is_tuner(&JobRef::by_name("arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/t")), "sync-job <ARN>");
        assert!(!is_tuner(&JobRef { arn: Some("arn:aws:sagemaker:us-east-1:1:training-job/t".into()), ..Default::default() }));
    }
}
