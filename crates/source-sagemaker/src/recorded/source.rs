use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sagesync_core::{Cursor, JobRef, ListScope, ListingProblem, Page, Source, SyncError, TrainingJob};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::document::{execution_from_document, job_from_document, kind_of_document, package_from_document, tuner_from_document};

/// Reads recorded jobs. Everything is read on the first listing; the listing is sorted by
/// `LastModifiedTime` (then ARN) and honours the cursor.
pub struct RecordedSource {
    paths: Vec<PathBuf>,
    recursive: bool,
    stdin: OnceCell<String>,
}

struct Loaded {
    jobs: Vec<(TrainingJob, String)>,
    problems: Vec<(String, SyncError)>,
}

impl RecordedSource {
    /// A source over these paths (`-` is standard input).
    pub fn new(paths: Vec<PathBuf>, recursive: bool) -> Self {
        RecordedSource { paths, recursive, stdin: OnceCell::new() }
    }

    async fn stdin_text(&self) -> Result<&String, SyncError> {
        self.stdin
            .get_or_try_init(|| async {
                use tokio::io::AsyncReadExt;
                let mut s = String::new();
                tokio::io::stdin().read_to_string(&mut s).await.map_err(|e| SyncError::permanent_with("cannot read standard input", e))?;
                Ok(s)
            })
            .await
    }

    async fn load(&self) -> Loaded {
        let mut out = Loaded { jobs: Vec::new(), problems: Vec::new() };
        for p in &self.paths {
            if p.as_os_str() == "-" {
                match self.stdin_text().await {
                    Ok(text) => parse_text(text, "<stdin>", false, &mut out),
                    Err(e) => out.problems.push(("<stdin>".into(), e)),
                }
                continue;
            }
            let mut files = Vec::new();
            match tokio::fs::metadata(p).await {
                Ok(m) if m.is_dir() => {
                    if let Err(e) = collect_dir(p, self.recursive, &mut files) {
                        out.problems.push((p.display().to_string(), SyncError::permanent(format!("cannot read directory: {e}"))));
                    }
                }
                Ok(_) => files.push(p.clone()),
                Err(e) => {
                    out.problems.push((p.display().to_string(), SyncError::permanent(format!("cannot read: {e}"))));
                }
            }
            for f in files {
                let origin = f.display().to_string();
                match tokio::fs::read(&f).await {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => parse_text(&text, &origin, is_lines(&f), &mut out),
                        Err(e) => out.problems.push((
                            origin,
                            SyncError::Malformed {
                                origin: f.display().to_string(),
                                message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
                            },
                        )),
                    },
                    Err(e) => out.problems.push((origin, SyncError::permanent(format!("cannot read: {e}")))),
                }
            }
        }
        out
    }
}

fn is_lines(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("jsonl") | Some("ndjson"))
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            if recursive {
                collect_dir(&e, true, out)?;
            }
        } else if matches!(e.extension().and_then(|x| x.to_str()), Some("json") | Some("jsonl") | Some("ndjson")) {
            out.push(e);
        }
    }
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn accept(doc: &Value, origin: String, out: &mut Loaded) {
    // A top-level array holds several documents.
    if let Value::Array(items) = doc {
        for (i, d) in items.iter().enumerate() {
            accept(d, format!("{origin}[{i}]"), out);
        }
        return;
    }
    // A DescribeHyperParameterTuningJob or DescribePipelineExecution document is told by its
    // ARN field.
    let kind = kind_of_document(doc);
    let (read, arn_field, status_field) = if kind == sagesync_core::ResourceKind::TuningJob {
        (tuner_from_document(doc), "HyperParameterTuningJobArn", "HyperParameterTuningJobStatus")
    } else if kind == sagesync_core::ResourceKind::PipelineExecution {
        (execution_from_document(doc), "PipelineExecutionArn", "PipelineExecutionStatus")
    } else if kind == sagesync_core::ResourceKind::ModelPackage {
        (package_from_document(doc), "ModelPackageArn", "ModelPackageStatus")
    } else {
        // A recorded training job stays a job on its own (its `TuningJobArn` links it to no
        // parent here): its record, calls and bytes are what they were.
        let read = job_from_document(doc).map(|mut j| {
            j.lineage = Default::default();
            j
        });
        (read, "TrainingJobArn", "TrainingJobStatus")
    };
    match read {
        Ok(job) if job.arn.is_empty() => out
            .problems
            .push((origin.clone(), SyncError::Malformed { origin, message: format!("job `{}`: field `{arn_field}`: missing", job.name) })),
        Ok(job) if job.status.is_empty() => out.problems.push((
            origin.clone(),
            SyncError::Malformed { origin, message: format!("job `{}`: field `{status_field}`: missing", job.name) },
        )),
        Ok(job) => out.jobs.push((job, origin)),
        Err(e) => out.problems.push((origin.clone(), SyncError::Malformed { origin, message: e.to_string() })),
    }
}

