//! The decision rule: does a listed job need work, given what the ledger holds? Pure, so that it
//! is tested on its own and runs again under the job's lease with the freshly read entry.

use crate::config::{NamedSink, OnIneligible};
use crate::model::Timestamp;
use crate::source::JobRef;
use crate::state::{JobState, Outcome};

use super::observer::Decision;

/// What a reference says about the job's current state, against what the ledger's entry was
/// based on. Only what both sides know is compared: a listing without tags (ListTrainingJobs)
/// compares times only; the reconciliation pass (Search) brings tags.
pub(crate) fn basis_changed(r: &JobRef, st: &JobState, config_digest: &str) -> bool {
    if st.basis.config_digest != config_digest {
        return true;
    }
    match r.last_modified {
        // The reference's time is neither the job's time the entry was based on nor the time
        // the reference that led to it carried (a duplicate event says nothing new).
        Some(lm) if st.basis.last_modified != Some(lm) && st.basis.listed != Some(lm) => return true,
        None => return true,
        _ => {}
    }
    if let (Some(tags), Some(d)) = (&r.tags, &st.basis.tags_digest) {
        if &crate::digest::of_tags(tags) != d {
            return true;
        }
    }
    false
}

/// Whether every current sink holds the record the entry says was synced.
pub(crate) fn delivered_everywhere(st: &JobState, sinks: &[NamedSink]) -> bool {
    let Some(rd) = &st.record_digest else { return false };
    sinks.iter().all(|s| st.deliveries.get(&s.id).is_some_and(|d| d.holds(rd, &s.digest)))
}

impl super::Engine {
    /// [`decide`] with this engine's sinks, configuration digest and settings, now.
    pub(crate) fn decide_ref(&self, r: &JobRef, st: Option<&JobState>, urgent: bool) -> Decision {
        self.decide_at(r, st, chrono::Utc::now(), urgent)
    }
    /// [`decide`] with this engine's sinks, configuration digest and settings.
    pub(crate) fn decide_at(&self, r: &JobRef, st: Option<&JobState>, now: Timestamp, urgent: bool) -> Decision {
        decide(r, st, &self.sinks, &self.config_digest, self.settings.on_ineligible, now, urgent)
    }
}

