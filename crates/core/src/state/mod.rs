//! The ledger and the leases, behind [`StateStore`].
//!
//! The ledger is the truth about what has been synced: one [`JobState`] per job ARN, holding what
//! the last decision was based on ([`Basis`]: `LastModifiedTime`, a digest of the tags, a digest
//! of the configuration), its outcome, and one [`Delivery`] per sink. A pass re-lists jobs
//! (cheaply, guided by a [`Cursor`] hint) and works on every job whose state differs from the
//! ledger. A per-job [`Lease`] with a fencing counter makes sure one writer works on a job at a
//! time, across threads, processes and machines.
//!
//! Implementations: [`MemoryState`] here (`[state] type = "memory"`), SQLite in
//! `sagesync-state-sqlite`, DynamoDB in `sagesync-state-dynamodb`. Every implementation passes
//! the shared [`conformance`] suite.

pub mod conformance;
mod memory;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::source::Cursor;

pub use crate::delivery::{Delivery, DeliveryState, PendingNames};
pub use crate::limits::{self, cut_text};
pub use memory::MemoryState;

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
    /// Stopped before it finished (shutdown, deadline, lease lost). Reported, never recorded:
    /// an interruption is not a verdict.
    Interrupted,
}

impl Outcome {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Skipped => "skipped",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
    /// Parses [`Outcome::as_str`].
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "synced" => Outcome::Synced,
            "skipped" => Outcome::Skipped,
            "rejected" => Outcome::Rejected,
            "failed" => Outcome::Failed,
            "interrupted" => Outcome::Interrupted,
            _ => return None,
        })
    }
}

/// What a decision about a job was based on. When any part differs from what a listing now
/// shows, the job is decided again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Basis {
    /// The job's `LastModifiedTime`.
    pub last_modified: Option<Timestamp>,
    /// Digest of the job's tags (order-independent). AddTags does not move `LastModifiedTime`.
    pub tags_digest: Option<String>,
    /// Digest of the configuration that shapes decisions and records (validators, mapper,
    /// shared sections, the source's record options).
    pub config_digest: String,
    /// The `LastModifiedTime` the reference that led to this decision carried, when it was not
    /// the job's own (an event older than the job, a listing that lagged behind Describe). A
    /// reference carrying it again (a duplicate event) says nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<Timestamp>,
}

impl Basis {
    /// Whether two bases describe the same job content and configuration (what the reference
    /// that led to them carried aside).
    pub fn same_content(&self, other: &Basis) -> bool {
        self.last_modified == other.last_modified && self.tags_digest == other.tags_digest && self.config_digest == other.config_digest
    }
}

/// One job in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Job ARN (the key).
    pub arn: String,
    /// Job name.
    pub job: String,
    /// What the last decision was based on.
    pub basis: Basis,
    /// Last outcome (never [`Outcome::Interrupted`]).
    pub outcome: Outcome,
    /// Why it was skipped, rejected or failed.
    pub reason: Option<String>,
    /// Digest of the record the last successful mapping produced.
    pub record_digest: Option<String>,
    /// What each sink holds, by sink id.
    pub deliveries: BTreeMap<String, Delivery>,
    /// Consecutive failed attempts (0 after a success): what the retry backoff grows with.
    pub attempts: u32,
    /// How many of them were permanent failures on the job's current content (a record the
    /// store rejects, a malformed document): what parks the job at `max_job_attempts`.
    /// Retryable failures (the network, throttling, a store that is down) never count.
    #[serde(default)]
    pub permanent_failures: u32,
    /// Failed on the job's own content too often: left alone until its content changes or
    /// `sagesync retry`.
    pub parked: bool,
    /// Earliest time to retry a failed job.
    pub next_attempt_at: Option<Timestamp>,
    /// Id of the pass that wrote this entry.
    pub pass: Option<String>,
    /// When the entry was written.
    pub updated_at: Timestamp,
}

