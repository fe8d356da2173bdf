//! The typed sections every runner shares: `[pipeline]` (the engine), `[daemon]` and `[lambda]`.
//! Each is deserialised with unknown keys refused and checked with [`Check::problems`], so
//! `sagesync validate` reports their mistakes with their location like any plugin option.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Range checks of a section: `(key, message)` pairs, empty when everything is in range.
pub trait Check {
    /// The problems found.
    fn problems(&self) -> Vec<(&'static str, String)>;
}

fn range_u64(out: &mut Vec<(&'static str, String)>, key: &'static str, v: u64, min: u64, max: u64) {
    if v < min || v > max {
        out.push((key, format!("must be between {min} and {max}, got {v}")));
    }
}

fn range_f64(out: &mut Vec<(&'static str, String)>, key: &'static str, v: f64, min: f64, max: f64) {
    if !v.is_finite() || v < min || v > max {
        out.push((key, format!("must be between {min} and {max}, got {v}")));
    }
}

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

/// `[daemon]`: the polling daemon's schedule and endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Seconds between polls (0.1 to 86400).
    pub poll_interval_secs: f64,
    /// On first start (no saved cursor): `"now"`, a date or RFC 3339 time, or absent for every
    /// existing job.
    pub start_from: Option<String>,
    /// Address of `/healthz` and `/metrics`.
    pub listen: String,
    /// On SIGTERM/SIGINT, how long in-flight jobs may take before they are abandoned (recorded
    /// as nothing: a restart picks them up).
    pub shutdown_grace_secs: u64,
    /// Seconds between reconciliation passes (Search over the lookback, tags in bulk); 0 turns
    /// them off.
    pub reconcile_interval_secs: f64,
    /// How far back a reconciliation pass looks, seconds.
    pub reconcile_lookback_secs: u64,
    /// `/healthz` turns unhealthy when the last successful poll is older than this many poll
    /// intervals (plus the time a poll itself takes).
    pub unhealthy_after_polls: u32,
    /// Seconds between counts of the ledger for the `sagesync_ledger_*` gauges (between them the
    /// gauges follow what the daemon records); 0 never counts. Unset: after every pass where
    /// counting is a local query (SQLite, memory), never where it scans the whole ledger over
    /// the network (DynamoDB, which then also needs `dynamodb:Scan`).
    pub ledger_recount_secs: Option<f64>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            poll_interval_secs: 60.0,
            start_from: None,
            listen: "127.0.0.1:9464".into(),
            shutdown_grace_secs: 30,
            reconcile_interval_secs: 3600.0,
            reconcile_lookback_secs: 7 * 86_400,
            unhealthy_after_polls: 3,
            ledger_recount_secs: None,
        }
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

impl DaemonSettings {
    /// Where a first start begins: `None` for every existing job.
    pub fn start(&self) -> Result<Option<DateTime<Utc>>, String> {
        match self.start_from.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some("now") => Ok(Some(Utc::now())),
            Some(s) => parse_time(s).map(Some),
        }
    }
    /// The listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse::<SocketAddr>().map_err(|_| format!("`{}` is not an address like 127.0.0.1:9464", self.listen))
    }
    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.poll_interval_secs.clamp(0.1, 86_400.0))
    }
    /// The reconciliation interval, if reconciliation is on.
    pub fn reconcile_interval(&self) -> Option<Duration> {
        (self.reconcile_interval_secs > 0.0).then(|| Duration::from_secs_f64(self.reconcile_interval_secs.clamp(1.0, 30.0 * 86_400.0)))
    }
}

impl Check for DaemonSettings {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        range_f64(&mut p, "poll_interval_secs", self.poll_interval_secs, 0.1, 86_400.0);
        if let Err(e) = self.start() {
            p.push(("start_from", e));
        }
        if let Err(e) = self.listen_addr() {
            p.push(("listen", e));
        }
        range_u64(&mut p, "shutdown_grace_secs", self.shutdown_grace_secs, 0, 3600);
        if self.reconcile_interval_secs != 0.0 {
            range_f64(&mut p, "reconcile_interval_secs", self.reconcile_interval_secs, 1.0, 30.0 * 86_400.0);
        }
        range_u64(&mut p, "reconcile_lookback_secs", self.reconcile_lookback_secs, 60, 400 * 86_400);
        range_u64(&mut p, "unhealthy_after_polls", self.unhealthy_after_polls.into(), 1, 1000);
        if let Some(r) = self.ledger_recount_secs {
            if r != 0.0 {
                range_f64(&mut p, "ledger_recount_secs", r, 1.0, 30.0 * 86_400.0);
            }
        }
        p
    }
}

/// `[lambda]`: the Lambda runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaSettings {
    /// Stop this many milliseconds before the invocation deadline, so that the function can still
    /// answer (an unfinished job is then reported as retryable, never recorded).
    pub deadline_margin_ms: u64,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        LambdaSettings { deadline_margin_ms: 2000 }
    }
}

impl Check for LambdaSettings {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        range_u64(&mut p, "deadline_margin_ms", self.deadline_margin_ms, 0, 600_000);
        p
    }
}
