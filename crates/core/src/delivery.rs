//! What one sink holds for one job, as the ledger records it, and the receipt of a write.
//!
//! A [`Delivery`] is in one of three states ([`DeliveryState`]):
//!
//! - **pending**: the engine recorded its *intent* to write the job to this sink for the first
//!   time, before the write. Its outcome was never committed (the process crashed, or lost the
//!   job's lease, between the write and the commit), so the sink may or may not hold a record,
//!   under the names in [`PendingNames`]. The next attempt hands the names to the sink
//!   ([`WriteContext::pending`](crate::sink::WriteContext::pending)), which looks for that record
//!   before it creates one, and a retraction removes it.
//! - **written**: the sink holds the record whose digest is `record_digest`, written under the
//!   sink configuration whose digest is `sink_digest`, with the sink's [`SinkReceipt`].
//! - **kept**: the job became ineligible and this sink keeps the records of such jobs (its
//!   `retract` answered `None`): the receipt stays, so that the record is found again if the job
//!   comes back, and it is not retracted again on every pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::limits::{cut_text, ID_CHARS, RECEIPT_IDS};
use crate::model::Timestamp;

/// What a sink did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// The run did not exist and was created.
    Created,
    /// The run existed and something was written to it.
    Updated,
    /// The run existed and nothing needed writing.
    Unchanged,
    /// The run was removed (or marked superseded) because the job is no longer eligible or moved.
    Removed,
}

/// Proof of a sink write: the store's ids for the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkReceipt {
    /// The sink's id in the pipeline (its `id` or `type`).
    pub sink: String,
    /// What happened.
    pub write: WriteKind,
    /// Ids in the store (`project_id`, `run_id`, `path`...).
    pub ids: BTreeMap<String, String>,
    /// Number of write requests made.
    pub writes: u32,
}

impl SinkReceipt {
    /// A receipt with no ids yet.
    pub fn new(write: WriteKind) -> Self {
        SinkReceipt { sink: String::new(), write, ids: BTreeMap::new(), writes: 0 }
    }
    /// Adds an id.
    pub fn id(mut self, key: &str, value: impl ToString) -> Self {
        self.ids.insert(key.to_string(), value.to_string());
        self
    }
    /// Cuts the receipt to what the ledger keeps: at most [`RECEIPT_IDS`] ids, each of at most
    /// [`ID_CHARS`] characters. A receipt holds the store's ids, digests and counts, never lists
    /// that grow with a job's content.
    pub fn bound(&mut self) {
        if self.ids.len() > RECEIPT_IDS {
            let extra: Vec<String> = self.ids.keys().skip(RECEIPT_IDS - 1).cloned().collect();
            for k in &extra {
                self.ids.remove(k);
            }
            self.ids.insert("omitted_ids".into(), extra.len().to_string());
        }
        for v in self.ids.values_mut() {
            cut_text(v, ID_CHARS);
        }
    }
}

/// The names a record was about to be written under when the engine recorded its intent: what
/// a sink looks for when an earlier attempt's outcome is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingNames {
    /// The record's project (`RunRecord::project.name`).
    pub project: String,
    /// Its experiment (`RunRecord::experiment`).
    pub experiment: String,
    /// Its run (`RunRecord::run.name`).
    pub run: String,
}

impl PendingNames {
    /// The names of a record.
    pub fn of(record: &crate::model::RunRecord) -> Self {
        PendingNames { project: record.project.name.clone(), experiment: record.experiment.clone(), run: record.run.name.clone() }
    }
    /// Whether no name is known (an intent whose names were lost).
    pub fn is_empty(&self) -> bool {
        self.project.is_empty() && self.experiment.is_empty() && self.run.is_empty()
    }
    /// Cuts each name to `chars` characters (what the ledger keeps of an id).
    pub fn bound(&mut self, chars: usize) {
        for v in [&mut self.project, &mut self.experiment, &mut self.run] {
            cut_text(v, chars);
        }
    }
}

/// Where one sink stands with one job (see the [module](self) documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// A first write was started and its outcome is unknown.
    Pending(PendingNames),
    /// The sink holds this record, written under this sink configuration.
    Written {
        /// Digest of the record written.
        record_digest: String,
        /// Digest of the sink's configuration at the time.
        sink_digest: String,
    },
    /// The job became ineligible and the sink keeps its record; with the names of a first write
    /// whose outcome was unknown when it became so (the sink looks for them if the job returns).
    Kept(Option<PendingNames>),
}

/// What one sink holds for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where the sink stands.
    pub state: DeliveryState,
    /// The sink's receipt (its ids for the record); empty for a pending delivery.
    pub receipt: SinkReceipt,
    /// When it was recorded.
    pub at: Timestamp,
}

