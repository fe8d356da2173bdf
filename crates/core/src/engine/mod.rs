//! The one engine every runner calls.
//!
//! A **pass** lists jobs page by page (a cursor makes it cheaper, never decides), compares each
//! with the ledger, and works on the jobs whose synced state differs: under the job's lease it
//! fetches, validates, maps, writes the record to each sink that does not hold it yet (or
//! retracts it when the job stopped being eligible), and commits the outcome. The cursor of a
//! page is saved once every job on it is recorded. See `docs/architecture.md` and
//! `docs/guarantees.md`.
//!
//! One job's way is `engine/job.rs`: identify, claim, plan, intent, deliver, settle. A pass
//! (`engine/pass.rs`) decides each page against the ledger and attempts what differs, each job
//! as a slot frees up. An engine is assembled (`engine/assembly.rs`) from a config or in code,
//! the same way; a dry run is only another assembly (sinks that write nothing, a ledger that
//! keeps nothing).
//!
//! - [`Engine::pass`]: a poll ([`PassRequest::poll`], which also re-drives failed jobs whose
//!   retry time has come), a reconciliation ([`PassRequest::reconcile`]) or a backfill
//!   ([`PassRequest::backfill`]);
//! - [`Engine::sync_refs`]: given jobs (by name, by ARN, from events), one result per reference;
//! - [`Engine::retry`]: failed jobs again;
//! - [`Engine::run_daemon`]: polls and reconciliations on a [`Schedule`] until stopped;
//! - [`Engine::status`]: what the ledger holds.

mod assembly;
pub(crate) mod decide;
mod dry_run;
mod entry;
mod job;
mod lease;
pub mod observer;
mod pass;
pub mod report;
mod schedule;
pub(crate) mod steps;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{NamedSink, PipelineSettings};
use crate::model::Timestamp;
use crate::source::{Cursor, ListScope, Source};
use crate::stage::{Mapper, Validator};
use crate::state::{JobState, LedgerCounts, StateError, StateStore};

pub use assembly::{BuildError, EngineBuilder, EngineOptions};
pub use observer::{Decision, Event, Fanout, NoObserver, Observer};
pub use report::{JobReport, ListingFailure, PassReport, RefResult};
pub use schedule::{Reconcile, Schedule};

/// The sync engine: one source, validators, a mapper, sinks and a state store.
pub struct Engine {
    source: Arc<dyn Source>,
    validators: Vec<(String, Arc<dyn Validator>)>,
    mapper: Arc<dyn Mapper>,
    sinks: Vec<NamedSink>,
    state: Arc<dyn StateStore>,
    settings: PipelineSettings,
    config_digest: String,
    owner: String,
    inflight: InFlight,
    passes: AtomicU64,
}

/// Which jobs a pass lists, and under which cursor key.
#[derive(Debug, Clone)]
pub struct PassRequest {
    /// Cursor key (`poll`, `reconcile`, `backfill:<since>:<until>`).
    pub key: String,
    /// What to list.
    pub scope: ListScope,
    /// Also re-drive failed jobs whose retry time has come (polls).
    pub retry_due: bool,
    /// Keep every job's report (else only failed and interrupted ones).
    pub collect: bool,
    /// Never list jobs modified before this (the daemon's `start_from`): saved cursors are kept
    /// at or after it.
    pub floor: Option<Timestamp>,
}

impl PassRequest {
    /// The cursor key of polls.
    pub const POLL: &'static str = "poll";
    /// The cursor key of reconciliation passes.
    pub const RECONCILE: &'static str = "reconcile";
    /// The key reported by [`Engine::redrive`] (which lists nothing and saves no cursor).
    pub const REDRIVE: &'static str = "redrive";

    /// A poll: the source's incremental listing from the saved cursor, then due retries.
    pub fn poll() -> Self {
        PassRequest { key: Self::POLL.into(), scope: ListScope::Incremental, retry_due: true, collect: false, floor: None }
    }
    /// A reconciliation pass: every job modified within `lookback`, tags in bulk, re-decided.
    pub fn reconcile(lookback: Duration) -> Self {
        let from = chrono::Utc::now() - chrono::Duration::from_std(lookback).unwrap_or(chrono::Duration::MAX);
        PassRequest {
            key: Self::RECONCILE.into(),
            scope: ListScope::Range { from: Some(from), until: None },
            retry_due: false,
            collect: false,
            floor: None,
        }
    }
    /// A backfill of `[since, until)`: resumable under its own cursor key.
    pub fn backfill(since: Timestamp, until: Option<Timestamp>) -> Self {
        let key = format!("backfill:{}:{}", iso(since), until.map(iso).unwrap_or_default());
        PassRequest { key, scope: ListScope::Range { from: Some(since), until }, retry_due: false, collect: false, floor: None }
    }
    /// Keeps every job's report.
    pub fn collecting(mut self) -> Self {
        self.collect = true;
        self
    }
}

fn iso(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How [`Engine::sync_refs`] treats the given jobs.
#[derive(Debug, Clone, Default)]
pub struct RefOptions {
    /// Write to every sink even when the ledger says it holds the record (`sagesync sync-job`).
    pub force: bool,
    /// Ignore a failed job's retry time (events, `sagesync retry`).
    pub urgent: bool,
    /// Stop working (interrupting, never recording) at this instant.
    pub deadline: Option<Instant>,
    /// Keep every job's report.
    pub collect: bool,
    /// How long to wait for a job another writer holds (default: `[pipeline] lease_wait_secs`).
    /// A caller that must answer soon (the Lambda) waits less and hands the job back.
    pub lease_wait: Option<Duration>,
}

/// What the ledger holds (`sagesync status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// Where the state is.
    pub location: String,
    /// Counts by outcome.
    pub counts: LedgerCounts,
    /// Every saved cursor.
    pub cursors: Vec<(String, Cursor)>,
    /// Failed jobs (at most `limit` of them).
    pub failed: Vec<JobState>,
}

/// Serialises work on one job within this process (the lease does it across processes).
#[derive(Default)]
struct InFlight(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

struct InFlightGuard<'a> {
    map: &'a InFlight,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl InFlight {
    async fn lock(&self, key: &str) -> InFlightGuard<'_> {
        let m = {
            let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            g.entry(key.to_string()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        InFlightGuard { map: self, key: key.to_string(), _guard: guard }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = g.get(&self.key) {
            // Ours and the map's: nobody else waits.
            if Arc::strong_count(m) <= 2 {
                g.remove(&self.key);
            }
        }
    }
}

fn owner_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

impl Engine {
    /// A builder, for engines assembled in code.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }
    /// The settings.
    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }
    /// The source.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }
    /// The state store.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }
    /// The sink ids, in order.
    pub fn sink_ids(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.id.clone()).collect()
    }
    /// The digest of everything that shapes decisions and records.
    pub fn config_digest(&self) -> &str {
        &self.config_digest
    }
    /// This engine's lease owner id (`host:pid:nonce`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn next_pass_id(&self) -> String {
        let n = self.passes.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.owner)
    }

    /// What the ledger holds: counts, cursors and up to `limit` failed jobs.
    pub async fn status(&self, limit: usize) -> Result<StatusReport, StateError> {
        Ok(StatusReport {
            location: self.state.location(),
            counts: self.state.counts().await?,
            cursors: self.state.cursors().await?,
            failed: self.state.failed(None, limit).await?,
        })
    }
}
