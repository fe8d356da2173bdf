//! One job's attempt: the one path every job takes, whatever brought it (a poll, a
//! reconciliation, a backfill, an event, a re-drive, `sagesync retry`).
//!
//! [`Engine::attempt`] takes a job through these steps, each a method of its own:
//!
//! 1. **identify**: a reference by name is fetched first, for the ARN the ledger and the lease
//!    key on;
//! 2. **claim**: the job's lease ([`super::lease`]); the job is decided again with the entry
//!    read under it (another writer may have just finished it);
//! 3. **plan**: fetch, validate, map; decided again on the job as fetched; the sinks that need
//!    the record, or the retractions an ineligible job needs;
//! 4. **intent**: before a sink sees the job for the first time, the ledger records a pending
//!    delivery naming the record, so that a crash before the commit still leaves the ledger
//!    knowing where a record may be;
//! 5. **deliver**: the writes (concurrently) or retractions, each retried by the one retry
//!    policy ([`super::steps::retry`]) and cut short when the lease is lost;
//! 6. **settle**: the outcome committed under the lease (a commit the store refuses for good is
//!    recorded as what it is), the lease released.
//!
//! Interruptions (shutdown, a deadline, a lost lease) are reported and never recorded: only a
//! job's own content may park it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::entry::{self, interrupted, report_of, unrecorded_failure, Ending};
use super::lease::{Claim, Held};
use super::observer::{Decision, Event, Observer};
use super::report::JobReport;
use super::steps::{retry, state_call};
use super::Engine;
use crate::config::{NamedSink, OnIneligible};
use crate::delivery::{DeliveryState, PendingNames};
use crate::error::{Stage, SyncError};
use crate::model::{RunRecord, TrainingJob};
use crate::sink::{SinkReceipt, WriteContext};
use crate::source::{JobRef, ListingProblem};
use crate::stage::Verdict;
use crate::state::{Basis, Delivery, JobState, Outcome};

/// Everything a job's attempt needs to know about the pass it belongs to.
pub(crate) struct Ctx<'a> {
    pub pass: String,
    pub cancel: &'a CancellationToken,
    pub deadline: Option<Instant>,
    pub force: bool,
    pub urgent: bool,
    pub collect: bool,
    pub lease_wait: Duration,
    pub obs: &'a dyn Observer,
}

/// What a job is known by: a listed (or given) reference, or an unreadable listing entry that
/// names its job.
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

/// A job to attempt: what it is known by, its ledger entry as the pass read it, and which of
/// the references given to `sync_refs` it answers (`None` in a listing pass).
pub(crate) struct Work {
    pub item: Item,
    pub prior: Option<JobState>,
    pub slot: Option<usize>,
}

/// How one attempt ended for the pass.
pub(crate) enum Handled {
    /// Decided again under the lease: nothing to do.
    Done,
    /// Another writer held it for longer than the lease wait.
    Busy(String),
    /// Another writer holds it right now (first round: tried again after the rest of the page).
    Held(Box<Work>),
    /// Worked on (or failed before it could be).
    Report(JobReport),
}

/// What the work under the lease produced: an entry to commit, nothing (interrupted), or
/// nothing to do (the job as fetched is what the ledger already holds).
enum Ended {
    Finished(Box<JobState>, JobReport),
    Interrupted(JobReport),
    Settled,
}

/// A job as fetched, with what its decision is based on and the deliveries the ledger knows
/// of (those to sinks no longer configured are forgotten).
struct Fetched {
    job: TrainingJob,
    basis: Basis,
    deliveries: BTreeMap<String, Delivery>,
}

/// What the job needs.
enum Plan {
    /// Its record, written to the sinks that do not hold it.
    Write { record: Box<RunRecord>, digest: String },
    /// Nothing written: it is not (or no longer) eligible; its records are retracted where the
    /// sinks hold them and `on_ineligible = "retract"`.
    Ineligible { outcome: Outcome, reason: String },
}

