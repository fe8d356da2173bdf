//! Crash-safe state: the source cursor and a ledger of every job's last outcome, behind the
//! [`StateStore`] trait, with an embedded SQLite implementation ([`SqliteState`]).
//!
//! Every write is its own transaction (WAL journal, `synchronous = FULL`). A job's ledger row
//! is written after its sinks answered; the cursor after every job before it has a final
//! outcome. Killed at any instant, a restart re-lists from the cursor, skips what the ledger
//! already has at the same `LastModifiedTime`, and re-runs the rest through idempotent sinks:
//! no job lost, none duplicated.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::pipeline::{Decision, JobObserver, JobReport, Outcome};
use crate::traits::{Cursor, JobRef, SinkReceipt};

/// `PRAGMA application_id` of sagesync state files ("SGSY").
pub const APPLICATION_ID: i32 = 0x5347_5359;
/// Schema version.
pub const SCHEMA_VERSION: i32 = 1;

/// State store errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file is not a SQLite database, or is damaged.
    #[error("state file {path} is not a usable sagesync state database: {message}. It was left untouched; move it aside or point [state] path elsewhere")]
    Corrupt {
        /// File.
        path: String,
        /// What SQLite said.
        message: String,
    },
    /// A SQLite database that belongs to something else.
    #[error("state file {path} is a SQLite database of another application ({message}). It was left untouched; point [state] path elsewhere")]
    Foreign {
        /// File.
        path: String,
        /// What was found.
        message: String,
    },
    /// A newer schema than this build understands.
    #[error("state file {path} has schema version {found}; this sagesync understands up to {SCHEMA_VERSION}")]
    Version {
        /// File.
        path: String,
        /// Its version.
        found: i32,
    },
    /// Any other database error.
    #[error("state database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A stored value could not be read back.
    #[error("state database holds an unreadable value: {0}")]
    Decode(String),
}

/// One job in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Job ARN (the key).
    pub arn: String,
    /// Job name.
    pub job: String,
    /// `LastModifiedTime` of the version last processed.
    pub last_modified: Option<Timestamp>,
    /// Last outcome.
    pub outcome: Outcome,
    /// Its reason.
    pub reason: Option<String>,
    /// Receipts of the last successful writes.
    pub receipts: Vec<SinkReceipt>,
    /// Consecutive failed attempts (0 after a success).
    pub attempts: u32,
    /// Last error, when the last attempt failed.
    pub last_error: Option<String>,
    /// Failed too often: left alone until `sagesync retry`.
    pub parked: bool,
    /// Earliest time to retry a failed job.
    pub next_attempt_at: Option<Timestamp>,
    /// When the row was written.
    pub updated_at: Timestamp,
}

/// Counts by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCounts {
    /// Synced.
    pub synced: u64,
    /// Skipped.
    pub skipped: u64,
    /// Rejected.
    pub rejected: u64,
    /// Failed (including parked).
    pub failed: u64,
    /// Parked.
    pub parked: u64,
}

/// Where the cursor and the ledger live.
pub trait StateStore: Send + Sync {
    /// The saved cursor of a source key.
    fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError>;
    /// Saves the cursor of a source key.
    fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError>;
    /// Records a job's outcome; failures count attempts and park after `max_attempts`.
    fn record(&self, report: &JobReport, retry: &RetryPolicy) -> Result<Option<LedgerEntry>, StateError>;
    /// One entry.
    fn entry(&self, arn: &str) -> Result<Option<LedgerEntry>, StateError>;
    /// Every entry, oldest first.
    fn entries(&self) -> Result<Vec<LedgerEntry>, StateError>;
    /// Unparks failed jobs (by name or ARN; all failed jobs when `jobs` is empty) and returns
    /// them.
    fn unpark(&self, jobs: &[String]) -> Result<Vec<LedgerEntry>, StateError>;
    /// Counts by outcome.
    fn counts(&self) -> Result<LedgerCounts, StateError> {
        let mut c = LedgerCounts::default();
        for e in self.entries()? {
            match e.outcome {
                Outcome::Synced => c.synced += 1,
                Outcome::Skipped => c.skipped += 1,
                Outcome::Rejected => c.rejected += 1,
                Outcome::Failed => c.failed += 1,
            }
            c.parked += u64::from(e.parked);
        }
        Ok(c)
    }
}

/// How failed jobs are retried across polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Failed attempts before a job is parked.
    pub max_job_attempts: u32,
    /// Delay before the second attempt, seconds; doubles per failure.
    pub retry_backoff_secs: u64,
    /// Cap on the delay, seconds.
    pub max_retry_backoff_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_job_attempts: 5, retry_backoff_secs: 60, max_retry_backoff_secs: 3600 }
    }
}

