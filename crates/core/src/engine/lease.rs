//! A job's lease while it is worked on: taking it (waiting while another writer holds it),
//! keeping it (renewals on a fixed cadence), and the guard every sink checks before a request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::steps::{pause, state_call};
use super::Engine;
use crate::sink::LeaseGuard;
use crate::state::{Acquired, JobState, Lease, StateError, StateStore};

/// The answer to [`Engine::claim`].
pub(crate) enum Claim {
    /// The lease is ours; the job's entry as read under it.
    Granted(Lease, Option<Box<JobState>>),
    /// Another writer held it for the whole wait.
    Busy(String),
    /// Stopped while waiting.
    Cancelled,
    /// The store failed.
    Failed(StateError),
}

/// How long before a lease's expiry its guard stops holding: a request started just before the
/// expiry could otherwise reach a store after another writer took the job.
fn guard_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(3))
}

impl Engine {
    /// Takes the job's lease, waiting (up to `wait_for`, the deadline or cancellation) while
    /// another writer holds it.
    pub(crate) async fn claim(&self, arn: &str, cancel: &CancellationToken, deadline: Option<Instant>, wait_for: Duration) -> Claim {
        let mut wait_until = Instant::now() + wait_for;
        if let Some(d) = deadline {
            wait_until = wait_until.min(d);
        }
        let mut delay = Duration::from_millis(25);
        loop {
            match state_call(&self.settings, cancel, || self.state.acquire(arn, &self.owner, self.settings.lease_ttl())).await {
                Ok(Acquired::Granted { lease, state }) => return Claim::Granted(lease, state),
                Ok(Acquired::Held { owner, .. }) => {
                    let left = wait_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Claim::Busy(owner);
                    }
                    if !pause(delay.min(left), cancel, None).await {
                        return Claim::Cancelled;
                    }
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(_) if cancel.is_cancelled() => return Claim::Cancelled,
                Err(e) => return Claim::Failed(e),
            }
        }
    }
}

/// A lease being held while its job is worked on: the guard sinks check before each request,
/// the token that fires when the store says the lease is lost, the ledger entry this attempt
/// wrote so far (the intent, for the `Recorded` events), and the renewal task (stopped when
/// this is dropped).
pub(crate) struct Held {
    pub lease: Lease,
    pub guard: LeaseGuard,
    pub lost: CancellationToken,
    pub written: Mutex<Option<JobState>>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl Held {
    /// Starts holding `lease`: a guard valid until its expiry less the margin, and renewals
    /// every third of `ttl`. When the lease is lost, `job` is cancelled too (nothing more of the
    /// job starts).
    pub fn start(state: Arc<dyn StateStore>, lease: Lease, ttl: Duration, job: CancellationToken) -> Held {
        let margin = guard_margin(ttl);
        let left = (lease.expires_at - Utc::now()).to_std().unwrap_or_default();
        let guard = LeaseGuard::new(Instant::now() + left.saturating_sub(margin));
        let lost = CancellationToken::new();
        let renewal = spawn_renewal(state, lease.clone(), ttl, Renewal { job, lost: lost.clone(), guard: guard.clone(), margin });
        Held { lease, guard, lost, written: Mutex::new(None), renewal: Some(renewal) }
    }
    /// Stops renewing.
    pub fn stop(&mut self) {
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
    }
    /// Whether the store answered that the lease is lost (or renewals failed until it lapsed).
    pub fn known_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
    /// Whether the lease cannot be counted on any more: known lost, or its time ran out without
    /// a renewal.
    pub fn lapsed(&self) -> bool {
        self.known_lost() || !self.guard.holds()
    }
    /// Remembers the entry this attempt recorded.
    pub fn wrote(&self, entry: JobState) {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
    }
    /// The entry this attempt recorded, if any.
    pub fn take_written(&self) -> Option<JobState> {
        self.written.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // A pass dropped mid-job stops renewing its leases.
        self.stop();
    }
}

/// What a renewal task updates: the job's cancellation (stop starting anything), the lost token
/// (cut what is in flight), and the guard sinks check before every request.
struct Renewal {
    job: CancellationToken,
    lost: CancellationToken,
    guard: LeaseGuard,
    margin: Duration,
}

/// Renews a lease every third of its TTL until aborted, on a fixed cadence (a slow renewal does
/// not push the next one back). A renewal that succeeds extends the guard to its send time plus
/// the TTL, less the margin; while the guard has lapsed (a slow store, a paused process) sinks
/// send nothing, and a renewal that succeeds after all (nobody took the job meanwhile) lets the
/// work go on. When the store answers that the lease is lost, or renewals keep failing until the
/// lease would lapse, the lease is marked lost: work in flight is cut and nothing more of the
/// job reaches a store.
fn spawn_renewal(state: Arc<dyn StateStore>, lease: Lease, ttl: Duration, r: Renewal) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (ttl / 3).max(Duration::from_millis(50));
        let left = (lease.expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
        let mut valid_until = Instant::now() + left;
        let lose = |why: &str| {
            tracing::warn!(arn = %lease.arn, "{why}: stopping work on the job");
            r.guard.lose();
            r.lost.cancel();
            r.job.cancel();
        };
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let sent = Instant::now();
            match state.renew(&lease, ttl).await {
                Ok(true) => {
                    valid_until = sent + ttl;
                    r.guard.extend(valid_until.checked_sub(r.margin).unwrap_or(sent));
                }
                Ok(false) => {
                    lose("lease lost");
                    return;
                }
                Err(e) if Instant::now() + every >= valid_until => {
                    tracing::warn!(arn = %lease.arn, error = %e, "cannot renew the lease");
                    lose("cannot renew the lease before it lapsed");
                    return;
                }
                Err(e) => tracing::debug!(arn = %lease.arn, error = %e, "lease renewal failed; retrying"),
            }
        }
    })
}
