//! One job's way through the engine, under its lease: fetch, validate, map, write to (or
//! retract from) each sink that differs, commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::decide::decide;
use super::observer::{Decision, Event};
use super::pass::Ctx;
use super::report::JobReport;
use super::steps::{pause, retry, state_call};
use super::Engine;
use crate::config::NamedSink;
use crate::config::OnIneligible;
use crate::error::{Stage, SyncError};
use crate::model::{RunRecord, TrainingJob};
use crate::sink::{LeaseGuard, SinkReceipt, WriteContext, WriteKind};
use crate::source::{JobRef, ListingProblem};
use crate::stage::Verdict;
use crate::state::{Acquired, Basis, Delivery, JobState, Lease, Outcome, StateError, StateStore};

/// A unit of work: a listed job, or an unreadable listing entry that names its job.
pub(crate) enum Item {
    Ref(JobRef),
    Problem(ListingProblem),
}

impl Item {
    fn key(&self) -> String {
        match self {
            Item::Ref(r) => r.key().to_string(),
            Item::Problem(p) => p.arn.clone().unwrap_or_else(|| p.origin.clone()),
        }
    }
    fn name(&self) -> String {
        match self {
            Item::Ref(r) => r.name.clone(),
            Item::Problem(p) => p.job.clone().unwrap_or_else(|| p.origin.clone()),
        }
    }
}

/// How one job ended for the pass.
pub(crate) enum Handled {
    /// Decided again under the lease: nothing to do.
    Done,
    /// Another writer held it for longer than the lease wait.
    Busy(String),
    /// Another writer holds it right now (first round: try again after the rest of the page).
    Held(Box<Item>, Option<JobState>),
    /// Worked on (or failed before it could be).
    Report(JobReport),
}

enum Leased {
    Granted(Lease, Option<Box<JobState>>),
    Busy(String),
    Cancelled,
    Failed(StateError),
}

/// What the work produced: an entry to commit, nothing (interrupted), or nothing to do (the
/// job as fetched is what the ledger already holds).
enum Work {
    Finished(Box<JobState>, JobReport),
    Interrupted(JobReport),
    Settled,
}

/// What the job's attempt holds besides its lease: the guard sinks check before each request,
/// the token that fires when the lease is lost, and the ledger entry this attempt wrote so far
/// (the intent), for the `Recorded` events.
struct Held<'a> {
    lease: &'a Lease,
    guard: LeaseGuard,
    lost: CancellationToken,
    written: std::sync::Mutex<Option<JobState>>,
}

/// How long before a lease's expiry its guard stops holding: a request started just before the
/// expiry could otherwise reach a store after another writer took the job.
fn guard_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(3))
}

fn interrupted(name: &str, arn: Option<&str>, why: &str) -> JobReport {
    let mut r = JobReport::new(name, arn.map(str::to_string), Outcome::Interrupted);
    r.reason = Some(format!("interrupted ({why}); nothing recorded, it will be picked up again"));
    r
}

