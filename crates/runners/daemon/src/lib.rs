//! `sagesyncd`: the polling daemon, as a library (a custom binary is its `main` plus
//! `use my_plugin as _;`). It loads the config, hands the schedule to the engine
//! ([`Engine::run_daemon`]), serves `/healthz` and `/metrics`, and handles signals. Metrics are
//! counted as events happen (`prometheus-client`); `/metrics` never reads the ledger.
//!
//! The ledger gauges (`sagesync_ledger_jobs`, `sagesync_ledger_parked_jobs`) start from a count
//! of the ledger and follow every entry this daemon records (the engine's `Recorded` events).
//! Where counting reads the whole ledger over the network (DynamoDB's scan), the daemon does not
//! count unless `[daemon] ledger_recount_secs` asks it to: a poll then reads no more of the
//! ledger than the jobs it lists, and the gauges are absent until a count exists.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sagesync_core::config::ConfigErrors;
use sagesync_core::{
    CancellationToken, CountClass, Decision, Engine, EngineOptions, Event, LedgerCounts, Observer, Stage, StateError, WriteKind,
};
use sagesync_runner_settings::DaemonSettings;

// Link the standard plugins and every runner's config sections.
use sagesync_plugins as _;
use sagesync_runner_settings as _;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The state store cannot be used.
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
    /// Exit code: 2 for a configuration error or a state store that cannot be used at all (a
    /// restart would not help), 1 otherwise (a supervisor restarts it).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::Config(_) => 2,
            DaemonError::State(e) if !e.is_retryable() => 2,
            _ => 1,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkWrite {
    sink: String,
    write: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabel {
    key: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

/// The process's resident memory, bytes (Linux: `/proc/self/statm`; elsewhere 0).
fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<i64>().ok()))
        .unwrap_or(0);
    pages * memory::page_size()
}

/// The daemon's metrics and health, fed by the engine's events.
pub struct Metrics {
    registry: Registry,
    jobs: Family<OutcomeLabel, Counter>,
    already_done: Counter,
    deferred: Counter,
    busy: Counter,
    sink_writes: Family<SinkWrite, Counter>,
    sink_failures: Family<SinkLabel, Counter>,
    api_calls: Family<OperationLabel, Counter>,
    polls: Family<ResultLabel, Counter>,
    passes: Family<PassLabel, Counter>,
    poll_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_success: Gauge,
    ledger: Family<OutcomeLabel, Gauge>,
    parked: Family<OutcomeLabel, Gauge>,
    recorded: Family<OutcomeLabel, Counter>,
    last_count: Gauge,
    /// The ledger's counts: from the last count, plus every entry recorded since. `None` until
    /// a count exists (the gauges are absent then).
    counts: Mutex<Option<LedgerCounts>>,
    state_errors: Counter,
    listing_failures: Counter,
    job_failures: Family<StageLabel, Counter>,
    healthy: Gauge,
    started_at: Gauge,
    poll_interval: Gauge<f64, std::sync::atomic::AtomicU64>,
    resident: Gauge,
    last_success_at: AtomicI64,
    polls_done: AtomicU64,
    last_poll_ok: std::sync::atomic::AtomicBool,
    started: Instant,
    settings: DaemonSettings,
    last_error: Mutex<Option<String>>,
}

