//! What a run should hold for a record ([`Desired`]), in MLflow's terms. Pure: no I/O.
//!
//! See `docs/mapping.md` (column "Sink `mlflow`") for the table this implements.

use std::collections::{BTreeMap, BTreeSet};

use sagesync_core::{ResourceKind, RunRecord, Timestamp};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::MlflowSettings;
use crate::keys::{assign_keys, cut_chars, hex_prefix, mlflow_key, KeyCollision, MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS};

/// The tag that names the job of a run: the idempotency key.
pub const ARN_TAG: &str = "sagemaker.training_job_arn";

/// The MLflow tag that names the ARN of a run of `kind`: `sagemaker.training_job_arn`,
/// `sagemaker.tuning_job_arn`, `sagemaker.pipeline_execution_arn`. A parent's run carries its
/// own and no `sagemaker.training_job_arn`; its children carry both.
pub fn identity_tag(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::TrainingJob => ARN_TAG,
        ResourceKind::TuningJob => "sagemaker.tuning_job_arn",
        ResourceKind::PipelineExecution => "sagemaker.pipeline_execution_arn",
        ResourceKind::ModelPackage => crate::registry::PACKAGE_TAG,
    }
}

/// The kind of resource an ARN names (`...:hyper-parameter-tuning-job/...`).
pub fn kind_of_arn(arn: &str) -> ResourceKind {
    if arn.contains(":hyper-parameter-tuning-job/") {
        ResourceKind::TuningJob
    } else if arn.contains(":pipeline/") && arn.contains("/execution/") {
        ResourceKind::PipelineExecution
    } else if arn.contains(":model-package/") {
        ResourceKind::ModelPackage
    } else {
        ResourceKind::TrainingJob
    }
}
/// The tag holding the digest of the metric histories written to the run.
pub const HISTORY_DIGEST_TAG: &str = "sagesync.history_digest";
/// Prefix of the tags that keep a rewritten key's original name.
pub const ORIGINAL_PREFIX: &str = "sagesync.original";
/// Prefix of the tags that say where a metric's history came from and what is wrong with it
/// (`sagemaker_metrics, iteration, Last; truncated`).
pub const HISTORY_PREFIX: &str = "sagesync.history";
/// Prefix of the tags that describe a value cut to the server's limit.
pub const TRUNCATED_PREFIX: &str = "sagesync.truncated";
/// Prefix of the tags that record a hyperparameter whose value changed (`on_param_change = "tag"`).
pub const PARAM_CHANGED_PREFIX: &str = "sagesync.param_changed";
/// Job tags whose keys start with these are stored under `sagemaker.tag.` instead.
const RESERVED_PREFIXES: [&str; 3] = ["mlflow.", "sagemaker.", "sagesync."];

/// One metric point, as `log-batch` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Key.
    pub key: String,
    /// Value (possibly non-finite: sent as `"NaN"`, `"Infinity"`, `"-Infinity"`).
    pub value: f64,
    /// Epoch milliseconds, from the job.
    pub timestamp: i64,
    /// Step.
    pub step: i64,
    /// Whether `timestamp` stands in for a time the source did not give (a point by iteration
    /// number, stamped with the job's end): such a point is the same point whatever the time
    /// (the job's end appears when it ends).
    pub timeless: bool,
}

impl Point {
    /// The `log-batch` JSON form (MLflow's REST API takes a non-finite double as its name).
    pub fn json(&self) -> Value {
        let value = match sagesync_core::model::metric_value::non_finite_name(self.value) {
            Some(name) => json!(name),
            None => json!(self.value),
        };
        json!({"key": self.key, "value": value, "timestamp": self.timestamp, "step": self.step})
    }
    /// Identity for de-duplication (bit-exact value, see [`value_bits`]).
    pub fn identity(&self) -> (i64, i64, u64) {
        (self.timestamp, self.step, value_bits(self.value))
    }
}