/// What the deliveries produced.
#[derive(Default)]
struct Delivered {
    receipts: Vec<SinkReceipt>,
    failures: Vec<(String, SyncError)>,
}

impl Engine {
    /// Attempts one job: claims it, works on it under its lease, commits the outcome.
    pub(crate) async fn attempt(&self, work: Work, ctx: &Ctx<'_>, wait: bool) -> Handled {
        let Work { item, prior, slot } = work;
        let name = item.name();
        let _local = self.inflight.lock(&item.key()).await;
        if ctx.cancel.is_cancelled() {
            return Handled::Report(interrupted(&name, None, "stopping before it started"));
        }
        let (arn, fetched) = match self.identify(&item, ctx).await {
            Ok(v) => v,
            Err(h) => return h,
        };
        let wait_for = if wait { ctx.lease_wait } else { Duration::ZERO };
        let (lease, fresh) = match self.claim(&arn, ctx.cancel, ctx.deadline, wait_for).await {
            Claim::Granted(l, s) => {
                crate::crash::reached(crate::crash::Step::AfterLease);
                (l, s.map(|b| *b))
            }
            Claim::Busy(_) if !wait && fetched.is_none() => return Handled::Held(Box::new(Work { item, prior, slot })),
            Claim::Busy(owner) => {
                tracing::info!(job = %name, holder = %owner, "another writer holds the job; leaving it to them");
                return Handled::Busy(arn);
            }
            Claim::Cancelled => return Handled::Report(interrupted(&name, Some(&arn), "cancelled while waiting for the job's lease")),
            Claim::Failed(e) => {
                // Nothing recorded (there is no lease to record it under): a store that refuses
                // the job's key for good is reported as such, never as retryable.
                let mut r = JobReport::new(&name, Some(arn.clone()), Outcome::Failed);
                r.stage = Some(Stage::State);
                r.retryable = e.is_retryable();
                let mut reason = format!("state: cannot take the job's lease: {e}");
                crate::limits::cut_text(&mut reason, crate::limits::REASON_CHARS);
                r.reason = Some(reason);
                return Handled::Report(r);
            }
        };
        let never = CancellationToken::new();
        // Decided again with the entry read under the lease: another writer may have just
        // finished this job.
        if let (Item::Ref(r), false, None) = (&item, ctx.force, &fetched) {
            if self.decide_ref(r, fresh.as_ref(), ctx.urgent) != Decision::Process {
                let _ = state_call(&self.settings, &never, || self.state.release(&lease)).await;
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
        let job_cancel = ctx.cancel.child_token();
        let mut held = Held::start(self.state.clone(), lease, self.settings.lease_ttl(), job_cancel.clone());
        let ended =
            Attempt { engine: self, ctx, held: &held, cancel: &job_cancel, prior: fresh.as_ref(), attempts: 0 }.run(&item, fetched).await;
        held.stop();
        let before = held.take_written().or(fresh);
        // A lease the store said is lost gets no further request of this attempt: no commit, no
        // release (it is someone else's now). One whose time only ran out without a renewal (a
        // paused process, a slow store) sends nothing more to the sinks (their guard), but its
        // commit is fenced: it lands only if no other writer took the job meanwhile.
        let release = || async {
            if !held.known_lost() {
                let _ = state_call(&self.settings, &never, || self.state.release(&held.lease)).await;
            }
        };
        match ended {
            Ended::Settled => {
                release().await;
                Handled::Done
            }
            Ended::Interrupted(r) => {
                // Why it was interrupted is known before the release (a slow release is no
                // lost lease).
                let lost = held.lapsed();
                release().await;
                Handled::Report(if lost { interrupted(&name, Some(&arn), "the job's lease was lost") } else { r })
            }
            Ended::Finished(..) if held.known_lost() => {
                // Whoever holds the job now records it (the sinks' writes are idempotent).
                Handled::Report(interrupted(&name, Some(&arn), "the job's lease was lost"))
            }
            Ended::Finished(entry, report) => self.settle(*entry, report, before, &held, ctx).await,
        }
    }

    /// The ARN of the job: given, or learnt by fetching a reference by name (the job fetched is
    /// kept for the plan).
    async fn identify(&self, item: &Item, ctx: &Ctx<'_>) -> Result<(String, Option<(TrainingJob, u32)>), Handled> {
        let r = match item {
            Item::Problem(p) => return Ok((p.arn.clone().unwrap_or_default(), None)),
            Item::Ref(r) => r,
        };
        if let Some(a) = &r.arn {
            return Ok((a.clone(), None));
        }
        match retry(&self.settings, ctx.cancel, None, ctx.deadline, || self.source.fetch(r)).await {
            Ok((job, attempts)) if !job.arn.is_empty() => Ok((job.arn.clone(), Some((job, attempts)))),
            Ok((job, _)) => Err(Handled::Report(unrecorded_failure(
                &job.name,
                None,
                Stage::Source,
                &SyncError::Malformed { origin: format!("training job {}", job.name), message: "the source returned no ARN".into() },
            ))),
            Err((e, _)) if e.is_cancelled() => Err(Handled::Report(interrupted(&r.name, None, "cancelled while fetching"))),
            Err((e, _)) => Err(Handled::Report(unrecorded_failure(&r.name, None, Stage::Source, &e))),
        }
    }

    /// Commits a finished job's entry under its lease, releasing the lease whatever happens. A
    /// commit the store refuses for good (an entry it will never take) is recorded as what it
    /// is, a failure at the state stage, in a small entry; when even that cannot be stored, it
    /// is reported.
    async fn settle(&self, entry: JobState, mut report: JobReport, before: Option<JobState>, held: &Held, ctx: &Ctx<'_>) -> Handled {
        let name = entry.job.clone();
        let arn = entry.arn.clone();
        let never = CancellationToken::new();
        let lease = &held.lease;
        let taken_over =
            || Handled::Report(interrupted(&name, Some(&arn), "the job's lease was taken over by another writer, which records it"));
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
            Ok(false) => return taken_over(),
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
        let refused = entry::refusal(&entry, &e, before.as_ref(), &ctx.pass, &self.settings);
        let mut r = report_of(&refused, report.receipts.clone(), None, report.failed_sinks.clone(), report.attempts);
        r.stage = Some(Stage::State);
        r.retryable = false;
        match state_call(&self.settings, &never, || self.state.commit(lease, &refused)).await {
            Ok(true) => {
                ctx.obs.event(&Event::Recorded { before: before.as_ref(), after: &refused });
                r.recorded = true;
                Handled::Report(r)
            }
            Ok(false) => taken_over(),
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
}

/// One job's work under its lease.
struct Attempt<'a> {
    engine: &'a Engine,
    ctx: &'a Ctx<'a>,
    held: &'a Held,
    /// The job's cancellation: the pass's, and fired when the lease is lost.
    cancel: &'a CancellationToken,
    /// The job's entry as read under the lease.
    prior: Option<&'a JobState>,
    /// Attempts made at the step that took the most.
    attempts: u32,
}

impl<'a> Attempt<'a> {
    async fn run(mut self, item: &Item, fetched: Option<(TrainingJob, u32)>) -> Ended {
        let (f, plan) = match self.plan(item, fetched).await {
            Ok(p) => p,
            Err(ended) => return ended,
        };
        match plan {
            Plan::Write { record, digest } => {
                let mut f = f;
                let due = self.due(&f, &digest);
                if let Err(ended) = self.intent(&mut f, &due, &record, &digest).await {
                    return ended;
                }
                let delivered = self.write(&mut f, due, &record, &digest).await;
                // Synced, with a note for each metric whose history the source could not read
                // in full (the record says so too; the job's other metrics are unaffected).
                self.finish(f, Outcome::Synced, history_note(&record), Some(digest), delivered)
            }
            Plan::Ineligible { outcome, reason } => {
                tracing::info!(job = %f.job.name, outcome = outcome.as_str(), reason = %reason, "job not synced");
                let mut f = f;
                let delivered = self.retract(&mut f).await;
                self.finish(f, outcome, Some(reason), None, delivered)
            }
        }
    }

    fn ending<'s>(&'s self, arn: &'s str, name: &'s str, basis: Basis) -> Ending<'s> {
        Ending { arn, name, basis, prior: self.prior, pass: &self.ctx.pass, settings: &self.engine.settings }
    }

    /// The deliveries the ledger knew of before this attempt.
    fn known(&self) -> BTreeMap<String, Delivery> {
        self.prior.map(|p| p.deliveries.clone()).unwrap_or_default()
    }

    /// Fetches, validates and maps the job, and decides again on it as fetched.
    async fn plan(&mut self, item: &Item, fetched: Option<(TrainingJob, u32)>) -> Result<(Fetched, Plan), Ended> {
        let e = self.engine;
        let r = match item {
            Item::Problem(p) => {
                let arn = p.arn.clone().unwrap_or_default();
                let name = p.job.clone().unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(&arn).to_string());
                let basis =
                    Basis { last_modified: p.last_modified, tags_digest: None, config_digest: e.config_digest.clone(), listed: None };
                let reason = format!("source: {}: {}", p.origin, p.error.chain());
                return Err(self.source_failed(&arn, &name, basis, &p.error, reason, 1));
            }
            Item::Ref(r) => r,
        };
        let (job, attempts) = match fetched {
            Some(j) => j,
            None => match retry(&e.settings, self.cancel, Some(&self.held.lost), self.ctx.deadline, || e.source.fetch(r)).await {
                Ok(j) => j,
                Err((err, _)) if err.is_cancelled() => {
                    return Err(Ended::Interrupted(interrupted(&r.name, r.arn.as_deref(), "cancelled while fetching")))
                }
                Err((err, attempts)) => {
                    tracing::warn!(job = %r.name, error = %err.chain(), "fetching the job failed");
                    let arn = r.arn.clone().unwrap_or_default();
                    let basis = Basis {
                        last_modified: r.last_modified,
                        tags_digest: r.tags.as_ref().map(crate::digest::of_tags),
                        config_digest: e.config_digest.clone(),
                        listed: None,
                    };
                    let reason = format!("source: {}", err.chain());
                    return Err(self.source_failed(&arn, &r.name, basis, &err, reason, attempts));
                }
            },
        };
        self.attempts = attempts;
        let basis = Basis {
            last_modified: job.last_modified_time,
            tags_digest: Some(content_digest(&job)),
            config_digest: e.config_digest.clone(),
            // What the reference said, when it is not the job's own time (an event older than
            // the job): the same reference again (a duplicate event) is then known as done.
            listed: r.last_modified.filter(|l| Some(*l) != job.last_modified_time),
        };
        // Decided again on the job as fetched: a reference whose time differs from the ledger's
        // (an event of another time, a listing that lagged) may still bring the content the
        // ledger holds. A parked job whose content did not change stays parked; a synced job
        // already in every sink needs nothing.
        // A parent's eligibility and tags may come from its children, whose tags its own content
        // does not show: a parent whose last outcome was a verdict (synced, skipped, rejected)
        // is decided again whenever it is fetched (its sinks are written only if its record
        // changed). A failed parent settles like any job.
        let verdict_may_move = job.follows_children()
            && self.prior.is_some_and(|p| matches!(p.outcome, Outcome::Synced | Outcome::Skipped | Outcome::Rejected));
        if !self.ctx.force && !verdict_may_move {
            if let Some(p) = self.prior.filter(|p| p.basis.same_content(&basis)) {
                let as_fetched = JobRef {
                    name: job.name.clone(),
                    arn: Some(job.arn.clone()),
                    last_modified: job.last_modified_time,
                    // The content (tags, a parent's family) was compared above.
                    ..Default::default()
                };
                if e.decide_ref(&as_fetched, Some(p), self.ctx.urgent) != Decision::Process {
                    return Err(Ended::Settled);
                }
            }
        }
        let deliveries = self.known().into_iter().filter(|(id, _)| e.sinks.iter().any(|s| &s.id == id)).collect();
        let adopted;
        // A resource the source says is deleted is never written, whatever the validators say:
        // ineligible, retracted like any ineligible job.
        let checked = if job.is_deleted() {
            let why = job.failure_reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            Err((Outcome::Skipped, format!("deleted in the source (status {}{why})", job.status)))
        } else {
            validate(e, &job).await
        };
        let verdict = match checked {
            Err(no) if job.is_deleted() => Err(no),
            Err(no) if job.follows_children() => match self.through_children(&job, no).await? {
                Ok(j) => {
                    adopted = j;
                    Ok(&adopted)
                }
                Err(no) => Err(no),
            },
            v => v.map(|()| &job),
        };
        let mapped = match verdict {
            Ok(j) => map(e, j).await,
            Err(no) => Err(no),
        };
        let plan = match mapped {
            Ok(record) => {
                let digest = crate::digest::of_json(&record);
                Plan::Write { record: Box::new(record), digest }
            }
            // A validator's or the mapper's words may quote a configured value (a tag key read
            // from a secret): they are redacted like every other reason.
            Err((outcome, reason)) => Plan::Ineligible { outcome, reason: crate::redact(&reason).into_owned() },
        };
        Ok((Fetched { job, basis, deliveries }, plan))
    }

