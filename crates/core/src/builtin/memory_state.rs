//! `[state] type = "memory"`: the ledger in memory ([`MemoryState`]).

use std::sync::Arc;

use serde::Deserialize;

use crate::registry::{BuildContext, FieldProblem, StatePlugin};
use crate::state::{MemoryState, StateStore};

/// Options of `[state] type = "memory"` (none).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStateConfig {}

impl StatePlugin for MemoryStateConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn StateStore>, Vec<FieldProblem>> {
        Ok(Arc::new(MemoryState::new()))
    }
}

crate::register_plugin!(
    State,
    "memory",
    MemoryStateConfig,
    summary = "The ledger in memory, forgotten when the process ends (the default of `sagesync run`)",
    example = r#"[state]
type = "memory"
"#
);
