//! # sagesync-runner-settings
//!
//! The runners' own config sections, registered like any plugin's section
//! ([`sagesync_core::register_section!`] with `runner`: range-checked, located errors, and
//! outside the configuration digest, so that changing a poll interval decides no job again):
//!
//! - `[daemon]` ([`DaemonSettings`]): the polling daemon's schedule and endpoints;
//! - `[lambda]` ([`LambdaSettings`]): the Lambda's deadline margin and lease wait.
//!
//! Every runner links this crate, so that one config file serves them all (`sagesync status`
//! reads the daemon's config, `[daemon]` included).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagesync_core::config::{parse_time, range_f64, range_u64, Check};
use sagesync_core::{Reconcile, Schedule};
use serde::{Deserialize, Serialize};

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
    /// The engine's schedule (`start_from = "now"` is read now).
    pub fn schedule(&self) -> Result<Schedule, String> {
        Ok(Schedule {
            poll_interval: self.poll_interval(),
            start_from: self.start()?,
            reconcile: self
                .reconcile_interval()
                .map(|interval| Reconcile { interval, lookback: Duration::from_secs(self.reconcile_lookback_secs) }),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
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
    /// How long an invocation waits for a job another writer holds before it answers
    /// `RetryableError` (the event comes back later); `[pipeline] lease_wait_secs` is for the
    /// daemon and the CLI, which can afford to wait.
    pub lease_wait_secs: u64,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        LambdaSettings { deadline_margin_ms: 2000, lease_wait_secs: 10 }
    }
}

impl LambdaSettings {
    /// The lease wait.
    pub fn lease_wait(&self) -> Duration {
        Duration::from_secs(self.lease_wait_secs)
    }
}

impl Check for LambdaSettings {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        range_u64(&mut p, "deadline_margin_ms", self.deadline_margin_ms, 0, 600_000);
        range_u64(&mut p, "lease_wait_secs", self.lease_wait_secs, 0, 900);
        p
    }
}

sagesync_core::register_section!("daemon", DaemonSettings, summary = "The polling daemon: schedule, endpoints, shutdown", runner);
sagesync_core::register_section!("lambda", LambdaSettings, summary = "The Lambda runner: deadline margin, lease wait", runner);

#[cfg(test)]
mod tests {
    use sagesync_core::Config;

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn runner_sections_are_typed_and_located() {
        let text = "[source]\ntype = \"x\"\n[[sinks]]\ntype = \"y\"\n[daemon]\nlisten = \"0.0.0.0:notaport\"\npoll_interval_secs = 1e300\n[pipeline]\nmax_job_attempts = 0\nretry_backoff_secs = 10000000000000\n[state]\npth = \"x\"\n";
        let cfg = Config::parse(text, "f.toml", &env).unwrap();
        let msgs: Vec<String> = cfg.problems().iter().map(|e| e.to_string()).collect();
        let has = |needle: &str| msgs.iter().any(|m| m.contains(needle));
        assert!(has("f.toml:6:10: key `daemon.listen`"), "{msgs:#?}");
        assert!(has("key `daemon.poll_interval_secs`"), "{msgs:#?}");
        assert!(has("f.toml:9:20: key `pipeline.max_job_attempts`: must be between 1 and 1000, got 0"), "{msgs:#?}");
        assert!(has("key `pipeline.retry_backoff_secs`"), "{msgs:#?}");
        assert_eq!(cfg.state.as_ref().map(|s| s.type_name.as_str()), Some("sqlite"), "[state] defaults to sqlite");
    }

    #[test]
    fn runner_sections_do_not_shape_records() {
        for name in ["daemon", "lambda"] {
            let d = sagesync_core::registry::sections().into_iter().find(|d| d.name == name).expect("registered");
            assert!(!d.shapes_records, "{name}");
        }
    }
}