    /// The end of an attempt the source failed (an unreadable entry, a fetch, a child's read):
    /// the failure recorded on `basis`, with the deliveries the ledger knows.
    fn source_failed(&self, arn: &str, name: &str, basis: Basis, err: &SyncError, reason: String, attempts: u32) -> Ended {
        let entry = self.ending(arn, name, basis).failed(err, reason, None, self.known());
        let rep = report_of(&entry, Vec::new(), Some((err, Stage::Source)), Vec::new(), attempts);
        Ended::Finished(Box::new(entry), rep)
    }

    /// A parent (tuning job, pipeline execution) that does not pass the validators itself syncs
    /// when one of its children does, with the tags it lacks or holds empty (its project...)
    /// taken from the first such child. Children are read from the source in order, at most
    /// [`MAX_CHILDREN_READ`], until one passes. A child that cannot be read now is no verdict on
    /// the parent (the attempt fails retryably); one that cannot be read for good (gone, no
    /// permission) is not eligible, and the next is read.
    async fn through_children(
        &mut self,
        parent: &TrainingJob,
        no: (Outcome, String),
    ) -> Result<Result<TrainingJob, (Outcome, String)>, Ended> {
        let e = self.engine;
        for c in parent.lineage.children.iter().take(MAX_CHILDREN_READ) {
            let read = retry(&e.settings, self.cancel, Some(&self.held.lost), self.ctx.deadline, || e.source.child(parent, c)).await;
            let child = match read {
                Ok((child, a)) => {
                    self.attempts = self.attempts.max(a);
                    child
                }
                Err((err, _)) if err.is_cancelled() => {
                    return Err(Ended::Interrupted(interrupted(&parent.name, Some(&parent.arn), "cancelled while reading its children")))
                }
                Err((err, attempts)) if err.is_retryable() => {
                    let basis = Basis {
                        last_modified: parent.last_modified_time,
                        tags_digest: Some(content_digest(parent)),
                        config_digest: e.config_digest.clone(),
                        listed: None,
                    };
                    let reason = format!("source: child {}: {}", c.name, err.chain());
                    return Err(self.source_failed(&parent.arn, &parent.name, basis, &err, reason, attempts));
                }
                Err((err, _)) => {
                    tracing::info!(job = %parent.name, child = %c.name, error = %err.chain(), "a child cannot be read; it does not make its parent eligible");
                    continue;
                }
            };
            if validate(e, &child).await.is_ok() {
                let mut adopted = parent.clone();
                for t in child.tags.iter() {
                    if adopted.tags.get(&t.key).is_none_or(str::is_empty) {
                        adopted.tags.insert(t.key.clone(), t.value.clone());
                    }
                }
                return Ok(Ok(adopted));
            }
        }
        Ok(Err(no))
    }

