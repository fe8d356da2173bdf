//! `sagesyncd`: polls the source on an interval and syncs new and changed jobs through the
//! pipeline, keeping a crash-safe ledger; serves `/healthz` and `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagesync_core::config::ConfigErrors;
use sagesync_core::{CancellationToken, Config, Cursor, JobObserver, JobReport, LedgerObserver, Pipeline, RetryPolicy, SqliteState, StateError, StateStore, WriteKind};
use serde::Deserialize;

// Link every plugin crate.
use sagesync_sink_file as _;
use sagesync_sink_modeldb as _;
use sagesync_source_sagemaker as _;

/// `[daemon]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Seconds between polls.
    pub poll_interval_secs: f64,
    /// On first start (no saved cursor): `"now"`, a date/RFC 3339 time, or absent for a full
    /// sync of every existing job.
    pub start_from: Option<String>,
    /// Address of `/healthz` and `/metrics`.
    pub listen: String,
    /// On SIGTERM/SIGINT, how long in-flight jobs may take before they are abandoned.
    pub shutdown_grace_secs: u64,
    /// Failed attempts before a job is parked.
    pub max_job_attempts: u32,
    /// Delay before retrying a failed job, doubling per failure.
    pub retry_backoff_secs: u64,
    /// Cap on that delay.
    pub max_retry_backoff_secs: u64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        let r = RetryPolicy::default();
        DaemonSettings {
            poll_interval_secs: 60.0,
            start_from: None,
            listen: "127.0.0.1:9464".into(),
            shutdown_grace_secs: 30,
            max_job_attempts: r.max_job_attempts,
            retry_backoff_secs: r.retry_backoff_secs,
            max_retry_backoff_secs: r.max_retry_backoff_secs,
        }
    }
}

impl DaemonSettings {
    /// The retry policy part.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy { max_job_attempts: self.max_job_attempts, retry_backoff_secs: self.retry_backoff_secs, max_retry_backoff_secs: self.max_retry_backoff_secs }
    }
}


/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The state file cannot be used.
    #[error("{0}")]
    State(#[from] StateError),
    /// The HTTP listener cannot start.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// Address.
        addr: String,
        /// Why.
        message: String,
    },
}

impl DaemonError {
    /// Exit code: 2 for configuration and state problems, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) | DaemonError::State(_) => 2,
            DaemonError::Listen { .. } => 1,
        }
    }
}

/// Counters behind `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<MetricsInner>,
}

