use std::path::PathBuf;
use std::sync::Arc;

use sagesync_core::{BuildContext, FieldProblem, StatePlugin, StateStore};
use serde::Deserialize;

use super::SqliteState;

/// Options of `[state] type = "sqlite"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteStateConfig {
    /// The SQLite file, relative to the working directory (default `sagesync-state.db`).
    pub path: PathBuf,
    /// How long a writer waits for another one, milliseconds (100 to 600000).
    pub busy_timeout_ms: u64,
}

impl Default for SqliteStateConfig {
    fn default() -> Self {
        SqliteStateConfig { path: PathBuf::from("sagesync-state.db"), busy_timeout_ms: 10_000 }
    }
}

impl StatePlugin for SqliteStateConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn StateStore>, Vec<FieldProblem>> {
        let mut p = Vec::new();
        if self.path.as_os_str().is_empty() {
            p.push(FieldProblem::at("path", "must not be empty"));
        }
        if !(100..=600_000).contains(&self.busy_timeout_ms) {
            p.push(FieldProblem::at("busy_timeout_ms", format!("must be between 100 and 600000, got {}", self.busy_timeout_ms)));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Arc::new(SqliteState::new(self.path, self.busy_timeout_ms)))
    }
}

sagesync_core::register_plugin!(
    State,
    "sqlite",
    SqliteStateConfig,
    summary = "The ledger, cursors and leases in one SQLite file (the daemon's default)",
    example = r#"[state]
type = "sqlite"
path = "sagesync-state.db"
busy_timeout_ms = 10000
"#
);