impl Engine {
    /// Works on one job and commits its outcome under its lease.
    pub(crate) async fn process_one(&self, item: Item, prior: Option<JobState>, ctx: &Ctx<'_>, wait: bool) -> Handled {
        let name = item.name();
        let _local = self.inflight.lock(&item.key()).await;
        if ctx.cancel.is_cancelled() {
            return Handled::Report(interrupted(&name, None, "stopping before it started"));
        }
        // A reference by name: fetch first to learn the ARN the ledger and the lease key on.
        let mut fetched: Option<(TrainingJob, u32)> = None;
        let arn = match &item {
            Item::Problem(p) => p.arn.clone().unwrap_or_default(),
            Item::Ref(r) => match &r.arn {
                Some(a) => a.clone(),
                None => match retry(&self.settings, ctx.cancel, None, ctx.deadline, || self.source.fetch(r)).await {
                    Ok((job, attempts)) if !job.arn.is_empty() => {
                        let a = job.arn.clone();
                        fetched = Some((job, attempts));
                        a
                    }
                    Ok((job, _)) => {
                        return Handled::Report(self.unrecorded_failure(
                            &job.name,
                            None,
                            Stage::Source,
                            &SyncError::Malformed {
                                origin: format!("training job {}", job.name),
                                message: "the source returned no ARN".into(),
                            },
                        ))
                    }
                    Err((e, _)) if e.is_cancelled() => return Handled::Report(interrupted(&name, None, "cancelled while fetching")),
                    Err((e, _)) => return Handled::Report(self.unrecorded_failure(&name, None, Stage::Source, &e)),
                },
            },
        };
        if self.settings.dry_run {
            return match self.work(&item, fetched, prior.as_ref(), None, ctx, ctx.cancel).await {
                Work::Finished(_, mut r) | Work::Interrupted(mut r) => {
                    if r.outcome == Outcome::Synced {
                        r.reason = Some("dry run: nothing written".into());
                    }
                    Handled::Report(r)
                }
                Work::Settled => Handled::Done,
            };
        }
        let (lease, fresh) = match self.lease(&arn, ctx, wait).await {
            Leased::Granted(l, s) => {
                crate::crash::reached(crate::crash::Step::AfterLease);
                (l, s.map(|b| *b))
            }
            Leased::Busy(_) if !wait && fetched.is_none() => return Handled::Held(Box::new(item), prior),
            Leased::Busy(owner) => {
                tracing::info!(job = %name, holder = %owner, "another writer holds the job; leaving it to them");
                return Handled::Busy(arn);
            }
            Leased::Cancelled => return Handled::Report(interrupted(&name, Some(&arn), "cancelled while waiting for the job's lease")),
            Leased::Failed(e) => {
                // Not recorded (there is no lease to record it under): a store that refuses the
                // job's key for good (too long for it) is reported as such, never as retryable.
                let mut r = JobReport::new(&name, Some(arn.clone()), Outcome::Failed);
                r.stage = Some(Stage::State);
                r.retryable = e.is_retryable();
                let mut reason = format!("state: cannot take the job's lease: {e}");
                crate::state::cut_text(&mut reason, crate::state::limits::REASON_CHARS);
                r.reason = Some(reason);
                return Handled::Report(r);
            }
        };
        // Decide again with the entry read under the lease: another writer may have just
        // finished this job.
        if let (Item::Ref(r), false) = (&item, ctx.force) {
            if fetched.is_none()
                && decide(r, fresh.as_ref(), &self.sinks, &self.config_digest, self.settings.on_ineligible, Utc::now(), ctx.urgent)
                    != Decision::Process
            {
                let _ = state_call(&self.settings, &CancellationToken::new(), || self.state.release(&lease)).await;
                return Handled::Done;
            }
        }
        // Someone wrote the entry since this page was decided: the listing's copy of the job may
        // be older than what they wrote, so read the job afresh instead of writing it back.
        let item = match item {
            Item::Ref(r) if r.job.is_some() && fresh.as_ref().map(|f| f.updated_at) != prior.as_ref().map(|p| p.updated_at) => {
                Item::Ref(JobRef { name: r.name, arn: r.arn, origin: r.origin, last_modified: r.last_modified, ..Default::default() })
            }
            other => other,
        };
        let ttl = self.settings.lease_ttl();
        let margin = guard_margin(ttl);
        let left = (lease.expires_at - Utc::now()).to_std().unwrap_or_default();
        let held = Held {
            lease: &lease,
            guard: LeaseGuard::new(Instant::now() + left.saturating_sub(margin)),
            lost: CancellationToken::new(),
            written: std::sync::Mutex::new(None),
        };
        let job_cancel = ctx.cancel.child_token();
        let renewal = AbortOnDrop(spawn_renewal(
            self.state.clone(),
            lease.clone(),
            ttl,
            Renewal { job: job_cancel.clone(), lost: held.lost.clone(), guard: held.guard.clone(), margin },
        ));
        let work = self.work(&item, fetched, fresh.as_ref(), Some(&held), ctx, &job_cancel).await;
        drop(renewal);
        let lost = held.lost.is_cancelled() || !held.guard.holds();
        let before = held.written.lock().unwrap_or_else(|e| e.into_inner()).take().or(fresh);
        // A lease the store said is lost gets no further request of this attempt: no commit,
        // no release (it is someone else's now). One whose time only ran out without a renewal
        // (a paused process, a slow store) sends nothing more to the sinks (their guard), but
        // its commit is fenced: it lands only if no other writer took the job meanwhile.
        let known_lost = held.lost.is_cancelled();
        let release = || async {
            if !known_lost {
                let _ = state_call(&self.settings, &CancellationToken::new(), || self.state.release(&lease)).await;
            }
        };
        match work {
            Work::Settled => {
                release().await;
                Handled::Done
            }
            Work::Interrupted(r) => {
                release().await;
                Handled::Report(if lost { interrupted(&name, Some(&arn), "the job's lease was lost") } else { r })
            }
            Work::Finished(_, _) if known_lost => {
                // Whoever holds the job now records it (the sinks' writes are idempotent).
                Handled::Report(interrupted(&name, Some(&arn), "the job's lease was lost"))
            }
            Work::Finished(entry, report) => self.settle(*entry, report, before, &lease, ctx).await,
        }
    }

