//! The schema and its migrations (`PRAGMA user_version`).

use rusqlite_migration::{Migrations, M};

/// Version 1 is the first release's ledger (one row per job, receipts as JSON); version 2 keeps
/// one row per job and one per (job, sink) delivery, plus leases; version 3 adds the count of
/// permanent failures; version 4 the time the reference that led to a decision carried
/// (`listed`, so that a duplicate event is known as done); version 5 a delivery's state in a
/// column of its own (`written`, `pending` with its names as JSON, `kept`) where marker values
/// of `record_digest` and receipt ids used to tell it. Version 1 files are migrated:
/// their entries come back with an empty configuration digest, so every job is decided once
/// more and delivered again where needed (the sinks are idempotent).
pub fn migrations() -> Migrations<'static> {
    Migrations::new(steps())
}

/// The newest schema version this build knows: the number of its migrations.
pub fn latest() -> i64 {
    steps().len() as i64
}

fn steps() -> Vec<M<'static>> {
    vec![
        M::up(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS ledger (arn TEXT PRIMARY KEY, job TEXT NOT NULL, last_modified TEXT, outcome TEXT NOT NULL, reason TEXT,
                 receipts TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, parked INTEGER NOT NULL DEFAULT 0,
                 next_attempt_at TEXT, updated_at TEXT NOT NULL);",
        ),
        M::up(
            "CREATE TABLE jobs (
                 arn TEXT PRIMARY KEY, job TEXT NOT NULL, last_modified TEXT, tags_digest TEXT, config_digest TEXT NOT NULL,
                 outcome TEXT NOT NULL, reason TEXT, record_digest TEXT, attempts INTEGER NOT NULL, parked INTEGER NOT NULL,
                 next_attempt_at TEXT, pass TEXT, updated_at TEXT NOT NULL);
             CREATE INDEX jobs_job ON jobs (job);
             CREATE INDEX jobs_failed ON jobs (outcome, parked, next_attempt_at);
             CREATE TABLE deliveries (arn TEXT NOT NULL, sink TEXT NOT NULL, record_digest TEXT NOT NULL, sink_digest TEXT NOT NULL,
                 receipt TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (arn, sink)) WITHOUT ROWID;
             CREATE TABLE leases (arn TEXT PRIMARY KEY, owner TEXT, expires_at INTEGER, fence INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO jobs SELECT arn, job, last_modified, NULL, '', outcome, COALESCE(last_error, reason), NULL, attempts, parked,
                 next_attempt_at, NULL, updated_at FROM ledger;
             INSERT INTO deliveries SELECT l.arn, json_extract(r.value, '$.sink'), '', '', r.value, l.updated_at
                 FROM ledger l, json_each(l.receipts) r WHERE json_extract(r.value, '$.sink') IS NOT NULL;
             DROP TABLE ledger;
             CREATE TABLE cursors2 (key TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
             INSERT INTO cursors2 SELECT CASE source WHEN 'daemon' THEN 'poll' ELSE source END, cursor, updated_at FROM cursors;
             DROP TABLE cursors;
             ALTER TABLE cursors2 RENAME TO cursors;
             INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '2');",
        ),
        // Version 3 counts permanent failures apart from retryable ones (only they park a job).
        // Existing failed entries start from zero: none is parked by the upgrade.
        M::up(
            "ALTER TABLE jobs ADD COLUMN permanent_failures INTEGER NOT NULL DEFAULT 0;
             INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '3');",
        ),
        // Version 4: the reference's time beside the job's own (NULL: the same, or unknown).
        M::up(
            "ALTER TABLE jobs ADD COLUMN listed TEXT;
             INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '4');",
        ),
        // Version 5: the delivery's state typed. Rows of version 4 told a pending delivery by
        // `record_digest = 'pending'` (its names in the receipt's ids `pending_project`,
        // `pending_experiment`, `pending_run`) and a kept one by `record_digest = 'kept'`. The
        // markers and ids stay (this release writes them too, for a process of the previous
        // one still using the file); readers go by `state`.
        M::up(
            "ALTER TABLE deliveries ADD COLUMN state TEXT NOT NULL DEFAULT 'written';
             ALTER TABLE deliveries ADD COLUMN pending TEXT;
             UPDATE deliveries SET state = 'pending',
                 pending = json_object('project', COALESCE(json_extract(receipt, '$.ids.pending_project'), ''),
                                       'experiment', COALESCE(json_extract(receipt, '$.ids.pending_experiment'), ''),
                                       'run', COALESCE(json_extract(receipt, '$.ids.pending_run'), ''))
                 WHERE record_digest = 'pending';
             UPDATE deliveries SET state = 'kept' WHERE record_digest = 'kept';
             INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '5');",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_migrations_are_valid_and_counted() {
        assert!(super::migrations().validate().is_ok());
        assert_eq!(super::latest(), 5);
    }
}