impl RetryPolicy {
    fn delay(&self, attempts: u32) -> chrono::Duration {
        let secs = self.retry_backoff_secs.saturating_mul(1u64 << attempts.saturating_sub(1).min(20)).min(self.max_retry_backoff_secs);
        chrono::Duration::seconds(secs as i64)
    }
}

/// `[state]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    /// The SQLite file, relative to the working directory (default `sagesync-state.db`).
    pub path: PathBuf,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings { path: PathBuf::from("sagesync-state.db") }
    }
}

/// The embedded SQLite store (one file).
pub struct SqliteState {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn parse_ts(s: Option<String>) -> Result<Option<Timestamp>, StateError> {
    s.map(|s| chrono::DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(|e| StateError::Decode(format!("timestamp `{s}`: {e}")))).transpose()
}

fn outcome_from(s: &str) -> Result<Outcome, StateError> {
    Ok(match s {
        "synced" => Outcome::Synced,
        "skipped" => Outcome::Skipped,
        "rejected" => Outcome::Rejected,
        "failed" => Outcome::Failed,
        other => return Err(StateError::Decode(format!("outcome `{other}`"))),
    })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (source TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    arn TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    last_modified TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    receipts TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    parked INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_job ON ledger (job);
";

impl SqliteState {
    /// Opens (or creates) the state file. A file that is not a sagesync state database is an
    /// error, never silently reset.
    pub fn open(path: &Path) -> Result<SqliteState, StateError> {
        let p = path.display().to_string();
        let corrupt = |e: rusqlite::Error| StateError::Corrupt { path: p.clone(), message: e.to_string() };
        let existed = path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Corrupt { path: p.clone(), message: format!("cannot create its directory: {e}") })?;
        }
        let conn = Connection::open(path).map_err(corrupt)?;
        // Reading the header is what detects a non-database file.
        let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(corrupt)?;
        let tables: Vec<String> = {
            let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").map_err(corrupt)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(corrupt)?;
            rows.collect::<Result<_, _>>().map_err(corrupt)?
        };
        if existed || !tables.is_empty() {
            if app_id != APPLICATION_ID {
                let what = if tables.is_empty() { format!("application_id {app_id:#x}, no tables") } else { format!("application_id {app_id:#x}, tables: {}", tables.join(", ")) };
                return Err(StateError::Foreign { path: p, message: what });
            }
            let version: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional().map_err(corrupt)?;
            let v: i32 = version.as_deref().unwrap_or("0").parse().unwrap_or(0);
            if v > SCHEMA_VERSION {
                return Err(StateError::Version { path: p, found: v });
            }
            if v < 1 {
                return Err(StateError::Corrupt { path: p, message: "no schema version".into() });
            }
            let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(corrupt)?;
            if check != "ok" {
                return Err(StateError::Corrupt { path: p, message: format!("integrity check: {check}") });
            }
        }
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(corrupt)?;
        if !existed && tables.is_empty() {
            // Two processes may create the file at once: every statement is idempotent.
            conn.execute_batch(&format!("BEGIN IMMEDIATE; PRAGMA application_id = {APPLICATION_ID}; {SCHEMA} INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}'), ('created_by', 'sagesync {}'); COMMIT;", env!("CARGO_PKG_VERSION")))?;
        }
        Ok(SqliteState { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, Option<String>, String, Option<String>, String, u32, Option<String>, bool, Option<String>, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?))
    }

    #[allow(clippy::type_complexity)]
    fn entry_from(t: (String, String, Option<String>, String, Option<String>, String, u32, Option<String>, bool, Option<String>, String)) -> Result<LedgerEntry, StateError> {
        Ok(LedgerEntry {
            arn: t.0,
            job: t.1,
            last_modified: parse_ts(t.2)?,
            outcome: outcome_from(&t.3)?,
            reason: t.4,
            receipts: serde_json::from_str(&t.5).map_err(|e| StateError::Decode(format!("receipts: {e}")))?,
            attempts: t.6,
            last_error: t.7,
            parked: t.8,
            next_attempt_at: parse_ts(t.9)?,
            updated_at: parse_ts(Some(t.10))?.unwrap_or_else(Utc::now),
        })
    }
}

const COLUMNS: &str = "arn, job, last_modified, outcome, reason, receipts, attempts, last_error, parked, next_attempt_at, updated_at";

impl StateStore for SqliteState {
    fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError> {
        let c = self.lock();
        let s: Option<String> = c.query_row("SELECT cursor FROM cursors WHERE source = ?1", [key], |r| r.get(0)).optional()?;
        s.map(|s| serde_json::from_str(&s).map_err(|e| StateError::Decode(format!("cursor: {e}")))).transpose()
    }

    fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError> {
        let json = serde_json::to_string(cursor).map_err(|e| StateError::Decode(e.to_string()))?;
        self.lock().execute("INSERT INTO cursors (source, cursor, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT(source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at", params![key, json, ts(Some(Utc::now()))])?;
        Ok(())
    }

    fn record(&self, r: &JobReport, retry: &RetryPolicy) -> Result<Option<LedgerEntry>, StateError> {
        let Some(arn) = r.arn.as_deref() else { return Ok(None) };
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let prev: Option<(u32, Option<String>)> = tx.query_row("SELECT attempts, receipts FROM ledger WHERE arn = ?1", [arn], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
        let now = Utc::now();
        let (attempts, parked, next, last_error, receipts) = if r.outcome == Outcome::Failed {
            let attempts = prev.as_ref().map(|p| p.0).unwrap_or(0) + 1;
            let parked = !r.retryable || attempts >= retry.max_job_attempts;
            let next = if parked { None } else { Some(now + retry.delay(attempts)) };
            // Keep the receipts of the last success; add what this attempt wrote.
            let mut receipts: Vec<SinkReceipt> = prev.as_ref().and_then(|p| p.1.as_deref()).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
            for rc in &r.receipts {
                receipts.retain(|x| x.sink != rc.sink);
                receipts.push(rc.clone());
            }
            (attempts, parked, next, r.reason.clone(), receipts)
        } else {
            (0, false, None, None, r.receipts.clone())
        };
        let receipts_json = serde_json::to_string(&receipts).map_err(|e| StateError::Decode(e.to_string()))?;
        tx.execute(
            &format!("INSERT INTO ledger ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(arn) DO UPDATE SET job = excluded.job, last_modified = excluded.last_modified, outcome = excluded.outcome, reason = excluded.reason,
             receipts = excluded.receipts, attempts = excluded.attempts, last_error = excluded.last_error, parked = excluded.parked,
             next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at"),
            params![arn, r.job, ts(r.last_modified), r.outcome.as_str(), r.reason, receipts_json, attempts, last_error, parked, ts(next), ts(Some(now))],
        )?;
        tx.commit()?;
        drop(conn);
        self.entry(arn)
    }

    fn entry(&self, arn: &str) -> Result<Option<LedgerEntry>, StateError> {
        let c = self.lock();
        let t = c.query_row(&format!("SELECT {COLUMNS} FROM ledger WHERE arn = ?1"), [arn], Self::row).optional()?;
        t.map(Self::entry_from).transpose()
    }

    fn entries(&self) -> Result<Vec<LedgerEntry>, StateError> {
        let c = self.lock();
        let mut st = c.prepare(&format!("SELECT {COLUMNS} FROM ledger ORDER BY last_modified, arn"))?;
        let rows = st.query_map([], Self::row)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(Self::entry_from).collect()
    }

    fn unpark(&self, jobs: &[String]) -> Result<Vec<LedgerEntry>, StateError> {
        let failed: Vec<LedgerEntry> = self.entries()?.into_iter().filter(|e| e.outcome == Outcome::Failed).filter(|e| jobs.is_empty() || jobs.iter().any(|j| j == &e.job || j == &e.arn)).collect();
        let c = self.lock();
        for e in &failed {
            c.execute("UPDATE ledger SET parked = 0, attempts = 0, next_attempt_at = NULL WHERE arn = ?1", [&e.arn])?;
        }
        Ok(failed)
    }
}

/// A [`JobObserver`] that keeps the ledger and the cursor: skips jobs the ledger already has at
/// the same version (and parked ones), defers failed jobs until their backoff ends, records
/// every outcome and saves the cursor after each page.
pub struct LedgerObserver<'a> {
    state: &'a dyn StateStore,
    key: String,
    retry: RetryPolicy,
    error: Mutex<Option<StateError>>,
    inner: Option<&'a dyn JobObserver>,
}

impl<'a> LedgerObserver<'a> {
    /// Observes for the cursor `key` (one per source / backfill).
    pub fn new(state: &'a dyn StateStore, key: impl Into<String>, retry: RetryPolicy) -> Self {
        LedgerObserver { state, key: key.into(), retry, error: Mutex::new(None), inner: None }
    }
    /// Also forwards every report to `inner` (progress, metrics).
    pub fn with(mut self, inner: &'a dyn JobObserver) -> Self {
        self.inner = Some(inner);
        self
    }
    /// The first state error met, if any (the run should stop and report it).
    pub fn take_error(&self) -> Option<StateError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
    fn fail(&self, e: StateError) {
        tracing::error!(error = %e, "state write failed");
        let mut g = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }
}

impl JobObserver for LedgerObserver<'_> {
    fn on_job(&self, report: &JobReport) {
        if let Err(e) = self.state.record(report, &self.retry) {
            self.fail(e);
        }
        if let Some(i) = self.inner {
            i.on_job(report);
        }
    }

