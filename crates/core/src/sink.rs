//! The [`Sink`] trait and what a write returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

pub use crate::delivery::{PendingNames, SinkReceipt, WriteKind};
use crate::error::SyncError;
use crate::model::RunRecord;

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
    /// The receipt this sink returned for this job the last time a write of it was committed
    /// (the ledger's delivery is *written*, or *kept*): lets a sink find (and clean up) a record
    /// whose name or project changed.
    pub previous: Option<SinkReceipt>,
    /// Set when an earlier attempt recorded its intent to write this job to this sink for the
    /// first time and its outcome never was (the ledger's delivery is *pending*: a crash or a
    /// lost lease between the write and the commit): the names the record was to be written
    /// under. The sink may hold that record: it looks for it under these names (and the job's
    /// ARN) before it creates one, and a retraction removes it. See `docs/writing-a-plugin.md`.
    pub pending: Option<PendingNames>,
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
    /// With the names of an earlier attempt's unfinished first write.
    pub fn with_pending(mut self, pending: Option<PendingNames>) -> Self {
        self.pending = pending;
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
    /// What in this sink's settings decides what it writes (its store, its naming, its options),
    /// as a string: when it changes, every job is delivered to it again. A sink built from a
    /// config file is fingerprinted by its table; this is what tells apart sinks assembled in
    /// code ([`EngineBuilder`](crate::EngineBuilder)). Default: nothing.
    fn fingerprint(&self) -> String {
        String::new()
    }
}
