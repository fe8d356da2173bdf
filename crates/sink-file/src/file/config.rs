use std::path::PathBuf;
use std::sync::Arc;

use sagesync_core::{BuildContext, FieldProblem, Sink, SinkPlugin};
use serde::Deserialize;

use super::FileSink;

/// Options of `file`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output directory, relative to the working directory unless absolute. Created if missing.
    pub dir: String,
    /// Pretty-print the JSON (default true).
    #[serde(default = "yes")]
    pub pretty: bool,
}

fn yes() -> bool {
    true
}

/// Defaults of the optional keys (`dir` is required).
impl Default for FileSinkConfig {
    fn default() -> Self {
        FileSinkConfig { dir: String::new(), pretty: yes() }
    }
}

impl SinkPlugin for FileSinkConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        if self.dir.trim().is_empty() {
            return Err(vec![FieldProblem::at("dir", "must not be empty")]);
        }
        Ok(Arc::new(FileSink::new(PathBuf::from(self.dir)).pretty(self.pretty)))
    }
}

sagesync_core::register_plugin!(
    Sink,
    "file",
    FileSinkConfig,
    summary = "One JSON document per job ARN at <dir>/<project>/<run>.json, written atomically and durably",
    example = r#"[[sinks]]
type = "file"
# Relative to the working directory unless absolute.
dir = "sagesync-out"
pretty = true
"#
);
