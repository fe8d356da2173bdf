//! The [`Sink`] trait and what a write returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
    /// Cuts the receipt to what the ledger keeps: at most
    /// [`RECEIPT_IDS`](crate::state::limits::RECEIPT_IDS) ids, each of at most
    /// [`ID_CHARS`](crate::state::limits::ID_CHARS) characters. A receipt holds the store's ids,
    /// digests and counts, never lists that grow with a job's content.
    pub fn bound(&mut self) {
        use crate::state::limits::{ID_CHARS, RECEIPT_IDS};
        if self.ids.len() > RECEIPT_IDS {
            let extra: Vec<String> = self.ids.keys().skip(RECEIPT_IDS - 1).cloned().collect();
            for k in &extra {
                self.ids.remove(k);
            }
            self.ids.insert("omitted_ids".into(), extra.len().to_string());
        }
        for v in self.ids.values_mut() {
            crate::state::cut_text(v, ID_CHARS);
        }
    }
}

/// Whether the engine still holds the job's lease: what a sink checks (through
/// [`WriteContext::check`]) before every request it sends to its store. The engine renews the
/// lease in the background; when a renewal fails for good, or the lease's time runs out without
/// one (a process paused by `SIGSTOP`, a stalled state store), the guard stops holding, and no
/// further request of the job may reach a store: another writer may own the job by then.
///
/// A default guard always holds (a job worked on without a lease).
#[derive(Clone, Default)]
pub struct LeaseGuard(Option<Arc<GuardState>>);

struct GuardState {
    origin: Instant,
    /// Milliseconds after `origin` at which the lease must be taken as lapsed.
    valid_until_ms: AtomicU64,
    lost: AtomicBool,
}

impl LeaseGuard {
    /// A guard that holds until `valid_until` unless extended.
    pub fn new(valid_until: Instant) -> Self {
        let origin = Instant::now();
        let g = GuardState { origin, valid_until_ms: AtomicU64::new(0), lost: AtomicBool::new(false) };
        g.valid_until_ms.store(valid_until.saturating_duration_since(origin).as_millis() as u64, Ordering::SeqCst);
        LeaseGuard(Some(Arc::new(g)))
    }
    /// Moves the end of validity to `until` (after a successful renewal).
    pub fn extend(&self, until: Instant) {
        if let Some(g) = &self.0 {
            g.valid_until_ms.store(until.saturating_duration_since(g.origin).as_millis() as u64, Ordering::SeqCst);
        }
    }
    /// Marks the lease lost for good.
    pub fn lose(&self) {
        if let Some(g) = &self.0 {
            g.lost.store(true, Ordering::SeqCst);
        }
    }
    /// Whether the lease still holds now.
    pub fn holds(&self) -> bool {
        match &self.0 {
            None => true,
            Some(g) => !g.lost.load(Ordering::SeqCst) && (g.origin.elapsed().as_millis() as u64) < g.valid_until_ms.load(Ordering::SeqCst),
        }
    }
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard").field("holds", &self.holds()).finish()
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
    /// The job's lease: [`WriteContext::check`] reads it.
    pub guard: LeaseGuard,
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
    /// With the job's lease guard.
    pub fn with_guard(mut self, guard: LeaseGuard) -> Self {
        self.guard = guard;
        self
    }
    /// What a sink calls before **every** request to its store: `Err(SyncError::Cancelled)` when
    /// the job's lease no longer holds (another writer may own the job: nothing more of this
    /// attempt may reach a store) or the deadline has passed. Cancellation is never a verdict on
    /// the job: the engine records nothing and the job is picked up again.
    pub fn check(&self) -> Result<(), SyncError> {
        if !self.guard.holds() {
            return Err(SyncError::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(SyncError::Cancelled);
        }
        Ok(())
    }
    /// The time left before the deadline (`None` when there is none): a sink caps each
    /// request's timeout with it, so that no request outlives the job's deadline.
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Writes records to a metadata store. `upsert` must be idempotent, keyed by
/// `record.run.external_id` (the job ARN): writing the same record twice creates nothing new,
/// and one job has one record per sink whatever its name or project.
///
/// Before every request to its store, a sink calls [`WriteContext::check`] and stops with its
/// error when it fails; each request's timeout is capped by [`WriteContext::time_left`]. A sink
/// classifies its errors (retryable or not) and returns: the engine alone retries.
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
