//! `[state] type = "memory"`: the ledger in the process's memory. What `sagesync run` uses when
//! no `[state]` is configured; forgotten when the process ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::{Acquired, JobState, Lease, LedgerCounts, Outcome, StateError, StateStore};
use crate::model::Timestamp;
use crate::source::Cursor;

#[derive(Debug, Default)]
struct LeaseRow {
    owner: Option<String>,
    expires_at: Option<Timestamp>,
    fence: u64,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: BTreeMap<String, JobState>,
    leases: HashMap<String, LeaseRow>,
    cursors: BTreeMap<String, Cursor>,
}

/// The in-memory store.
#[derive(Debug, Default)]
pub struct MemoryState {
    inner: Mutex<Inner>,
}

impl MemoryState {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn chrono_ttl(ttl: Duration) -> chrono::Duration {
    chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

#[async_trait]
impl StateStore for MemoryState {
    fn location(&self) -> String {
        "memory state".into()
    }
    fn persistent(&self) -> bool {
        false
    }
    async fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError> {
        Ok(self.lock().cursors.get(key).cloned())
    }
    async fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError> {
        self.lock().cursors.insert(key.to_string(), cursor.clone());
        Ok(())
    }
    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        Ok(self.lock().cursors.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    async fn jobs(&self, arns: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        let g = self.lock();
        Ok(arns.iter().map(|a| g.jobs.get(a).cloned()).collect())
    }
    async fn acquire(&self, arn: &str, owner: &str, ttl: Duration) -> Result<Acquired, StateError> {
        let now = Utc::now();
        let mut g = self.lock();
        let row = g.leases.entry(arn.to_string()).or_default();
        if let (Some(holder), Some(exp)) = (&row.owner, row.expires_at) {
            if exp > now {
                return Ok(Acquired::Held { owner: holder.clone(), expires_at: exp });
            }
        }
        row.fence += 1;
        let expires_at = now + chrono_ttl(ttl);
        row.owner = Some(owner.to_string());
        row.expires_at = Some(expires_at);
        let lease = Lease { arn: arn.to_string(), owner: owner.to_string(), fence: row.fence, expires_at };
        let state = g.jobs.get(arn).cloned().map(Box::new);
        Ok(Acquired::Granted { lease, state })
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        let mut g = self.lock();
        match g.leases.get_mut(&lease.arn) {
            Some(row) if row.fence == lease.fence && row.owner.as_deref() == Some(lease.owner.as_str()) => {
                row.expires_at = Some(Utc::now() + chrono_ttl(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn commit(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        let mut g = self.lock();
        match g.leases.get_mut(&lease.arn) {
            Some(row) if row.fence == lease.fence && row.owner.as_deref() == Some(lease.owner.as_str()) => {
                row.owner = None;
                row.expires_at = None;
            }
            _ => return Ok(false),
        }
        g.jobs.insert(entry.arn.clone(), entry.clone());
        Ok(true)
    }
    async fn record(&self, lease: &Lease, entry: &JobState) -> Result<bool, StateError> {
        let mut g = self.lock();
        match g.leases.get(&lease.arn) {
            Some(row) if row.fence == lease.fence && row.owner.as_deref() == Some(lease.owner.as_str()) => {}
            _ => return Ok(false),
        }
        g.jobs.insert(entry.arn.clone(), entry.clone());
        Ok(true)
    }
    async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        let mut g = self.lock();
        if let Some(row) = g.leases.get_mut(&lease.arn) {
            if row.fence == lease.fence && row.owner.as_deref() == Some(lease.owner.as_str()) {
                row.owner = None;
                row.expires_at = None;
            }
        }
        Ok(())
    }
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        let g = self.lock();
        let range = match after {
            Some(a) => g.jobs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => g.jobs.range::<str, _>(..),
        };
        Ok(range
            .map(|(_, j)| j)
            .filter(|j| j.outcome == Outcome::Failed && !j.parked && j.next_attempt_at.is_none_or(|t| t <= now))
            .take(limit)
            .cloned()
            .collect())
    }
    async fn failed(&self, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        let g = self.lock();
        let range = match after {
            Some(a) => g.jobs.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => g.jobs.range::<str, _>(..),
        };
        Ok(range.map(|(_, j)| j).filter(|j| j.outcome == Outcome::Failed).take(limit).cloned().collect())
    }
    async fn unpark(&self, jobs: &[String]) -> Result<Vec<String>, StateError> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for j in g.jobs.values_mut().filter(|j| j.outcome == Outcome::Failed) {
            if jobs.is_empty() || jobs.iter().any(|x| x == &j.arn || x == &j.job) {
                j.parked = false;
                j.attempts = 0;
                j.permanent_failures = 0;
                j.next_attempt_at = None;
                out.push(j.arn.clone());
            }
        }
        Ok(out)
    }
    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        let g = self.lock();
        let mut c = LedgerCounts::default();
        for j in g.jobs.values() {
            c.add_job(&j.arn, j.class(), j.parked);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(&|| {
            Box::pin(async { std::sync::Arc::new(super::MemoryState::new()) as std::sync::Arc<dyn super::StateStore> })
        })
        .await;
    }
}
