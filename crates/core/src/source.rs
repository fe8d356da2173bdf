//! The [`Source`] trait and what a listing returns: bounded [`Page`]s of [`JobRef`]s with a
//! [`Cursor`] to continue from.
//!
//! A cursor is only a hint that makes a pass cheaper. Which jobs need work is decided against
//! the ledger (see `docs/guarantees.md`), so a source may list a job again at any time, and a
//! listing that starts over from the beginning loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::model::{ChildSummary, Tags, Timestamp, TrainingJob};

/// Where a listing stands. The engine stores it per pass key after each page and gives it back
/// unchanged; only the source reads its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// A lower bound on `LastModifiedTime` for the next listing (shown by `sagesync status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Timestamp>,
    /// ARNs already listed at exactly `watermark` (keyset paging over equal timestamps).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub seen_at_watermark: BTreeSet<String>,
    /// Source-specific continuation (a page token, a file index...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cursors of further listings a source runs after its main one, by name (a SageMaker
    /// source's tuning jobs: each kind of resource has its own watermark).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, Cursor>,
    /// When the listing in progress started (the source's clock), if one is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Timestamp>,
}

impl Cursor {
    /// Whether a job modified at `at` with this `arn` is behind the keyset position.
    pub fn covers(&self, at: Option<Timestamp>, arn: &str) -> bool {
        match (self.watermark, at) {
            (Some(w), Some(t)) => t < w || (t == w && self.seen_at_watermark.contains(arn)),
            _ => false,
        }
    }
    /// Moves the keyset position over a job modified at `at`.
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

/// What a listing covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// The source's incremental listing (polls): what changed since the cursor, as cheaply as the
    /// source can list it. Jobs may come without tags.
    Incremental,
    /// Every job modified in `[from, until)` (either bound open), with tags wherever the source
    /// can give them in bulk: reconciliation passes and backfills.
    Range {
        /// Modified at or after.
        from: Option<Timestamp>,
        /// Modified before.
        until: Option<Timestamp>,
    },
}

/// A reference to one job, as a listing (or an event) gives it.
#[derive(Debug, Clone, Default)]
pub struct JobRef {
    /// Training job name.
    pub name: String,
    /// ARN, when known.
    pub arn: Option<String>,
    /// `LastModifiedTime`, when known.
    pub last_modified: Option<Timestamp>,
    /// `TrainingJobStatus`, when known.
    pub status: Option<String>,
    /// The job's tags, when the listing (or event) carried them.
    pub tags: Option<Tags>,
    /// Where the reference came from (file:line, event id...), for messages.
    pub origin: Option<String>,
    /// The whole job, when the listing already returned it (recorded files, Search).
    pub job: Option<Arc<TrainingJob>>,
}

impl JobRef {
    /// A reference by name (or ARN) only.
    pub fn by_name(name: impl Into<String>) -> Self {
        JobRef { name: name.into(), ..Default::default() }
    }
    /// A reference that carries the whole job.
    pub fn with_job(job: TrainingJob, origin: Option<String>) -> Self {
        JobRef {
            name: job.name.clone(),
            arn: Some(job.arn.clone()),
            last_modified: job.last_modified_time,
            status: Some(job.status.clone()),
            tags: Some(job.tags.clone()),
            origin,
            job: Some(Arc::new(job)),
        }
    }
    /// The ARN, or the name when the ARN is unknown: the key that serialises work on one job.
    pub fn key(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.name)
    }
}

/// An entry a listing could not turn into a job (a malformed file or record). It fails alone;
/// the rest of the page still syncs. When the listing knows which job it was (`arn`), the
/// failure is recorded against that job in the ledger like any other.
#[derive(Debug)]
pub struct ListingProblem {
    /// Where (file:line:column, `Search record 3`...).
    pub origin: String,
    /// The job's name, when known.
    pub job: Option<String>,
    /// The job's ARN, when known.
    pub arn: Option<String>,
    /// The job's `LastModifiedTime`, when known.
    pub last_modified: Option<Timestamp>,
    /// What went wrong.
    pub error: SyncError,
    /// The source lists what failed again by itself (a kind whose listing failed keeps its own
    /// cursor part where it stood): reported, and the page's cursor may still be saved. When
    /// false, a problem not tied to a job holds the page's cursor back.
    pub lists_again: bool,
}

impl ListingProblem {
    /// A problem at `origin` not tied to a known job.
    pub fn at(origin: impl Into<String>, error: SyncError) -> Self {
        ListingProblem { origin: origin.into(), job: None, arn: None, last_modified: None, error, lists_again: false }
    }
}

/// One bounded page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    /// Jobs on this page.
    pub jobs: Vec<JobRef>,
    /// Entries of this page that could not be read.
    pub problems: Vec<ListingProblem>,
    /// Where the listing continues (saved once every job of the page is recorded).
    pub next: Cursor,
    /// Whether this was the last page.
    pub done: bool,
}

/// Yields training jobs, one bounded page at a time.
#[async_trait]
pub trait Source: Send + Sync {
    /// Lists one page of `scope` from `cursor` (`Cursor::default()` starts a listing). The
    /// engine calls again with `Page::next` until `Page::done`.
    async fn list(&self, scope: &ListScope, cursor: &Cursor) -> Result<Page, SyncError>;
    /// Fetches one job in full (also called for references that carry the job, so that a source
    /// can add what it reads per job, such as S3 manifests).
    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError>;
    /// Called with the jobs of a page that the engine is about to fetch, before any is leased,
    /// so that a source can read at once, for the whole page, what it would otherwise read job
    /// by job (SageMaker's metric histories, 100 queries a call). Only reads: what it keeps is
    /// bounded by the page and used by [`Source::fetch`] of the same jobs (the same version of
    /// each), which reads for itself whatever is missing. Called with no jobs when the page is
    /// done: the source drops what it kept. By default nothing.
    async fn prepare(&self, jobs: &[&JobRef]) {
        let _ = jobs;
    }
    /// One child of a parent (one of `parent.lineage.children`), with what validators read
    /// (status, tags). The engine reads a parent's children, in order, only when the parent
    /// itself does not pass the validators: it then syncs if one of them does. By default, the
    /// child is fetched in full.
    async fn child(&self, parent: &TrainingJob, child: &ChildSummary) -> Result<TrainingJob, SyncError> {
        let _ = parent;
        self.fetch(&JobRef { name: child.name.clone(), arn: Some(child.arn.clone()), ..Default::default() }).await
    }
    /// Calls made to the remote API so far, per operation.
    fn api_calls(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    /// The options that change what a job's record contains (manifests, metric histories...),
    /// as a string: when it changes, every job is re-decided.
    fn fingerprint(&self) -> String {
        String::new()
    }
    /// How far a job's `LastModifiedTime` may lag behind the moment it changed, as this source
    /// sees it (clock skew, eventual consistency): the overlap its incremental listings keep.
    /// A daemon's `start_from` floor is moved back by as much, so that a job changed just after
    /// the daemon started is never cut off.
    fn clock_tolerance(&self) -> std::time::Duration {
        std::time::Duration::ZERO
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
