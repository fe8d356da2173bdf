//! The four plugin traits: [`Source`], [`Validator`], [`Mapper`] and [`Sink`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::model::{RunRecord, Timestamp, TrainingJob};

/// Where a source stands: everything modified strictly before `watermark` has been listed, and
/// `seen_at_watermark` holds the ARNs already listed at exactly `watermark`, so that jobs that
/// share a timestamp are neither lost nor repeated across pages and polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Highest `LastModifiedTime` listed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Timestamp>,
    /// ARNs already listed whose `LastModifiedTime` equals `watermark`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen_at_watermark: BTreeSet<String>,
    /// Source-specific continuation state (page token, file offset...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Cursor {
    /// Whether a job modified at `at` with this `arn` is already behind the cursor.
    pub fn covers(&self, at: Option<Timestamp>, arn: &str) -> bool {
        match (self.watermark, at) {
            (Some(w), Some(t)) => t < w || (t == w && self.seen_at_watermark.contains(arn)),
            _ => false,
        }
    }
    /// Moves the cursor over a job modified at `at`.
    pub fn advance(&mut self, at: Option<Timestamp>, arn: &str) {
        let Some(t) = at else { return };
        match self.watermark {
            Some(w) if t < w => {}
            Some(w) if t == w => {
                self.seen_at_watermark.insert(arn.to_string());
            }
            _ => {
                self.watermark = Some(t);
                self.seen_at_watermark.clear();
                self.seen_at_watermark.insert(arn.to_string());
            }
        }
    }
}

/// A reference to one job, as a listing returns it.
#[derive(Debug, Clone)]
pub struct JobRef {
    /// Training job name.
    pub name: String,
    /// ARN, when the listing knows it.
    pub arn: Option<String>,
    /// `LastModifiedTime`, when the listing knows it.
    pub last_modified: Option<Timestamp>,
    /// Where the reference came from (file path and position, event id...), for messages.
    pub origin: Option<String>,
    /// The full job, when the listing already returned it (recorded files, Search): then
    /// [`Source::fetch`] is not called.
    pub job: Option<Arc<TrainingJob>>,
}

impl JobRef {
    /// A reference by name only.
    pub fn by_name(name: impl Into<String>) -> Self {
        JobRef { name: name.into(), arn: None, last_modified: None, origin: None, job: None }
    }
    /// A reference that carries the whole job.
    pub fn with_job(job: TrainingJob, origin: Option<String>) -> Self {
        JobRef {
            name: job.name.clone(),
            arn: Some(job.arn.clone()),
            last_modified: job.last_modified_time,
            origin,
            job: Some(Arc::new(job)),
        }
    }
}

/// An entry that a listing could not turn into a job (a malformed file or record). It is
/// reported as a failed job; the rest of the listing still syncs.
#[derive(Debug)]
pub struct ListingProblem {
    /// Where (file:line:column...).
    pub origin: String,
    /// What went wrong.
    pub error: SyncError,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// Jobs on this page, in the order to sync them (oldest modification first).
    pub jobs: Vec<JobRef>,
    /// Entries that could not be read.
    pub problems: Vec<ListingProblem>,
    /// Where the listing continues; pass it to the next [`Source::list`] call.
    pub next: Cursor,
    /// Whether another page follows right away.
    pub more: bool,
}

/// Yields training jobs.
#[async_trait]
pub trait Source: Send + Sync {
    /// Lists job references after `cursor` (one page; `Listing::more` says whether to call again
    /// with `Listing::next`).
    async fn list(&self, cursor: &Cursor) -> Result<Listing, SyncError>;
    /// Fetches one job in full.
    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError>;
    /// Calls made to the remote API so far, per operation (for the run summary).
    fn api_calls(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

/// A validator's decision about one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Go on with the next validator, then map and sync.
    Sync,
    /// Not meant to be synced (a normal outcome, e.g. no opt-in tag).
    Skip {
        /// Why.
        reason: String,
    },
    /// Meant to be synced but unusable (e.g. a required tag missing).
    Reject {
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// Decides whether a job should be synced.
#[async_trait]
pub trait Validator: Send + Sync {
    /// Checks one job.
    async fn validate(&self, job: &TrainingJob) -> Verdict;
}

/// Turns a [`TrainingJob`] into a [`RunRecord`].
#[async_trait]
pub trait Mapper: Send + Sync {
    /// Maps one job. An error here rejects the job.
    async fn map(&self, job: &TrainingJob) -> Result<RunRecord, SyncError>;
}

/// What a sink did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// The run did not exist and was created.
    Created,
    /// The run existed and something was written to it.
    Updated,
    /// The run existed and nothing needed writing.
    Unchanged,
    /// The run was removed (or marked superseded) because the job is no longer eligible or moved.
    Removed,
}

/// Proof of a sink write: the store's ids for the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkReceipt {
    /// The sink's id in the pipeline (its `id` or `type`).
    pub sink: String,
    /// What happened.
    pub write: WriteKind,
    /// Ids in the store (`project_id`, `run_id`, `path`...).
    pub ids: BTreeMap<String, String>,
    /// Number of write requests made.
    pub writes: u32,
}

impl SinkReceipt {
    /// A receipt with no ids yet.
    pub fn new(write: WriteKind) -> Self {
        SinkReceipt { sink: String::new(), write, ids: BTreeMap::new(), writes: 0 }
    }
    /// Adds an id.
    pub fn id(mut self, key: &str, value: impl ToString) -> Self {
        self.ids.insert(key.to_string(), value.to_string());
        self
    }
}

/// What the engine knows about a write besides the record itself.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WriteContext {
    /// The receipt this sink returned for this job the last time it wrote it, when the ledger
    /// has one: lets a sink find (and clean up) a record whose name or project changed.
    pub previous: Option<SinkReceipt>,
    /// When the caller needs an answer (the Lambda's invocation deadline); a sink should not
    /// start a request that cannot finish before it.
    pub deadline: Option<std::time::Instant>,
}

impl WriteContext {
    /// A context with nothing known.
    pub fn new() -> Self {
        Self::default()
    }
    /// With the previous receipt.
    pub fn with_previous(mut self, previous: Option<SinkReceipt>) -> Self {
        self.previous = previous;
        self
    }
    /// With a deadline.
    pub fn with_deadline(mut self, deadline: Option<std::time::Instant>) -> Self {
        self.deadline = deadline;
        self
    }
}

/// Writes records to a metadata store. `upsert` must be idempotent, keyed by
/// `record.run.external_id` (the job ARN): writing the same record twice creates nothing new,
/// and one job has one record per sink whatever its name or project.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Creates or updates the run for `record`.
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError>;
    /// Removes the record of `external_id` (or marks it superseded, where the store cannot
    /// delete), because the job is no longer eligible. `Ok(None)` means this sink keeps records
    /// of jobs that become ineligible (the default).
    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let _ = (external_id, cx);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cursor_handles_equal_timestamps() {
        let t1 = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t2 = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        let mut c = Cursor::default();
        assert!(!c.covers(Some(t1), "a"));
        c.advance(Some(t1), "a");
        assert!(c.covers(Some(t1), "a"));
        assert!(!c.covers(Some(t1), "b"));
        c.advance(Some(t1), "b");
        assert!(c.covers(Some(t1), "b"));
        c.advance(Some(t2), "c");
        assert!(c.covers(Some(t1), "zzz"), "anything before the watermark is covered");
        assert!(!c.covers(Some(t2), "d"));
        assert_eq!(c.seen_at_watermark.len(), 1);
    }
}
