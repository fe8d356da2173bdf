//! The daemon's schedule: polls on an interval, reconciliation passes on theirs, until stopped.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::observer::Observer;
use super::steps::state_call;
use super::{Engine, PassRequest};
use crate::model::Timestamp;
use crate::source::Cursor;
use crate::state::StateError;

/// When [`Engine::run_daemon`] polls and reconciles. The daemon reads it from its `[daemon]`
/// section; an embedding program sets it in code.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Between polls (listing, then due retries).
    pub poll_interval: Duration,
    /// On a first start (no saved cursor), jobs last modified before this are never synced;
    /// `None` syncs every existing job.
    pub start_from: Option<Timestamp>,
    /// Reconciliation passes, if any.
    pub reconcile: Option<Reconcile>,
    /// On stop, how long jobs in flight may take before they are abandoned.
    pub shutdown_grace: Duration,
}

/// Reconciliation passes: Search over a lookback window, tags in bulk, every job re-decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconcile {
    /// Between passes.
    pub interval: Duration,
    /// How far back a pass looks.
    pub lookback: Duration,
}

/// The cursor key under which the engine remembers the configuration digest it last ran with.
const CONFIG_KEY: &str = "config";
/// The cursor key of the daemon's first start (`start_from`).
const FLOOR_KEY: &str = "start_from";

impl Engine {
    /// Polls until `stop` fires: a poll every `poll_interval` (listing, then due retries), a
    /// reconciliation pass every `reconcile.interval` and whenever the configuration changed
    /// since the last run. On `stop`, jobs in flight get `shutdown_grace` to finish; then they
    /// are abandoned (nothing recorded: the next run picks them up).
    ///
    /// Returns an error only when the state cannot be read at start.
    pub async fn run_daemon(&self, d: &Schedule, stop: &CancellationToken, obs: &dyn Observer) -> Result<(), StateError> {
        let never = CancellationToken::new();
        // `start_from` excludes jobs last modified before it, less the source's clock tolerance
        // (its watermark overlap): a job changed just after the start whose time lags the
        // daemon's clock is still synced.
        let tolerance = chrono::Duration::from_std(self.source.clock_tolerance()).unwrap_or_default();
        if state_call(&self.settings, &never, || self.state.cursor(PassRequest::POLL)).await?.is_none() {
            let start = d.start_from;
            let c = Cursor { watermark: start, ..Default::default() };
            // `start_from` also bounds reconciliation passes: jobs before it are never synced.
            // Saved first, so that a crash between the two saves cannot lose it.
            state_call(&self.settings, &never, || self.state.save_cursor(FLOOR_KEY, &c)).await?;
            let poll = Cursor { watermark: start.map(|s| s - tolerance), ..Default::default() };
            state_call(&self.settings, &never, || self.state.save_cursor(PassRequest::POLL, &poll)).await?;
        }
        let floor =
            state_call(&self.settings, &never, || self.state.cursor(FLOOR_KEY)).await?.and_then(|c| c.watermark).map(|f| f - tolerance);
        let remembered = state_call(&self.settings, &never, || self.state.cursor(CONFIG_KEY)).await?.and_then(|c| c.token);
        let mut reconcile_now = d.reconcile.is_some() && remembered.as_deref() != Some(self.config_digest.as_str());
        let mut last_reconcile = Instant::now();
        let grace = d.shutdown_grace;
        let work = async {
            loop {
                if stop.is_cancelled() {
                    break;
                }
                let rep = self.pass(&PassRequest { floor, ..PassRequest::poll() }, stop, obs).await;
                tracing::info!(
                    synced = rep.synced,
                    skipped = rep.skipped,
                    rejected = rep.rejected,
                    failed = rep.failed,
                    interrupted = rep.interrupted,
                    already_done = rep.already_done,
                    deferred = rep.deferred,
                    busy = rep.busy,
                    elapsed_ms = rep.elapsed_ms,
                    "poll done"
                );
                if let Some(r) = d.reconcile {
                    if !stop.is_cancelled() && (reconcile_now || last_reconcile.elapsed() >= r.interval) {
                        let mut req = PassRequest::reconcile(r.lookback);
                        if let (Some(f), crate::source::ListScope::Range { from, .. }) = (floor, &mut req.scope) {
                            *from = Some(from.map_or(f, |x| x.max(f)));
                        }
                        let rep = self.pass(&req, stop, obs).await;
                        tracing::info!(
                            synced = rep.synced,
                            skipped = rep.skipped,
                            rejected = rep.rejected,
                            failed = rep.failed,
                            already_done = rep.already_done,
                            elapsed_ms = rep.elapsed_ms,
                            "reconciliation done"
                        );
                        if rep.listing_error.is_none()
                            && rep.state_error.is_none()
                            && rep.busy == 0
                            && rep.interrupted == 0
                            && !rep.cancelled
                        {
                            let c = Cursor { token: Some(self.config_digest.clone()), ..Default::default() };
                            let _ = state_call(&self.settings, &never, || self.state.save_cursor(CONFIG_KEY, &c)).await;
                            reconcile_now = false;
                        }
                        last_reconcile = Instant::now();
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(d.poll_interval) => {}
                    _ = stop.cancelled() => break,
                }
            }
        };
        tokio::select! {
            _ = work => {}
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; abandoning jobs in flight (nothing recorded for them)");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