    /// The sinks that do not hold this record under their current configuration (every sink,
    /// forced).
    fn due(&self, f: &Fetched, digest: &str) -> Vec<&'a NamedSink> {
        let force = self.ctx.force;
        self.engine.sinks.iter().filter(|s| force || !f.deliveries.get(&s.id).is_some_and(|d| d.holds(digest, &s.digest))).collect()
    }

    /// Before a sink sees the job for the first time, the ledger records the intent: a crash
    /// between the write and the outcome's commit then still leaves the ledger knowing that the
    /// sink may hold a record (to find, or to retract). A store that refuses the intent for good
    /// ends the attempt with that refusal recorded.
    async fn intent(&mut self, f: &mut Fetched, due: &[&'a NamedSink], record: &RunRecord, digest: &str) -> Result<(), Ended> {
        let e = self.engine;
        let first: Vec<&NamedSink> = due.iter().copied().filter(|s| !f.deliveries.contains_key(&s.id)).collect();
        if first.is_empty() || !e.state.persistent() {
            return Ok(());
        }
        let names = PendingNames::of(record);
        for s in &first {
            f.deliveries.insert(s.id.clone(), Delivery::pending(&s.id, names.clone(), Utc::now()));
        }
        let intent = entry::intent(&f.job, self.prior, f.deliveries.clone(), &e.settings);
        let lost = || Ended::Interrupted(interrupted(&f.job.name, Some(&f.job.arn), "the job's lease was lost"));
        if !self.held.guard.holds() {
            return Err(lost());
        }
        match state_call(&e.settings, self.cancel, || e.state.record(&self.held.lease, &intent)).await {
            Ok(true) => {
                self.ctx.obs.event(&Event::Recorded { before: self.prior, after: &intent });
                self.held.wrote(intent);
                Ok(())
            }
            Ok(false) => Err(lost()),
            Err(err) if !err.is_retryable() => {
                // The store refuses this entry for good: nothing was written yet, so the refusal
                // itself is what the job's entry records (a setup failure: it never parks the
                // job), with the deliveries known before.
                tracing::error!(job = %f.job.name, error = %err, "the state store refused the intent to write; recording the refusal");
                let setup = SyncError::setup(format!("the state store refused the job's entry: {err}"));
                let entry = self.ending(&f.job.arn, &f.job.name, f.basis.clone()).failed(
                    &setup,
                    format!("state: {}", setup.chain()),
                    Some(digest.to_string()),
                    self.known(),
                );
                let rep = report_of(&entry, Vec::new(), Some((&setup, Stage::State)), Vec::new(), self.attempts);
                Err(Ended::Finished(Box::new(entry), rep))
            }
            Err(err) => {
                tracing::warn!(job = %f.job.name, error = %err, "cannot record the intent to write; the job will be worked on again");
                Err(Ended::Interrupted(interrupted(&f.job.name, Some(&f.job.arn), "the state store failed before the first write")))
            }
        }
    }

    /// What a sink is told about its earlier record of the job: the receipt of a committed
    /// write, or the names of an earlier attempt's first write whose outcome is unknown. An
    /// intent this attempt recorded is not an earlier write.
    fn context_for(&self, sink: &str) -> WriteContext {
        let earlier = self.prior.and_then(|p| p.deliveries.get(sink));
        let (previous, pending) = match earlier {
            Some(d) if matches!(d.state, DeliveryState::Pending(_)) => (None, d.pending_names().cloned()),
            Some(d) => (Some(d.receipt.clone()), d.pending_names().cloned()),
            None => (None, None),
        };
        WriteContext::new()
            .with_previous(previous)
            .with_pending(pending)
            .with_deadline(self.ctx.deadline)
            .with_guard(self.held.guard.clone())
    }

    /// Writes the record to the due sinks, concurrently.
    async fn write(&mut self, f: &mut Fetched, due: Vec<&'a NamedSink>, record: &RunRecord, digest: &str) -> Delivered {
        let e = self.engine;
        let persistent = e.state.persistent();
        let (cancel, lost, deadline, prior) = (self.cancel, &self.held.lost, self.ctx.deadline, self.prior);
        let writes = due.into_iter().map(|s| {
            let again = self.context_for(&s.id);
            // Only the first attempt is a "first write" (a hint that the record most likely
            // does not exist yet): a retry may follow a create.
            let first = again.clone().with_first_write(persistent && !prior.is_some_and(|p| p.deliveries.contains_key(&s.id)));
            let tried = std::sync::atomic::AtomicBool::new(false);
            async move {
                let res = retry(&e.settings, cancel, Some(lost), deadline, || {
                    let cx = if tried.swap(true, std::sync::atomic::Ordering::Relaxed) { &again } else { &first };
                    s.sink.upsert(record, cx)
                })
                .await;
                (s, res)
            }
        });
        let mut out = Delivered::default();
        for (s, res) in futures::future::join_all(writes).await {
            match res {
                Ok((mut receipt, a)) => {
                    self.attempts = self.attempts.max(a);
                    receipt.sink = s.id.clone();
                    receipt.bound();
                    f.deliveries.insert(s.id.clone(), Delivery::written(digest.to_string(), s.digest.clone(), receipt.clone(), Utc::now()));
                    out.receipts.push(receipt);
                }
                Err((err, a)) => {
                    self.attempts = self.attempts.max(a);
                    out.failures.push((s.id.clone(), err));
                }
            }
        }
        if !out.receipts.is_empty() {
            crate::crash::reached(crate::crash::Step::AfterSinkWrite);
        }
        out
    }

    /// Retracts an ineligible job's records where the sinks may hold one (with
    /// `on_ineligible = "retract"`). A sink that keeps such records keeps its receipt, marked
    /// kept, so that the record is found again if the job comes back.
    async fn retract(&mut self, f: &mut Fetched) -> Delivered {
        let e = self.engine;
        let mut out = Delivered::default();
        if e.settings.on_ineligible != OnIneligible::Retract {
            return out;
        }
        let held_records: Vec<String> = f.deliveries.iter().filter(|(_, d)| d.retractable()).map(|(id, _)| id.clone()).collect();
        for id in held_records {
            let Some(s) = e.sinks.iter().find(|s| s.id == id) else { continue };
            let cx = self.context_for(&id);
            match retry(&e.settings, self.cancel, Some(&self.held.lost), self.ctx.deadline, || s.sink.retract(&f.job.arn, &cx)).await {
                Ok((Some(mut rc), a)) => {
                    self.attempts = self.attempts.max(a);
                    f.deliveries.remove(&id);
                    rc.sink = id.clone();
                    rc.bound();
                    out.receipts.push(rc);
                }
                Ok((None, a)) => {
                    self.attempts = self.attempts.max(a);
                    if let Some(d) = f.deliveries.get_mut(&id) {
                        // A first write whose outcome is unknown keeps its names: if the job
                        // comes back, the sink looks for that record before making another.
                        d.state = DeliveryState::Kept(d.pending_names().cloned());
                    }
                }
                Err((err, a)) => {
                    self.attempts = self.attempts.max(a);
                    out.failures.push((id, err));
                }
            }
        }
        out
    }

    /// The entry and report the deliveries lead to. An interrupted delivery records nothing
    /// (whatever was written is idempotent: the next attempt finds it). With failures, the most
    /// hopeful one decides: if any sink may succeed later, the job is retried rather than
    /// parked.
    fn finish(&self, f: Fetched, outcome: Outcome, reason: Option<String>, record_digest: Option<String>, d: Delivered) -> Ended {
        let Fetched { job, basis, deliveries } = f;
        if d.failures.iter().any(|(_, e)| e.is_cancelled()) {
            return Ended::Interrupted(interrupted(&job.name, Some(&job.arn), "cancelled during a sink write"));
        }
        if d.failures.is_empty() {
            let entry = self.ending(&job.arn, &job.name, basis).done(outcome, reason, record_digest, deliveries);
            let rep = report_of(&entry, d.receipts, None, Vec::new(), self.attempts);
            return Ended::Finished(Box::new(entry), rep);
        }
        let worst = d
            .failures
            .iter()
            .find(|(_, e)| e.is_retryable())
            .or(d.failures.iter().find(|(_, e)| !e.is_about_the_job()))
            .or(d.failures.first())
            .map(|(_, e)| e)
            .unwrap_or(&SyncError::Cancelled);
        let what = if outcome == Outcome::Synced { "" } else { "retracting: " };
        let mut text = d.failures.iter().map(|(id, e)| format!("sink `{id}`: {what}{}", e.chain())).collect::<Vec<_>>().join("; ");
        if !d.receipts.is_empty() {
            text.push_str(&format!(" (written to: {})", d.receipts.iter().map(|r| r.sink.as_str()).collect::<Vec<_>>().join(", ")));
        }
        for (id, e) in &d.failures {
            tracing::warn!(job = %job.name, sink = %id, error = %e.chain(), "sink write failed");
        }
        let failed_sinks = d.failures.iter().map(|(id, _)| id.clone()).collect();
        let transient = SyncError::Transient { message: String::new(), source: None };
        let cause = if worst.is_retryable() { &transient } else { worst };
        let entry = self.ending(&job.arn, &job.name, basis).failed(cause, text, record_digest, deliveries);
        let rep = report_of(&entry, d.receipts, Some((cause, Stage::Sink)), failed_sinks, self.attempts);
        Ended::Finished(Box::new(entry), rep)
    }
}