/// A metric value's bits as MLflow gives it back: every NaN alike, and the largest finite
/// double as infinity (a SQL tracking store keeps ±Infinity as ±1.7976931348623157e308).
pub fn value_bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else if v == f64::MAX {
        f64::INFINITY.to_bits()
    } else if v == f64::MIN {
        f64::NEG_INFINITY.to_bits()
    } else {
        v.to_bits()
    }
}

/// One dataset input for `runs/log-inputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// Dataset name (the channel name).
    pub name: String,
    /// Digest of the channel's location, metadata and manifest.
    pub digest: String,
    /// `s3` or `external`.
    pub source_type: &'static str,
    /// `{"uri": ...}`.
    pub source: String,
    /// JSON metadata (content type, compression, objects...).
    pub profile: String,
    /// Channel name, as the `mlflow.data.context` input tag.
    pub context: String,
}

impl Input {
    /// The `DatasetInput` JSON form.
    pub fn json(&self) -> Value {
        json!({
            "tags": [{"key": "mlflow.data.context", "value": self.context}],
            "dataset": {"name": self.name, "digest": self.digest, "source_type": self.source_type, "source": self.source, "profile": self.profile},
        })
    }
}

/// What the run of a record should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Experiment name.
    pub experiment: String,
    /// Run name.
    pub run_name: String,
    /// The job ARN.
    pub arn: String,
    /// Start, epoch ms.
    pub start_ms: Option<i64>,
    /// End, epoch ms (terminal statuses only).
    pub end_ms: Option<i64>,
    /// `RUNNING`, `FINISHED`, `FAILED` or `KILLED`.
    pub status: &'static str,
    /// Params `(key, value)`, values at most 6,000 characters.
    pub params: Vec<(String, String)>,
    /// Tags `(key, value)`, values at most 8,000 characters; the ARN tag first.
    pub tags: Vec<(String, String)>,
    /// Final metric points.
    pub metrics: Vec<Point>,
    /// Metric histories `(key, points)`.
    pub history: Vec<(String, Vec<Point>)>,
    /// What each history holds, by key: `source, resolution, stat` (the tag
    /// `sagesync.history.<key>` before any `;`). A run holding a key's points of one kind never
    /// gets another kind's points mixed in.
    pub history_kinds: BTreeMap<String, String>,
    /// The tag key that says each history's kind, by metric key (`sagesync.history.<key>`, or
    /// what the key rules made of it when that is too long).
    pub history_tags: BTreeMap<String, String>,
    /// Final values not logged beside a series by iteration, by key: logged after the run's
    /// own series instead when the run keeps another kind under that key.
    pub held_finals: BTreeMap<String, Point>,
    /// Digest of `history` (empty when there is none).
    pub history_digest: String,
    /// Dataset inputs.
    pub inputs: Vec<Input>,
    /// Values that did not fit and were cut (`param x: 7000 characters`...), for the receipt.
    pub cut_values: Vec<String>,
    /// The SageMaker-native run id of the job, when it has one.
    pub native_run_id: Option<String>,
    /// The tag that carries `arn` (see [`identity_tag`]).
    pub id_tag: &'static str,
    /// A child's parent: its ARN tag and ARN (the run is nested under the parent's run).
    pub parent: Option<(&'static str, String)>,
}

/// Why a record cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Two names share a key.
    #[error(transparent)]
    Collision(#[from] KeyCollision),
    /// The experiment name could not be made.
    #[error("experiment: {0}")]
    Experiment(String),
    /// The record's ARN is unusable as a filter value.
    #[error("the job ARN `{0}` is empty or contains a quote or backslash")]
    BadArn(String),
    /// Two different values for one tag key.
    #[error("tag `{key}` would get two values (from {first} and {second})")]
    TagTwice {
        /// The key.
        key: String,
        /// Where the first came from.
        first: String,
        /// Where the second came from.
        second: String,
    },
}

