//! Retrying one step (a fetch, a sink write, a state write) with backoff, and waiting for a
//! lease another writer holds. Every wait ends at cancellation or the deadline: an interrupted
//! wait is [`SyncError::Cancelled`], never a failure of the job.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::error::SyncError;
use crate::state::StateError;

/// Sleeps `d` unless cancelled first (`false`) or the deadline comes first (`false`).
pub(crate) async fn pause(d: Duration, cancel: &CancellationToken, deadline: Option<Instant>) -> bool {
    if let Some(dl) = deadline {
        if Instant::now() + d >= dl {
            return false;
        }
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

/// Runs `f` until it succeeds, fails permanently, or `max_attempts` is reached; returns the
/// value or the last error, with the attempts made. Cancellation before an attempt or during a
/// backoff, and a deadline that leaves no room for the next attempt, give
/// [`SyncError::Cancelled`].
pub(crate) async fn retry<T, F, Fut>(
    settings: &PipelineSettings,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
    mut f: F,
) -> Result<(T, u32), (SyncError, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SyncError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        if cancel.is_cancelled() {
            return Err((SyncError::Cancelled, attempt - 1));
        }
        // A request in flight runs to its end (sinks are idempotent, and a write that
        // completed should be recorded); only the waits between attempts are cut short.
        match f().await {
            Ok(v) => return Ok((v, attempt)),
            Err(e) if e.is_retryable() && attempt < settings.max_attempts => {
                let delay = settings.backoff(attempt);
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %e.chain(), "retrying");
                if !pause(delay, cancel, deadline).await {
                    // Out of time or stopping: an interruption, never a verdict on the job.
                    return Err((SyncError::Cancelled, attempt));
                }
            }
            Err(e) => return Err((e, attempt)),
        }
    }
}

/// Runs a state store call, retrying retryable store errors (busy, throttled) with backoff.
pub(crate) async fn state_call<T, F, Fut>(settings: &PipelineSettings, cancel: &CancellationToken, mut f: F) -> Result<T, StateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StateError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < settings.max_attempts.max(5) => {
                let delay = settings.backoff(attempt).max(Duration::from_millis(20));
                tracing::debug!(attempt, error = %e, "state store busy; retrying");
                if !pause(delay, cancel, None).await {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
