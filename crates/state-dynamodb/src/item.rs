//! How the ledger is laid out in the table: the attributes, the keys of job and cursor items,
//! and the update expressions an entry is written with. Pure: no requests.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use sagesync_core::{JobState, Outcome, Timestamp};

/// The partition key attribute (a string: `job#<arn>` or `cursor#<key>`).
pub const PK: &str = "pk";
/// The attribute DynamoDB's TTL is enabled on (epoch seconds). Only items that never held a
/// ledger entry (a lease taken on a job that was never recorded) carry a near value: the lease's
/// expiry plus [`LEASE_GC_GRACE`]. Items holding an entry carry [`NEVER`].
pub const TTL_ATTRIBUTE: &str = "lease_ttl";
/// How long after its lease lapsed an entry-less job item may be deleted by TTL.
pub const LEASE_GC_GRACE: Duration = Duration::from_secs(86_400);
/// The TTL value of items holding a ledger entry: 9999-12-31, never reached.
pub const NEVER: i64 = 253_402_300_799;

/// The sparse global secondary index of failed jobs: partition key `failed_pk` (set to
/// [`FAILED_PK_VALUE`] on failed jobs only), sort key `arn`. `due`, `failed` and `unpark` query it.
pub const FAILED_INDEX: &str = "failed-by-arn";
/// The value of `failed_pk` on failed jobs.
pub const FAILED_PK_VALUE: &str = "failed";

pub(crate) const JOB_PREFIX: &str = "job#";
pub(crate) const CURSOR_PREFIX: &str = "cursor#";
/// BatchGetItem's limit of keys per call.
pub(crate) const BATCH_GET_MAX: usize = 100;
/// Rounds of retrying BatchGetItem's unprocessed keys before giving up (retryable).
pub(crate) const UNPROCESSED_ROUNDS: u32 = 10;
/// Pages one scan may read before it is refused (10 000 pages of up to 1 MB).
pub(crate) const MAX_SCAN_PAGES: usize = 10_000;
/// Optimistic retries of unpark's read-modify-write of one entry.
pub(crate) const UNPARK_TRIES: usize = 5;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(crate) fn job_key(arn: &str) -> AttributeValue {
    s(format!("{JOB_PREFIX}{arn}"))
}
pub(crate) fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}
pub(crate) fn ttl_after(now: Timestamp, ttl: Duration) -> Timestamp {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(36_500))
}

pub(crate) fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in exprs {
        let mut rest = *e;
        while let Some(i) = rest.find('#') {
            let tail = &rest[i + 1..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            if end > 0 {
                out.insert(format!("#{}", &tail[..end]), tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// Sets an UpdateItem's update and condition expressions with their attribute names.
pub(crate) trait Exprs {
    fn exprs(self, update: &str, condition: &str) -> Self;
}

impl Exprs for aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    fn exprs(self, update: &str, condition: &str) -> Self {
        self.update_expression(update).condition_expression(condition).set_expression_attribute_names(Some(names(&[update, condition])))
    }
}

pub(crate) fn item_name(item: &HashMap<String, AttributeValue>) -> String {
    match item.get(PK) {
        Some(AttributeValue::S(k)) => k.clone(),
        _ => "an item".into(),
    }
}

pub(crate) fn num(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    match item.get(k) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

pub(crate) fn text<'a>(item: &'a HashMap<String, AttributeValue>, k: &str) -> Option<&'a str> {
    match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    }
}

/// The update of a job item that writes `e`: the SET clause, the attributes to REMOVE and the
/// values. Besides the entry itself it writes what the failed-jobs index and the scans read:
/// `outcome`, `parked`, `job`, `next_at` (only with a retry time) and `failed_pk` (only on
/// failed jobs, so the index holds failed jobs alone).
pub(crate) fn entry_update(e: &JobState, json: String) -> (String, Vec<&'static str>, HashMap<String, AttributeValue>) {
    let mut set = String::from(
        "#entry = :entry, #outcome = :outcome, #parked = :parked, #attempts = :attempts, #job = :name, #lease_ttl = :never, #entry_ttl = :never",
    );
    let mut remove = Vec::new();
    let mut values = HashMap::from([
        (":entry".to_string(), s(json)),
        (":outcome".to_string(), s(e.outcome.as_str())),
        (":parked".to_string(), AttributeValue::Bool(e.parked)),
        (":attempts".to_string(), n(e.attempts)),
        (":name".to_string(), s(e.job.clone())),
        (":never".to_string(), n(NEVER)),
    ]);
    match e.next_attempt_at {
        Some(t) => {
            set.push_str(", #next_at = :next");
            values.insert(":next".into(), n(millis(t)));
        }
        None => remove.push("#next_at"),
    }
    if e.outcome == Outcome::Failed {
        set.push_str(", #failed_pk = :failed_pk");
        values.insert(":failed_pk".into(), s(FAILED_PK_VALUE));
    } else {
        remove.push("#failed_pk");
    }
    (set, remove, values)
}