#[derive(Debug, Default)]
struct MetricsInner {
    jobs: BTreeMap<&'static str, u64>,
    sink_writes: BTreeMap<(String, &'static str), u64>,
    sink_failures: BTreeMap<String, u64>,
    polls_ok: u64,
    polls_failed: u64,
    last_poll_secs: f64,
    last_success: Option<DateTime<Utc>>,
    last_poll_ok: bool,
    watermark: Option<DateTime<Utc>>,
    api_calls: BTreeMap<String, u64>,
    already_done: u64,
}

impl JobObserver for Metrics {
    fn on_job(&self, r: &JobReport) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *m.jobs.entry(r.outcome.as_str()).or_default() += 1;
        for rc in &r.receipts {
            let w = match rc.write {
                WriteKind::Created => "created",
                WriteKind::Updated => "updated",
                WriteKind::Unchanged => "unchanged",
                WriteKind::Removed => "removed",
            };
            *m.sink_writes.entry((rc.sink.clone(), w)).or_default() += 1;
        }
        for s in &r.failed_sinks {
            *m.sink_failures.entry(s.clone()).or_default() += 1;
        }
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    fn poll_done(&self, ok: bool, secs: f64, cursor: &Cursor, api_calls: BTreeMap<String, u64>, already_done: usize) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            m.polls_ok += 1;
            m.last_success = Some(Utc::now());
        } else {
            m.polls_failed += 1;
        }
        m.last_poll_ok = ok;
        m.last_poll_secs = secs;
        m.watermark = cursor.watermark.or(m.watermark);
        m.api_calls = api_calls;
        m.already_done += already_done as u64;
    }

    /// Cursor lag: seconds from the watermark to now.
    fn lag(&self) -> Option<f64> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.watermark.map(|w| (Utc::now() - w).num_milliseconds() as f64 / 1000.0)
    }

    /// The health document and whether the daemon is ready.
    pub fn health(&self) -> (bool, serde_json::Value) {
        let lag = self.lag();
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ready = m.last_poll_ok && m.last_success.is_some();
        let status = if m.polls_ok + m.polls_failed == 0 { "starting" } else if ready { "ok" } else { "degraded" };
        (ready, serde_json::json!({
            "status": status,
            "ready": ready,
            "last_successful_poll": m.last_success.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "lag_seconds": lag,
            "watermark": m.watermark.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "polls": {"ok": m.polls_ok, "failed": m.polls_failed},
        }))
    }

    /// Prometheus text exposition (version 0.0.4).
    pub fn render(&self, ledger: &sagesync_core::state::LedgerCounts) -> String {
        let lag = self.lag();
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut o = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                o.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        family(
            "sagesync_jobs_total",
            "counter",
            "Jobs processed by this daemon, by outcome.",
            ["synced", "skipped", "rejected", "failed"].iter().map(|k| (format!("{{outcome=\"{k}\"}}"), m.jobs.get(k).copied().unwrap_or(0).to_string())).collect(),
        );
        family("sagesync_jobs_already_done_total", "counter", "Listed jobs skipped because the ledger already had them at that version.", vec![(String::new(), m.already_done.to_string())]);
        family("sagesync_sink_writes_total", "counter", "Sink upserts, by sink and result.", m.sink_writes.iter().map(|((s, w), v)| (format!("{{sink=\"{}\",write=\"{w}\"}}", esc(s)), v.to_string())).collect());
        family("sagesync_sink_failures_total", "counter", "Jobs whose write to a sink failed, by sink.", m.sink_failures.iter().map(|(s, v)| (format!("{{sink=\"{}\"}}", esc(s)), v.to_string())).collect());
        family("sagesync_sagemaker_calls_total", "counter", "SageMaker (and S3) API calls, by operation.", m.api_calls.iter().map(|(k, v)| (format!("{{operation=\"{}\"}}", esc(k)), v.to_string())).collect());
        family("sagesync_polls_total", "counter", "Polls, by result.", vec![("{result=\"ok\"}".into(), m.polls_ok.to_string()), ("{result=\"failed\"}".into(), m.polls_failed.to_string())]);
        family("sagesync_poll_duration_seconds", "gauge", "Duration of the last poll.", vec![(String::new(), format!("{:.6}", m.last_poll_secs))]);
        family("sagesync_last_successful_poll_timestamp_seconds", "gauge", "Unix time of the last successful poll.", vec![(String::new(), m.last_success.map(|t| format!("{:.3}", t.timestamp_millis() as f64 / 1000.0)).unwrap_or_else(|| "0".into()))]);
        family("sagesync_cursor_lag_seconds", "gauge", "Seconds between the cursor's watermark and now.", vec![(String::new(), lag.map(|l| format!("{l:.3}")).unwrap_or_else(|| "NaN".into()))]);
        family(
            "sagesync_ledger_jobs",
            "gauge",
            "Jobs in the ledger, by last outcome.",
            [("synced", ledger.synced), ("skipped", ledger.skipped), ("rejected", ledger.rejected), ("failed", ledger.failed)].iter().map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), v.to_string())).collect(),
        );
        family("sagesync_ledger_parked_jobs", "gauge", "Failed jobs parked until `sagesync retry`.", vec![(String::new(), ledger.parked.to_string())]);
        o
    }
}

