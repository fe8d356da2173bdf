//! The ledger entries and the reports a job's attempt ends with. Pure: every rule about what an
//! entry says (attempt counts, parking, retry times, bounds) is here.

use std::collections::BTreeMap;

use chrono::Utc;

use super::report::JobReport;
use crate::config::PipelineSettings;
use crate::error::{Stage, SyncError};
use crate::model::TrainingJob;
use crate::sink::SinkReceipt;
use crate::state::{Basis, Delivery, JobState, Outcome};

/// What an entry is written about: the job, what its decision was based on, the entry it
/// replaces and the pass that writes it.
pub(crate) struct Ending<'a> {
    pub arn: &'a str,
    pub name: &'a str,
    pub basis: Basis,
    pub prior: Option<&'a JobState>,
    pub pass: &'a str,
    pub settings: &'a PipelineSettings,
}

impl Ending<'_> {
    /// A job that ended synced, skipped or rejected: its failure counts start again.
    pub fn done(
        self,
        outcome: Outcome,
        reason: Option<String>,
        record_digest: Option<String>,
        deliveries: BTreeMap<String, Delivery>,
    ) -> JobState {
        self.entry(outcome, reason, None, record_digest, deliveries)
    }

    /// A failed job. Tries count while its content stays the same; only failures about its
    /// own content (`e.is_about_the_job()`) count toward `max_job_attempts` and park it; the
    /// network, throttling or a store that is down never do.
    pub fn failed(self, e: &SyncError, reason: String, record_digest: Option<String>, deliveries: BTreeMap<String, Delivery>) -> JobState {
        self.entry(Outcome::Failed, Some(reason), Some(e), record_digest, deliveries)
    }

    fn entry(
        self,
        outcome: Outcome,
        reason: Option<String>,
        failure: Option<&SyncError>,
        record_digest: Option<String>,
        deliveries: BTreeMap<String, Delivery>,
    ) -> JobState {
        let now = Utc::now();
        let prior = self.prior;
        let (attempts, permanent_failures, parked, next_attempt_at) = match failure {
            None => (0, 0, false, None),
            Some(e) => {
                let same = prior.filter(|p| p.outcome == Outcome::Failed && p.basis.last_modified == self.basis.last_modified);
                let attempts = same.map(|p| p.attempts).unwrap_or(0).saturating_add(1);
                let permanent = same.map(|p| p.permanent_failures).unwrap_or(0).saturating_add(u32::from(e.is_about_the_job()));
                let parked = e.is_about_the_job() && permanent >= self.settings.max_job_attempts;
                (attempts, permanent, parked, (!parked).then(|| now + self.settings.retry_delay(attempts)))
            }
        };
        JobState {
            arn: self.arn.to_string(),
            job: self.name.to_string(),
            basis: self.basis,
            outcome,
            reason,
            record_digest: record_digest.or_else(|| prior.and_then(|p| p.record_digest.clone())),
            deliveries,
            attempts,
            permanent_failures,
            parked,
            next_attempt_at,
            pass: Some(self.pass.to_string()),
            updated_at: now,
        }
        .bounded()
    }
}

/// The entry recorded before a job's first write to a sink: what the ledger held, with the
/// pending deliveries; for a job new to the ledger, a failure with no attempt counted (what a
/// crash before the outcome's commit leaves: the job is worked on again by the next pass that
/// lists it, or once its first backoff has passed; `status` counts it as interrupted).
pub(crate) fn intent(
    job: &TrainingJob,
    prior: Option<&JobState>,
    deliveries: BTreeMap<String, Delivery>,
    settings: &PipelineSettings,
) -> JobState {
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
            // Not due in this pass (the outcome is being committed); after a crash the job is
            // listed again, or re-driven once the first backoff has passed.
            next_attempt_at: Some(now + settings.retry_delay(1)),
            pass: None,
            updated_at: now,
        },
    }
    .bounded()
}

/// The small entry that records a commit the store refused for good: a failure at the state
/// stage (a setup failure: it never parks the job, the store's state is not the job's content),
/// with the deliveries made, their receipts emptied (the refused entry may have been large
/// because of them).
pub(crate) fn refusal(
    entry: &JobState,
    e: &crate::state::StateError,
    prior: Option<&JobState>,
    pass: &str,
    settings: &PipelineSettings,
) -> JobState {
    let mut deliveries = entry.deliveries.clone();
    for d in deliveries.values_mut() {
        d.receipt.ids.clear();
    }
    let err = SyncError::setup(format!("the state store refused the job's entry: {e}"));
    let ending = Ending { arn: &entry.arn, name: &entry.job, basis: entry.basis.clone(), prior, pass, settings };
    ending.failed(&err, format!("state: {}", err.chain()), entry.record_digest.clone(), deliveries)
}

/// The report of a job whose entry is `entry`.
pub(crate) fn report_of(
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

/// The report of a job stopped before it finished: nothing recorded.
pub(crate) fn interrupted(name: &str, arn: Option<&str>, why: &str) -> JobReport {
    let mut r = JobReport::new(name, arn.map(str::to_string), Outcome::Interrupted);
    r.reason = Some(format!("interrupted ({why}); nothing recorded, it will be picked up again"));
    r
}

/// The report of a job that failed where nothing could be recorded (no ARN, no lease).
pub(crate) fn unrecorded_failure(name: &str, arn: Option<String>, stage: Stage, e: &SyncError) -> JobReport {
    let mut r = JobReport::new(name, arn, Outcome::Failed);
    r.stage = Some(stage);
    r.retryable = e.is_retryable();
    let mut reason = format!("{stage}: {}", e.chain());
    crate::limits::cut_text(&mut reason, crate::limits::REASON_CHARS);
    r.reason = Some(reason);
    r
}
