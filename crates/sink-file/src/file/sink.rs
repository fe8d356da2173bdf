use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sagesync_core::{RunRecord, Sink, SinkReceipt, SyncError, WriteContext, WriteKind};
use serde::{Deserialize, Serialize};

use super::sanitize_component;

/// The `schema` value of every document.
pub const SCHEMA_NAME: &str = "sagesync.run-record";
/// The current schema version. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 3;

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
///
/// One document per job ARN: `<dir>/<project>/<run>.json`, or `<run>--<12 hex of the ARN's
/// SHA-256>.json` when another job (same name, another account or region) already holds the
/// plain name. A document stays where it first landed while its project is unchanged; when the
/// project changes, the new document is written first and then every other document of the ARN
/// is removed. Writes go through a temporary file, fsync, rename and a directory fsync.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    pretty: bool,
    swept: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Temporary files older than this are left over from a crashed writer.
const STALE_TMP: Duration = Duration::from_secs(600);

/// Just enough of a document to tell whose it is.
#[derive(Deserialize)]
struct Probe {
    record: ProbeRecord,
}
#[derive(Deserialize)]
struct ProbeRecord {
    run: ProbeRun,
}
#[derive(Deserialize)]
struct ProbeRun {
    external_id: String,
}

/// What names a document: the job's project, run name and ARN; a model package's is its
/// group under `_registry`, and its version.
#[derive(Debug, Clone)]
struct Key {
    project: String,
    run: String,
    arn: String,
    /// A model package's group (its document is `_registry/<group>/<version>.json`).
    group: Option<String>,
}

/// The directory of the model registry's documents (a package's group below it).
pub const REGISTRY_DIR: &str = "_registry";

impl Key {
    fn of(record: &RunRecord) -> Key {
        if let Some(p) = record.lineage.package.as_ref().filter(|_| record.lineage.kind == sagesync_core::ResourceKind::ModelPackage) {
            return Key {
                project: REGISTRY_DIR.into(),
                run: p.version.map(|v| v.to_string()).unwrap_or_else(|| record.run.name.clone()),
                arn: record.run.external_id.clone(),
                group: Some(p.group.clone()),
            };
        }
        Key { project: record.project.name.clone(), run: record.run.name.clone(), arn: record.run.external_id.clone(), group: None }
    }
    /// A package's key from its ARN alone (`...:model-package/GROUP/VERSION`).
    fn of_package_arn(arn: &str) -> Option<Key> {
        let (group, version) = arn.split_once(":model-package/")?.1.split_once('/')?;
        Some(Key { project: REGISTRY_DIR.into(), run: version.to_string(), arn: arn.to_string(), group: Some(group.to_string()) })
    }
    fn plain_name(&self) -> String {
        format!("{}.json", sanitize_component(&self.run))
    }
    /// The file name used when the plain one belongs to another job.
    fn hashed_name(&self) -> String {
        // The sanitised run name, then the ARN's part of the shared namesake rule.
        format!("{}--{}.json", sanitize_component(&self.run), sagesync_core::model::namesake_suffix(&self.arn))
    }
}

/// The job ARN a document holds, when it is one of ours.
fn owner_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Probe>(bytes).ok().map(|p| p.record.run.external_id)
}

