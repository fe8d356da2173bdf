//! The store itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use sagesync_core::state::CountClass;
use sagesync_core::{Acquired, Basis, Cursor, Delivery, JobState, Lease, LedgerCounts, Outcome, StateError, StateStore, Timestamp};

use super::schema::migrations;

/// `PRAGMA application_id` of sagesync state files ("SGSY").
pub const APPLICATION_ID: i32 = 0x5347_5359;

/// The SQLite store. The file is opened (and created or migrated) on first use.
pub struct SqliteState {
    path: PathBuf,
    busy_ms: u64,
    conn: tokio::sync::OnceCell<Arc<Mutex<Connection>>>,
}

fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn parse_ts(s: Option<String>, loc: &str) -> Result<Option<Timestamp>, StateError> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StateError::Decode { location: loc.into(), message: format!("time `{s}`: {e}") })
    })
    .transpose()
}

impl SqliteState {
    /// A store over `path` (created on first use); writers wait up to `busy_ms` for each other.
    pub fn new(path: impl Into<PathBuf>, busy_ms: u64) -> Self {
        SqliteState { path: path.into(), busy_ms, conn: tokio::sync::OnceCell::new() }
    }

    /// Opens the file now (tests and start-up checks).
    pub async fn open(path: &Path) -> Result<SqliteState, StateError> {
        let s = SqliteState::new(path, 10_000);
        s.connection().await?;
        Ok(s)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn loc(&self) -> String {
        format!("sqlite state {}", self.path.display())
    }

    async fn connection(&self) -> Result<Arc<Mutex<Connection>>, StateError> {
        self.conn
            .get_or_try_init(|| async {
                let path = self.path.clone();
                let busy = self.busy_ms;
                let loc = self.loc();
                let conn = tokio::task::spawn_blocking(move || open_file(&path, busy, &loc)).await.map_err(|e| StateError::Backend {
                    location: self.loc(),
                    message: format!("open task failed: {e}"),
                    retryable: true,
                })??;
                Ok::<_, StateError>(Arc::new(Mutex::new(conn)))
            })
            .await
            .cloned()
    }

    /// Runs `f` with the connection on a blocking thread.
    /// Writes `e` under `lease` in one transaction; releases the lease too when `release`.
    async fn write(&self, lease: &Lease, e: &JobState, release: bool) -> Result<bool, StateError> {
        let (lease, e) = (lease.clone(), e.clone());
        self.with(move |c, loc| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|x| err(loc, x))?;
            if !holds(&lease_row(&tx, &lease.arn, loc)?, &lease) {
                return Ok(false);
            }
            write_entry(&tx, &e, loc)?;
            if release {
                tx.execute("UPDATE leases SET owner = NULL, expires_at = NULL WHERE arn = ?1", [&e.arn]).map_err(|x| err(loc, x))?;
            }
            tx.commit().map_err(|x| err(loc, x))?;
            Ok(true)
        })
        .await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let conn = self.connection().await?;
        let loc = self.loc();
        tokio::task::spawn_blocking(move || {
            let mut g = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut g, &loc)
        })
        .await
        .map_err(|e| StateError::Backend { location: self.loc(), message: format!("state task failed: {e}"), retryable: true })?
    }
}

fn err(loc: &str, e: rusqlite::Error) -> StateError {
    let retryable = matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked));
    StateError::Backend { location: loc.into(), message: e.to_string(), retryable }
}

