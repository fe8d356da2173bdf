//! What a pass returns: one [`JobReport`] per job worked on and a [`PassReport`] with the counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Stage;
use crate::model::Timestamp;
use crate::sink::SinkReceipt;
use crate::source::Cursor;
use crate::state::Outcome;

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job name (or the origin of an unreadable listing entry).
    pub job: String,
    /// ARN, when known.
    pub arn: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was skipped, rejected, failed or interrupted (or a note for synced jobs).
    pub reason: Option<String>,
    /// The stage that failed, for failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// Receipts of the sinks written (or retracted) in this pass, also for failed jobs.
    #[serde(default)]
    pub receipts: Vec<SinkReceipt>,
    /// Attempts made at the step that took the most.
    pub attempts: u32,
    /// The job's `LastModifiedTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<Timestamp>,
    /// Whether the failure was retryable.
    #[serde(default)]
    pub retryable: bool,
    /// The sinks whose write failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_sinks: Vec<String>,
    /// Whether the job is now parked (left alone until its content changes or `sagesync retry`).
    #[serde(default)]
    pub parked: bool,
    /// Whether the outcome is in the ledger.
    #[serde(default)]
    pub recorded: bool,
}

impl JobReport {
    /// A report for `job` with `outcome` and nothing else.
    pub fn new(job: impl Into<String>, arn: Option<String>, outcome: Outcome) -> Self {
        // What a report repeats of a job is bounded like the ledger's entry: a hostile name
        // does not fill logs and answers.
        let mut job = job.into();
        crate::state::cut_text(&mut job, crate::state::limits::NAME_CHARS);
        let arn = arn.map(|mut a| {
            crate::state::cut_text(&mut a, crate::state::limits::NAME_CHARS);
            a
        });
        JobReport {
            job,
            arn,
            outcome,
            reason: None,
            stage: None,
            receipts: Vec::new(),
            attempts: 0,
            last_modified: None,
            retryable: false,
            failed_sinks: Vec::new(),
            parked: false,
            recorded: false,
        }
    }
}

/// A listing that failed after its retries. Not a job: the pass stops there and keeps its
/// cursor, so the next pass resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingFailure {
    /// What went wrong.
    pub message: String,
    /// Whether retrying later could help.
    pub retryable: bool,
    /// Attempts made.
    pub attempts: u32,
}

/// The result of one pass (a poll, a reconciliation, a backfill, a set of jobs by name or
/// event).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PassReport {
    /// This pass's id.
    pub pass: String,
    /// The cursor key (`poll`, `reconcile`, `backfill:...`), empty for passes over given jobs.
    pub key: String,
    /// Distinct jobs synced.
    pub synced: usize,
    /// Distinct jobs skipped.
    pub skipped: usize,
    /// Distinct jobs rejected.
    pub rejected: usize,
    /// Distinct jobs (or unreadable entries) failed.
    pub failed: usize,
    /// Jobs interrupted (shutdown, deadline, lease lost): nothing recorded against them.
    pub interrupted: usize,
    /// Jobs listed that the ledger already had in their current state (no work).
    pub already_done: usize,
    /// Failed jobs listed before their retry time.
    pub deferred: usize,
    /// Jobs another writer held for longer than `lease_wait_secs`.
    pub busy: usize,
    /// Their ARNs (at most [`PassReport::MAX_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy_jobs: Vec<String>,
    /// Pages listed.
    pub pages: usize,
    /// Job reports: every one when the caller asked to collect them (at most
    /// [`PassReport::MAX_COLLECTED`]), else failed and interrupted ones (at most
    /// [`PassReport::MAX_KEPT`]).
    pub jobs: Vec<JobReport>,
    /// Reports that belonged in `jobs` but were left out because it was full (their jobs are
    /// counted all the same).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jobs_omitted: usize,
    /// Why the listing stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_error: Option<ListingFailure>,
    /// The first state store error, if any (the cursor was then held back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// Remote API calls by operation during this pass.
    pub api_calls: BTreeMap<String, u64>,
    /// Write requests the sinks made during this pass (from every job's receipts, also those a
    /// pass that keeps only failures does not keep).
    #[serde(default)]
    pub store_writes: u64,
    /// The cursor saved at the end (when the pass had a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// Whether the pass stopped early because it was cancelled.
    pub cancelled: bool,
    /// For [`Engine::sync_refs`](super::Engine::sync_refs): one result per reference given, in
    /// the order given (a job given twice has two). Empty for passes. Not serialised (`jobs`
    /// holds the reports).
    #[serde(skip)]
    pub refs: Vec<RefResult>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// What became of one reference given to [`Engine::sync_refs`](super::Engine::sync_refs).
#[derive(Debug, Clone, PartialEq)]
pub enum RefResult {
    /// Worked on (or failed before it could be, or interrupted): the job's report.
    Worked(JobReport),
    /// Nothing to do: the ledger holds the job as it is (delivered everywhere, or parked, or
    /// ineligible, on the same content).
    AlreadyDone,
    /// A failed job whose retry time has not come (references that are not urgent).
    Deferred,
    /// Another writer held the job for longer than the lease wait.
    Busy,
    /// Not worked on, and nothing known about it: the state store could not be read.
    NotStarted {
        /// Why.
        reason: String,
    },
}

impl PassReport {
    /// How many reports are kept when not collecting all.
    pub const MAX_KEPT: usize = 1000;
    /// How many reports a collecting pass keeps: memory stays bounded on any backfill.
    pub const MAX_COLLECTED: usize = 100_000;

    /// Distinct jobs with a final outcome.
    pub fn total(&self) -> usize {
        self.synced + self.skipped + self.rejected + self.failed
    }

    /// Whether anything failed: a job, the listing or the state store.
    pub fn has_failures(&self) -> bool {
        self.failed > 0 || self.listing_error.is_some() || self.state_error.is_some()
    }

    pub(crate) fn count(&mut self, outcome: Outcome, delta: isize) {
        let c = match outcome {
            Outcome::Synced => &mut self.synced,
            Outcome::Skipped => &mut self.skipped,
            Outcome::Rejected => &mut self.rejected,
            Outcome::Failed => &mut self.failed,
            Outcome::Interrupted => &mut self.interrupted,
        };
        *c = c.saturating_add_signed(delta);
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