    /// Commits a finished job's entry under its lease, releasing the lease whatever happens. A
    /// commit the store refuses for good (an entry it will never take) is recorded as what it
    /// is, a failure at the state stage, in a small entry; when even that cannot be stored, it
    /// is reported.
    async fn settle(&self, entry: JobState, mut report: JobReport, before: Option<JobState>, lease: &Lease, ctx: &Ctx<'_>) -> Handled {
        let name = entry.job.clone();
        let arn = entry.arn.clone();
        let never = CancellationToken::new();
        // Committed even while stopping: the sinks were written, the ledger must say so.
        let e = match state_call(&self.settings, &never, || self.state.commit(lease, &entry)).await {
            Ok(true) => {
                crate::crash::reached(crate::crash::Step::AfterCommit);
                ctx.obs.event(&Event::Recorded { before: before.as_ref(), after: &entry });
                if report.outcome == Outcome::Synced {
                    tracing::info!(job = %name, "job synced");
                }
                report.recorded = true;
                return Handled::Report(report);
            }
            Ok(false) => {
                return Handled::Report(interrupted(
                    &name,
                    Some(&arn),
                    "the job's lease was taken over by another writer, which records it",
                ))
            }
            Err(e) => e,
        };
        if e.is_retryable() {
            tracing::error!(job = %name, error = %e, "cannot record the outcome; the job will be worked on again");
            let _ = state_call(&self.settings, &never, || self.state.release(lease)).await;
            report.outcome = Outcome::Failed;
            report.stage = Some(Stage::State);
            report.retryable = true;
            report.reason = Some(format!("state: cannot record the outcome: {e}"));
            report.recorded = false;
            report.parked = false;
            return Handled::Report(report);
        }
        // The store refuses this entry for good (too large, invalid): retrying the same commit
        // would only hold the lease. Record the refusal itself, small, as a failure of the job.
        tracing::error!(job = %name, error = %e, "the state store refused the job's entry; recording the refusal instead");
        let refused = self.refusal(&entry, &e, before.as_ref(), ctx);
        let mut r = Self::report_of(&refused, report.receipts.clone(), None, report.failed_sinks.clone(), report.attempts);
        r.stage = Some(Stage::State);
        r.retryable = false;
        match state_call(&self.settings, &never, || self.state.commit(lease, &refused)).await {
            Ok(true) => {
                ctx.obs.event(&Event::Recorded { before: before.as_ref(), after: &refused });
                r.recorded = true;
                Handled::Report(r)
            }
            Ok(false) => {
                Handled::Report(interrupted(&name, Some(&arn), "the job's lease was taken over by another writer, which records it"))
            }
            Err(e2) => {
                tracing::error!(job = %name, error = %e2, "cannot record the refusal either");
                let _ = state_call(&self.settings, &never, || self.state.release(lease)).await;
                r.reason = Some(format!("state: the ledger refused the job's entry ({e}), and then its failure too ({e2})"));
                r.retryable = e2.is_retryable();
                r.parked = false;
                Handled::Report(r)
            }
        }
    }