/// Opens, checks and migrates the file under an exclusive lock on `<file>.lock`, so that two
/// first starts never race between the header check and the schema creation.
fn open_file(path: &Path, busy_ms: u64, loc: &str) -> Result<Connection, StateError> {
    let unusable = |m: String| StateError::Unusable { location: loc.into(), message: m };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| unusable(format!("cannot create its directory: {e}")))?;
    }
    let lock_path =
        path.with_extension(format!("{}lock", path.extension().map(|e| format!("{}.", e.to_string_lossy())).unwrap_or_default()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| unusable(format!("cannot open its lock file {}: {e}", lock_path.display())))?;
    let deadline = Instant::now() + Duration::from_millis(busy_ms.max(1000) * 3);
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Backend {
                    location: loc.into(),
                    message: format!("another process holds {} (it is opening the state file)", lock_path.display()),
                    retryable: true,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(unusable(format!("cannot lock {}: {e}", lock_path.display()))),
        }
    }
    let bad = |e: rusqlite::Error| {
        unusable(format!("not a usable sagesync state database: {e}. It was left untouched; move it aside or point [state] path elsewhere"))
    };
    let mut conn = Connection::open(path).map_err(bad)?;
    conn.busy_timeout(Duration::from_millis(busy_ms)).map_err(bad)?;
    // Reading the header is what detects a file that is not a database.
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(bad)?;
    let tables: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").map_err(bad)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(bad)?;
        rows.collect::<Result<_, _>>().map_err(bad)?
    };
    if app_id != APPLICATION_ID && (app_id != 0 || !tables.is_empty()) {
        let what = if tables.is_empty() {
            format!("application_id {app_id:#x}, no tables")
        } else {
            format!("application_id {app_id:#x}, tables: {}", tables.join(", "))
        };
        return Err(unusable(format!(
            "a SQLite database of another application ({what}). It was left untouched; point [state] path elsewhere"
        )));
    }
    let fresh = tables.is_empty();
    if !fresh {
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(bad)?;
        if check != "ok" {
            return Err(unusable(format!("integrity check failed: {check}. It was left untouched")));
        }
    }
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(bad)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(bad)?;
    // The newest schema this build knows is the number of its migrations.
    let latest = super::schema::latest();
    if version > latest {
        return Err(unusable(format!("schema version {version}; this sagesync understands up to {latest}. It was left untouched")));
    }
    migrations().to_latest(&mut conn).map_err(|e| unusable(format!("cannot migrate the schema: {e}")))?;
    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};")).map_err(bad)?;
    if fresh {
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_by', ?1)",
            [format!("sagesync {}", env!("CARGO_PKG_VERSION"))],
        )
        .map_err(bad)?;
    }
    drop(lock);
    Ok(conn)
}

const JOB_COLUMNS: &str =
    "arn, job, last_modified, tags_digest, config_digest, outcome, reason, record_digest, attempts, parked, next_attempt_at, pass, updated_at, permanent_failures, listed";

fn read_job(r: &rusqlite::Row<'_>, loc: &str) -> rusqlite::Result<Result<JobState, StateError>> {
    let outcome: String = r.get(5)?;
    let (lm, next, upd): (Option<String>, Option<String>, String) = (r.get(2)?, r.get(10)?, r.get(12)?);
    let build = || -> Result<JobState, StateError> {
        Ok(JobState {
            arn: r.get(0).map_err(|e| err(loc, e))?,
            job: r.get(1).map_err(|e| err(loc, e))?,
            basis: Basis {
                last_modified: parse_ts(lm.clone(), loc)?,
                tags_digest: r.get(3).map_err(|e| err(loc, e))?,
                config_digest: r.get(4).map_err(|e| err(loc, e))?,
                listed: parse_ts(r.get(14).map_err(|e| err(loc, e))?, loc)?,
            },
            outcome: Outcome::parse(&outcome)
                .ok_or_else(|| StateError::Decode { location: loc.into(), message: format!("outcome `{outcome}`") })?,
            reason: r.get(6).map_err(|e| err(loc, e))?,
            record_digest: r.get(7).map_err(|e| err(loc, e))?,
            deliveries: BTreeMap::new(),
            attempts: r.get(8).map_err(|e| err(loc, e))?,
            permanent_failures: r.get(13).map_err(|e| err(loc, e))?,
            parked: r.get(9).map_err(|e| err(loc, e))?,
            next_attempt_at: parse_ts(next.clone(), loc)?,
            pass: r.get(11).map_err(|e| err(loc, e))?,
            updated_at: parse_ts(Some(upd.clone()), loc)?.unwrap_or_else(Utc::now),
        })
    };
    Ok(build())
}

fn query_jobs(c: &Connection, loc: &str, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<JobState>, StateError> {
    let mut st = c.prepare(sql).map_err(|e| err(loc, e))?;
    let rows = st.query_map(args, |r| read_job(r, loc)).map_err(|e| err(loc, e))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(|e| err(loc, e))??);
    }
    add_deliveries(c, loc, &mut out)?;
    Ok(out)
}

