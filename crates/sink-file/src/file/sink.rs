use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sagesync_core::{RunRecord, Sink, SinkReceipt, SyncError, WriteContext, WriteKind};
use serde::{Deserialize, Serialize};

use super::sanitize_component;

/// The `schema` value of every document.
pub const SCHEMA_NAME: &str = "sagesync.run-record";
/// The current schema version. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The document written for one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDocument {
    /// Always [`SCHEMA_NAME`].
    pub schema: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The record.
    pub record: RunRecord,
}

/// The `file` sink.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    pretty: bool,
}

impl FileSink {
    /// Writes under `dir` (relative to the working directory unless absolute).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into(), pretty: true }
    }
    /// Pretty-print or not.
    pub fn pretty(mut self, yes: bool) -> Self {
        self.pretty = yes;
        self
    }
    /// Where `record` is written.
    pub fn path_for(&self, record: &RunRecord) -> PathBuf {
        self.dir.join(sanitize_component(&record.project.name)).join(format!("{}.json", sanitize_component(&record.run.name)))
    }
    /// The bytes written for `record`.
    pub fn render(&self, record: &RunRecord) -> Result<Vec<u8>, SyncError> {
        let doc = RunDocument { schema: SCHEMA_NAME.into(), schema_version: SCHEMA_VERSION, record: record.clone() };
        let mut bytes = if self.pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
            .map_err(|e| SyncError::permanent_with("cannot serialise the record", e))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> SyncError {
    use std::io::ErrorKind::*;
    let msg = format!("{what} {}: {e}", path.display());
    match e.kind() {
        Interrupted | WouldBlock | TimedOut => SyncError::transient(msg),
        _ => SyncError::permanent(msg),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    let parent = path.parent().ok_or_else(|| SyncError::permanent("output path has no parent directory"))?;
    std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create directory", parent, e))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let tmp = parent.join(format!(".{}.{}.{:016x}.tmp", file_name, std::process::id(), fastrand_u64()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io_error("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io_error("cannot sync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io_error("cannot rename into", path, e))?;
        // Persist the rename itself.
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

#[async_trait]
impl Sink for FileSink {
    async fn upsert(&self, record: &RunRecord, _cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let path = self.path_for(record);
        let bytes = self.render(record)?;
        let p = path.clone();
        let kind = tokio::task::spawn_blocking(move || -> Result<WriteKind, SyncError> {
            match std::fs::read(&p) {
                Ok(existing) if existing == bytes => Ok(WriteKind::Unchanged),
                Ok(_) => {
                    write_atomically(&p, &bytes)?;
                    Ok(WriteKind::Updated)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    write_atomically(&p, &bytes)?;
                    Ok(WriteKind::Created)
                }
                Err(e) => Err(io_error("cannot read", &p, e)),
            }
        })
        .await
        .map_err(|e| SyncError::permanent(format!("file sink task failed: {e}")))??;
        tracing::debug!(path = %path.display(), write = ?kind, "file sink");
        let mut receipt = SinkReceipt::new(kind).id("path", path.display());
        receipt.writes = u32::from(kind != WriteKind::Unchanged);
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagesync_core::{Model, Project, Run, Tags};

    fn record(project: &str, run: &str) -> RunRecord {
        RunRecord {
            project: Project { name: project.into(), user: "u".into(), description: String::new() },
            experiment: "e".into(),
            run: Run { name: run.into(), external_id: format!("arn:{run}"), status: "Completed".into(), start: None, end: None },
            model: Model::default(),
            hyperparameters: vec![],
            datasets: vec![],
            metrics: vec![],
            metric_history: vec![],
            tags: Tags::default(),
            attributes: Default::default(),
        }
    }

    #[tokio::test]
    async fn create_unchanged_update() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let mut r = record("p", "j1");
        assert_eq!(sink.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Created);
        let path = dir.path().join("p/j1.json");
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let rc = sink.upsert(&r, &WriteContext::new()).await.unwrap();
        assert_eq!(rc.write, WriteKind::Unchanged);
        assert_eq!(rc.writes, 0);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before);
        r.run.status = "Failed".into();
        assert_eq!(sink.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Updated);
        let doc: RunDocument = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc.schema_version, SCHEMA_VERSION);
        assert_eq!(doc.record, r);
        // no temp files left behind
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("p"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn hostile_names_stay_inside_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let sink = FileSink::new(&dir);
        for (p, r) in [
            ("../../escape", "../../../x"),
            ("/etc", "passwd"),
            ("..", ".."),
            ("a\u{202e}b", "r\u{0}n"),
            ("日本語プロジェクト", "ジョブ/1"),
        ] {
            let receipt = sink.upsert(&record(p, r), &WriteContext::new()).await.unwrap();
            let written = PathBuf::from(&receipt.ids["path"]);
            let canon = written.canonicalize().unwrap();
            assert!(canon.starts_with(dir.canonicalize().unwrap()), "{p:?}/{r:?} escaped to {canon:?}");
        }
        // Nothing was written beside `out`.
        let siblings: Vec<_> = std::fs::read_dir(root.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(siblings, vec![std::ffi::OsString::from("out")]);
    }
}