impl FileSink {
    /// Writes under `dir` (relative to the working directory unless absolute).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into(), pretty: true, swept: Arc::new(Mutex::new(HashSet::new())) }
    }
    /// Pretty-print or not.
    pub fn pretty(mut self, yes: bool) -> Self {
        self.pretty = yes;
        self
    }
    /// Where `record` is written when no other job holds its name.
    pub fn path_for(&self, record: &RunRecord) -> PathBuf {
        let key = Key::of(record);
        self.dir_path(&key).join(key.plain_name())
    }

    /// The directory of `key`'s document.
    fn dir_path(&self, key: &Key) -> PathBuf {
        let d = self.dir.join(sanitize_component(&key.project));
        match &key.group {
            Some(g) => d.join(sanitize_component(g)),
            None => d,
        }
    }
    /// The bytes written for `record`.
    pub fn render(&self, record: &RunRecord) -> Result<Vec<u8>, SyncError> {
        let doc = RunDocument { schema: SCHEMA_NAME.into(), schema_version: SCHEMA_VERSION, record: record.clone() };
        let mut bytes = if self.pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
            .map_err(|e| SyncError::permanent_with("cannot serialise the record", e))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// The project directory, created (and its creation made durable) when missing. A symlink
    /// in its place is refused: documents never land outside `dir`.
    fn project_dir(&self, project: &str) -> Result<PathBuf, SyncError> {
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| io_error("cannot create directory", &self.dir, e))?;
            if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let dir = self.dir.join(sanitize_component(project));
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SyncError::transient(format!("refusing to write through {}: it is a symbolic link", dir.display())))
            }
            Ok(m) if !m.is_dir() => return Err(SyncError::transient(format!("{} is not a directory", dir.display()))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                Ok(()) => sync_dir(&self.dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("cannot create directory", &dir, e)),
            },
            Err(e) => return Err(io_error("cannot inspect", &dir, e)),
        }
        self.sweep(&dir);
        Ok(dir)
    }

    /// The directory `name` in `parent` (inside `dir`), created when missing; a symlink in its
    /// place is refused.
    fn sub_dir(&self, parent: &Path, name: &str) -> Result<PathBuf, SyncError> {
        let dir = parent.join(sanitize_component(name));
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SyncError::transient(format!("refusing to write through {}: it is a symbolic link", dir.display())))
            }
            Ok(m) if !m.is_dir() => return Err(SyncError::transient(format!("{} is not a directory", dir.display()))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                Ok(()) => sync_dir(parent)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("cannot create directory", &dir, e)),
            },
            Err(e) => return Err(io_error("cannot inspect", &dir, e)),
        }
        self.sweep(&dir);
        Ok(dir)
    }

    /// Removes temporary files a crashed writer left in `dir` (once per directory and sink):
    /// those older than ten minutes and, on Linux, those whose writing process is gone.
    fn sweep(&self, dir: &Path) {
        {
            let Ok(mut swept) = self.swept.lock() else { return };
            if !swept.insert(dir.to_path_buf()) {
                return;
            }
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let me = std::process::id();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('.') && name.ends_with(".tmp")) {
                continue;
            }
            let old =
                entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_TMP);
            let pid: Option<u32> = name.trim_end_matches(".tmp").rsplit('.').nth(1).and_then(|p| p.parse().ok());
            let orphan = cfg!(target_os = "linux") && pid.is_some_and(|p| p != me && !Path::new(&format!("/proc/{p}")).exists());
            if old || orphan {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(path = %entry.path().display(), "removed a temporary file left by a crashed writer"),
                    Err(e) => tracing::debug!(path = %entry.path().display(), error = %e, "cannot remove a stale temporary file"),
                }
            }
        }
    }

    /// Writes `bytes` as the document of `record` (blocking).
    fn write_blocking(
        &self,
        record: &Key,
        bytes: &[u8],
        previous: Option<&Path>,
        cx: &WriteContext,
    ) -> Result<(PathBuf, WriteKind), SyncError> {
        let arn = record.arn.as_str();
        // Every change to the directory is a request to the store: each goes only while the
        // job's lease holds.
        cx.check()?;
        let mut pdir = self.project_dir(&record.project)?;
        if let Some(g) = &record.group {
            pdir = self.sub_dir(&pdir, g)?;
        }
        let plain = pdir.join(record.plain_name());
        let hashed = pdir.join(record.hashed_name());
        let mut outcome = None;
        // A document already here stays where it is; otherwise the plain name is claimed
        // (atomically: hard link, which never replaces) unless another job holds it.
        for _ in 0..4 {
            if let Some(existing) = read_if_file(&hashed)? {
                if owner_of(&existing).as_deref() == Some(arn) {
                    cx.check()?;
                    outcome = Some(replace(&hashed, &existing, bytes)?);
                    break;
                }
            }
            match read_if_file(&plain)? {
                Some(existing) if owner_of(&existing).as_deref() == Some(arn) => {
                    cx.check()?;
                    outcome = Some(replace(&plain, &existing, bytes)?);
                    break;
                }
                Some(_) => {
                    cx.check()?;
                    if create_new(&hashed, bytes)? {
                        outcome = Some((hashed.clone(), WriteKind::Created));
                        break;
                    }
                }
                None => {
                    cx.check()?;
                    if create_new(&plain, bytes)? {
                        outcome = Some((plain.clone(), WriteKind::Created));
                        break;
                    }
                }
            }
            // Another writer claimed a name meanwhile: look again.
        }
        let Some((path, kind)) = outcome else {
            return Err(SyncError::transient(format!("{} keeps changing under concurrent writers", plain.display())));
        };
        // One document per ARN: after a project change (or a lost ledger), other copies go.
        let mut others: Vec<PathBuf> = previous.filter(|p| *p != path).map(Path::to_path_buf).into_iter().collect();
        if kind == WriteKind::Created && record.group.is_none() {
            others.extend(self.copies_elsewhere(&pdir, record));
        }
        for other in others {
            cx.check()?;
            remove_if_owned(&other, arn)?;
        }
        Ok((path, kind))
    }

    /// Documents of `record`'s ARN in other project directories.
    fn copies_elsewhere(&self, except: &Path, record: &Key) -> Vec<PathBuf> {
        let names = [record.plain_name(), record.hashed_name()];
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path == except || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for n in &names {
                let candidate = path.join(n);
                if candidate.exists() {
                    out.push(candidate);
                }
            }
        }
        out
    }

    /// Removes every document of `arn` (blocking): the one the receipt names (or, for a write
    /// whose outcome the ledger never learned, the ones its names lead to) and their namesakes in
    /// every project directory.
    fn retract_blocking(&self, arn: &str, cx: &WriteContext) -> Result<u32, SyncError> {
        if cx.previous.is_none() && cx.pending.is_none() {
            return Ok(0);
        }
        let mut paths: Vec<PathBuf> = cx.previous.as_ref().and_then(|p| p.ids.get("path")).map(PathBuf::from).into_iter().collect();
        let package = Key::of_package_arn(arn);
        if let Some(package) = &package {
            // A package's document is in its group's directory, whose name SageMaker's ARN
            // lower-cases: every group directory that matches it, whatever its case.
            let pdir = self.dir_path(package);
            paths.push(pdir.join(package.plain_name()));
            paths.push(pdir.join(package.hashed_name()));
            let registry = self.dir.join(REGISTRY_DIR);
            let wanted = sanitize_component(package.group.as_deref().unwrap_or_default()).to_lowercase();
            for entry in std::fs::read_dir(&registry).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().to_lowercase() == wanted && entry.path() != pdir {
                    paths.push(entry.path().join(package.plain_name()));
                    paths.push(entry.path().join(package.hashed_name()));
                }
            }
        } else if let Some(names) = &cx.pending {
            let key = Key { project: names.project.clone(), run: names.run.clone(), arn: arn.to_string(), group: None };
            let pdir = self.dir.join(sanitize_component(&names.project));
            paths.push(pdir.join(key.plain_name()));
            paths.push(pdir.join(key.hashed_name()));
        }
        // Namesakes in every project directory (a package's document has none).
        let names: Vec<std::ffi::OsString> =
            if package.is_some() { Vec::new() } else { paths.iter().filter_map(|p| p.file_name().map(|n| n.to_os_string())).collect() };
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    for n in &names {
                        let candidate = entry.path().join(n);
                        if !paths.contains(&candidate) && candidate.exists() {
                            paths.push(candidate);
                        }
                    }
                }
            }
        }
        let mut removed = 0;
        for p in &paths {
            cx.check()?;
            removed += u32::from(remove_if_owned(p, arn)?);
        }
        Ok(removed)
    }
}

