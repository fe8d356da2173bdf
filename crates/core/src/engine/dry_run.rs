//! The parts a dry run is assembled with (`--dry-run`, `[pipeline] dry_run`): the engine works
//! exactly as it always does, against sinks that write nothing and a ledger that reads the real
//! one and keeps its own writes in memory. Nothing reaches a store; the report says what would
//! have happened, and observers see no ledger writes (the scratch ledger's are not real).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::observer::{Event, Observer};
use super::report::{JobReport, PassReport};
use super::Engine;
use crate::error::SyncError;

use crate::model::{RunRecord, Timestamp};
use crate::sink::{Sink, SinkReceipt, WriteContext, WriteKind};
use crate::source::Cursor;
use crate::state::{Acquired, JobState, Lease, LedgerCounts, MemoryState, Outcome, StateError, StateStore};

/// A sink that writes nothing: every write and retraction answers at once, with a receipt that
/// says so.
pub(crate) struct DryRunSink;

#[async_trait]
impl Sink for DryRunSink {
    async fn upsert(&self, _: &RunRecord, _: &WriteContext) -> Result<SinkReceipt, SyncError> {
        Ok(SinkReceipt::new(WriteKind::Unchanged).id("dry_run", "nothing written"))
    }
    async fn retract(&self, _: &str, _: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        Ok(Some(SinkReceipt::new(WriteKind::Unchanged).id("dry_run", "nothing removed")))
    }
}

/// The ledger of a dry run: decisions read the real ledger (what is already synced needs
/// nothing), and everything the engine writes (leases, intents, outcomes, cursors) stays in
/// memory, over it. `counts`, `cursors` and `failed` show the real ledger, untouched.
pub(crate) struct DryRunState {
    real: Arc<dyn StateStore>,
    scratch: MemoryState,
}

impl DryRunState {
    pub fn new(real: Arc<dyn StateStore>) -> Self {
        DryRunState { real, scratch: MemoryState::new() }
    }
}

#[async_trait]
impl StateStore for DryRunState {
    fn location(&self) -> String {
        format!("{} (dry run: read only)", self.real.location())
    }
    fn persistent(&self) -> bool {
        // No intent is recorded: nothing is written that could need finding.
        false
    }
    async fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError> {
        // A dry-run daemon continues from its own cursors (and floor), as a real one would.
        match self.scratch.cursor(key).await? {
            Some(c) => Ok(Some(c)),
            None => self.real.cursor(key).await,
        }
    }
    async fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError> {
        self.scratch.save_cursor(key, cursor).await
    }
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        self.real.cursors().await
    }
    async fn jobs(&self, arns: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        let mine = self.scratch.jobs(arns).await?;
        let real = self.real.jobs(arns).await?;
        Ok(mine.into_iter().zip(real).map(|(m, r)| m.or(r)).collect())
    }
    async fn acquire(&self, arn: &str, owner: &str, ttl: Duration) -> Result<Acquired, StateError> {
        match self.scratch.acquire(arn, owner, ttl).await? {
            Acquired::Granted { lease, state: None } => {
                let state = self.real.jobs(&[arn.to_string()]).await?.pop().flatten().map(Box::new);
                Ok(Acquired::Granted { lease, state })
            }
            other => Ok(other),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        self.scratch.renew(lease, ttl).await
    }
    async fn commit(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        self.scratch.commit(lease, entry).await
    }
    async fn record(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        self.scratch.record(lease, entry).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        self.scratch.release(lease).await
    }
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        self.real.due(now, after, limit).await
    }
    async fn failed(&self, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        self.real.failed(after, limit).await
    }
    async fn unpark(&self, jobs: &[String]) -> Result<Vec<String>, StateError> {
        // What `retry` would unpark, read from the real ledger; nothing changes.
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.real.failed(after.as_deref(), 500).await?;
            let Some(last) = page.last().map(|e| e.arn.clone()) else { break };
            out.extend(page.into_iter().filter(|e| jobs.is_empty() || jobs.iter().any(|j| j == &e.arn || j == &e.job)).map(|e| e.arn));
            after = Some(last);
        }
        Ok(out)
    }
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        self.real.counts().await
    }
    fn scans_to_count(&self) -> bool {
        self.real.scans_to_count()
    }
}

/// An observer of a dry run: what the scratch ledger records (outcomes, intents, cursors) is not
/// reported as recorded; everything else passes through.
pub(crate) struct Quiet<'a>(pub &'a dyn Observer);

impl Observer for Quiet<'_> {
    fn event(&self, event: &Event<'_>) {
        if !matches!(event, Event::Recorded { .. } | Event::PageCommitted { .. }) {
            self.0.event(event)
        }
    }
}

impl Engine {
    /// The observer a pass reports to: quiet about scratch writes in a dry run.
    pub(super) fn observer<'a>(&self, obs: &'a dyn Observer, quiet: &'a Quiet<'a>) -> &'a dyn Observer {
        if self.settings.dry_run {
            quiet
        } else {
            obs
        }
    }
    /// A job's report as the caller sees it: in a dry run nothing was recorded or written, and
    /// a job that would sync says so.
    pub(super) fn as_reported(&self, mut r: JobReport) -> JobReport {
        if self.settings.dry_run {
            r.recorded = false;
            r.receipts.clear();
            if r.outcome == Outcome::Synced {
                r.reason = Some("dry run: nothing written".into());
            }
        }
        r
    }
    /// A pass's report as the caller sees it: a dry run saved no cursor.
    pub(super) fn pass_as_reported(&self, mut rep: PassReport) -> PassReport {
        if self.settings.dry_run {
            rep.cursor = None;
        }
        rep
    }
}