impl Metrics {
    /// Empty metrics for a daemon with these settings.
    pub fn new(settings: &DaemonSettings) -> Metrics {
        let mut registry = Registry::with_prefix("sagesync");
        let m = Metrics {
            registry: Registry::default(),
            jobs: Family::default(),
            already_done: Counter::default(),
            deferred: Counter::default(),
            busy: Counter::default(),
            sink_writes: Family::default(),
            sink_failures: Family::default(),
            api_calls: Family::default(),
            polls: Family::default(),
            passes: Family::default(),
            poll_duration: Gauge::default(),
            last_success: Gauge::default(),
            ledger: Family::default(),
            parked: Family::default(),
            recorded: Family::default(),
            last_count: Gauge::default(),
            counts: Mutex::new(None),
            state_errors: Counter::default(),
            listing_failures: Counter::default(),
            job_failures: Family::default(),
            healthy: Gauge::default(),
            started_at: Gauge::default(),
            poll_interval: Gauge::default(),
            resident: Gauge::default(),
            last_success_at: AtomicI64::new(0),
            polls_done: AtomicU64::new(0),
            last_poll_ok: Default::default(),
            started: Instant::now(),
            settings: settings.clone(),
            last_error: Mutex::new(None),
        };
        registry.register("jobs", "Jobs worked on by this daemon, by outcome", m.jobs.clone());
        registry.register("jobs_already_done", "Listed jobs the ledger already held in their current state", m.already_done.clone());
        registry.register("jobs_deferred", "Listed failed jobs whose retry time had not come", m.deferred.clone());
        registry.register("jobs_busy", "Jobs another writer held for longer than the lease wait", m.busy.clone());
        registry.register("sink_writes", "Sink writes, by sink and result", m.sink_writes.clone());
        registry.register("sink_failures", "Jobs whose write to a sink failed, by sink", m.sink_failures.clone());
        registry.register("sagemaker_calls", "SageMaker (and S3, CloudWatch) API calls, by operation", m.api_calls.clone());
        registry.register("polls", "Polls, by result", m.polls.clone());
        registry.register("passes", "Passes, by cursor key", m.passes.clone());
        registry.register_with_unit(
            "poll_duration",
            "Duration of the last poll",
            prometheus_client::registry::Unit::Seconds,
            m.poll_duration.clone(),
        );
        registry.register("last_successful_poll_timestamp_seconds", "Unix time of the last successful poll", m.last_success.clone());
        registry.register(
            "ledger_jobs",
            "Jobs in the ledger by last outcome: the last count plus the entries this daemon recorded since (absent until a count exists)",
            m.ledger.clone(),
        );
        registry.register("ledger_parked_jobs", "Parked jobs in the ledger, counted as ledger_jobs is", m.parked.clone());
        registry.register("ledger_recorded", "Outcomes this daemon recorded in the ledger, by outcome", m.recorded.clone());
        registry.register(
            "ledger_last_count_timestamp_seconds",
            "Unix time of the last count of the ledger (0: never counted)",
            m.last_count.clone(),
        );
        registry.register("state_errors", "State store failures", m.state_errors.clone());
        registry.register(
            "listing_failures",
            "Listings of SageMaker that failed after their retries (a poll or a reconciliation pass)",
            m.listing_failures.clone(),
        );
        registry.register(
            "job_failures",
            "Jobs that failed, by the stage that failed: source (a SageMaker request), sink (a store), state (the ledger), validate, map",
            m.job_failures.clone(),
        );
        registry.register("healthy", "1 when /healthz answers healthy (the last poll succeeded, and recently), else 0", m.healthy.clone());
        m.started_at.set(Utc::now().timestamp());
        registry.register("process_start_time_seconds", "Unix time the daemon started", m.started_at.clone());
        m.poll_interval.set(settings.poll_interval_secs);
        registry.register_with_unit(
            "poll_interval",
            "The configured time between polls",
            prometheus_client::registry::Unit::Seconds,
            m.poll_interval.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the daemon's process",
            prometheus_client::registry::Unit::Bytes,
            m.resident.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics exposition (`application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        // What is read at scrape time: health and memory.
        self.healthy.set(i64::from(self.health().0));
        self.resident.set(resident_bytes());
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text exposition, version 0.0.4 (what a scraper gets unless it asks for
    /// OpenMetrics). `prometheus-client` writes OpenMetrics only; the two differ in three
    /// places, rewritten here line by line: a counter's family is named with its `_total`
    /// suffix, and there are no `# UNIT` lines and no `# EOF`.
    pub fn render_text(&self) -> String {
        let open = self.render();
        let counters: std::collections::HashSet<&str> =
            open.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|r| r.strip_suffix(" counter")).collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line.starts_with("# UNIT ") || line == "# EOF" {
                continue;
            }
            let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
            match meta {
                Some((p, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    if counters.contains(name) {
                        out.push_str(&format!("{p}{name}_total {tail}"));
                    } else {
                        out.push_str(line);
                    }
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    /// Starts the per-sink and per-stage failure counters at 0, so that their series exist (and
    /// alerts on them have something to read) before the first failure.
    pub fn known_sinks(&self, sinks: &[String]) {
        for s in sinks {
            let _ = self.sink_failures.get_or_create(&SinkLabel { sink: s.clone() });
        }
        for stage in [Stage::Source, Stage::Validate, Stage::Map, Stage::Sink, Stage::State] {
            let _ = self.job_failures.get_or_create(&StageLabel { stage: stage.as_str().into() });
        }
    }

    /// Replaces the ledger counts (a fresh count).
    pub fn set_ledger(&self, c: &LedgerCounts) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        self.last_count.set(Utc::now().timestamp());
        self.show_ledger(c);
    }

    fn show_ledger(&self, c: &LedgerCounts) {
        for (k, v) in
            [("synced", c.synced), ("skipped", c.skipped), ("rejected", c.rejected), ("failed", c.failed), ("interrupted", c.interrupted)]
        {
            self.ledger.get_or_create(&OutcomeLabel { outcome: k.into() }).set(v as i64);
        }
        self.parked.get_or_create(&OutcomeLabel { outcome: "failed".into() }).set(c.parked as i64);
    }

    /// Follows one entry this daemon recorded.
    fn recorded(&self, before: Option<&sagesync_core::JobState>, after: &sagesync_core::JobState) {
        // Outcomes only (the intent recorded before a first write is not one).
        if after.class() != CountClass::Interrupted {
            self.recorded.get_or_create(&OutcomeLabel { outcome: class_name(after.class()).into() }).inc();
        }
        let mut g = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.as_mut() {
            if let Some(b) = before {
                c.remove(b.class(), b.parked);
            }
            c.add(after.class(), after.parked);
            let c = c.clone();
            drop(g);
            self.show_ledger(&c);
        }
    }

    /// The health document and whether the daemon is healthy: the last poll succeeded, and not
    /// longer ago than `unhealthy_after_polls` intervals (so a hung SageMaker call shows).
    pub fn health(&self) -> (bool, serde_json::Value) {
        let now = Utc::now().timestamp_millis();
        let last = self.last_success_at.load(Ordering::SeqCst);
        let polls = self.polls_done.load(Ordering::SeqCst);
        let interval_ms = (self.settings.poll_interval_secs * 1000.0) as i64;
        let stale_after = interval_ms * i64::from(self.settings.unhealthy_after_polls) + 30_000;
        let age_ms = (last > 0).then(|| now - last);
        let fresh = age_ms.is_some_and(|a| a <= stale_after);
        let ok = fresh && self.last_poll_ok.load(Ordering::SeqCst);
        let starting = polls == 0 && (self.started.elapsed().as_millis() as i64) < stale_after;
        let status = if ok {
            "ok"
        } else if starting {
            "starting"
        } else if !fresh && last > 0 {
            "stale"
        } else {
            "degraded"
        };
        let doc = serde_json::json!({
            "status": status,
            "ready": ok,
            "last_successful_poll": (last > 0).then(|| chrono::DateTime::<Utc>::from_timestamp_millis(last).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
            "seconds_since_last_successful_poll": age_ms.map(|a| a as f64 / 1000.0),
            "polls": polls,
            "last_error": self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        });
        (ok, doc)
    }
}

impl Observer for Metrics {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::Job(r) => {
                self.jobs.get_or_create(&OutcomeLabel { outcome: r.outcome.as_str().into() }).inc();
                for rc in &r.receipts {
                    let w = match rc.write {
                        WriteKind::Created => "created",
                        WriteKind::Updated => "updated",
                        WriteKind::Unchanged => "unchanged",
                        WriteKind::Removed => "removed",
                    };
                    self.sink_writes.get_or_create(&SinkWrite { sink: rc.sink.clone(), write: w.into() }).inc();
                }
                for s in &r.failed_sinks {
                    self.sink_failures.get_or_create(&SinkLabel { sink: s.clone() }).inc();
                }
                if r.outcome == sagesync_core::Outcome::Failed {
                    let stage = r.stage.map_or("unknown", |s| s.as_str()).to_string();
                    self.job_failures.get_or_create(&StageLabel { stage }).inc();
                }
            }
            Event::Recorded { before, after } => self.recorded(*before, after),
            Event::Decided(Decision::Done) => {
                self.already_done.inc();
            }
            Event::Decided(Decision::Later) => {
                self.deferred.inc();
            }
            Event::Busy { .. } => {
                self.busy.inc();
            }
            Event::StateFailed(err) => {
                self.state_errors.inc();
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
            }
            Event::ListingFailed { failure, .. } => {
                self.listing_failures.inc();
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure.message.clone());
            }
            Event::PassFinished(r) => {
                for (op, n) in &r.api_calls {
                    self.api_calls.get_or_create(&OperationLabel { operation: op.clone() }).inc_by(*n);
                }
                self.passes.get_or_create(&PassLabel { key: r.key.clone() }).inc();
                if r.key == sagesync_core::PassRequest::POLL && !r.cancelled {
                    let ok = r.listing_error.is_none() && r.state_error.is_none();
                    self.polls.get_or_create(&ResultLabel { result: if ok { "ok" } else { "failed" }.into() }).inc();
                    self.poll_duration.set(r.elapsed_ms as f64 / 1000.0);
                    self.polls_done.fetch_add(1, Ordering::SeqCst);
                    self.last_poll_ok.store(ok, Ordering::SeqCst);
                    if ok {
                        let now = Utc::now();
                        self.last_success_at.store(now.timestamp_millis(), Ordering::SeqCst);
                        self.last_success.set(now.timestamp());
                        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Counts the ledger after passes, when the policy says so (never per scrape): `[daemon]
/// ledger_recount_secs`, or by default after every pass where counting is a local query and
/// never where it scans over the network.
struct LedgerGauges<'a> {
    metrics: &'a Metrics,
    pending: std::sync::atomic::AtomicBool,
}

impl Observer for LedgerGauges<'_> {
    fn event(&self, e: &Event<'_>) {
        self.metrics.event(e);
        if let Event::PassFinished(_) = e {
            self.pending.store(true, Ordering::SeqCst);
        }
    }
}

fn class_name(c: CountClass) -> &'static str {
    match c {
        CountClass::Synced => "synced",
        CountClass::Skipped => "skipped",
        CountClass::Rejected => "rejected",
        CountClass::Failed => "failed",
        CountClass::Interrupted => "interrupted",
    }
}

/// Everything the daemon needs, loaded from one config file.
pub struct Daemon {
    /// The engine.
    pub engine: Engine,
    /// `[daemon]`.
    pub settings: DaemonSettings,
    /// Metrics and health.
    pub metrics: Arc<Metrics>,
}

impl Daemon {
    /// Loads the config (every error at once, `[daemon]` included); the state store defaults to
    /// the SQLite file `sagesync-state.db`.
    pub fn load(config: &Path) -> Result<Daemon, DaemonError> {
        let (engine, cfg) = Engine::load(config, &EngineOptions::sqlite())?;
        let settings: DaemonSettings = cfg.section("daemon");
        let metrics = Arc::new(Metrics::new(&settings));
        metrics.known_sinks(&engine.sink_ids());
        Ok(Daemon { engine, settings, metrics })
    }

    /// Serves `/healthz` and `/metrics`; returns the bound address.
    pub async fn serve_http(&self, shutdown: CancellationToken) -> Result<SocketAddr, DaemonError> {
        use axum::routing::get;
        let addr = self.settings.listen.clone();
        let listener =
            tokio::net::TcpListener::bind(&addr).await.map_err(|e| DaemonError::Listen { addr: addr.clone(), message: e.to_string() })?;
        let bound = listener.local_addr().map_err(|e| DaemonError::Listen { addr, message: e.to_string() })?;
        let (h, m) = (self.metrics.clone(), self.metrics.clone());
        let app = axum::Router::new()
            .route(
                "/healthz",
                get(move || {
                    let metrics = h.clone();
                    async move {
                        let (ok, doc) = metrics.health();
                        (if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE }, axum::Json(doc))
                    }
                }),
            )
            .route(
                "/metrics",
                get(move |headers: axum::http::HeaderMap| {
                    let m = m.clone();
                    async move {
                        // OpenMetrics when the scraper asks for it (Prometheus does by
                        // default), else the classic text format.
                        let open = headers
                            .get_all(axum::http::header::ACCEPT)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .any(|v| v.contains("application/openmetrics-text"));
                        if open {
                            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
                        } else {
                            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render_text())
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        });
        Ok(bound)
    }

    /// How often the ledger is counted: `None` never, `Some(ZERO)` after every pass.
    fn recount_every(&self) -> Option<std::time::Duration> {
        match self.settings.ledger_recount_secs {
            Some(s) if s <= 0.0 => None,
            Some(s) => Some(std::time::Duration::from_secs_f64(s)),
            None if self.engine.state().scans_to_count() => None,
            None => Some(std::time::Duration::ZERO),
        }
    }

    /// Runs the engine's schedule until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), DaemonError> {
        let every = self.recount_every();
        let count = || async {
            match self.engine.state().counts().await {
                Ok(c) => self.metrics.set_ledger(&c),
                Err(e) => tracing::warn!(error = %e, "cannot count the ledger; the ledger gauges keep their values"),
            }
        };
        if every.is_some() {
            count().await;
        }
        let obs = LedgerGauges { metrics: &self.metrics, pending: Default::default() };
        let refresher = async {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                if obs.pending.swap(false, Ordering::SeqCst) {
                    if let Some(d) = every {
                        if last.elapsed() >= d {
                            count().await;
                            last = Instant::now();
                        }
                    }
                    memory::release_free_memory();
                }
            }
        };
        let schedule = self.settings.schedule().map_err(|e| ConfigErrors::one("[daemon]", e))?;
        tokio::select! {
            r = self.engine.run_daemon(&schedule, &shutdown, &obs) => r?,
            _ = refresher => {}
        }
        Ok(())
    }
}

/// The idle footprint: glibc's allocator keeps an arena per thread and holds on to memory a
/// pass freed. A poller gains nothing from either between passes.
///
/// The workspace denies `unsafe`; this module is the one exception: two calls into glibc
/// (`mallopt`, `malloc_trim`) that take plain integers and touch no Rust memory.
#[allow(unsafe_code)]
mod memory {
    /// At most two malloc arenas (the runtime has two workers), set before any thread starts.
    pub fn limit_arenas() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets an allocator tunable; called before the runtime's threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    /// The system's page size, bytes (4096 where it cannot be read).
    pub fn page_size() -> i64 {
        #[cfg(unix)]
        // SAFETY: sysconf reads a system constant; it takes and touches no memory of ours.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64;
        #[cfg(not(unix))]
        let size = 4096;
        if size > 0 {
            size
        } else {
            4096
        }
    }
    /// Hands memory freed by the pass back to the system.
    pub fn release_free_memory() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap pages; it is thread-safe in glibc.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Registered plugin type names (for the linking test).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    sagesync_core::registry::registered()
}

/// The `sagesyncd` command: `--config FILE`, SIGTERM/SIGINT for a graceful stop.
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    #[derive(Parser)]
    #[command(name = "sagesyncd", version, about = "Poll SageMaker and keep metadata stores in sync")]
    struct Args {
        /// Pipeline config (TOML) with optional [daemon] and [state] sections.
        #[arg(long, short)]
        config: std::path::PathBuf,
        /// Once /healthz and /metrics are served, write the bound address (`IP:PORT`) to this
        /// file (written whole, then renamed into place): with `listen = "127.0.0.1:0"` the
        /// system picks the port and this tells which.
        #[arg(long, value_name = "FILE")]
        listen_file: Option<std::path::PathBuf>,
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(errors) = sagesync_core::registry::check_unique() {
        for e in errors {
            eprintln!("error: {e}");
        }
        return std::process::ExitCode::from(2);
    }
    memory::limit_arenas();
    // Two workers are plenty for a poller and keep the idle footprint small.
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(8).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let daemon = match Daemon::load(&args.config) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(e.exit_code());
            }
        };
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGTERM handler");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            s.cancel();
        });
        match daemon.serve_http(shutdown.clone()).await {
            Ok(addr) => {
                tracing::info!(listen = %addr, "serving /healthz and /metrics");
                if let Some(path) = &args.listen_file {
                    if let Err(e) = write_listen_file(path, addr) {
                        eprintln!("error: cannot write the listen address to {}: {e}", path.display());
                        return std::process::ExitCode::from(1);
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::from(e.exit_code());
            }
        }
        match daemon.run(shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(e.exit_code())
            }
        }
    })
}

/// Writes `addr` to `path` through a temporary file beside it, so a reader sees all or nothing.
fn write_listen_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, path)
}