    fn decide(&self, job: &JobRef) -> Decision {
        let Some(arn) = job.arn.as_deref() else { return Decision::Process };
        let entry = match self.state.entry(arn) {
            Ok(e) => e,
            Err(e) => {
                self.fail(e);
                return Decision::Later;
            }
        };
        let d = match entry {
            None => Decision::Process,
            Some(e) if e.last_modified != job.last_modified || job.last_modified.is_none() => Decision::Process,
            Some(e) if e.outcome != Outcome::Failed => Decision::Done,
            Some(e) if e.parked => Decision::Done,
            Some(e) if e.next_attempt_at.is_some_and(|t| t > Utc::now()) => Decision::Later,
            Some(_) => Decision::Process,
        };
        if let Some(i) = self.inner {
            if d != Decision::Process {
                return d;
            }
            return i.decide(job);
        }
        d
    }

    fn on_cursor(&self, cursor: &Cursor) {
        if let Err(e) = self.state.save_cursor(&self.key, cursor) {
            self.fail(e);
        }
        if let Some(i) = self.inner {
            i.on_cursor(cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(arn: &str, outcome: Outcome, retryable: bool) -> JobReport {
        JobReport { job: arn.rsplit('/').next().unwrap_or(arn).into(), arn: Some(arn.into()), outcome, reason: Some("r".into()), stage: None, receipts: vec![], attempts: 1, last_modified: Some("2026-01-01T00:00:00Z".parse().unwrap()), retryable, failed_sinks: vec![] }
    }

    #[test]
    fn ledger_parks_after_max_attempts_and_unparks() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteState::open(&dir.path().join("s.db")).unwrap();
        let policy = RetryPolicy { max_job_attempts: 3, retry_backoff_secs: 1, max_retry_backoff_secs: 10 };
        for i in 1..=3 {
            let e = s.record(&report("arn:x/j", Outcome::Failed, true), &policy).unwrap().unwrap();
            assert_eq!(e.attempts, i);
            assert_eq!(e.parked, i == 3);
        }
        assert_eq!(s.counts().unwrap(), LedgerCounts { failed: 1, parked: 1, ..Default::default() });
        let un = s.unpark(&["j".into()]).unwrap();
        assert_eq!(un.len(), 1);
        assert!(!s.entry("arn:x/j").unwrap().unwrap().parked);
        let e = s.record(&report("arn:x/j", Outcome::Synced, false), &policy).unwrap().unwrap();
        assert_eq!((e.attempts, e.parked, e.last_error), (0, false, None));
        // Non-retryable failures park at once.
        let e = s.record(&report("arn:x/k", Outcome::Failed, false), &policy).unwrap().unwrap();
        assert!(e.parked);
    }

    #[test]
    fn cursor_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mut c = Cursor::default();
        c.advance(Some("2026-01-01T00:00:00Z".parse().unwrap()), "arn:a");
        {
            let s = SqliteState::open(&p).unwrap();
            assert_eq!(s.cursor("k").unwrap(), None);
            s.save_cursor("k", &c).unwrap();
        }
        let s = SqliteState::open(&p).unwrap();
        assert_eq!(s.cursor("k").unwrap(), Some(c));
    }

    #[test]
    fn corrupt_and_foreign_files_are_errors_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, b"this is not a database at all, just some text that is long enough to look like a file header..............").unwrap();
        let before = std::fs::read(&garbage).unwrap();
        let e = SqliteState::open(&garbage).err().unwrap();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("not a usable sagesync state database"), "{e}");
        assert_eq!(std::fs::read(&garbage).unwrap(), before);

        let foreign = dir.path().join("foreign.db");
        {
            let c = Connection::open(&foreign).unwrap();
            c.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('x');").unwrap();
        }
        let e = SqliteState::open(&foreign).err().unwrap();
        assert!(matches!(e, StateError::Foreign { .. }), "{e}");
        assert!(e.to_string().contains("users"), "{e}");
        let c = Connection::open(&foreign).unwrap();
        let n: i64 = c.query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
    }
}
