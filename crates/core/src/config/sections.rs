//! `[pipeline]`, the engine's own section. It is deserialised with unknown keys refused and
//! checked with [`Check::problems`], so `sagesync validate` reports its mistakes with their
//! location like any plugin option. The runners' sections (`[daemon]`, `[lambda]`) are
//! registered by the runners (`sagesync-runner-settings`).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use crate::options::{range_f64, range_u64, Check};

/// What happens to a job's records when it stops being eligible (its opt-in tag removed, a
/// required tag gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnIneligible {
    /// Each sink removes the job's record (or marks it superseded where it cannot delete): the
    /// store mirrors the eligible jobs.
    #[default]
    Retract,
    /// Records stay where they are.
    Keep,
}

/// `[pipeline]`: how the engine works on jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// Jobs processed at once (1..=256).
    pub concurrency: usize,
    /// Attempts per retryable step (fetch, each sink write) within one try of a job (1..=100).
    pub max_attempts: u32,
    /// First backoff between those attempts, milliseconds.
    pub initial_backoff_ms: u64,
    /// Cap on that backoff, milliseconds.
    pub max_backoff_ms: u64,
    /// Validate and map only; write nothing (no sink, no ledger).
    pub dry_run: bool,
    /// Tries of a job failing on its own content before it is parked (1..=1000). Retryable
    /// failures (network, throttling, a store that is down) never park a job.
    pub max_job_attempts: u32,
    /// Delay before a failed job is tried again, seconds; doubles per failure.
    pub retry_backoff_secs: u64,
    /// Cap on that delay, seconds.
    pub max_retry_backoff_secs: u64,
    /// What happens to the records of a job that stops being eligible.
    pub on_ineligible: OnIneligible,
    /// How long a writer's claim on a job lasts unless renewed (renewed every third of it).
    pub lease_ttl_secs: u64,
    /// How long to wait for a job another writer holds before giving up on it for this pass.
    pub lease_wait_secs: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            concurrency: 4,
            max_attempts: 5,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            dry_run: false,
            max_job_attempts: 5,
            retry_backoff_secs: 60,
            max_retry_backoff_secs: 3600,
            on_ineligible: OnIneligible::Retract,
            lease_ttl_secs: 30,
            lease_wait_secs: 45,
        }
    }
}

impl Check for PipelineSettings {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        range_u64(&mut p, "concurrency", self.concurrency as u64, 1, 256);
        range_u64(&mut p, "max_attempts", self.max_attempts.into(), 1, 100);
        range_u64(&mut p, "initial_backoff_ms", self.initial_backoff_ms, 1, 3_600_000);
        range_u64(&mut p, "max_backoff_ms", self.max_backoff_ms, 1, 3_600_000);
        if self.max_backoff_ms < self.initial_backoff_ms {
            p.push(("max_backoff_ms", "must not be smaller than initial_backoff_ms".to_string()));
        }
        range_u64(&mut p, "max_job_attempts", self.max_job_attempts.into(), 1, 1000);
        range_u64(&mut p, "retry_backoff_secs", self.retry_backoff_secs, 1, 86_400);
        range_u64(&mut p, "max_retry_backoff_secs", self.max_retry_backoff_secs, 1, 30 * 86_400);
        if self.max_retry_backoff_secs < self.retry_backoff_secs {
            p.push(("max_retry_backoff_secs", "must not be smaller than retry_backoff_secs".to_string()));
        }
        range_u64(&mut p, "lease_ttl_secs", self.lease_ttl_secs, 1, 3600);
        range_u64(&mut p, "lease_wait_secs", self.lease_wait_secs, 0, 3600);
        p
    }
}

impl PipelineSettings {
    /// The delay before attempt `attempt + 1` of a step (attempt counts from 1): exponential,
    /// capped, with jitter in [50 %, 100 %].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
        let capped = exp.min(self.max_backoff_ms);
        Duration::from_millis(capped / 2 + fastrand::u64(0..=capped / 2))
    }
    /// The delay before a job that failed `attempts` times in a row is tried again.
    pub fn retry_delay(&self, attempts: u32) -> chrono::Duration {
        let secs = self.retry_backoff_secs.saturating_mul(1u64 << attempts.saturating_sub(1).min(30)).min(self.max_retry_backoff_secs);
        chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64)
    }
    /// The lease duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs)
    }
}

/// Parses `2026-01-31` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 timestamp"))
}