    /// The small entry that records a commit the store refused for good: a failure at the state
    /// stage (a setup failure: it never parks the job), with the deliveries made (their receipts emptied: the refused entry may have been large
    /// because of them).
    fn refusal(&self, entry: &JobState, e: &StateError, prior: Option<&JobState>, ctx: &Ctx<'_>) -> JobState {
        let mut deliveries = entry.deliveries.clone();
        for d in deliveries.values_mut() {
            d.receipt.ids.clear();
        }
        // The ledger's refusal is the store's state, not the job's content: it never parks.
        let err = SyncError::setup(format!("the state store refused the job's entry: {e}"));
        let reason = Some(format!("state: {}", err.chain()));
        self.entry(
            &entry.arn,
            &entry.job,
            entry.basis.clone(),
            Outcome::Failed,
            reason,
            Some((&err, Stage::State)),
            entry.record_digest.clone(),
            deliveries,
            prior,
            ctx,
        )
    }

    fn unrecorded_failure(&self, name: &str, arn: Option<String>, stage: Stage, e: &SyncError) -> JobReport {
        let mut r = JobReport::new(name, arn, Outcome::Failed);
        r.stage = Some(stage);
        r.retryable = e.is_retryable();
        let mut reason = format!("{stage}: {}", e.chain());
        crate::state::cut_text(&mut reason, crate::state::limits::REASON_CHARS);
        r.reason = Some(reason);
        r
    }

    /// Takes the job's lease, waiting (up to `lease_wait_secs`, the deadline or cancellation)
    /// while another writer holds it.
    async fn lease(&self, arn: &str, ctx: &Ctx<'_>, wait: bool) -> Leased {
        let mut wait_until = Instant::now() + if wait { Duration::from_secs(self.settings.lease_wait_secs) } else { Duration::ZERO };
        if let Some(d) = ctx.deadline {
            wait_until = wait_until.min(d);
        }
        let mut delay = Duration::from_millis(25);
        loop {
            match state_call(&self.settings, ctx.cancel, || self.state.acquire(arn, &self.owner, self.settings.lease_ttl())).await {
                Ok(Acquired::Granted { lease, state }) => return Leased::Granted(lease, state),
                Ok(Acquired::Held { owner, .. }) => {
                    let left = wait_until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Leased::Busy(owner);
                    }
                    if !pause(delay.min(left), ctx.cancel, None).await {
                        return Leased::Cancelled;
                    }
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(_) if ctx.cancel.is_cancelled() => return Leased::Cancelled,
                Err(e) => return Leased::Failed(e),
            }
        }
    }

    async fn validate_and_map(&self, job: &TrainingJob) -> Result<RunRecord, (Outcome, String)> {
        for (id, v) in &self.validators {
            match v.validate(job).await {
                Verdict::Sync => {}
                Verdict::Skip { reason } => return Err((Outcome::Skipped, reason)),
                Verdict::Reject { problems } => return Err((Outcome::Rejected, format!("{}: {}", id, problems.join("; ")))),
            }
        }
        self.mapper.map(job).await.map_err(|e| (Outcome::Rejected, format!("map: {}", e.chain())))
    }

    /// The entry recorded before a job's first write to a sink: what the ledger held, with the
    /// pending deliveries; for a job new to the ledger, a failure (what a crash before the
    /// outcome's commit leaves: the job is worked on again by the next pass that lists it, or
    /// once its first backoff has passed).
    fn intent(&self, job: &TrainingJob, prior: Option<&JobState>, deliveries: BTreeMap<String, Delivery>) -> JobState {
        let now = Utc::now();
        match prior {
            Some(p) => JobState { deliveries, updated_at: now, ..p.clone() },
            None => JobState {
                arn: job.arn.clone(),
                job: job.name.clone(),
                basis: Basis { last_modified: None, tags_digest: None, config_digest: String::new(), listed: None },
                outcome: Outcome::Failed,
                reason: Some("its first write was interrupted; it is worked on again".into()),
                record_digest: None,
                deliveries,
                attempts: 0,
                permanent_failures: 0,
                parked: false,
                // Not due in this pass (the outcome is being committed); after a crash the
                // job is listed again, or re-driven once the first backoff has passed.
                next_attempt_at: Some(now + self.settings.retry_delay(1)),
                pass: None,
                updated_at: now,
            },
        }
        .bounded()
    }