/// Everything the daemon needs, loaded from one config file.
pub struct Daemon {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// `[daemon]`.
    pub settings: DaemonSettings,
    /// The state store.
    pub state: Arc<SqliteState>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Cursor key of the daemon's polling.
pub const CURSOR_KEY: &str = "daemon";

/// The starting cursor for `start_from`.
pub fn initial_cursor(start_from: Option<&str>) -> Result<Cursor, String> {
    match start_from.map(str::trim) {
        None | Some("") => Ok(Cursor::default()),
        Some("now") => Ok(Cursor { watermark: Some(Utc::now()), ..Default::default() }),
        Some(s) => sagesync_source_sagemaker::api::parse_time_filter(s).map(|t| Cursor { watermark: Some(t), ..Default::default() }),
    }
}

impl Daemon {
    /// Loads the config and opens the state.
    pub fn load(config: &Path) -> Result<Daemon, DaemonError> {
        let cfg = Config::from_file(config)?;
        let settings: DaemonSettings = cfg.section("daemon")?.unwrap_or_default();
        let state_settings: sagesync_core::state::StateSettings = cfg.section("state")?.unwrap_or_default();
        let mut problems = Vec::new();
        if !(settings.poll_interval_secs.is_finite() && settings.poll_interval_secs >= 0.1) {
            problems.push("[daemon] poll_interval_secs must be at least 0.1".to_string());
        }
        if settings.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!("[daemon] listen `{}` is not an address like 127.0.0.1:9464", settings.listen));
        }
        if let Err(e) = initial_cursor(settings.start_from.as_deref()) {
            problems.push(format!("[daemon] start_from: {e}"));
        }
        if settings.max_job_attempts == 0 {
            problems.push("[daemon] max_job_attempts must be at least 1".into());
        }
        let built = cfg.build();
        let mut errors = match &built {
            Ok(_) => Vec::new(),
            Err(e) => e.0.clone(),
        };
        for p in problems {
            errors.push(sagesync_core::ConfigError { file: cfg.file.clone(), line: 1, column: 1, key: String::new(), message: p });
        }
        if !errors.is_empty() {
            return Err(DaemonError::Config(ConfigErrors(errors)));
        }
        let pipeline = Pipeline::from_config(built.map_err(DaemonError::Config)?).map_err(|e| DaemonError::Config(ConfigErrors(vec![sagesync_core::ConfigError { file: cfg.file.clone(), line: 1, column: 1, key: String::new(), message: e.to_string() }])))?;
        let state = Arc::new(SqliteState::open(&state_settings.path)?);
        Ok(Daemon { pipeline, settings, state, metrics: Arc::new(Metrics::default()) })
    }

    /// Serves `/healthz` and `/metrics`; returns the bound address.
    pub async fn serve_http(&self, shutdown: CancellationToken) -> Result<SocketAddr, DaemonError> {
        use axum::routing::get;
        let addr = self.settings.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| DaemonError::Listen { addr: addr.clone(), message: e.to_string() })?;
        let bound = listener.local_addr().map_err(|e| DaemonError::Listen { addr, message: e.to_string() })?;
        let metrics = self.metrics.clone();
        let m2 = self.metrics.clone();
        let state = self.state.clone();
        let app = axum::Router::new()
            .route(
                "/healthz",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        let (ready, doc) = metrics.health();
                        let code = if ready { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
                        (code, axum::Json(doc))
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let m = m2.clone();
                    let state = state.clone();
                    async move {
                        let counts = state.counts().unwrap_or_default();
                        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render(&counts))
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        });
        Ok(bound)
    }

    /// Polls until `shutdown` fires. In-flight jobs get `shutdown_grace_secs` to finish, then
    /// are abandoned (their sinks are idempotent; the ledger re-drives them on restart).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let mut cursor = match self.state.cursor(CURSOR_KEY)? {
            Some(c) => c,
            None => {
                let c = initial_cursor(self.settings.start_from.as_deref()).unwrap_or_default();
                self.state.save_cursor(CURSOR_KEY, &c)?;
                c
            }
        };
        let retry = self.settings.retry();
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let started = Instant::now();
            let observer = LedgerObserver::new(self.state.as_ref(), CURSOR_KEY, retry.clone()).with(self.metrics.as_ref());
            let run = self.pipeline.run_observed(cursor.clone(), &shutdown, &observer);
            tokio::pin!(run);
            let summary = tokio::select! {
                s = &mut run => Some(s),
                _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; abandoning in-flight jobs");
                    None
                }
            };
            if let Some(e) = observer.take_error() {
                return Err(DaemonError::State(e));
            }
            let Some(summary) = summary else { break };
            let listing_failed = summary.jobs.iter().any(|j| j.job == "<listing>");
            if let Some(c) = self.state.cursor(CURSOR_KEY)? {
                cursor = c;
            }
            self.metrics.poll_done(!listing_failed, started.elapsed().as_secs_f64(), &cursor, self.pipeline.source().api_calls(), summary.already_done);
            tracing::info!(synced = summary.synced, skipped = summary.skipped, rejected = summary.rejected, failed = summary.failed, already_done = summary.already_done, deferred = summary.deferred, elapsed_ms = summary.elapsed_ms, "poll done");
            if summary.cancelled {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(self.settings.poll_interval_secs)) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Registered plugin type names (for the linking test).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    sagesync_core::registry::all().into_iter().map(|d| (d.kind.as_str(), d.type_name)).collect()
}