/// The decision for a listed job. `urgent` (events, `sagesync retry`) ignores a failed job's
/// retry time.
pub(crate) fn decide(
    r: &JobRef,
    st: Option<&JobState>,
    sinks: &[NamedSink],
    config_digest: &str,
    on_ineligible: OnIneligible,
    now: Timestamp,
    urgent: bool,
) -> Decision {
    let Some(st) = st else { return Decision::Process };
    let changed = basis_changed(r, st, config_digest);
    match st.outcome {
        _ if changed => Decision::Process,
        Outcome::Failed | Outcome::Interrupted => {
            if st.parked {
                Decision::Done
            } else if !urgent && st.next_attempt_at.is_some_and(|t| t > now) {
                Decision::Later
            } else {
                Decision::Process
            }
        }
        Outcome::Synced => {
            if delivered_everywhere(st, sinks) && st.deliveries.len() == sinks.len() {
                Decision::Done
            } else {
                Decision::Process
            }
        }
        Outcome::Skipped | Outcome::Rejected => {
            if on_ineligible == OnIneligible::Retract && st.deliveries.values().any(|d| d.retractable()) {
                Decision::Process
            } else {
                Decision::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::model::Tags;
    use crate::sink::{SinkReceipt, WriteKind};
    use crate::state::{Basis, Delivery};

    struct Nop;
    #[async_trait::async_trait]
    impl crate::sink::Sink for Nop {
        async fn upsert(&self, _: &crate::model::RunRecord, _: &crate::sink::WriteContext) -> Result<SinkReceipt, crate::error::SyncError> {
            Ok(SinkReceipt::new(WriteKind::Created))
        }
    }

    fn sink(id: &str) -> NamedSink {
        NamedSink { id: id.into(), sink: Arc::new(Nop), digest: format!("d-{id}") }
    }

    fn tags(v: &str) -> Tags {
        [("MODEL_DB_SYNC", v)].into_iter().collect()
    }

    fn state(outcome: Outcome, lm: Timestamp, sinks: &[&str]) -> JobState {
        let mut deliveries = BTreeMap::new();
        for s in sinks {
            deliveries.insert(s.to_string(), Delivery::written("r".into(), format!("d-{s}"), SinkReceipt::new(WriteKind::Created), lm));
        }
        JobState {
            arn: "a".into(),
            job: "j".into(),
            basis: Basis {
                last_modified: Some(lm),
                tags_digest: Some(crate::digest::of_tags(&tags("1"))),
                config_digest: "c".into(),
                listed: None,
            },
            outcome,
            reason: None,
            record_digest: Some("r".into()),
            deliveries,
            attempts: 0,
            permanent_failures: 0,
            parked: false,
            next_attempt_at: None,
            pass: None,
            updated_at: lm,
        }
    }

    fn r(lm: Timestamp, t: Option<Tags>) -> JobRef {
        JobRef { name: "j".into(), arn: Some("a".into()), last_modified: Some(lm), tags: t, ..Default::default() }
    }

    #[test]
    fn the_ledger_decides() {
        let now = Utc::now();
        let lm = now - chrono::Duration::hours(1);
        let sinks = [sink("file"), sink("v1")];
        let d = |r: &JobRef, st: &JobState| decide(r, Some(st), &sinks, "c", OnIneligible::Retract, now, false);
        let synced = state(Outcome::Synced, lm, &["file", "v1"]);
        assert_eq!(decide(&r(lm, None), None, &sinks, "c", OnIneligible::Retract, now, false), Decision::Process, "unknown job");
        assert_eq!(d(&r(lm, None), &synced), Decision::Done, "same time, no tags known");
        assert_eq!(d(&r(lm, Some(tags("1"))), &synced), Decision::Done, "same time, same tags");
        assert_eq!(d(&r(lm, Some(tags("2"))), &synced), Decision::Process, "tags changed without moving LastModifiedTime");
        assert_eq!(d(&r(now, None), &synced), Decision::Process, "modified");
        assert_eq!(
            decide(&r(lm, None), Some(&synced), &sinks, "other", OnIneligible::Retract, now, false),
            Decision::Process,
            "config changed"
        );
        let one = state(Outcome::Synced, lm, &["file"]);
        assert_eq!(d(&r(lm, None), &one), Decision::Process, "a sink added later");
        let mut moved = synced.clone();
        moved.deliveries.insert("v1".into(), Delivery::written("r".into(), "old".into(), SinkReceipt::new(WriteKind::Created), lm));
        assert_eq!(d(&r(lm, None), &moved), Decision::Process, "a sink's config changed");
        let mut extra = synced.clone();
        extra.deliveries.insert("gone".into(), extra.deliveries["file"].clone());
        assert_eq!(d(&r(lm, None), &extra), Decision::Process, "a sink removed: its delivery is dropped");
        let skipped = state(Outcome::Skipped, lm, &[]);
        assert_eq!(d(&r(lm, None), &skipped), Decision::Done);
        let skipped_with_records = state(Outcome::Skipped, lm, &["file"]);
        assert_eq!(d(&r(lm, None), &skipped_with_records), Decision::Process, "records to retract");
        assert_eq!(decide(&r(lm, None), Some(&skipped_with_records), &sinks, "c", OnIneligible::Keep, now, false), Decision::Done);
        let mut failed = state(Outcome::Failed, lm, &[]);
        failed.next_attempt_at = Some(now + chrono::Duration::minutes(5));
        assert_eq!(d(&r(lm, None), &failed), Decision::Later);
        assert_eq!(decide(&r(lm, None), Some(&failed), &sinks, "c", OnIneligible::Retract, now, true), Decision::Process, "urgent");
        failed.next_attempt_at = Some(now - chrono::Duration::minutes(5));
        assert_eq!(d(&r(lm, None), &failed), Decision::Process, "due");
        failed.parked = true;
        assert_eq!(d(&r(lm, None), &failed), Decision::Done, "parked");
        assert_eq!(d(&r(now, None), &failed), Decision::Process, "parked, but its content changed");
        let mut no_lm = r(lm, None);
        no_lm.last_modified = None;
        assert_eq!(d(&no_lm, &synced), Decision::Process, "a reference by name alone is always worked on");
    }
}
