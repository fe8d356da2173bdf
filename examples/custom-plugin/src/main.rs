//! Example: writing your own syncer with sagesync as a library.
//!
//! 1. A custom sink plugin (`stdout_lines`) registered with `register_plugin!`, so a TOML config
//!    can use `type = "stdout_lines"`.
//! 2. A pipeline assembled in code with `Pipeline::builder()`, no TOML at all.
//!
//! Run: `cargo run -p sagesync-example-custom-plugin -- examples/jobs`

use std::sync::Arc;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{async_trait, BuildContext, CancellationToken, Component, Cursor, FieldProblem, Pipeline, PluginConfig, RunRecord, Sink, SinkReceipt, SyncError, TagKeys, WriteContext, WriteKind};
use sagesync_source_sagemaker::RecordedSource;
use serde::Deserialize;

/// A sink that prints one line per run. Real sinks talk to a store and must be idempotent,
/// keyed by `record.run.external_id`.
pub struct StdoutLines {
    prefix: String,
}

#[async_trait]
impl Sink for StdoutLines {
    async fn upsert(&self, record: &RunRecord, _cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let metrics: Vec<String> = record.metrics.iter().map(|m| format!("{}={}", m.name, m.value)).collect();
        println!("{}{}/{} [{}] {}", self.prefix, record.project.name, record.run.name, record.run.status, metrics.join(" "));
        Ok(SinkReceipt::new(WriteKind::Unchanged).id("line", &record.run.name))
    }
}

/// Options of `stdout_lines`. `deny_unknown_fields` makes typos config errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutLinesConfig {
    /// Printed before each line.
    #[serde(default)]
    pub prefix: String,
}

impl PluginConfig for StdoutLinesConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Component, Vec<FieldProblem>> {
        if self.prefix.len() > 40 {
            return Err(vec![FieldProblem::at("prefix", "at most 40 bytes")]);
        }
        Ok(Component::Sink(Arc::new(StdoutLines { prefix: self.prefix })))
    }
}

sagesync_core::register_plugin!(
    Sink,
    "stdout_lines",
    StdoutLinesConfig,
    summary = "Print one line per run (example plugin)",
    example = "[[sinks]]\ntype = \"stdout_lines\"\nprefix = \"run: \"\n"
);

#[tokio::main]
async fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "examples/jobs".into());
    let keys = TagKeys::default();
    let pipeline = Pipeline::builder()
        .source(RecordedSource::new(vec![dir.into()], false))
        .validator("required_tags", RequiredTags::new(&keys))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(keys).experiment("from-code"))
        .sink("stdout", StdoutLines { prefix: "run: ".into() })
        .build()
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
    let summary = pipeline.run(Cursor::default(), &CancellationToken::new()).await;
    print!("{}", summary.render_text());
}

#[cfg(test)]
mod tests {
    #[test]
    fn plugin_is_registered_and_builds_from_toml() {
        let d = sagesync_core::registry::find(sagesync_core::PluginKind::Sink, "stdout_lines").unwrap();
        let cfg = sagesync_core::Config::parse(&format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"x\"]\n{}", d.example_toml), "t.toml", &|_| None).unwrap();
        assert!(cfg.build().is_ok());
        let bad = sagesync_core::Config::parse("[source]\ntype = \"sagemaker_json\"\npaths = [\"x\"]\n[[sinks]]\ntype = \"stdout_lines\"\nprefx = 1\n", "t.toml", &|_| None).unwrap();
        let e = bad.build().err().unwrap().to_string();
        assert!(e.contains("t.toml:6:1: key `sinks[0].prefx`: unknown field `prefx`"), "{e}");
    }
}