/// Classifies an I/O error. None of them is about the job's content (a full disk, an I/O
/// error, a permission or a missing mount is fixed outside sagesync), so all are retryable.
fn io_error(what: &str, path: &Path, e: std::io::Error) -> SyncError {
    SyncError::transient(format!("{what} {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<(), SyncError> {
    let d = std::fs::File::open(dir).map_err(|e| io_error("cannot open directory", dir, e))?;
    d.sync_all().map_err(|e| io_error("cannot sync directory", dir, e))
}

/// The bytes of `path` when it is a regular file; `None` when nothing is there. Anything else
/// (a symbolic link, a directory) is refused, never followed or replaced.
fn read_if_file(path: &Path) -> Result<Option<Vec<u8>>, SyncError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("cannot read", path, e)),
        },
        Ok(m) => Err(SyncError::transient(format!(
            "refusing to write {}: it is {}, not a document",
            path.display(),
            if m.file_type().is_symlink() { "a symbolic link" } else { "not a regular file" }
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot inspect", path, e)),
    }
}

/// Replaces the document at `path` unless it already holds `bytes`.
fn replace(path: &Path, existing: &[u8], bytes: &[u8]) -> Result<(PathBuf, WriteKind), SyncError> {
    if existing == bytes {
        return Ok((path.to_path_buf(), WriteKind::Unchanged));
    }
    let tmp = write_tmp(path, bytes)?;
    let done = std::fs::rename(&tmp, path).map_err(|e| io_error("cannot rename into", path, e));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done?;
    sync_dir(parent_of(path)?)?;
    Ok((path.to_path_buf(), WriteKind::Updated))
}

/// Creates the document at `path` if nothing is there; `false` when something is.
fn create_new(path: &Path, bytes: &[u8]) -> Result<bool, SyncError> {
    let tmp = write_tmp(path, bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(parent_of(path)?)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("cannot create", path, e)),
    }
}

