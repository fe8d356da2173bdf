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

/// Runs one attempt of a step, cut short (as [`SyncError::Cancelled`]) when `hard` fires (the
/// job's lease was lost: nothing more of the job may reach a store) or the deadline passes (the
/// caller needs its answer: a Lambda is killed at its deadline, mid-request or not).
pub(crate) async fn bounded<T>(
    fut: impl Future<Output = Result<T, SyncError>>,
    hard: Option<&CancellationToken>,
    deadline: Option<Instant>,
) -> Result<T, SyncError> {
    if deadline.is_some_and(|d| Instant::now() >= d) || hard.is_some_and(|h| h.is_cancelled()) {
        return Err(SyncError::Cancelled);
    }
    let until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
            None => std::future::pending().await,
        }
    };
    let lost = async {
        match hard {
            Some(h) => h.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = lost => Err(SyncError::Cancelled),
        _ = until => Err(SyncError::Cancelled),
        r = fut => r,
    }
}

/// Runs `f` until it succeeds, fails permanently, or `max_attempts` is reached; returns the
/// value or the last error, with the attempts made. This is the one retry policy: sources and
/// sinks classify their errors and return, the engine retries. Cancellation before an attempt or
/// during a backoff, and a deadline that leaves no room for the next attempt, give
/// [`SyncError::Cancelled`]; so does `hard` (a lost lease) or the deadline at any moment, in
/// the middle of an attempt too (see [`bounded`]).
pub(crate) async fn retry<T, F, Fut>(
    settings: &PipelineSettings,
    cancel: &CancellationToken,
    hard: Option<&CancellationToken>,
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
        // On shutdown, a request in flight runs to its end (sinks are idempotent, and a write
        // that completed should be recorded); only the waits between attempts are cut short. A
        // lost lease or the deadline cuts the attempt itself.
        match bounded(f(), hard, deadline).await {
            Ok(v) => return Ok((v, attempt)),
            Err(e) if e.is_retryable() && attempt < settings.max_attempts => {
                let delay = settings.backoff(attempt);
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %e.chain(), "retrying");
                let stop = cancel.clone();
                let stopped = match hard {
                    Some(h) => {
                        tokio::select! {
                            r = pause(delay, &stop, deadline) => !r,
                            _ = h.cancelled() => true,
                        }
                    }
                    None => !pause(delay, &stop, deadline).await,
                };
                if stopped {
                    // Out of time, stopping, or the lease lost: an interruption, never a
                    // verdict on the job.
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