/// What one recorded file's text holds: its jobs with their origins (`name:line:column`, with
/// `[i]` for items of a top-level array), and its problems, each against its origin. `lines`
/// reads JSON Lines (`.jsonl`, `.ndjson`); otherwise one document, an array of documents, or
/// documents one after another.
#[allow(clippy::type_complexity)]
pub fn parse_recorded(text: &str, name: &str, lines: bool) -> (Vec<(TrainingJob, String)>, Vec<(String, SyncError)>) {
    let mut out = Loaded { jobs: Vec::new(), problems: Vec::new() };
    parse_text(text, name, lines, &mut out);
    (out.jobs, out.problems)
}

fn parse_text(text: &str, name: &str, lines: bool, out: &mut Loaded) {
    if lines {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(doc) => accept(&doc, format!("{}:{}:1", name, i + 1), out),
                Err(e) => {
                    // serde_json counts a position just after a newline as column 0.
                    let origin = format!("{}:{}:{}", name, i + 1, e.column().max(1));
                    out.problems.push((origin.clone(), SyncError::Malformed { origin, message: format!("invalid JSON: {e}") }));
                }
            }
        }
        return;
    }
    // One document, an array of documents, or several concatenated documents.
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut start = 0usize;
    loop {
        // Skip whitespace to report the document's own first position.
        let rest = &text[start..];
        let skipped = rest.len() - rest.trim_start().len();
        let doc_start = start + skipped;
        match stream.next() {
            None => break,
            Some(Ok(doc)) => {
                let (l, c) = line_col(text, doc_start);
                accept(&doc, format!("{name}:{l}:{c}"), out);
                start = stream.byte_offset();
            }
            Some(Err(e)) => {
                // serde_json counts a position just after a newline as column 0.
                let origin = format!("{}:{}:{}", name, e.line().max(1), e.column().max(1));
                out.problems.push((origin.clone(), SyncError::Malformed { origin, message: format!("invalid JSON: {e}") }));
                break;
            }
        }
    }
}

#[async_trait]
impl Source for RecordedSource {
    /// Every document, every time (recorded files are read whole; a file that is half written
    /// now is a problem of this pass and read again by the next one). The ledger skips what it
    /// already holds. A range keeps the documents modified within it.
    async fn list(&self, scope: &ListScope, _cursor: &Cursor) -> Result<Page, SyncError> {
        let loaded = self.load().await;
        let in_range = |j: &TrainingJob| match scope {
            ListScope::Incremental => true,
            ListScope::Range { from, until } => {
                let lm = j.last_modified_time;
                from.is_none_or(|f| lm.is_some_and(|t| t >= f)) && until.is_none_or(|u| lm.is_none_or(|t| t < u))
            }
        };
        let mut jobs: Vec<(TrainingJob, String)> = loaded.jobs.into_iter().filter(|(j, _)| in_range(j)).collect();
        jobs.sort_by(|a, b| (a.0.last_modified_time, &a.0.arn).cmp(&(b.0.last_modified_time, &b.0.arn)));
        Ok(Page {
            jobs: jobs.into_iter().map(|(j, origin)| JobRef::with_job(j, Some(origin))).collect(),
            problems: loaded.problems.into_iter().map(|(origin, error)| ListingProblem::at(origin, error)).collect(),
            next: Cursor::default(),
            done: true,
        })
    }

