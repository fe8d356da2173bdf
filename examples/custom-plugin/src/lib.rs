//! Example plugins, registered with `register_plugin!`, so that a TOML config can use them in
//! any binary that links this crate:
//!
//! - `stdout_lines`: prints one line per run (the smallest sink there is);
//! - `tsv_index`: one line per job in a TSV file, a sink that follows the whole protocol of
//!   `docs/writing-a-plugin.md` (idempotent by ARN, the lease checked before every change,
//!   what the ledger says of an earlier record read from the write context, retraction, a
//!   fingerprint).

use std::path::PathBuf;
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
    fn fingerprint(&self) -> String {
        self.prefix.clone()
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

/// One line per job in a TSV file: `ARN, project, run, status, metrics`. The line is keyed by
/// the job's ARN (the record's `external_id`), so writing a record twice changes nothing and a
/// job has one line whatever its names. The whole file is rewritten through a temporary file
/// and a rename, so that a crash leaves the old file or the new one.
pub struct TsvIndex {
    /// The file.
    pub path: PathBuf,
}

impl TsvIndex {
    /// The file's lines (none when it does not exist yet).
    fn read(&self) -> Result<Vec<String>, SyncError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            // A file that cannot be read is the store's state, not the job's content: retryable.
            Err(e) => Err(SyncError::transient(format!("{}: {e}", self.path.display()))),
        }
    }
    /// Replaces the file with `lines`, after checking the job's lease: the one request of this
    /// store.
    fn write(&self, lines: &[String], cx: &WriteContext) -> Result<(), SyncError> {
        cx.check()?;
        let tmp = self.path.with_extension("tmp");
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| SyncError::transient(format!("{}: {e}", self.path.display())))
    }
}

fn field(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

#[async_trait]
impl Sink for TsvIndex {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let arn = &record.run.external_id;
        let metrics: Vec<String> = record.metrics.iter().map(|m| format!("{}={}", m.name, m.value)).collect();
        let line = [arn.as_str(), &record.project.name, &record.run.name, &record.run.status, &metrics.join(" ")].map(field).join("\t");
        // An earlier attempt may have written this job and crashed before the ledger knew
        // (`cx.pending` holds the names it used); `cx.previous` is the receipt of the last
        // committed write. This store keys lines by ARN, so both lead to the same line: the
        // ARN finds it, whatever the names were.
        let mut lines = self.read()?;
        let kind = match lines.iter().position(|l| l.split('\t').next() == Some(arn.as_str())) {
            Some(i) if lines[i] == line => WriteKind::Unchanged,
            Some(i) => {
                lines[i] = line;
                WriteKind::Updated
            }
            None => {
                lines.push(line);
                WriteKind::Created
            }
        };
        let mut receipt = SinkReceipt::new(kind).id("line_of", arn);
        if kind != WriteKind::Unchanged {
            self.write(&lines, cx)?;
            receipt.writes = 1;
        }
        Ok(receipt)
    }

    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let mut lines = self.read()?;
        let before = lines.len();
        lines.retain(|l| l.split('\t').next() != Some(external_id));
        let mut receipt = SinkReceipt::new(WriteKind::Removed);
        if lines.len() != before {
            self.write(&lines, cx)?;
            receipt.writes = 1;
        }
        Ok(Some(receipt))
    }

    fn fingerprint(&self) -> String {
        // Another file is another store: every job is written to it again.
        self.path.display().to_string()
    }
}

/// Options of `tsv_index`.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TsvIndexConfig {
    /// The file (relative to the working directory).
    pub path: PathBuf,
}

impl SinkPlugin for TsvIndexConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        if self.path.as_os_str().is_empty() {
            return Err(vec![FieldProblem::at("path", "is required")]);
        }
        Ok(Arc::new(TsvIndex { path: self.path }))
    }
}

sagesync_core::register_plugin!(
    Sink,
    "tsv_index",
    TsvIndexConfig,
    summary = "One line per job in a TSV file, keyed by ARN (example plugin)",
    example = "[[sinks]]\ntype = \"tsv_index\"\npath = \"runs.tsv\"\n"
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

    #[tokio::test]
    async fn the_tsv_index_keeps_one_line_per_job_and_checks_the_lease() {
        use sagesync_core::{LeaseGuard, Sink, WriteContext, WriteKind};
        let dir = std::env::temp_dir().join(format!("tsv-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sink = super::TsvIndex { path: dir.join("runs.tsv") };
        let mut r: sagesync_core::RunRecord = serde_json::from_value(serde_json::json!({
            "project": {"name": "p", "user": "u", "description": ""}, "experiment": "e",
            "run": {"name": "j", "external_id": "arn:j", "status": "Completed"},
            "model": {"name": "m", "type": "t"}
        }))
        .unwrap();
        assert_eq!(sink.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Created);
        assert_eq!(sink.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Unchanged, "idempotent");
        r.run.name = "renamed".into();
        assert_eq!(sink.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Updated, "one line per ARN");
        assert_eq!(std::fs::read_to_string(&sink.path).unwrap().lines().count(), 1);
        // A lost lease: nothing reaches the file.
        let lost = LeaseGuard::new(std::time::Instant::now());
        r.run.status = "Failed".into();
        let e = sink.upsert(&r, &WriteContext::new().with_guard(lost)).await.unwrap_err();
        assert!(e.is_cancelled(), "{e}");
        assert!(std::fs::read_to_string(&sink.path).unwrap().contains("Completed"));
        sink.retract("arn:j", &WriteContext::new()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&sink.path).unwrap().trim(), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
