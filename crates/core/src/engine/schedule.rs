//! The daemon's schedule: polls on an interval, reconciliation passes on theirs, until stopped.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::observer::Observer;
use super::steps::state_call;
use super::{Engine, PassRequest};
use crate::config::DaemonSettings;
use crate::source::Cursor;
use crate::state::StateError;

/// The cursor key under which the engine remembers the configuration digest it last ran with.
const CONFIG_KEY: &str = "config";
/// The cursor key of the daemon's first start (`start_from`).
const FLOOR_KEY: &str = "start_from";

impl Engine {
    /// Polls until `stop` fires: a poll every `poll_interval_secs` (listing, then due retries),
    /// a reconciliation pass every `reconcile_interval_secs` and whenever the configuration
    /// changed since the last run. On `stop`, jobs in flight get `shutdown_grace_secs` to finish;
    /// then they are abandoned (nothing recorded: the next run picks them up).
    ///
    /// Returns an error only when the state cannot be read at start.
    pub async fn run_daemon(&self, d: &DaemonSettings, stop: &CancellationToken, obs: &dyn Observer) -> Result<(), StateError> {
        let never = CancellationToken::new();
        // `start_from` excludes jobs last modified before it, less the source's clock tolerance
        // (its watermark overlap): a job changed just after the start whose time lags the
        // daemon's clock is still synced.
        let tolerance = chrono::Duration::from_std(self.source.clock_tolerance()).unwrap_or_default();
        if state_call(&self.settings, &never, || self.state.cursor(PassRequest::POLL)).await?.is_none() {
            let start = d.start().unwrap_or(None);
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
        let mut reconcile_now = d.reconcile_interval().is_some() && remembered.as_deref() != Some(self.config_digest.as_str());
        let mut last_reconcile = Instant::now();
        let grace = Duration::from_secs(d.shutdown_grace_secs);
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
                if let Some(interval) = d.reconcile_interval() {
                    if !stop.is_cancelled() && (reconcile_now || last_reconcile.elapsed() >= interval) {
                        let mut req = PassRequest::reconcile(Duration::from_secs(d.reconcile_lookback_secs));
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
                    _ = tokio::time::sleep(d.poll_interval()) => {}
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
