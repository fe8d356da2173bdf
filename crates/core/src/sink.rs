//! The [`Sink`] trait and what a write returns.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::model::RunRecord;

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
    /// The ledger is persistent and has no earlier write of this job to this sink: most likely
    /// the record does not exist yet, so a sink may create before it searches. Only a hint (a
    /// write that crashed before its ledger row, or another tool, may have left a record): the
    /// sink must still find and settle duplicates.
    pub first_write: bool,
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
    /// Marks the write as the first one the ledger knows of.
    pub fn with_first_write(mut self, first: bool) -> Self {
        self.first_write = first;
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
