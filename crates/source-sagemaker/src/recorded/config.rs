use std::sync::Arc;

use sagesync_core::keypath::KeyPath;
use sagesync_core::{BuildContext, FieldProblem, Source, SourcePlugin};
use serde::Deserialize;

use super::RecordedSource;

/// Options of `sagemaker_json`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedSourceConfig {
    /// Files, directories (their `*.json`, `*.jsonl` and `*.ndjson` files, sorted by name) or
    /// `-` for standard input. Relative paths are relative to the working directory.
    pub paths: Vec<String>,
    /// Descend into subdirectories.
    #[serde(default)]
    pub recursive: bool,
}

/// Defaults of the optional keys (`paths` is required).
impl Default for RecordedSourceConfig {
    fn default() -> Self {
        RecordedSourceConfig { paths: Vec::new(), recursive: false }
    }
}

impl SourcePlugin for RecordedSourceConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Source>, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        if self.paths.is_empty() {
            problems.push(FieldProblem::at("paths", "must list at least one file, directory or `-`"));
        }
        if self.paths.iter().filter(|p| p.as_str() == "-").count() > 1 {
            problems.push(FieldProblem::at("paths", "`-` (standard input) may appear only once"));
        }
        for (i, p) in self.paths.iter().enumerate() {
            if p.trim().is_empty() {
                problems.push(FieldProblem { path: KeyPath::root().key("paths").index(i), message: "empty path".into() });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Arc::new(RecordedSource::new(self.paths.into_iter().map(Into::into).collect(), self.recursive)))
    }
}

sagesync_core::register_plugin!(
    Source,
    "sagemaker_json",
    RecordedSourceConfig,
    summary = "Recorded DescribeTrainingJob JSON (files, directories, JSON Lines or stdin)",
    example = r#"[source]
type = "sagemaker_json"
# Files, directories or "-" (stdin). Each document is `aws sagemaker describe-training-job`
# output, optionally with "Tags" (Key/Value list or map). JSON Lines work too.
paths = ["examples/jobs"]
recursive = false
"#
);
