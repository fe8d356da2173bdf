//! The conformance suite every [`StateStore`] passes: the same checks run against the memory,
//! SQLite and DynamoDB stores. Call [`run_all`] from a test with a function that makes a fresh,
//! empty store.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Acquired, Basis, Delivery, DeliveryState, JobState, Lease, Outcome, PendingNames, StateStore};
use crate::delivery::{SinkReceipt, WriteKind};
use crate::source::Cursor;

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a (dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn StateStore>> + Send>> + Sync);

/// Runs every check, each on a fresh store; panics with the name of the first that fails.
pub async fn run_all(make: MakeStore<'_>) {
    cursors(make().await.as_ref()).await;
    batch_reads(make().await.as_ref()).await;
    one_lease_at_a_time(make().await.as_ref()).await;
    concurrent_acquires_grant_one(make().await).await;
    expired_leases_are_taken_over_and_fence_the_old_writer(make().await.as_ref()).await;
    commit_replaces_the_entry_and_releases(make().await.as_ref()).await;
    record_keeps_the_lease(make().await.as_ref()).await;
    failed_jobs_due_unpark_and_counts(make().await.as_ref()).await;
}

/// A ledger entry for tests.
pub fn entry(arn: &str, outcome: Outcome) -> JobState {
    JobState {
        arn: arn.to_string(),
        job: arn.rsplit('/').next().unwrap_or(arn).to_string(),
        basis: Basis { last_modified: Some(Utc::now()), tags_digest: Some("t".into()), config_digest: "c".into(), listed: None },
        outcome,
        reason: None,
        record_digest: Some("r".into()),
        deliveries: BTreeMap::new(),
        attempts: 0,
        permanent_failures: 0,
        parked: false,
        next_attempt_at: None,
        pass: Some("p".into()),
        updated_at: Utc::now(),
    }
}

async fn grant(s: &dyn StateStore, arn: &str, owner: &str, ttl: Duration) -> (Lease, Option<Box<JobState>>) {
    match s.acquire(arn, owner, ttl).await.expect("acquire") {
        Acquired::Granted { lease, state } => (lease, state),
        Acquired::Held { owner: holder, .. } => panic!("{}: {arn} unexpectedly held by {holder}", s.location()),
    }
}

async fn put(s: &dyn StateStore, e: &JobState) {
    let (lease, _) = grant(s, &e.arn, "writer", Duration::from_secs(30)).await;
    assert!(s.commit(&lease, e).await.expect("commit"), "commit with a fresh lease must succeed");
}

/// Cursors round-trip per key.
pub async fn cursors(s: &dyn StateStore) {
    assert_eq!(s.cursor("daemon").await.unwrap(), None);
    let mut c = Cursor::default();
    c.advance(Some(Utc::now()), "arn:a");
    c.token = Some("tok".into());
    s.save_cursor("daemon", &c).await.unwrap();
    s.save_cursor("backfill:x", &Cursor::default()).await.unwrap();
    assert_eq!(s.cursor("daemon").await.unwrap(), Some(c.clone()));
    let all: BTreeMap<String, Cursor> = s.cursors().await.unwrap().into_iter().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all["daemon"], c);
}

/// `jobs` answers in request order with `None` for unknown jobs.
pub async fn batch_reads(s: &dyn StateStore) {
    let mut e = entry("arn:j/b", Outcome::Synced);
    e.deliveries.insert(
        "file".into(),
        Delivery::written("r".into(), "s".into(), SinkReceipt::new(WriteKind::Created).id("path", "p/b.json"), Utc::now()),
    );
    e.deliveries.insert(
        "v1".into(),
        Delivery { state: DeliveryState::Kept(None), receipt: SinkReceipt::new(WriteKind::Created).id("run_id", "7"), at: Utc::now() },
    );
    let names = crate::PendingNames { project: "p".into(), experiment: "e".into(), run: "r".into() };
    e.deliveries.insert(
        "v2".into(),
        Delivery { state: DeliveryState::Kept(Some(names.clone())), receipt: SinkReceipt::new(WriteKind::Created), at: Utc::now() },
    );
    put(s, &e).await;
    put(s, &entry("arn:j/a", Outcome::Skipped)).await;
    let got = s.jobs(&["arn:j/a".into(), "arn:j/zz".into(), "arn:j/b".into()]).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].as_ref().map(|j| j.outcome), Some(Outcome::Skipped));
    assert!(got[1].is_none());
    let b = got[2].as_ref().expect("b");
    assert_eq!(b.deliveries["file"].receipt.ids["path"], "p/b.json");
    assert!(b.deliveries["file"].holds("r", "s"), "a written delivery keeps both digests");
    assert_eq!(b.deliveries["v1"].state, DeliveryState::Kept(None), "a kept delivery stays kept");
    assert_eq!(b.deliveries["v1"].receipt.ids["run_id"], "7");
    assert_eq!(b.deliveries["v2"].state, DeliveryState::Kept(Some(names)), "kept while pending keeps the names");
    assert!(b.deliveries["v2"].receipt.ids.is_empty(), "the names are not receipt ids");
    assert_eq!(b.basis, e.basis);
    assert!(s.jobs(&[]).await.unwrap().is_empty());
}