/// Removes `path` if it is a document of `arn`; `true` when it removed one.
fn remove_if_owned(path: &Path, arn: &str) -> Result<bool, SyncError> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
        return Ok(false);
    }
    let Some(existing) = read_if_file(path)? else { return Ok(false) };
    if owner_of(&existing).as_deref() != Some(arn) {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent_of(path)?)?;
            tracing::debug!(path = %path.display(), "file sink: removed a document of the job");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("cannot remove", path, e)),
    }
}

fn parent_of(path: &Path) -> Result<&Path, SyncError> {
    path.parent().ok_or_else(|| SyncError::permanent("output path has no parent directory"))
}

/// Writes and fsyncs a temporary sibling of `path`, named after the process (so that a sweep
/// can tell an orphan).
fn write_tmp(path: &Path, bytes: &[u8]) -> Result<PathBuf, SyncError> {
    let parent = parent_of(path)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let tmp = parent.join(format!(".{}.{}.{:016x}.tmp", file_name, std::process::id(), fastrand_u64()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_error("cannot create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| io_error("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io_error("cannot sync", &tmp, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| tmp)
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

#[async_trait]
impl Sink for FileSink {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let bytes = self.render(record)?;
        let previous = cx.previous.as_ref().and_then(|p| p.ids.get("path")).map(PathBuf::from);
        let (sink, rec, cx) = (self.clone(), Key::of(record), cx.clone());
        let (path, kind) = tokio::task::spawn_blocking(move || sink.write_blocking(&rec, &bytes, previous.as_deref(), &cx))
            .await
            .map_err(|e| SyncError::transient(format!("file sink task failed: {e}")))??;
        tracing::debug!(path = %path.display(), write = ?kind, "file sink");
        let mut receipt = SinkReceipt::new(kind).id("path", path.display());
        receipt.writes = u32::from(kind != WriteKind::Unchanged);
        Ok(receipt)
    }

    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let previous = cx.previous.as_ref().and_then(|p| p.ids.get("path")).map(PathBuf::from);
        let (sink, arn, cx) = (self.clone(), external_id.to_string(), cx.clone());
        let removed = tokio::task::spawn_blocking(move || sink.retract_blocking(&arn, &cx))
            .await
            .map_err(|e| SyncError::transient(format!("file sink task failed: {e}")))??;
        let mut receipt = SinkReceipt::new(WriteKind::Removed);
        if let Some(p) = &previous {
            receipt = receipt.id("path", p.display());
        }
        receipt.writes = removed;
        Ok(Some(receipt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagesync_core::{Model, Project, Run, Tags};

    fn record(project: &str, run: &str) -> RunRecord {
        RunRecord {
            lineage: Default::default(),
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

    fn docs(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for p in std::fs::read_dir(root).unwrap().flatten() {
            for f in std::fs::read_dir(p.path()).unwrap().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with('.'), "left over: {name}");
                let doc: RunDocument = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
                out.push((format!("{}/{name}", p.file_name().to_string_lossy()), doc.record.run.external_id));
            }
        }
        out.sort();
        out
    }

    fn with_arn(project: &str, run: &str, arn: &str) -> RunRecord {
        let mut r = record(project, run);
        r.run.external_id = arn.into();
        r
    }

    #[tokio::test]
    async fn one_name_two_arns_two_documents_that_never_flip() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let a = with_arn("p", "job", "arn:aws:sagemaker:us-east-1:111111111111:training-job/job");
        let b = with_arn("p", "job", "arn:aws:sagemaker:eu-west-1:222222222222:training-job/job");
        let ra = sink.upsert(&a, &WriteContext::new()).await.unwrap();
        let rb = sink.upsert(&b, &WriteContext::new()).await.unwrap();
        assert_eq!((ra.write, rb.write), (WriteKind::Created, WriteKind::Created));
        assert_ne!(ra.ids["path"], rb.ids["path"]);
        for _ in 0..3 {
            for (r, rc) in [(&a, &ra), (&b, &rb)] {
                let again = sink.upsert(r, &WriteContext::new().with_previous(Some(rc.clone()))).await.unwrap();
                assert_eq!(again.write, WriteKind::Unchanged);
                assert_eq!(again.ids["path"], rc.ids["path"]);
            }
        }
        let d = docs(dir.path());
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].0, "p/job--".to_string() + &d[0].0[7..]);
        assert_eq!(d[1], ("p/job.json".into(), a.run.external_id.clone()));
        // The first holder leaves: the second keeps its name (no flip), and takes nothing over.
        sink.retract(&a.run.external_id, &WriteContext::new().with_previous(Some(ra))).await.unwrap();
        let again = sink.upsert(&b, &WriteContext::new()).await.unwrap();
        assert_eq!((again.write, &again.ids["path"]), (WriteKind::Unchanged, &rb.ids["path"]));
        assert_eq!(docs(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn many_writers_of_one_name_leave_one_document_per_arn() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let mut tasks = Vec::new();
        for i in 0..12 {
            let s = sink.clone();
            let r = with_arn("p", "same", &format!("arn:{}", i % 3));
            tasks.push(tokio::spawn(async move { s.upsert(&r, &WriteContext::new()).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let arns: Vec<String> = docs(dir.path()).into_iter().map(|(_, a)| a).collect();
        assert_eq!(arns.len(), 3, "{arns:?}");
        assert_eq!(arns.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    }

    #[tokio::test]
    async fn a_project_change_moves_the_document() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let r1 = with_arn("old", "job", "arn:x");
        let rc = sink.upsert(&r1, &WriteContext::new()).await.unwrap();
        // Another job's namesake in the new project is never touched.
        let other = with_arn("new", "job", "arn:other");
        sink.upsert(&other, &WriteContext::new()).await.unwrap();
        let r2 = with_arn("new", "job", "arn:x");
        let moved = sink.upsert(&r2, &WriteContext::new().with_previous(Some(rc))).await.unwrap();
        assert_eq!(moved.write, WriteKind::Created);
        let d = docs(dir.path());
        assert_eq!(d.iter().filter(|(_, a)| a == "arn:x").count(), 1, "{d:?}");
        assert!(d.iter().any(|(p, a)| p.starts_with("new/job--") && a == "arn:x"), "{d:?}");
        assert!(d.contains(&("new/job.json".into(), "arn:other".into())));
        // Without a previous receipt (a lost ledger) the old copy is found too.
        let rc = sink.upsert(&with_arn("third", "job", "arn:x"), &WriteContext::new()).await.unwrap();
        let d = docs(dir.path());
        assert_eq!(d.iter().filter(|(_, a)| a == "arn:x").map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["third/job.json"]);
        let gone = sink.retract("arn:x", &WriteContext::new().with_previous(Some(rc))).await.unwrap().unwrap();
        assert_eq!((gone.write, gone.writes), (WriteKind::Removed, 1));
        assert_eq!(docs(dir.path()), vec![("new/job.json".to_string(), "arn:other".to_string())]);
    }

    #[tokio::test]
    async fn a_write_the_ledger_never_learned_of_is_retracted_from_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let r = with_arn("p", "job", "arn:crashed");
        sink.upsert(&r, &WriteContext::new()).await.unwrap();
        // What the engine records before a first write: the names, no path.
        let pending = sagesync_core::PendingNames { project: "p".into(), experiment: String::new(), run: "job".into() };
        let gone = sink.retract("arn:crashed", &WriteContext::new().with_pending(Some(pending))).await.unwrap().unwrap();
        assert_eq!(gone.writes, 1);
        assert!(docs(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn stale_temporary_files_are_swept_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("p");
        std::fs::create_dir_all(&pdir).unwrap();
        let old = pdir.join(".j.json.1.00000000000000aa.tmp");
        std::fs::write(&old, b"half").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
        drop(f);
        // pid 4000000000 cannot exist: an orphan even though it is fresh.
        let orphan = pdir.join(".k.json.4000000000.00000000000000bb.tmp");
        std::fs::write(&orphan, b"half").unwrap();
        // pid 1 is alive: a fresh file of a live writer stays.
        let live = pdir.join(".l.json.1.00000000000000cc.tmp");
        std::fs::write(&live, b"half").unwrap();
        FileSink::new(dir.path()).upsert(&record("p", "j"), &WriteContext::new()).await.unwrap();
        assert!(!old.exists() && !orphan.exists());
        assert!(live.exists());
    }

    #[tokio::test]
    async fn a_symlinked_project_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let dir = root.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("p")).unwrap();
        let e = FileSink::new(&dir).upsert(&record("p", "j"), &WriteContext::new()).await.unwrap_err();
        assert!(e.is_retryable(), "not the job's fault: {e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_symlink_in_place_of_a_document_is_refused_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target.txt");
        std::fs::write(&target, b"precious").unwrap();
        let dir = root.path().join("out");
        std::fs::create_dir_all(dir.join("p")).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("p/j.json")).unwrap();
        let sink = FileSink::new(&dir);
        let e = sink.upsert(&record("p", "j"), &WriteContext::new()).await.unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(dir.join("p/j.json")).unwrap().file_type().is_symlink());
        // A retract never removes it either.
        let rc = SinkReceipt::new(WriteKind::Created).id("path", dir.join("p/j.json").display());
        let gone = sink.retract("arn:j", &WriteContext::new().with_previous(Some(rc))).await.unwrap().unwrap();
        assert_eq!(gone.writes, 0);
    }

    #[tokio::test]
    async fn reserved_names_never_reach_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let rc = FileSink::new(dir.path()).upsert(&record("CON", "nul"), &WriteContext::new()).await.unwrap();
        let p = PathBuf::from(&rc.ids["path"]);
        assert!(!super::super::names::is_reserved(&p.file_name().unwrap().to_string_lossy()), "{p:?}");
        assert!(!super::super::names::is_reserved(&p.parent().unwrap().file_name().unwrap().to_string_lossy()), "{p:?}");
    }

    #[test]
    fn a_full_disk_or_an_io_error_is_retryable() {
        for code in [28 /* ENOSPC */, 5 /* EIO */, 13 /* EACCES */, 30 /* EROFS */] {
            let e = io_error("cannot write", Path::new("/x"), std::io::Error::from_raw_os_error(code));
            assert!(e.is_retryable(), "{e}");
        }
    }

    #[tokio::test]
    async fn a_foreign_document_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path());
        let rc = sink.upsert(&with_arn("p", "j", "arn:mine"), &WriteContext::new()).await.unwrap();
        // Someone replaced the file with another job's document.
        std::fs::write(&rc.ids["path"], sink.render(&with_arn("p", "j", "arn:theirs")).unwrap()).unwrap();
        let gone = sink.retract("arn:mine", &WriteContext::new().with_previous(Some(rc.clone()))).await.unwrap().unwrap();
        assert_eq!(gone.writes, 0);
        assert!(Path::new(&rc.ids["path"]).exists());
    }
}