fn add_deliveries(c: &Connection, loc: &str, jobs: &mut [JobState]) -> Result<(), StateError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; jobs.len()].join(",");
    let mut st = c
        .prepare(&format!(
            "SELECT arn, sink, state, record_digest, sink_digest, pending, receipt, at FROM deliveries WHERE arn IN ({marks})"
        ))
        .map_err(|e| err(loc, e))?;
    let rows = st
        .query_map(params_from_iter(jobs.iter().map(|j| j.arn.clone())), |r| {
            Ok(DeliveryRow {
                arn: r.get(0)?,
                sink: r.get(1)?,
                state: r.get(2)?,
                record_digest: r.get(3)?,
                sink_digest: r.get(4)?,
                pending: r.get(5)?,
                receipt: r.get(6)?,
                at: r.get(7)?,
            })
        })
        .map_err(|e| err(loc, e))?;
    let mut by_arn: BTreeMap<String, BTreeMap<String, Delivery>> = BTreeMap::new();
    for row in rows {
        let row = row.map_err(|e| err(loc, e))?;
        let decode = |what: &str, e: serde_json::Error| StateError::Decode { location: loc.into(), message: format!("{what}: {e}") };
        let receipt = serde_json::from_str(&row.receipt).map_err(|e| decode("receipt", e))?;
        let pending = row.pending.as_deref().map(serde_json::from_str).transpose().map_err(|e| decode("pending", e))?;
        let at = parse_ts(Some(row.at), loc)?.unwrap_or_else(Utc::now);
        // A row of `written` beside an old marker was written by a process of the previous
        // release into a migrated file: `from_stored` reads it by the marker.
        let d = Delivery::from_stored(Some(&row.state), row.record_digest, row.sink_digest, pending, receipt, at)
            .map_err(|message| StateError::Decode { location: loc.into(), message })?;
        by_arn.entry(row.arn).or_default().insert(row.sink, d);
    }
    for j in jobs.iter_mut() {
        if let Some(d) = by_arn.remove(&j.arn) {
            j.deliveries = d;
        }
    }
    Ok(())
}

/// One row of `deliveries`: the state by name (`written`, `pending`, `kept`), the digests of a
/// written record, the names of a pending one (JSON).
struct DeliveryRow {
    arn: String,
    sink: String,
    state: String,
    record_digest: String,
    sink_digest: String,
    pending: Option<String>,
    receipt: String,
    at: String,
}

/// A lease row: owner, expiry (ms), fencing counter.
type LeaseRow = (Option<String>, Option<i64>, i64);

