//! Example plugin: a sink (`stdout_lines`) registered with `register_plugin!`, so a TOML config
//! can use `type = "stdout_lines"` in any binary that links this crate.

use std::sync::Arc;

use sagesync_core::{
    async_trait, BuildContext, FieldProblem, RunRecord, Sink, SinkPlugin, SinkReceipt, SyncError, WriteContext, WriteKind,
};
use serde::Deserialize;

/// A sink that prints one line per run. Real sinks talk to a store and must be idempotent,
/// keyed by `record.run.external_id`.
pub struct StdoutLines {
    /// Printed before each line.
    pub prefix: String,
}

#[async_trait]
impl Sink for StdoutLines {
    async fn upsert(&self, record: &RunRecord, _cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let metrics: Vec<String> = record.metrics.iter().map(|m| format!("{}={}", m.name, m.value)).collect();
        println!("{}{}/{} [{}] {}", self.prefix, record.project.name, record.run.name, record.run.status, metrics.join(" "));
        Ok(SinkReceipt::new(WriteKind::Unchanged).id("line", &record.run.name))
    }
}

/// Options of `stdout_lines`. `deny_unknown_fields` makes typos config errors; `Default` and
/// `Serialize` give the defaults `sagesync example` and the config reference are checked with.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutLinesConfig {
    /// Printed before each line.
    #[serde(default)]
    pub prefix: String,
}

impl SinkPlugin for StdoutLinesConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        if self.prefix.len() > 40 {
            return Err(vec![FieldProblem::at("prefix", "at most 40 bytes")]);
        }
        Ok(Arc::new(StdoutLines { prefix: self.prefix }))
    }
}

sagesync_core::register_plugin!(
    Sink,
    "stdout_lines",
    StdoutLinesConfig,
    summary = "Print one line per run (example plugin)",
    example = "[[sinks]]\ntype = \"stdout_lines\"\nprefix = \"run: \"\n"
);

#[cfg(test)]
mod tests {
    #[test]
    fn plugin_is_registered_and_builds_from_toml() {
        let d = sagesync_core::registry::find(sagesync_core::PluginKind::Sink, "stdout_lines").unwrap();
        sagesync_core::config::check_example(d).unwrap();
        let bad =
            sagesync_core::Config::parse("[source]\ntype = \"x\"\n[[sinks]]\ntype = \"stdout_lines\"\nprefx = 1\n", "t.toml", &|_| None)
                .unwrap();
        let e = bad.build().err().unwrap().to_string();
        assert!(e.contains("t.toml:5:1: key `sinks[0].prefx`: unknown field `prefx`"), "{e}");
    }
}