    async fn fetch(&self, job: &JobRef) -> Result<TrainingJob, SyncError> {
        if let Some(j) = &job.job {
            return Ok(Arc::unwrap_or_clone(j.clone()));
        }
        let loaded = self.load().await;
        loaded
            .jobs
            .into_iter()
            .map(|(j, _)| j)
            .filter(|j| j.name == job.name || job.arn.as_deref() == Some(j.arn.as_str()) || j.arn == job.name)
            .max_by_key(|j| j.last_modified_time)
            .ok_or_else(|| SyncError::NotFound(job.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, lm: &str) -> String {
        format!(
            r#"{{"TrainingJobName": "{name}", "TrainingJobArn": "arn:x:{name}", "TrainingJobStatus": "Completed", "LastModifiedTime": "{lm}"}}"#
        )
    }

    #[test]
    fn error_positions_are_never_column_zero() {
        // Found by the recorded_reader fuzz target: serde_json reports an error just after a
        // newline (here: the end of the text) as column 0.
        for (text, lines) in [("{\"TrainingJobName\":\n", false), ("{\"a\":\n", true), ("[\n", false)] {
            let (jobs, problems) = super::parse_recorded(text, "f.json", lines);
            assert!(jobs.is_empty());
            assert_eq!(problems.len(), 1, "{text:?}");
            let origin = &problems[0].0;
            assert!(!origin.ends_with(":0"), "{origin}");
        }
    }

    #[tokio::test]
    async fn reads_files_lines_and_reports_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), doc("a", "2026-01-02T00:00:00Z")).unwrap();
        std::fs::write(
            dir.path().join("b.jsonl"),
            format!("{}\n\n{{oops\n{}\n", doc("b1", "2026-01-01T00:00:00Z"), doc("b2", "2026-01-03T00:00:00Z")),
        )
        .unwrap();
        std::fs::write(dir.path().join("c.json"), "{\n  \"TrainingJobName\": \"c\",\n  \"HyperParameters\": 5\n}").unwrap();
        std::fs::write(dir.path().join("d.json"), "{\n  \"TrainingJobName\": ").unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "nope").unwrap();
        let s = RecordedSource::new(vec![dir.path().to_path_buf()], false);
        let l = s.list(&ListScope::Incremental, &Cursor::default()).await.unwrap();
        let names: Vec<_> = l.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["b1", "a", "b2"], "sorted by LastModifiedTime");
        assert_eq!(l.problems.len(), 3);
        let origins: Vec<String> = l.problems.iter().map(|p| p.origin.clone()).collect();
        assert!(origins[0].ends_with("b.jsonl:3:2"), "{origins:?}");
        assert!(origins[1].ends_with("c.json:1:1"), "{origins:?}");
        assert!(l.problems[1].error.to_string().contains("HyperParameters"));
        assert!(origins[2].ends_with("d.json:2:21"), "{origins:?}");
        // A range keeps what was modified within it.
        let range =
            ListScope::Range { from: Some("2026-01-02T00:00:00Z".parse().unwrap()), until: Some("2026-01-03T00:00:00Z".parse().unwrap()) };
        let r = s.list(&range, &Cursor::default()).await.unwrap();
        assert_eq!(r.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["a"]);
        // fetch by name
        let j = s.fetch(&JobRef::by_name("b2")).await.unwrap();
        assert_eq!(j.arn, "arn:x:b2");
        assert!(matches!(s.fetch(&JobRef::by_name("zz")).await, Err(SyncError::NotFound(_))));
    }

    #[tokio::test]
    async fn missing_path_is_a_problem_not_an_error() {
        let s = RecordedSource::new(vec![PathBuf::from("/nonexistent/sagesync")], false);
        let l = s.list(&ListScope::Incremental, &Cursor::default()).await.unwrap();
        assert_eq!(l.problems.len(), 1);
    }
}