/// A held lease refuses others until released; each grant has a larger fence.
pub async fn one_lease_at_a_time(s: &dyn StateStore) {
    let (l1, st) = grant(s, "arn:j/x", "one", Duration::from_secs(30)).await;
    assert!(st.is_none());
    match s.acquire("arn:j/x", "two", Duration::from_secs(30)).await.unwrap() {
        Acquired::Held { owner, .. } => assert_eq!(owner, "one"),
        other => panic!("expected Held, got {other:?}"),
    }
    // The same owner name does not get a second grant either.
    assert!(matches!(s.acquire("arn:j/x", "one", Duration::from_secs(30)).await.unwrap(), Acquired::Held { .. }));
    assert!(s.renew(&l1, Duration::from_secs(30)).await.unwrap());
    s.release(&l1).await.unwrap();
    let (l2, _) = grant(s, "arn:j/x", "two", Duration::from_secs(30)).await;
    assert!(l2.fence > l1.fence, "fences grow: {} then {}", l1.fence, l2.fence);
    // Releasing with a stale lease does not free someone else's.
    s.release(&l1).await.unwrap();
    assert!(matches!(s.acquire("arn:j/x", "three", Duration::from_secs(30)).await.unwrap(), Acquired::Held { .. }));
    assert!(!s.renew(&l1, Duration::from_secs(30)).await.unwrap(), "a stale lease cannot be renewed");
}

/// Eight writers racing for one job: exactly one wins.
pub async fn concurrent_acquires_grant_one(s: Arc<dyn StateStore>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.acquire("arn:j/race", &format!("w{i}"), Duration::from_secs(30)).await }));
    }
    let mut granted = 0;
    for t in tasks {
        if let Acquired::Granted { .. } = t.await.expect("task").expect("acquire") {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "{}: {granted} writers were granted the same job", s.location());
}