fn millis(t: Option<Timestamp>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

/// MLflow's run status for a SageMaker job status.
pub fn run_status(job_status: &str) -> &'static str {
    match job_status {
        "Completed" => "FINISHED",
        "Failed" => "FAILED",
        "Stopped" => "KILLED",
        _ => "RUNNING",
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Collects tags by raw key, refusing two values for one key.
#[derive(Default)]
struct TagSet {
    tags: Vec<(String, String, &'static str)>,
    by_key: BTreeMap<String, usize>,
}

impl TagSet {
    fn put(&mut self, key: String, value: String, from: &'static str) -> Result<(), MappingError> {
        match self.by_key.get(&key) {
            Some(&i) if self.tags[i].1 == value => Ok(()),
            Some(&i) => Err(MappingError::TagTwice { key, first: self.tags[i].2.to_string(), second: from.to_string() }),
            None => {
                self.by_key.insert(key.clone(), self.tags.len());
                self.tags.push((key, value, from));
                Ok(())
            }
        }
    }
}

/// Builds the desired state of `r`'s run.
pub fn desired(r: &RunRecord, s: &MlflowSettings) -> Result<Desired, MappingError> {
    let arn = r.run.external_id.clone();
    if arn.trim().is_empty() || arn.contains('\'') || arn.contains('\\') {
        return Err(MappingError::BadArn(arn));
    }
    let experiment = s.experiment.render(r).map_err(MappingError::Experiment)?;
    let status = run_status(&r.run.status);
    let start_ms = millis(r.run.start);
    let end_ms = if status == "RUNNING" { None } else { millis(r.run.end).or(start_ms) };
    // A final metric without its own time takes the job's end (or start): never the time of the sync.
    let job_time = millis(r.run.end).or(start_ms).unwrap_or(0);

    let mut originals: Vec<(String, String)> = Vec::new();
    let mut cut_values = Vec::new();
    let mut truncation_tags: Vec<(String, String)> = Vec::new();

    // Params: the hyperparameters, and a tuning job's ranges (`range.<name>`, the range as JSON).
    let mut named: Vec<(String, String)> = r
        .hyperparameters
        .iter()
        .map(|h| {
            let full = match &h.value {
                Value::String(s) => s.clone(),
                _ => h.raw.trim().to_string(),
            };
            (h.name.clone(), full)
        })
        .collect();
    if let Some(t) = &r.lineage.tuning {
        for kind in ["IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges"] {
            for range in t.parameter_ranges.get(kind).and_then(Value::as_array).into_iter().flatten() {
                let Some(name) = range.get("Name").and_then(Value::as_str) else { continue };
                let mut rest = range.clone();
                if let Some(o) = rest.as_object_mut() {
                    o.remove("Name");
                }
                named.push((format!("range.{name}"), rest.to_string()));
            }
        }
    }
    let mut params = Vec::new();
    for (key, name) in assign_keys("param", named.iter().map(|(n, _)| n.as_str()))? {
        if key != name {
            originals.push((format!("{ORIGINAL_PREFIX}.param.{key}"), name.clone()));
        }
        let Some((_, full)) = named.iter().rev().find(|(n, _)| *n == name) else {
            continue;
        };
        let (value, cut) = cut_chars(full, MAX_PARAM_VALUE_CHARS);
        if cut {
            cut_values.push(format!("param {key}: {} characters", full.chars().count()));
            truncation_tags.push((format!("{TRUNCATED_PREFIX}.param.{key}"), describe_cut(full, MAX_PARAM_VALUE_CHARS)));
        }
        params.push((key, value));
    }

    // Metrics: final values and histories share one key space.
    let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).chain(r.metric_history.iter().map(|h| h.name.as_str())).collect();
    let keys: BTreeMap<String, String> = assign_keys("metric", names)?.into_iter().map(|(k, n)| (n, k)).collect();
    for (name, key) in &keys {
        if key != name {
            originals.push((format!("{ORIGINAL_PREFIX}.metric.{key}"), name.clone()));
        }
    }
    let mut history: Vec<(String, Vec<Point>)> = Vec::new();
    let mut history_kinds: BTreeMap<String, String> = BTreeMap::new();
    for series in &r.metric_history {
        let Some(key) = keys.get(&series.name) else {
            continue;
        };
        let line = series.provenance();
        if let Some(kind) = line.split(';').next().filter(|k| !k.is_empty()) {
            history_kinds.insert(key.clone(), kind.to_string());
        }
        let mut seen = BTreeSet::new();
        let mut points = Vec::new();
        for p in &series.points {
            let point = Point {
                key: key.clone(),
                value: p.value,
                timestamp: p.timestamp.map_or(job_time, |t| t.timestamp_millis()),
                step: p.step,
                timeless: p.timestamp.is_none(),
            };
            if seen.insert(point.identity()) {
                points.push(point);
            }
        }
        match history.iter_mut().find(|(k, _)| k == key) {
            Some((_, existing)) => existing.extend(points),
            None => history.push((key.clone(), points)),
        }
    }
    let mut metrics: Vec<Point> = Vec::new();
    let mut held_finals: BTreeMap<String, Point> = BTreeMap::new();
    for m in &r.metrics {
        let Some(key) = keys.get(&m.name) else {
            continue;
        };
        // A series by iteration number ends with the job's last iteration: that is the run's
        // latest value, and a final value at a step of its own would collide with the next
        // iteration when the series grows.
        if history_kinds.get(key).is_some_and(|k| k.contains(", iteration")) && history.iter().any(|(k, p)| k == key && !p.is_empty()) {
            let at =
                Point { key: key.clone(), value: m.value, timestamp: millis(m.timestamp).unwrap_or(job_time), step: 0, timeless: false };
            held_finals.insert(key.clone(), at);
            continue;
        }
        // After its history, so the final value is the run's latest value of that metric.
        let after_history =
            history.iter().find(|(k, _)| k == key).and_then(|(_, pts)| pts.iter().map(|p| p.step).max()).map_or(0, |s| s + 1);
        let point = Point {
            key: key.clone(),
            value: m.value,
            timestamp: millis(m.timestamp).unwrap_or(job_time),
            step: m.step.unwrap_or(after_history),
            timeless: false,
        };
        if !metrics.iter().any(|p| p.key == point.key && p.identity() == point.identity()) {
            metrics.push(point);
        }
    }
    let history_digest = if history.iter().all(|(_, p)| p.is_empty()) { String::new() } else { digest_history(&history) };

    // Tags.
    let mut set = TagSet::default();
    let kind = r.lineage.kind;
    let id_tag = identity_tag(kind);
    set.put(id_tag.into(), arn.clone(), "the job ARN")?;
    set.put(format!("sagemaker.{}_name", kind.as_str()), r.run.name.clone(), "the job name")?;
    set.put(
        "mlflow.note.content".into(),
        format!("SageMaker {} {} ({arn})", kind.as_str().replace('_', " "), r.run.name),
        "the run description",
    )?;
    let parent = r.lineage.parent.as_ref().filter(|p| !p.arn.is_empty() && !p.arn.contains('\'') && !p.arn.contains('\\'));
    if let Some(p) = parent {
        set.put(identity_tag(p.kind).into(), p.arn.clone(), "the parent's ARN")?;
    }
    if !r.project.name.is_empty() {
        set.put("sagemaker.project".into(), r.project.name.clone(), "the project")?;
    }
    if !r.project.user.is_empty() {
        set.put("mlflow.user".into(), r.project.user.clone(), "the project user")?;
    }
    if !r.project.description.is_empty() {
        set.put("sagemaker.project_description".into(), r.project.description.clone(), "the project description")?;
    }
    if !r.experiment.is_empty() {
        set.put("sagemaker.experiment".into(), r.experiment.clone(), "the record's experiment")?;
    }
    if let Some(uri) = r.model.artifact_uri.as_deref().filter(|u| !u.is_empty()) {
        set.put("sagemaker.model_artifact".into(), uri.to_string(), "the model artifact")?;
    }
    if !r.model.name.is_empty() {
        set.put("sagemaker.model_name".into(), r.model.name.clone(), "the model name")?;
    }
    if !r.model.model_type.is_empty() {
        set.put("sagemaker.model_type".into(), r.model.model_type.clone(), "the model type")?;
    }
    for (k, v) in &r.attributes {
        // A job fact never overrides a tag set above (a custom mapper may disagree with the
        // record's own fields): a differing one is kept beside it.
        let mut key = format!("sagemaker.{k}");
        let value = json_text(v);
        if key == ARN_TAG && kind != ResourceKind::TrainingJob {
            // A parent's run never carries a training job's ARN tag: that tells its children.
            key = format!("sagemaker.attribute.{k}");
        }
        match set.by_key.get(&key) {
            Some(&i) if set.tags[i].1 != value => set.put(format!("sagemaker.attribute.{k}"), value, "a job attribute")?,
            _ => set.put(key, value, "a job attribute")?,
        }
    }
    for t in r.tags.iter() {
        let key = if RESERVED_PREFIXES.iter().any(|p| t.key.starts_with(p)) { format!("sagemaker.tag.{}", t.key) } else { t.key.clone() };
        set.put(key, t.value.clone(), "a job tag")?;
    }
    for (k, v) in originals {
        set.put(k, v, "an original name")?;
    }
    let mut said = BTreeSet::new();
    for series in &r.metric_history {
        let (Some(key), line) = (keys.get(&series.name), series.provenance()) else { continue };
        if !line.is_empty() && said.insert(key.clone()) {
            set.put(format!("{HISTORY_PREFIX}.{key}"), line, "a metric history's source")?;
        }
    }
    let raw: Vec<(String, String)> = set.tags.into_iter().map(|(k, v, _)| (k, v)).chain(truncation_tags).collect();
    let mut tags = Vec::new();
    let mut more_truncations = Vec::new();
    let keyed = assign_keys("tag", raw.iter().map(|(k, _)| k.as_str()))?;
    let history_tags: BTreeMap<String, String> = history_kinds
        .keys()
        .filter_map(|k| {
            let name = format!("{HISTORY_PREFIX}.{k}");
            keyed.iter().find(|(_, n)| *n == name).map(|(tag, _)| (k.clone(), tag.clone()))
        })
        .collect();
    for (key, name) in &keyed {
        let Some((_, value)) = raw.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let (v, cut) = cut_chars(value, MAX_TAG_VALUE_CHARS);
        if cut {
            cut_values.push(format!("tag {key}: {} characters", value.chars().count()));
            more_truncations.push((mlflow_key(&format!("{TRUNCATED_PREFIX}.tag.{key}")), describe_cut(value, MAX_TAG_VALUE_CHARS)));
        }
        if key != name {
            more_truncations.push((mlflow_key(&format!("{ORIGINAL_PREFIX}.tag.{key}")), cut_chars(name, MAX_TAG_VALUE_CHARS).0));
        }
        tags.push((key.clone(), v));
    }
    for (k, v) in more_truncations {
        if tags.iter().any(|(t, _)| *t == k) {
            return Err(MappingError::TagTwice { key: k, first: "a job tag".into(), second: "a note of sagesync".into() });
        }
        tags.push((k, v));
    }

    // Inputs.
    let mut inputs = Vec::new();
    for d in &r.datasets {
        let mut h = Sha256::new();
        h.update(d.uri.as_bytes());
        for (k, v) in &d.metadata {
            h.update([0]);
            h.update(k.as_bytes());
            h.update([1]);
            h.update(v.as_bytes());
        }
        let mut profile = serde_json::Map::new();
        for (k, v) in &d.metadata {
            profile.insert(k.clone(), json!(v));
        }
        if let Some(m) = &d.manifest {
            for o in &m.objects {
                h.update([2]);
                h.update(o.key.as_bytes());
                h.update(o.size.to_le_bytes());
                h.update(o.etag.as_bytes());
            }
            profile.insert("objects".into(), json!(m.objects.len()));
            profile.insert("bytes".into(), json!(m.objects.iter().map(|o| o.size).sum::<u64>()));
            profile.insert("listing_truncated".into(), json!(m.truncated));
        }
        let name = cut_chars(&d.name, 500).0;
        inputs.push(Input {
            digest: hex_prefix(&h.finalize(), 16),
            source_type: if d.uri.starts_with("s3://") { "s3" } else { "external" },
            source: json!({"uri": d.uri}).to_string(),
            profile: Value::Object(profile).to_string(),
            context: cut_chars(&d.name, 500).0,
            name,
        });
    }

    let native_run_id = r.attributes.get("mlflow_run_id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    Ok(Desired {
        experiment,
        run_name: r.run.name.clone(),
        arn,
        start_ms,
        end_ms,
        status,
        params,
        tags,
        metrics,
        history,
        history_kinds,
        history_tags,
        held_finals,
        history_digest,
        inputs,
        cut_values,
        native_run_id,
        id_tag,
        parent: parent.map(|p| (identity_tag(p.kind), p.arn.clone())),
    })
}

fn describe_cut(full: &str, limit: usize) -> String {
    format!("{} characters, sha256 {}; the first {limit} are stored", full.chars().count(), hex_prefix(full.as_bytes(), 64))
}

fn digest_history(history: &[(String, Vec<Point>)]) -> String {
    let mut h = Sha256::new();
    for (key, points) in history {
        h.update(key.as_bytes());
        h.update([0]);
        for p in points {
            h.update(p.timestamp.to_le_bytes());
            h.update(p.step.to_le_bytes());
            h.update(value_bits(p.value).to_le_bytes());
        }
        h.update([1]);
    }
    hex_prefix(&h.finalize(), 16)
}

impl Desired {
    /// A digest of everything this state would write, plus the settings that change how it is
    /// written: equal digests mean a re-sync has nothing to do.
    pub fn digest(&self, s: &MlflowSettings) -> String {
        let mut h = Sha256::new();
        let mut put = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        put(self.experiment.as_bytes());
        put(self.run_name.as_bytes());
        put(self.arn.as_bytes());
        put(format!("{:?}{:?}{}", self.start_ms, self.end_ms, self.status).as_bytes());
        put(format!("{:?}{}", s.on_param_change, s.adopt_native_runs).as_bytes());
        for (k, v) in self.params.iter().chain(self.tags.iter()) {
            put(k.as_bytes());
            put(v.as_bytes());
        }
        for p in &self.metrics {
            put(p.key.as_bytes());
            put(format!("{:?}", p.identity()).as_bytes());
        }
        put(self.history_digest.as_bytes());
        for i in &self.inputs {
            put(i.name.as_bytes());
            put(i.digest.as_bytes());
        }
        hex_prefix(&h.finalize(), 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagesync_core::{HyperParameter, Metric, MetricPoint, MetricSeries, Model, Project, Run, Split, Tags};

    fn record() -> RunRecord {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&chrono::Utc)).ok();
        RunRecord {
            lineage: Default::default(),
            project: Project { name: "churn".into(), user: "ana".into(), description: String::new() },
            experiment: "exp".into(),
            run: Run {
                name: "job-1".into(),
                external_id: "arn:aws:sagemaker:us-east-1:123456789012:training-job/job-1".into(),
                status: "Completed".into(),
                start: t("2026-01-01T00:00:00Z"),
                end: t("2026-01-01T01:00:00Z"),
            },
            model: Model { name: String::new(), model_type: String::new(), artifact_uri: Some("s3://b/model.tar.gz".into()) },
            hyperparameters: vec![
                HyperParameter { name: "eta".into(), raw: "0.2".into(), value: json!(0.2) },
                HyperParameter { name: "script".into(), raw: "\"train.py\"".into(), value: json!("train.py") },
                HyperParameter { name: "long".into(), raw: "x".repeat(7000), value: json!("x".repeat(7000)) },
            ],
            datasets: vec![],
            metrics: vec![
                Metric { name: "validation:mAP@0.75".into(), value: 0.5, split: Split::Validation, timestamp: None, step: None },
                Metric { name: "nan".into(), value: f64::NAN, split: Split::None, timestamp: None, step: None },
            ],
            metric_history: vec![MetricSeries::new(
                "validation:mAP@0.75",
                vec![MetricPoint { timestamp: t("2026-01-01T00:10:00Z"), step: 0, value: 0.1 }],
            )],
            tags: [("team", "ml"), ("mlflow.user", "spoof")].into_iter().collect::<Tags>(),
            attributes: [("training_job_status".to_string(), json!("Completed")), ("instance_count".to_string(), json!(2))]
                .into_iter()
                .collect(),
        }
    }

    fn settings() -> MlflowSettings {
        MlflowSettings::for_url("http://127.0.0.1:1").unwrap()
    }

    #[test]
    fn maps_a_record() {
        let d = desired(&record(), &settings()).unwrap();
        assert_eq!(d.experiment, "churn");
        assert_eq!(d.status, "FINISHED");
        assert_eq!(d.tags[0], (ARN_TAG.to_string(), record().run.external_id));
        let tag = |k: &str| d.tags.iter().find(|(t, _)| t == k).map(|(_, v)| v.as_str());
        assert_eq!(tag("team"), Some("ml"));
        assert_eq!(tag("mlflow.user"), Some("ana"), "a job tag cannot spoof a system tag");
        assert_eq!(tag("sagemaker.tag.mlflow.user"), Some("spoof"));
        assert_eq!(tag("sagemaker.instance_count"), Some("2"));
        assert_eq!(tag("sagemaker.model_artifact"), Some("s3://b/model.tar.gz"));
        assert!(tag("sagesync.truncated.param.long").is_some_and(|v| v.starts_with("7000 characters")));
        assert_eq!(d.cut_values.len(), 1);
        assert_eq!(d.params.iter().find(|(k, _)| k == "script").map(|(_, v)| v.as_str()), Some("train.py"));
        assert_eq!(d.params.iter().find(|(k, _)| k == "long").map(|(_, v)| v.chars().count()), Some(6000));
        let key = mlflow_key("validation:mAP@0.75");
        assert_eq!(tag(&format!("sagesync.original.metric.{key}")), Some("validation:mAP@0.75"));
        assert_eq!(d.metrics.len(), 2, "a NaN final value is sent too (MLflow stores it)");
        assert_eq!(d.metrics[0].step, 1, "the final value comes after its history");
        assert_eq!(d.metrics[0].timestamp, 1767229200000, "the job's end time");
        assert_eq!(d.metrics[1].json()["value"], json!("NaN"));
        assert!(!d.history_digest.is_empty());
    }

    #[test]
    fn digest_is_stable_and_sensitive() {
        let s = settings();
        let a = desired(&record(), &s).unwrap().digest(&s);
        assert_eq!(a, desired(&record(), &s).unwrap().digest(&s));
        let mut r = record();
        r.hyperparameters[0].value = json!(0.3);
        r.hyperparameters[0].raw = "0.3".into();
        assert_ne!(a, desired(&r, &s).unwrap().digest(&s));
    }

    #[test]
    fn statuses() {
        assert_eq!(run_status("Completed"), "FINISHED");
        assert_eq!(run_status("Failed"), "FAILED");
        assert_eq!(run_status("Stopped"), "KILLED");
        assert_eq!(run_status("InProgress"), "RUNNING");
    }
}