impl JobState {
    /// The count this entry belongs to.
    pub fn class(&self) -> CountClass {
        CountClass::of(self.outcome, self.attempts)
    }
    /// The entry with every text cut to [`limits`]: what the engine hands to the store.
    pub fn bounded(mut self) -> JobState {
        cut_text(&mut self.job, limits::NAME_CHARS);
        if let Some(r) = self.reason.as_mut() {
            cut_text(r, limits::REASON_CHARS);
        }
        for d in self.deliveries.values_mut() {
            d.receipt.bound();
            if let DeliveryState::Pending(n) | DeliveryState::Kept(Some(n)) = &mut d.state {
                n.bound(limits::ID_CHARS);
            }
        }
        if serde_json::to_vec(&self).map(|v| v.len()).unwrap_or(0) > limits::ENTRY_BYTES {
            for d in self.deliveries.values_mut() {
                let ids = std::mem::take(&mut d.receipt.ids);
                let n = ids.len();
                d.receipt.ids = ids.into_iter().take(limits::RECEIPT_IDS_WHEN_LARGE).collect();
                for v in d.receipt.ids.values_mut() {
                    cut_text(v, limits::ID_CHARS_WHEN_LARGE);
                }
                if n > limits::RECEIPT_IDS_WHEN_LARGE {
                    d.receipt.ids.insert("omitted_ids".into(), (n - limits::RECEIPT_IDS_WHEN_LARGE).to_string());
                }
            }
        }
        self
    }
}

/// A writer's claim on one job. `fence` grows by one with every grant, so a writer whose lease
/// expired and was taken over cannot record its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub arn: String,
    /// Who holds it (`host:pid:nonce`).
    pub owner: String,
    /// The fencing counter of this grant.
    pub fence: u64,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// The answer to [`StateStore::acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum Acquired {
    /// The lease is ours; `state` is the job's ledger entry read under it (decide again with it).
    Granted {
        /// The lease.
        lease: Lease,
        /// The entry, if the job is in the ledger.
        state: Option<Box<JobState>>,
    },
    /// Another writer holds the job.
    Held {
        /// The holder.
        owner: String,
        /// When its lease lapses.
        expires_at: Timestamp,
    },
}

/// Counts by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCounts {
    /// Synced.
    pub synced: u64,
    /// Skipped.
    pub skipped: u64,
    /// Rejected.
    pub rejected: u64,
    /// Failed (including parked; not the interrupted ones below).
    pub failed: u64,
    /// Parked.
    pub parked: u64,
    /// Jobs whose first write was interrupted (a crash, a lost lease, the state store failing
    /// before the outcome was recorded): the ledger holds only the intent, no verdict. They are
    /// worked on again by the next pass that lists them, or once their first retry time passes.
    #[serde(default)]
    pub interrupted: u64,
    /// The same counts per account and region (`<account>/<region>`, read from each job's ARN):
    /// what a store's full count (`sagesync status`) fills; empty in the counts kept as gauges.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub by_account_region: std::collections::BTreeMap<String, LedgerCounts>,
}

/// Which count of [`LedgerCounts`] an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountClass {
    /// `synced`.
    Synced,
    /// `skipped`.
    Skipped,
    /// `rejected`.
    Rejected,
    /// `failed`.
    Failed,
    /// `interrupted`: only the intent of a first write is recorded.
    Interrupted,
}

impl CountClass {
    /// The class of an entry. A recorded failure always counts at least one attempt; an entry
    /// that says `failed` with none is the intent the engine records before a job's first write
    /// (its outcome was never committed).
    pub fn of(outcome: Outcome, attempts: u32) -> CountClass {
        match outcome {
            Outcome::Synced => CountClass::Synced,
            Outcome::Skipped => CountClass::Skipped,
            Outcome::Rejected => CountClass::Rejected,
            Outcome::Failed if attempts == 0 => CountClass::Interrupted,
            Outcome::Failed => CountClass::Failed,
            Outcome::Interrupted => CountClass::Interrupted,
        }
    }
}

impl LedgerCounts {
    /// Every job.
    pub fn total(&self) -> u64 {
        self.synced + self.skipped + self.rejected + self.failed + self.interrupted
    }
    /// Adds one entry (`parked` counted apart too).
    pub fn add(&mut self, class: CountClass, parked: bool) {
        self.shift(class, parked, 1);
    }
    /// Adds one entry of the job `arn`, to the totals and to its account and region's counts.
    pub fn add_job(&mut self, arn: &str, class: CountClass, parked: bool) {
        self.add_jobs(arn, class, 1, u64::from(parked));
    }
    /// Adds `n` entries of jobs of `arn`'s account and region (`arn` may stop after them), of
    /// which `parked` are parked.
    pub fn add_jobs(&mut self, arn: &str, class: CountClass, n: u64, parked: u64) {
        let key = match crate::model::arn_region_account(arn) {
            Some((region, account)) => format!("{account}/{region}"),
            None => "(unknown)".to_string(),
        };
        let bump = |c: &mut LedgerCounts| {
            c.shift(class, false, i64::try_from(n).unwrap_or(i64::MAX));
            c.parked = c.parked.saturating_add(parked);
        };
        bump(self);
        bump(self.by_account_region.entry(key).or_default());
    }
    /// Removes one entry counted with [`LedgerCounts::add`] (never below zero).
    pub fn remove(&mut self, class: CountClass, parked: bool) {
        self.shift(class, parked, -1);
    }
    fn shift(&mut self, class: CountClass, parked: bool, d: i64) {
        let c = match class {
            CountClass::Synced => &mut self.synced,
            CountClass::Skipped => &mut self.skipped,
            CountClass::Rejected => &mut self.rejected,
            CountClass::Failed => &mut self.failed,
            CountClass::Interrupted => &mut self.interrupted,
        };
        *c = c.saturating_add_signed(d);
        if parked {
            self.parked = self.parked.saturating_add_signed(d);
        }
    }
}