impl Delivery {
    /// A write the sink answered.
    pub fn written(record_digest: String, sink_digest: String, receipt: SinkReceipt, at: Timestamp) -> Delivery {
        Delivery { state: DeliveryState::Written { record_digest, sink_digest }, receipt, at }
    }
    /// The intent of a first write, under these names.
    pub fn pending(sink: &str, names: PendingNames, at: Timestamp) -> Delivery {
        Delivery {
            state: DeliveryState::Pending(names),
            receipt: SinkReceipt { sink: sink.to_string(), ..SinkReceipt::new(WriteKind::Created) },
            at,
        }
    }
    /// Whether the sink holds exactly this record under this configuration.
    pub fn holds(&self, record_digest: &str, sink_digest: &str) -> bool {
        matches!(&self.state, DeliveryState::Written { record_digest: r, sink_digest: s } if r == record_digest && s == sink_digest)
    }
    /// The digest of the record written, when one was.
    pub fn record_digest(&self) -> Option<&str> {
        match &self.state {
            DeliveryState::Written { record_digest, .. } => Some(record_digest),
            _ => None,
        }
    }
    /// The names of a first write whose outcome is unknown (pending, or kept while pending);
    /// `None` when the names are unknown (all empty).
    pub fn pending_names(&self) -> Option<&PendingNames> {
        match &self.state {
            DeliveryState::Pending(n) | DeliveryState::Kept(Some(n)) => Some(n).filter(|n| !n.is_empty()),
            _ => None,
        }
    }
    /// Whether the sink may hold a record that a retraction should remove (not a kept one).
    pub fn retractable(&self) -> bool {
        !matches!(self.state, DeliveryState::Kept(_))
    }
}

/// A delivery as a store keeps it: the state by name (`written`, `pending`, `kept`) with each
/// state's fields, and beside them the form the release before the typed state reads (a marker
/// in `record_digest`, a pending write's names among the receipt's ids), so that a ledger shared
/// with a process of that release during an upgrade, or read by it after a rollback, means the
/// same to both. Readers of this release go by `state` and drop the markers (see [`legacy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The state's name.
    pub state: &'static str,
    /// The written record's digest, or the previous release's marker of the state.
    pub record_digest: String,
    /// The written record's sink digest (empty otherwise).
    pub sink_digest: String,
    /// The names of a pending (or kept-while-pending) first write.
    pub pending: Option<PendingNames>,
    /// The receipt, with the names among its ids for the previous release.
    pub receipt: SinkReceipt,
}

impl Delivery {
    /// The stored form (see [`StoredDelivery`]).
    pub fn stored(&self) -> StoredDelivery {
        let mut receipt = self.receipt.clone();
        let (state, record_digest, sink_digest, pending) = match &self.state {
            DeliveryState::Written { record_digest, sink_digest } => ("written", record_digest.clone(), sink_digest.clone(), None),
            DeliveryState::Pending(n) => ("pending", legacy::PENDING_MARKER.to_string(), String::new(), Some(n.clone())),
            DeliveryState::Kept(n) => ("kept", legacy::KEPT_MARKER.to_string(), String::new(), n.clone()),
        };
        if let Some(n) = &pending {
            for (k, v) in legacy::NAME_IDS.iter().zip([&n.project, &n.experiment, &n.run]) {
                receipt.ids.insert(k.to_string(), v.clone());
            }
        }
        StoredDelivery { state, record_digest, sink_digest, pending, receipt }
    }

    /// A delivery from its stored form: `state` as this release writes it, or absent (or
    /// `written` beside a marker, from a process of the previous release) for the old form.
    pub fn from_stored(
        state: Option<&str>,
        record_digest: String,
        sink_digest: String,
        pending: Option<PendingNames>,
        mut receipt: SinkReceipt,
        at: Timestamp,
    ) -> Result<Delivery, String> {
        let mut old_names = legacy::NAME_IDS.map(|k| receipt.ids.remove(k));
        let old = if old_names.iter().any(Option::is_some) {
            let [p, e, r] = &mut old_names;
            Some(PendingNames {
                project: p.take().unwrap_or_default(),
                experiment: e.take().unwrap_or_default(),
                run: r.take().unwrap_or_default(),
            })
        } else {
            None
        };
        let names = pending.or(old).filter(|n| !n.is_empty());
        let state = match (state, record_digest.as_str()) {
            (Some("pending"), _) | (None | Some("written"), legacy::PENDING_MARKER) => DeliveryState::Pending(names.unwrap_or_default()),
            (Some("kept"), _) | (None | Some("written"), legacy::KEPT_MARKER) => DeliveryState::Kept(names),
            (None | Some("written"), _) => DeliveryState::Written { record_digest, sink_digest },
            (Some(other), _) => return Err(format!("unknown delivery state `{other}`")),
        };
        Ok(Delivery { state, receipt, at })
    }
}

/// The JSON form of a [`Delivery`] (inside a DynamoDB item's entry): [`StoredDelivery`]'s fields.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(default)]
    record_digest: String,
    #[serde(default)]
    sink_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<PendingNames>,
    receipt: SinkReceipt,
    at: Timestamp,
}