fn lease_row(tx: &rusqlite::Transaction<'_>, arn: &str, loc: &str) -> Result<Option<LeaseRow>, StateError> {
    tx.query_row("SELECT owner, expires_at, fence FROM leases WHERE arn = ?1", [arn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(|e| err(loc, e))
}

/// Writes a job's entry and its deliveries inside `tx`.
fn write_entry(tx: &rusqlite::Transaction<'_>, e: &JobState, loc: &str) -> Result<(), StateError> {
    tx.execute(
        &format!("INSERT OR REPLACE INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            e.arn,
            e.job,
            e.basis.last_modified.map(ts),
            e.basis.tags_digest,
            e.basis.config_digest,
            e.outcome.as_str(),
            e.reason,
            e.record_digest,
            e.attempts,
            e.parked,
            e.next_attempt_at.map(ts),
            e.pass,
            ts(e.updated_at),
            e.permanent_failures,
            e.basis.listed.map(ts)
        ],
    )
    .map_err(|x| err(loc, x))?;
    tx.execute("DELETE FROM deliveries WHERE arn = ?1", [&e.arn]).map_err(|x| err(loc, x))?;
    for (sink, d) in &e.deliveries {
        let encode = |x: serde_json::Error| StateError::Decode { location: loc.into(), message: x.to_string() };
        // The stored form carries the previous release's markers too (see `StoredDelivery`).
        let stored = d.stored();
        let receipt = serde_json::to_string(&stored.receipt).map_err(encode)?;
        let pending = stored.pending.as_ref().map(serde_json::to_string).transpose().map_err(encode)?;
        tx.execute(
            "INSERT INTO deliveries (arn, sink, state, record_digest, sink_digest, pending, receipt, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![e.arn, sink, stored.state, stored.record_digest, stored.sink_digest, pending, receipt, ts(d.at)],
        )
        .map_err(|x| err(loc, x))?;
    }
    Ok(())
}

fn holds(row: &Option<(Option<String>, Option<i64>, i64)>, lease: &Lease) -> bool {
    matches!(row, Some((Some(o), _, f)) if o == &lease.owner && *f as u64 == lease.fence)
}

#[async_trait]
impl StateStore for SqliteState {
    fn location(&self) -> String {
        self.loc()
    }

    async fn cursor(&self, key: &str) -> Result<Option<Cursor>, StateError> {
        let key = key.to_string();
        self.with(move |c, loc| {
            let s: Option<String> =
                c.query_row("SELECT cursor FROM cursors WHERE key = ?1", [&key], |r| r.get(0)).optional().map_err(|e| err(loc, e))?;
            s.map(|s| serde_json::from_str(&s).map_err(|e| StateError::Decode { location: loc.into(), message: format!("cursor: {e}") }))
                .transpose()
        })
        .await
    }

    async fn save_cursor(&self, key: &str, cursor: &Cursor) -> Result<(), StateError> {
        let key = key.to_string();
        let json = serde_json::to_string(cursor).map_err(|e| StateError::Decode { location: self.loc(), message: e.to_string() })?;
        self.with(move |c, loc| {
            c.execute("INSERT INTO cursors (key, cursor, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT(key) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at", params![key, json, ts(Utc::now())]).map_err(|e| err(loc, e))?;
            Ok(())
        })
        .await
    }

    async fn cursors(&self) -> Result<Vec<(String, Cursor)>, StateError> {
        self.with(|c, loc| {
            let mut st = c.prepare("SELECT key, cursor FROM cursors ORDER BY key").map_err(|e| err(loc, e))?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| err(loc, e))?;
            let mut out = Vec::new();
            for row in rows {
                let (k, v) = row.map_err(|e| err(loc, e))?;
                out.push((
                    k,
                    serde_json::from_str(&v).map_err(|e| StateError::Decode { location: loc.into(), message: format!("cursor: {e}") })?,
                ));
            }
            Ok(out)
        })
        .await
    }

    async fn jobs(&self, arns: &[String]) -> Result<Vec<Option<JobState>>, StateError> {
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let arns = arns.to_vec();
        self.with(move |c, loc| {
            let mut found: BTreeMap<String, JobState> = BTreeMap::new();
            for chunk in arns.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut st = c.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE arn IN ({marks})")).map_err(|e| err(loc, e))?;
                let rows = st.query_map(params_from_iter(chunk.iter()), |r| read_job(r, loc)).map_err(|e| err(loc, e))?;
                let mut part = Vec::new();
                for r in rows {
                    part.push(r.map_err(|e| err(loc, e))??);
                }
                add_deliveries(c, loc, &mut part)?;
                found.extend(part.into_iter().map(|j| (j.arn.clone(), j)));
            }
            Ok(arns.iter().map(|a| found.get(a).cloned()).collect())
        })
        .await
    }

    async fn acquire(&self, arn: &str, owner: &str, ttl: Duration) -> Result<Acquired, StateError> {
        let (arn, owner) = (arn.to_string(), owner.to_string());
        self.with(move |c, loc| {
            let now = Utc::now();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| err(loc, e))?;
            let row = lease_row(&tx, &arn, loc)?;
            if let Some((Some(holder), Some(exp), _)) = &row {
                if *exp > now.timestamp_millis() {
                    let expires_at = DateTime::<Utc>::from_timestamp_millis(*exp).unwrap_or(now);
                    return Ok(Acquired::Held { owner: holder.clone(), expires_at });
                }
            }
            let fence = row.map(|r| r.2).unwrap_or(0) + 1;
            let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            tx.execute("INSERT INTO leases (arn, owner, expires_at, fence) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(arn) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, fence = excluded.fence", params![arn, owner, expires_at.timestamp_millis(), fence]).map_err(|e| err(loc, e))?;
            let mut state = query_jobs(&tx, loc, &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE arn = ?1"), &[&arn])?;
            tx.commit().map_err(|e| err(loc, e))?;
            Ok(Acquired::Granted { lease: Lease { arn, owner, fence: fence as u64, expires_at }, state: state.pop().map(Box::new) })
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StateError> {
        let lease = lease.clone();
        self.with(move |c, loc| {
            let exp = (Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)).timestamp_millis();
            let n = c
                .execute(
                    "UPDATE leases SET expires_at = ?1 WHERE arn = ?2 AND owner = ?3 AND fence = ?4",
                    params![exp, lease.arn, lease.owner, lease.fence as i64],
                )
                .map_err(|e| err(loc, e))?;
            Ok(n == 1)
        })
        .await
    }

    async fn commit(&self, lease: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.write(lease, e, true).await
    }

    async fn record(&self, lease: &Lease, e: &JobState) -> Result<bool, StateError> {
        self.write(lease, e, false).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StateError> {
        let lease = lease.clone();
        self.with(move |c, loc| {
            c.execute(
                "UPDATE leases SET owner = NULL, expires_at = NULL WHERE arn = ?1 AND owner = ?2 AND fence = ?3",
                params![lease.arn, lease.owner, lease.fence as i64],
            )
            .map_err(|e| err(loc, e))?;
            Ok(())
        })
        .await
    }

    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        let after = after.unwrap_or("").to_string();
        self.with(move |c, loc| {
            query_jobs(c, loc, &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE outcome = 'failed' AND parked = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) AND arn > ?2 ORDER BY arn LIMIT ?3"), &[&ts(now), &after, &(limit as i64)])
        })
        .await
    }

    async fn failed(&self, after: Option<&str>, limit: usize) -> Result<Vec<JobState>, StateError> {
        let after = after.unwrap_or("").to_string();
        self.with(move |c, loc| {
            query_jobs(
                c,
                loc,
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE outcome = 'failed' AND arn > ?1 ORDER BY arn LIMIT ?2"),
                &[&after, &(limit as i64)],
            )
        })
        .await
    }

    async fn unpark(&self, jobs: &[String]) -> Result<Vec<String>, StateError> {
        let jobs = jobs.to_vec();
        self.with(move |c, loc| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| err(loc, e))?;
            let arns: Vec<String> = {
                let mut st = tx.prepare("SELECT arn, job FROM jobs WHERE outcome = 'failed' ORDER BY arn").map_err(|e| err(loc, e))?;
                let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(|e| err(loc, e))?;
                let mut out = Vec::new();
                for row in rows {
                    let (arn, job) = row.map_err(|e| err(loc, e))?;
                    if jobs.is_empty() || jobs.iter().any(|j| j == &arn || j == &job) {
                        out.push(arn);
                    }
                }
                out
            };
            for a in &arns {
                tx.execute("UPDATE jobs SET parked = 0, attempts = 0, permanent_failures = 0, next_attempt_at = NULL WHERE arn = ?1", [a])
                    .map_err(|e| err(loc, e))?;
            }
            tx.commit().map_err(|e| err(loc, e))?;
            Ok(arns)
        })
        .await
    }

    async fn counts(&self) -> Result<LedgerCounts, StateError> {
        self.with(|c, loc| {
            // A failed entry without attempts is a first write's intent (see `CountClass`).
            // Grouped in SQL by outcome and by the ARN up to its resource type
            // (`arn:aws:sagemaker:<region>:<account>:training-job`): a few rows per account,
            // region and kind, whatever the ledger's size.
            let mut st = c
                .prepare(
                    "SELECT substr(arn, 1, instr(arn, '/')) AS head, outcome, attempts = 0, count(*), sum(parked) FROM jobs GROUP BY head, outcome, attempts = 0",
                )
                .map_err(|e| err(loc, e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?, r.get::<_, Option<i64>>(4)?))
                })
                .map_err(|e| err(loc, e))?;
            let mut out = LedgerCounts::default();
            for row in rows {
                let (head, o, none, n, p) = row.map_err(|e| err(loc, e))?;
                let class = CountClass::of(Outcome::parse(&o).unwrap_or(Outcome::Failed), if none { 0 } else { 1 });
                out.add_jobs(&head, class, n.max(0) as u64, p.unwrap_or(0).max(0) as u64);
            }
            Ok(out)
        })
        .await
    }
}