/// State store errors. None of them names the storage's own types.
#[derive(thiserror::Error)]
pub enum StateError {
    /// The store cannot be used at all (not a sagesync store, damaged, a newer schema). Left
    /// untouched.
    #[error("{}: {}", crate::secret::redact(.location), crate::secret::redact(.message))]
    Unusable {
        /// Where (`sqlite state.db`, `dynamodb table sagesync`).
        location: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A read or write failed.
    #[error("{}: {}", crate::secret::redact(.location), crate::secret::redact(.message))]
    Backend {
        /// Where.
        location: String,
        /// What happened.
        message: String,
        /// Whether retrying could help (busy, throttled, unreachable).
        retryable: bool,
    },
    /// A stored value could not be read back.
    #[error("{}: unreadable stored value: {}", crate::secret::redact(.location), crate::secret::redact(.message))]
    Decode {
        /// Where.
        location: String,
        /// What.
        message: String,
    },
}

impl StateError {
    /// Whether retrying could help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Backend { retryable: true, .. })
    }
}

/// Where the ledger, the cursors and the leases live. Every method is async; implementations
/// keep blocking I/O off the async worker threads.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the state is, for messages (`sqlite state.db`).
    fn location(&self) -> String;
    /// Whether the state outlives the process (a memory store does not).
    fn persistent(&self) -> bool {
        true
    }
    /// The saved cursor of a pass key.
    async fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError>;
    /// Saves the cursor of a pass key.
    async fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError>;
    /// Every saved cursor, by key.
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError>;
    /// The entries of these jobs, in the same order (`None` for jobs not in the ledger).
    async fn jobs(&self, arns: &[String]) -> Result<Vec<Option<JobState>>, StateError>;
    /// Claims a job for `ttl`, unless another writer holds an unexpired lease.
    async fn acquire(&self, arn: &str, owner: &str, ttl: Duration) -> Result<Acquired, StateError>;
    /// Extends a lease; `false` when it was lost (expired and taken over).
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError>;
    /// Writes the job's entry (replacing it, deliveries included) and releases the lease, only if
    /// the lease is still this writer's; `false` (nothing written) when it was taken over.
    async fn commit(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError>;
    /// Writes the job's entry and keeps the lease (the intent the engine records before a job's
    /// first write to a sink), only if the lease is still this writer's; `false` (nothing
    /// written) when it was taken over. The default writes nothing and answers `true`: a store
    /// without it only loses track of records written just before a crash.
    async fn record(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        let _ = (lease, entry);
        Ok(true)
    }
    /// Releases a lease without recording anything (an interrupted job).
    async fn release(&self, lease: &Lease) -> Result<(), StateError>;
    /// Failed, unparked jobs whose retry time has come, in ARN order after `after`.
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError>;
    /// Failed jobs (parked or not), in ARN order after `after`.
    async fn failed(&self, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError>;
    /// Makes failed jobs due now and unparks them: those named (by name or ARN), or every failed
    /// job when `jobs` is empty. Returns their ARNs.
    async fn unpark(&self, jobs: &[String]) -> Result<Vec<String>, StateError>;
    /// Counts by outcome (`sagesync status`). May read the whole ledger: see
    /// [`StateStore::scans_to_count`].
    async fn counts(&self) -> Result<LedgerCounts, StateError>;
    /// Whether [`StateStore::counts`] reads every entry over the network (DynamoDB's scan), so
    /// that nothing calls it routinely: a daemon then keeps its ledger gauges from the outcomes
    /// it records, and recounts only when told to (`[daemon] ledger_recount_secs`). A store
    /// that counts with a local query answers `false`.
    fn scans_to_count(&self) -> bool {
        false
    }
}

crate::debug_as_display!(StateError);
