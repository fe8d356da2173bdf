//! # sagesync-state-sqlite
//!
//! `[state] type = "sqlite"`: the ledger, the cursors and the per-job leases in one SQLite file
//! (WAL journal, `synchronous = FULL`). Every write is its own `BEGIN IMMEDIATE` transaction, so
//! a daemon and a backfill can share the file: writers wait for each other (`busy_timeout`)
//! instead of failing, and leases keep them off each other's jobs. All SQLite work runs on
//! blocking threads, never on the async workers.
//!
//! The schema is versioned with `PRAGMA user_version` through `rusqlite_migration`; opening a
//! file of an older sagesync migrates it, a file of a newer one or of another application is
//! refused and left untouched.

mod config;
pub mod schema;
mod store;

pub use config::SqliteStateConfig;
pub use store::{SqliteState, APPLICATION_ID};