    /// The entry and report of a job that ends with `outcome`.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        arn: &str,
        name: &str,
        basis: Basis,
        outcome: Outcome,
        reason: Option<String>,
        failure: Option<(&SyncError, Stage)>,
        record_digest: Option<String>,
        deliveries: BTreeMap<String, Delivery>,
        prior: Option<&JobState>,
        ctx: &Ctx<'_>,
    ) -> JobState {
        let now = Utc::now();
        let (attempts, permanent_failures, parked, next_attempt_at) = match failure {
            None => (0, 0, false, None),
            Some((e, _)) => {
                // Tries count while the job's content stays the same.
                let same = prior.filter(|p| p.outcome == Outcome::Failed && p.basis.last_modified == basis.last_modified);
                let attempts = same.map(|p| p.attempts).unwrap_or(0).saturating_add(1);
                // Only the job's own content parks it: permanent failures count toward
                // `max_job_attempts`; the network, throttling or a store that is down never do.
                let permanent = same.map(|p| p.permanent_failures).unwrap_or(0).saturating_add(u32::from(e.is_about_the_job()));
                let parked = e.is_about_the_job() && permanent >= self.settings.max_job_attempts;
                (attempts, permanent, parked, (!parked).then(|| now + self.settings.retry_delay(attempts)))
            }
        };
        JobState {
            arn: arn.to_string(),
            job: name.to_string(),
            basis,
            outcome,
            reason,
            record_digest: record_digest.or_else(|| prior.and_then(|p| p.record_digest.clone())),
            deliveries,
            attempts,
            permanent_failures,
            parked,
            next_attempt_at,
            pass: Some(ctx.pass.clone()),
            updated_at: now,
        }
        .bounded()
    }

    fn report_of(
        entry: &JobState,
        receipts: Vec<SinkReceipt>,
        failure: Option<(&SyncError, Stage)>,
        failed_sinks: Vec<String>,
        attempts: u32,
    ) -> JobReport {
        let mut r = JobReport::new(&entry.job, Some(entry.arn.clone()), entry.outcome);
        r.reason = entry.reason.clone();
        r.receipts = receipts;
        r.attempts = attempts;
        r.last_modified = entry.basis.last_modified;
        r.failed_sinks = failed_sinks;
        r.parked = entry.parked;
        if let Some((e, stage)) = failure {
            r.stage = Some(stage);
            r.retryable = e.is_retryable();
        }
        r
    }

    async fn work(
        &self,
        item: &Item,
        fetched: Option<(TrainingJob, u32)>,
        prior: Option<&JobState>,
        held: Option<&Held<'_>>,
        ctx: &Ctx<'_>,
        cancel: &CancellationToken,
    ) -> Work {
        let hard = held.map(|h| &h.lost);
        let r = match item {
            Item::Problem(p) => {
                let arn = p.arn.clone().unwrap_or_default();
                let name = p.job.clone().unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(&arn).to_string());
                let basis =
                    Basis { last_modified: p.last_modified, tags_digest: None, config_digest: self.config_digest.clone(), listed: None };
                let reason = Some(format!("source: {}: {}", p.origin, p.error.chain()));
                let e = self.entry(
                    &arn,
                    &name,
                    basis,
                    Outcome::Failed,
                    reason,
                    Some((&p.error, Stage::Source)),
                    None,
                    prior.map(|p| p.deliveries.clone()).unwrap_or_default(),
                    prior,
                    ctx,
                );
                let rep = Self::report_of(&e, Vec::new(), Some((&p.error, Stage::Source)), Vec::new(), 1);
                return Work::Finished(Box::new(e), rep);
            }
            Item::Ref(r) => r,
        };
        let (job, mut attempts) = match fetched {
            Some(j) => j,
            None => match retry(&self.settings, cancel, hard, ctx.deadline, || self.source.fetch(r)).await {
                Ok(j) => j,
                Err((e, _)) if e.is_cancelled() => {
                    return Work::Interrupted(interrupted(&r.name, r.arn.as_deref(), "cancelled while fetching"))
                }
                Err((e, attempts)) => {
                    tracing::warn!(job = %r.name, error = %e.chain(), "fetching the job failed");
                    let arn = r.arn.clone().unwrap_or_default();
                    let basis = Basis {
                        last_modified: r.last_modified,
                        tags_digest: r.tags.as_ref().map(crate::digest::of_tags),
                        config_digest: self.config_digest.clone(),
                        listed: None,
                    };
                    let reason = Some(format!("source: {}", e.chain()));
                    let entry = self.entry(
                        &arn,
                        &r.name,
                        basis,
                        Outcome::Failed,
                        reason,
                        Some((&e, Stage::Source)),
                        None,
                        prior.map(|p| p.deliveries.clone()).unwrap_or_default(),
                        prior,
                        ctx,
                    );
                    let rep = Self::report_of(&entry, Vec::new(), Some((&e, Stage::Source)), Vec::new(), attempts);
                    return Work::Finished(Box::new(entry), rep);
                }
            },
        };
        let basis = Basis {
            last_modified: job.last_modified_time,
            tags_digest: Some(crate::digest::of_tags(&job.tags)),
            config_digest: self.config_digest.clone(),
            // What the reference said, when it is not the job's own time (an event older than
            // the job): the same reference again (a duplicate event) is then known as done.
            listed: r.last_modified.filter(|l| Some(*l) != job.last_modified_time),
        };
        // Decide again on the job as fetched: a reference whose time differs from the ledger's
        // (an event of another time, a listing that lagged) may still bring the content the
        // ledger holds. A parked job whose content did not change stays parked; a synced job
        // already in every sink needs nothing.
        if !ctx.force {
            if let Some(p) = prior.filter(|p| p.basis.same_content(&basis)) {
                let as_fetched = JobRef {
                    name: job.name.clone(),
                    arn: Some(job.arn.clone()),
                    last_modified: job.last_modified_time,
                    tags: Some(job.tags.clone()),
                    ..Default::default()
                };
                if decide(&as_fetched, Some(p), &self.sinks, &self.config_digest, self.settings.on_ineligible, Utc::now(), ctx.urgent)
                    != Decision::Process
                {
                    return Work::Settled;
                }
            }
        }
        // Deliveries to sinks that are no longer configured are forgotten.
        let mut deliveries: BTreeMap<String, Delivery> = prior
            .map(|p| p.deliveries.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, _)| self.sinks.iter().any(|s| &s.id == id))
            .collect();
        let mut receipts = Vec::new();
        let mut failures: Vec<(String, SyncError)> = Vec::new();
        let guard = held.map(|h| h.guard.clone()).unwrap_or_default();
        let verdict = self.validate_and_map(&job).await;
        let (outcome, reason, record_digest) = match verdict {
            Ok(record) => {
                let digest = crate::digest::of_json(&record);
                if self.settings.dry_run {
                    let e = self.entry(&job.arn, &job.name, basis, Outcome::Synced, None, None, Some(digest), deliveries, prior, ctx);
                    return Work::Finished(Box::new(e.clone()), Self::report_of(&e, Vec::new(), None, Vec::new(), attempts));
                }
                let due: Vec<&NamedSink> = self
                    .sinks
                    .iter()
                    .filter(|s| ctx.force || !deliveries.get(&s.id).is_some_and(|d| d.record_digest == digest && d.sink_digest == s.digest))
                    .collect();
                // Before a sink sees the job for the first time, the ledger records the intent:
                // a crash between the write and the outcome's commit then still leaves the
                // ledger knowing that the sink may hold a record (to find, or to retract).
                let first: Vec<&NamedSink> = due.iter().copied().filter(|s| !deliveries.contains_key(&s.id)).collect();
                if let Some(h) = held.filter(|_| !first.is_empty() && self.state.persistent()) {
                    for s in &first {
                        let receipt = SinkReceipt::new(WriteKind::Created)
                            .id("pending_project", &record.project.name)
                            .id("pending_experiment", &record.experiment)
                            .id("pending_run", &record.run.name);
                        deliveries.insert(
                            s.id.clone(),
                            Delivery {
                                record_digest: Delivery::PENDING.into(),
                                sink_digest: String::new(),
                                receipt: SinkReceipt { sink: s.id.clone(), ..receipt },
                                at: Utc::now(),
                            },
                        );
                    }
                    let intent = self.intent(&job, prior, deliveries.clone());
                    if !h.guard.holds() {
                        return Work::Interrupted(interrupted(&job.name, Some(&job.arn), "the job's lease was lost"));
                    }
                    match state_call(&self.settings, cancel, || self.state.record(h.lease, &intent)).await {
                        Ok(true) => {
                            ctx.obs.event(&Event::Recorded { before: prior, after: &intent });
                            *h.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(intent);
                        }
                        Ok(false) => return Work::Interrupted(interrupted(&job.name, Some(&job.arn), "the job's lease was lost")),
                        Err(e) if !e.is_retryable() => {
                            // The store refuses this entry for good: nothing was written yet, so
                            // the refusal itself is what the job's entry records (a setup
                            // failure: it never parks the job), with the deliveries known before.
                            tracing::error!(job = %job.name, error = %e, "the state store refused the intent to write; recording the refusal");
                            let err = SyncError::setup(format!("the state store refused the job's entry: {e}"));
                            let known = prior.map(|p| p.deliveries.clone()).unwrap_or_default();
                            let entry = self.entry(
                                &job.arn,
                                &job.name,
                                basis,
                                Outcome::Failed,
                                Some(format!("state: {}", err.chain())),
                                Some((&err, Stage::State)),
                                Some(digest),
                                known,
                                prior,
                                ctx,
                            );
                            let rep = Self::report_of(&entry, Vec::new(), Some((&err, Stage::State)), Vec::new(), attempts);
                            return Work::Finished(Box::new(entry), rep);
                        }
                        Err(e) => {
                            tracing::warn!(job = %job.name, error = %e, "cannot record the intent to write; the job will be worked on again");
                            return Work::Interrupted(interrupted(
                                &job.name,
                                Some(&job.arn),
                                "the state store failed before the first write",
                            ));
                        }
                    }
                }
                let writes = due.into_iter().map(|s| {
                    let record = &record;
                    // A pending delivery made by this attempt is not a previous write; one left
                    // by an earlier attempt that crashed before its commit is handed on (its
                    // names, no ids of the store's) so that the sink can look for its record.
                    let previous = deliveries
                        .get(&s.id)
                        .filter(|_| prior.is_some_and(|p| p.deliveries.contains_key(&s.id)))
                        .map(|d| d.receipt.clone());
                    let first = self.state.persistent() && !prior.is_some_and(|p| p.deliveries.contains_key(&s.id));
                    let again = WriteContext::new().with_previous(previous).with_deadline(ctx.deadline).with_guard(guard.clone());
                    let cx = again.clone().with_first_write(first);
                    // Only the first attempt is a "first write": a retry may follow a create.
                    let tried = std::sync::atomic::AtomicBool::new(false);
                    async move {
                        let res = retry(&self.settings, cancel, hard, ctx.deadline, || {
                            let c = if tried.swap(true, std::sync::atomic::Ordering::Relaxed) { &again } else { &cx };
                            s.sink.upsert(record, c)
                        })
                        .await;
                        (s, res)
                    }
                });
                for (s, res) in futures::future::join_all(writes).await {
                    match res {
                        Ok((mut receipt, a)) => {
                            attempts = attempts.max(a);
                            receipt.sink = s.id.clone();
                            receipt.bound();
                            deliveries.insert(
                                s.id.clone(),
                                Delivery {
                                    record_digest: digest.clone(),
                                    sink_digest: s.digest.clone(),
                                    receipt: receipt.clone(),
                                    at: Utc::now(),
                                },
                            );
                            receipts.push(receipt);
                        }
                        Err((e, a)) => {
                            attempts = attempts.max(a);
                            failures.push((s.id.clone(), e));
                        }
                    }
                }
                if !receipts.is_empty() {
                    crate::crash::reached(crate::crash::Step::AfterSinkWrite);
                }
                (Outcome::Synced, None, Some(digest))
            }
            Err((outcome, reason)) => {
                tracing::info!(job = %job.name, outcome = outcome.as_str(), reason = %reason, "job not synced");
                if self.settings.on_ineligible == OnIneligible::Retract && !self.settings.dry_run {
                    let held_records: Vec<(String, SinkReceipt)> =
                        deliveries.iter().filter(|(_, d)| d.retractable()).map(|(id, d)| (id.clone(), d.receipt.clone())).collect();
                    for (id, previous) in held_records {
                        let Some(s) = self.sinks.iter().find(|s| s.id == id) else { continue };
                        let cx = WriteContext::new().with_previous(Some(previous)).with_deadline(ctx.deadline).with_guard(guard.clone());
                        match retry(&self.settings, cancel, hard, ctx.deadline, || s.sink.retract(&job.arn, &cx)).await {
                            Ok((Some(mut rc), a)) => {
                                attempts = attempts.max(a);
                                deliveries.remove(&id);
                                rc.sink = id.clone();
                                rc.bound();
                                receipts.push(rc);
                            }
                            Ok((None, a)) => {
                                // The sink keeps records of ineligible jobs: its receipt stays,
                                // so that the record is found again if the job comes back.
                                attempts = attempts.max(a);
                                if let Some(d) = deliveries.get_mut(&id) {
                                    d.record_digest = Delivery::KEPT.into();
                                }
                            }
                            Err((e, a)) => {
                                attempts = attempts.max(a);
                                failures.push((id, e));
                            }
                        }
                    }
                }
                (outcome, Some(reason), None)
            }
        };
        if failures.iter().any(|(_, e)| e.is_cancelled()) {
            // Whatever was written is idempotent: the next attempt finds it.
            return Work::Interrupted(interrupted(&job.name, Some(&job.arn), "cancelled during a sink write"));
        }
        if failures.is_empty() {
            let e = self.entry(&job.arn, &job.name, basis, outcome, reason, None, record_digest, deliveries, prior, ctx);
            let rep = Self::report_of(&e, receipts, None, Vec::new(), attempts);
            return Work::Finished(Box::new(e), rep);
        }
        // The most hopeful failure decides: if any sink may succeed later, the job is retried
        // rather than parked.
        let worst = failures
            .iter()
            .find(|(_, e)| e.is_retryable())
            .or(failures.iter().find(|(_, e)| !e.is_about_the_job()))
            .or(failures.first())
            .map(|(_, e)| e)
            .unwrap_or(&SyncError::Cancelled);
        let what = if outcome == Outcome::Synced { "" } else { "retracting: " };
        let mut text = failures.iter().map(|(id, e)| format!("sink `{id}`: {what}{}", e.chain())).collect::<Vec<_>>().join("; ");
        if !receipts.is_empty() {
            text.push_str(&format!(" (written to: {})", receipts.iter().map(|r| r.sink.as_str()).collect::<Vec<_>>().join(", ")));
        }
        for (id, e) in &failures {
            tracing::warn!(job = %job.name, sink = %id, error = %e.chain(), "sink write failed");
        }
        let failed_sinks = failures.iter().map(|(id, _)| id.clone()).collect();
        let err = SyncError::Transient { message: String::new(), source: None };
        let cause = if worst.is_retryable() { &err } else { worst };
        let e = self.entry(
            &job.arn,
            &job.name,
            basis,
            Outcome::Failed,
            Some(text),
            Some((cause, Stage::Sink)),
            record_digest,
            deliveries,
            prior,
            ctx,
        );
        let rep = Self::report_of(&e, receipts, Some((cause, Stage::Sink)), failed_sinks, attempts);
        Work::Finished(Box::new(e), rep)
    }
}

/// Aborts the task when dropped (so that a pass dropped mid-job stops renewing its leases).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