impl Serialize for Delivery {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.stored();
        Stored {
            state: Some(d.state.to_string()),
            record_digest: d.record_digest,
            sink_digest: d.sink_digest,
            pending: d.pending,
            receipt: d.receipt,
            at: self.at,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Delivery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Stored::deserialize(d)?;
        Delivery::from_stored(s.state.as_deref(), s.record_digest, s.sink_digest, s.pending, s.receipt, s.at)
            .map_err(serde::de::Error::custom)
    }
}

/// The form of the release before the delivery state was typed (SQLite schema 4): the state
/// was told by marker values in `record_digest`, and a pending write's names were receipt ids.
/// Still written beside the typed state (see [`StoredDelivery`]); never read where `state` says
/// otherwise.
pub mod legacy {
    /// The old marker of a pending delivery's `record_digest`.
    pub const PENDING_MARKER: &str = "pending";
    /// The old marker of a kept delivery's `record_digest`.
    pub const KEPT_MARKER: &str = "kept";
    /// The receipt ids that held a pending delivery's names.
    pub const NAME_IDS: [&str; 3] = ["pending_project", "pending_experiment", "pending_run"];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn every_state_round_trips_and_old_entries_read() {
        let names = PendingNames { project: "p".into(), experiment: "e".into(), run: "r".into() };
        for d in [
            Delivery::pending("s", names.clone(), at()),
            Delivery::written("rd".into(), "sd".into(), SinkReceipt::new(WriteKind::Created).id("run_id", "1"), at()),
            Delivery { state: DeliveryState::Kept(None), receipt: SinkReceipt::new(WriteKind::Created), at: at() },
            Delivery { state: DeliveryState::Kept(Some(names.clone())), receipt: SinkReceipt::new(WriteKind::Created), at: at() },
        ] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Delivery>(&json).unwrap(), d, "{json}");
        }
        let old = serde_json::json!({"record_digest": "pending", "sink_digest": "", "at": at(),
            "receipt": {"sink": "s", "write": "created", "writes": 0, "ids": {"pending_project": "p", "pending_experiment": "e", "pending_run": "r"}}});
        let d: Delivery = serde_json::from_value(old).unwrap();
        assert_eq!(d.pending_names(), Some(&names));
        assert!(d.receipt.ids.is_empty(), "the names are no receipt ids any more");
        let kept: Delivery = serde_json::from_value(serde_json::json!({"record_digest": "kept", "sink_digest": "x", "at": at(),
            "receipt": {"sink": "s", "write": "created", "writes": 1, "ids": {"run_id": "7"}}}))
        .unwrap();
        assert_eq!(kept.state, DeliveryState::Kept(None));
        assert!(!kept.retractable());
        let written: Delivery = serde_json::from_value(serde_json::json!({"record_digest": "abc", "sink_digest": "x", "at": at(),
            "receipt": {"sink": "s", "write": "created", "writes": 1, "ids": {}}}))
        .unwrap();
        assert!(written.holds("abc", "x") && !written.holds("abc", "y"));
    }

    #[test]
    fn the_previous_release_reads_what_this_one_writes_and_the_reverse() {
        let names = PendingNames { project: "p".into(), experiment: "e".into(), run: "r".into() };
        let json = serde_json::to_value(Delivery::pending("s", names.clone(), at())).unwrap();
        assert_eq!(json["record_digest"], "pending", "the old reader's marker");
        assert_eq!(json["receipt"]["ids"]["pending_project"], "p", "the old reader's names");
        let kept = Delivery { state: DeliveryState::Kept(Some(names.clone())), receipt: SinkReceipt::new(WriteKind::Created), at: at() };
        assert_eq!(serde_json::to_value(&kept).unwrap()["record_digest"], "kept");
        // A row an old process wrote into a migrated SQLite file: `state` took its default.
        let r = SinkReceipt::new(WriteKind::Created).id("pending_project", "p").id("pending_experiment", "e").id("pending_run", "r");
        let d = Delivery::from_stored(Some("written"), "pending".into(), String::new(), None, r.clone(), at()).unwrap();
        assert_eq!((d.pending_names(), d.receipt.ids.len()), (Some(&names), 0));
        let d = Delivery::from_stored(Some("written"), "kept".into(), String::new(), None, r, at()).unwrap();
        assert_eq!(d.state, DeliveryState::Kept(Some(names)), "kept while pending keeps the names");
        // An intent whose names were lost gives the sink no names to look for.
        let d = Delivery::from_stored(None, "pending".into(), String::new(), None, SinkReceipt::new(WriteKind::Created), at()).unwrap();
        assert_eq!(d.pending_names(), None);
        assert!(
            Delivery::from_stored(Some("gone"), String::new(), String::new(), None, SinkReceipt::new(WriteKind::Created), at()).is_err()
        );
    }
}
