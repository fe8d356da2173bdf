//! The SQLite store: the shared conformance suite, two stores on one file at once, first starts
//! racing, migration of a first-release file, refusal of damaged and foreign files.

use std::sync::Arc;
use std::time::Duration;

use sagesync_core::state::conformance;
use sagesync_core::{Acquired, Outcome, StateStore};
use sagesync_state_sqlite::SqliteState;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_the_conformance_suite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    conformance::run_all(&move || {
        let dir = dir.clone();
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Arc::new(SqliteState::new(dir.path().join(format!("s{i}.db")), 10_000)) as Arc<dyn StateStore> })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_leases_and_never_fail_on_busy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.db");
    // Eight first starts at once on a fresh file: every one opens it.
    let stores: Vec<Arc<SqliteState>> = (0..8).map(|_| Arc::new(SqliteState::new(&p, 10_000))).collect();
    let opened = futures_join(stores.iter().map(|s| {
        let s = s.clone();
        async move { s.counts().await }
    }))
    .await;
    for o in opened {
        o.expect("every concurrent first start opens the file");
    }
    // Writers on different connections: one lease per job, every commit lands.
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for j in 0..50 {
                let arn = format!("arn:j/{j}");
                if let Acquired::Granted { lease, .. } = s.acquire(&arn, &format!("w{i}"), Duration::from_secs(30)).await.unwrap() {
                    let e = conformance::entry(&arn, Outcome::Synced);
                    assert!(s.commit(&lease, &e).await.unwrap());
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert!(total >= 50, "every job was committed at least once ({total})");
    assert_eq!(stores[0].counts().await.unwrap().synced, 50);
}

async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = fs.collect();
    for f in handles {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn a_first_release_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(&format!(
            "PRAGMA application_id = {};
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE cursors (source TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE ledger (arn TEXT PRIMARY KEY, job TEXT NOT NULL, last_modified TEXT, outcome TEXT NOT NULL, reason TEXT, receipts TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, parked INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT, updated_at TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             INSERT INTO cursors VALUES ('daemon', '{{\"watermark\":\"2026-01-01T00:00:00.000Z\"}}', '2026-01-01T00:00:00.000Z');
             INSERT INTO ledger VALUES ('arn:a', 'a', '2026-01-01T00:00:00.000Z', 'synced', NULL, '[{{\"sink\":\"file\",\"write\":\"created\",\"ids\":{{\"path\":\"x\"}},\"writes\":1}}]', 0, NULL, 0, NULL, '2026-01-01T00:00:00.000Z');
             INSERT INTO ledger VALUES ('arn:b', 'b', NULL, 'failed', 'r', '[]', 5, 'boom', 1, NULL, '2026-01-01T00:00:00.000Z');",
            sagesync_state_sqlite::APPLICATION_ID
        ))
        .unwrap();
    }
    let s = SqliteState::open(&p).await.unwrap();
    let got = s.jobs(&["arn:a".into(), "arn:b".into()]).await.unwrap();
    let a = got[0].as_ref().unwrap();
    assert_eq!(a.outcome, Outcome::Synced);
    assert_eq!(a.deliveries["file"].receipt.ids["path"], "x");
    assert_eq!(a.basis.config_digest, "", "decided once more under the new engine");
    let b = got[1].as_ref().unwrap();
    assert!(b.parked && b.reason.as_deref() == Some("boom"));
    assert!(s.cursor("poll").await.unwrap().unwrap().watermark.is_some(), "the daemon's cursor is the poll cursor now");
}

#[tokio::test]
async fn damaged_and_foreign_files_are_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database at all, just some text that is long enough to look like a file header..............")
        .unwrap();
    let before = std::fs::read(&garbage).unwrap();
    let e = SqliteState::open(&garbage).await.err().unwrap();
    assert!(e.to_string().contains("not a usable sagesync state database"), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(std::fs::read(&garbage).unwrap(), before);
    let foreign = dir.path().join("foreign.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('x');").unwrap();
    }
    let e = SqliteState::open(&foreign).await.err().unwrap();
    assert!(e.to_string().contains("another application") && e.to_string().contains("users"), "{e}");
    let c = rusqlite::Connection::open(&foreign).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

/// Issue 20: a file of schema 4, whose deliveries told their state by marker values (a pending
/// intent by `record_digest = 'pending'` with its names in receipt ids, a kept record by
/// `'kept'`), is migrated to typed states; a written delivery keeps its digests.
#[tokio::test]
async fn a_schema_4_file_gets_typed_delivery_states() {
    use sagesync_core::DeliveryState;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v4.db");
    {
        let mut c = rusqlite::Connection::open(&p).unwrap();
        c.pragma_update(None, "application_id", sagesync_state_sqlite::APPLICATION_ID).unwrap();
        sagesync_state_sqlite::schema::migrations().to_version(&mut c, 4).unwrap();
        c.execute_batch(
            "INSERT INTO jobs (arn, job, last_modified, tags_digest, config_digest, outcome, reason, record_digest, attempts, parked, next_attempt_at, pass, updated_at, permanent_failures, listed)
                 VALUES ('arn:a', 'a', NULL, NULL, 'c', 'failed', NULL, NULL, 0, 0, NULL, NULL, '2026-01-01T00:00:00.000Z', 0, NULL);
             INSERT INTO deliveries (arn, sink, record_digest, sink_digest, receipt, at) VALUES
                 ('arn:a', 'file', 'pending', '', '{\"sink\":\"file\",\"write\":\"created\",\"ids\":{\"pending_project\":\"p\",\"pending_experiment\":\"e\",\"pending_run\":\"r\"},\"writes\":0}', '2026-01-01T00:00:00.000Z'),
                 ('arn:a', 'v1', 'kept', 'sd', '{\"sink\":\"v1\",\"write\":\"created\",\"ids\":{\"run_id\":\"7\"},\"writes\":3}', '2026-01-01T00:00:00.000Z'),
                 ('arn:a', 'v2', 'abc', 'sd2', '{\"sink\":\"v2\",\"write\":\"created\",\"ids\":{\"run_id\":\"9\"},\"writes\":2}', '2026-01-01T00:00:00.000Z');",
        )
        .unwrap();
    }
    let s = SqliteState::open(&p).await.unwrap();
    let a = s.jobs(&["arn:a".into()]).await.unwrap().remove(0).unwrap();
    let names = a.deliveries["file"].pending_names().expect("pending");
    assert_eq!((names.project.as_str(), names.experiment.as_str(), names.run.as_str()), ("p", "e", "r"));
    assert!(a.deliveries["file"].receipt.ids.is_empty(), "the names left the receipt");
    assert_eq!(a.deliveries["v1"].state, DeliveryState::Kept(None));
    assert_eq!(a.deliveries["v1"].receipt.ids["run_id"], "7");
    assert!(a.deliveries["v2"].holds("abc", "sd2"));
    let c = rusqlite::Connection::open(&p).unwrap();
    let v: String = c.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(v, "5");
    // A process of the previous release, still holding the file, writes an intent the old
    // way: `state` takes its default, and the reader goes by the marker.
    c.execute_batch(
        "INSERT INTO deliveries (arn, sink, record_digest, sink_digest, receipt, at) VALUES
             ('arn:a', 'mlflow', 'pending', '', '{\"sink\":\"mlflow\",\"write\":\"created\",\"ids\":{\"pending_project\":\"p2\",\"pending_experiment\":\"e2\",\"pending_run\":\"r2\"},\"writes\":0}', '2026-01-01T00:00:00.000Z');",
    )
    .unwrap();
    let a = s.jobs(&["arn:a".into()]).await.unwrap().remove(0).unwrap();
    assert_eq!(a.deliveries["mlflow"].pending_names().map(|n| n.run.as_str()), Some("r2"));
    // What this release writes, that process reads: the marker and the names as receipt ids.
    let sagesync_core::Acquired::Granted { lease, .. } = s.acquire("arn:a", "t", std::time::Duration::from_secs(60)).await.unwrap() else {
        panic!("the lease is free")
    };
    assert!(s.commit(&lease, &a).await.unwrap());
    let (rd, receipt): (String, String) = c
        .query_row("SELECT record_digest, receipt FROM deliveries WHERE arn = 'arn:a' AND sink = 'file'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(rd, "pending");
    assert!(receipt.contains("\"pending_run\":\"r\""), "{receipt}");
}