/// The validators in order (the first skip or reject decides), then the mapper.
/// Children of a parent read at most, looking for one that passes the validators.
const MAX_CHILDREN_READ: usize = 1000;

/// What a job's ledger basis holds of its content besides its time: its tags' digest; for a
/// parent, also its family (children and their standing, counters), which change without its
/// own tags (a re-fetched parent whose children moved is worked on again).
fn content_digest(job: &TrainingJob) -> String {
    if job.follows_children() {
        crate::digest::of_json(&(crate::digest::of_tags(&job.tags), &job.lineage))
    } else {
        crate::digest::of_tags(&job.tags)
    }
}

async fn validate(e: &Engine, job: &TrainingJob) -> Result<(), (Outcome, String)> {
    for (id, v) in &e.validators {
        match v.validate(job).await {
            Verdict::Sync => {}
            Verdict::Skip { reason } => return Err((Outcome::Skipped, reason)),
            Verdict::Reject { problems } => return Err((Outcome::Rejected, format!("{}: {}", id, problems.join("; ")))),
        }
    }
    Ok(())
}

async fn map(e: &Engine, job: &TrainingJob) -> Result<RunRecord, (Outcome, String)> {
    e.mapper.map(job).await.map_err(|err| (Outcome::Rejected, format!("map: {}", err.chain())))
}

/// The note of a synced job whose record has metric histories the source read only in part.
fn history_note(record: &crate::model::RunRecord) -> Option<String> {
    let notes: Vec<String> = record
        .metric_history
        .iter()
        .filter(|s| s.problem.is_some() || s.truncated)
        .map(|s| format!("{}: {}", s.name, s.provenance()))
        .collect();
    if notes.is_empty() {
        return None;
    }
    let mut text = format!("metric history: {}", notes.join("; "));
    crate::limits::cut_text(&mut text, 1000);
    Some(text)
}