/// A lease that lapses is taken over; the old writer can neither renew nor commit.
pub async fn expired_leases_are_taken_over_and_fence_the_old_writer(s: &dyn StateStore) {
    let ttl = Duration::from_millis(300);
    let (old, _) = grant(s, "arn:j/e", "old", ttl).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let new = loop {
        match s.acquire("arn:j/e", "new", Duration::from_secs(30)).await.unwrap() {
            Acquired::Granted { lease, .. } => break lease,
            Acquired::Held { .. } => {
                assert!(Instant::now() < deadline, "an expired lease was never granted again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(new.fence > old.fence);
    assert!(!s.renew(&old, Duration::from_secs(30)).await.unwrap());
    assert!(!s.commit(&old, &entry("arn:j/e", Outcome::Synced)).await.unwrap(), "the fenced-out writer must not record");
    assert!(s.jobs(&["arn:j/e".into()]).await.unwrap()[0].is_none(), "nothing was written by the fenced-out writer");
    assert!(s.commit(&new, &entry("arn:j/e", Outcome::Rejected)).await.unwrap());
    assert_eq!(s.jobs(&["arn:j/e".into()]).await.unwrap()[0].as_ref().map(|j| j.outcome), Some(Outcome::Rejected));
}

/// Commit writes the whole entry (deliveries replaced, not merged) and frees the job.
pub async fn commit_replaces_the_entry_and_releases(s: &dyn StateStore) {
    let mut e = entry("arn:j/c", Outcome::Synced);
    let d = |path: &str| Delivery::written("r".into(), "s".into(), SinkReceipt::new(WriteKind::Created).id("path", path), Utc::now());
    e.deliveries.insert("a".into(), d("1"));
    e.deliveries.insert("b".into(), d("2"));
    put(s, &e).await;
    let (lease, state) = grant(s, "arn:j/c", "w", Duration::from_secs(30)).await;
    let state = state.expect("the entry comes with the lease");
    assert_eq!(state.deliveries.len(), 2);
    let mut e2 = *state;
    e2.deliveries.remove("a");
    e2.outcome = Outcome::Skipped;
    e2.reason = Some("untagged".into());
    assert!(s.commit(&lease, &e2).await.unwrap());
    let got = s.jobs(&["arn:j/c".into()]).await.unwrap().remove(0).expect("entry");
    assert_eq!(got.deliveries.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(got.reason.as_deref(), Some("untagged"));
    // Released: someone else can take it at once.
    let (_l, _) = grant(s, "arn:j/c", "other", Duration::from_secs(30)).await;
}

/// `record` writes the entry (the engine's intent before a first write) and keeps the lease:
/// nobody else can take the job, and the holder's commit afterwards succeeds. A writer whose
/// lease was taken over records nothing.
pub async fn record_keeps_the_lease(s: &dyn StateStore) {
    let (lease, state) = grant(s, "arn:j/r", "w", Duration::from_secs(30)).await;
    assert!(state.is_none());
    let mut intent = entry("arn:j/r", Outcome::Failed);
    intent.deliveries.insert(
        "a".into(),
        Delivery::pending("a", PendingNames { project: "p".into(), experiment: "e".into(), run: "r".into() }, Utc::now()),
    );
    assert!(s.record(&lease, &intent).await.unwrap(), "recorded");
    let got = s.jobs(&["arn:j/r".into()]).await.unwrap().remove(0).expect("the intent is readable");
    assert_eq!(got.deliveries["a"].pending_names().map(|n| n.run.as_str()), Some("r"), "the intent's names are kept");
    assert!(matches!(s.acquire("arn:j/r", "other", Duration::from_secs(30)).await.unwrap(), Acquired::Held { .. }), "still held");
    let done = entry("arn:j/r", Outcome::Synced);
    assert!(s.commit(&lease, &done).await.unwrap(), "the holder commits after recording");
    assert!(s.jobs(&["arn:j/r".into()]).await.unwrap().remove(0).expect("entry").deliveries.is_empty());
    // A stale lease records nothing.
    let (_l, _) = grant(s, "arn:j/r", "other", Duration::from_secs(30)).await;
    assert!(!s.record(&lease, &intent).await.unwrap(), "fenced out");
    assert_eq!(s.jobs(&["arn:j/r".into()]).await.unwrap().remove(0).expect("entry").outcome, Outcome::Synced);
}

/// `due`, `failed`, `unpark` and `counts`.
pub async fn failed_jobs_due_unpark_and_counts(s: &dyn StateStore) {
    let now = Utc::now();
    let mut later = entry("arn:j/f1", Outcome::Failed);
    later.attempts = 1;
    later.next_attempt_at = Some(now + chrono::Duration::hours(1));
    let mut due = entry("arn:j/f2", Outcome::Failed);
    due.attempts = 2;
    due.next_attempt_at = Some(now - chrono::Duration::seconds(1));
    let mut parked = entry("arn:j/f3", Outcome::Failed);
    parked.parked = true;
    parked.attempts = 5;
    parked.permanent_failures = 5;
    for e in [&later, &due, &parked, &entry("arn:j/ok", Outcome::Synced), &entry("arn:j/sk", Outcome::Skipped)] {
        put(s, e).await;
    }
    let d: Vec<String> = s.due(now, None, 10).await.unwrap().into_iter().map(|j| j.arn).collect();
    assert_eq!(d, ["arn:j/f2"]);
    let stored = s.jobs(&["arn:j/f3".into()]).await.unwrap().remove(0).expect("f3");
    assert_eq!((stored.attempts, stored.permanent_failures), (5, 5), "both counts are kept");
    let f: Vec<String> = s.failed(None, 2).await.unwrap().into_iter().map(|j| j.arn).collect();
    assert_eq!(f, ["arn:j/f1", "arn:j/f2"], "ARN order, limited");
    let f2: Vec<String> = s.failed(Some("arn:j/f2"), 10).await.unwrap().into_iter().map(|j| j.arn).collect();
    assert_eq!(f2, ["arn:j/f3"], "keyset paging");
    let c = s.counts().await.unwrap();
    assert_eq!((c.synced, c.skipped, c.rejected, c.failed, c.parked), (1, 1, 0, 3, 1));
    let mut un = s.unpark(&["f3".into()]).await.unwrap();
    assert_eq!(un, ["arn:j/f3"], "by name");
    let e = s.jobs(&["arn:j/f3".into()]).await.unwrap().remove(0).expect("f3");
    assert!(!e.parked && e.attempts == 0 && e.permanent_failures == 0 && e.next_attempt_at.is_none());
    un = s.unpark(&[]).await.unwrap();
    un.sort();
    assert_eq!(un, ["arn:j/f1", "arn:j/f2", "arn:j/f3"], "every failed job");
    assert_eq!(s.due(now, None, 10).await.unwrap().len(), 3);
    assert!(s.unpark(&["arn:j/ok".into()]).await.unwrap().is_empty(), "synced jobs are not failed jobs");
}
