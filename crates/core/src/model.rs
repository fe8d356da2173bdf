//! The record model: [`TrainingJob`] is what a [`crate::Source`] yields, [`RunRecord`] is what a
//! [`crate::Sink`] receives. Both serialise to a documented JSON form (see `docs/record-model.md`).

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A timestamp in UTC. Serialised as RFC 3339 with millisecond precision.
pub type Timestamp = DateTime<Utc>;

/// Serde for metric values, which may be non-finite (a diverged loss): finite values are JSON
/// numbers, `NaN`, `Infinity` and `-Infinity` are those strings (what SageMaker's JSON wire
/// and MLflow's REST API use); either form is read back.
pub mod metric_value {
    use serde::{Deserialize, Deserializer, Serializer};

    /// The string form of a non-finite value (`None` for a finite one).
    pub fn non_finite_name(v: f64) -> Option<&'static str> {
        if v.is_nan() {
            Some("NaN")
        } else if v == f64::INFINITY {
            Some("Infinity")
        } else if v == f64::NEG_INFINITY {
            Some("-Infinity")
        } else {
            None
        }
    }

    /// Parses `NaN`, `Infinity`, `-Infinity` (any case, `inf` too) or a number written as text.
    pub fn parse(s: &str) -> Option<f64> {
        s.trim().parse::<f64>().ok()
    }

    /// Serialises a value.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match non_finite_name(*v) {
            Some(name) => s.serialize_str(name),
            None => s.serialize_f64(*v),
        }
    }

    /// Reads a number or one of the strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(f64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(n),
            Either::Text(t) => parse(&t).ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a number, NaN or Infinity"))),
        }
    }
}

/// [`metric_value`] for an optional value (`None` is left out by the field's
/// `skip_serializing_if`).
pub mod opt_metric_value {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises a value.
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::metric_value::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a number, one of the strings, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::metric_value")] f64);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// One key/value tag, kept in the order the source gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value (may be empty).
    pub value: String,
}

/// An ordered list of tags with lookup helpers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(pub Vec<Tag>);

impl Tags {
    /// The value of `key`; when a key repeats (some emulators append duplicates), the last wins.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|t| t.key == key).map(|t| t.value.as_str())
    }
    /// Whether `key` is present (any value, even empty).
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|t| t.key == key)
    }
    /// Adds or replaces a tag, keeping the first position of an existing key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if let Some(t) = self.0.iter_mut().find(|t| t.key == key) {
            t.value = value;
        } else {
            self.0.push(Tag { key, value });
        }
    }
    /// Iterates over the tags in order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }
    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no tags.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut tags = Tags::default();
        for (k, v) in iter {
            tags.insert(k, v);
        }
        tags
    }
}

/// Where an input channel reads its data from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataSource {
    /// `S3DataSource`: an S3 URI (prefix or manifest).
    S3 {
        /// The `S3Uri`.
        uri: String,
        /// `S3DataType` (`S3Prefix`, `ManifestFile`, `AugmentedManifestFile`, `Converse`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_type: Option<String>,
        /// `S3DataDistributionType` (`FullyReplicated`, `ShardedByS3Key`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distribution: Option<String>,
    },
    /// `FileSystemDataSource` (EFS or FSx for Lustre).
    FileSystem {
        /// `FileSystemType` (`EFS`, `FSxLustre`).
        file_system_type: String,
        /// `FileSystemId`.
        file_system_id: String,
        /// `DirectoryPath`.
        directory_path: String,
        /// `FileSystemAccessMode` (`rw`, `ro`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_mode: Option<String>,
    },
    /// Any other data-source kind, kept as the raw JSON object.
    Other {
        /// The name of the data-source member (e.g. `DatasetSource`).
        name: String,
        /// Its raw JSON.
        raw: serde_json::Value,
    },
}

impl DataSource {
    /// A URI-like description of the source: the S3 URI, or `efs://id/path`-style for file systems.
    pub fn uri(&self) -> String {
        match self {
            DataSource::S3 { uri, .. } => uri.clone(),
            DataSource::FileSystem { file_system_type, file_system_id, directory_path, .. } => {
                format!("{}://{}{}", file_system_type.to_ascii_lowercase(), file_system_id, directory_path)
            }
            DataSource::Other { name, .. } => format!("{}:", name),
        }
    }
    /// A short name for the kind: `s3`, `file_system` or the raw member name.
    pub fn kind_name(&self) -> &str {
        match self {
            DataSource::S3 { .. } => "s3",
            DataSource::FileSystem { .. } => "file_system",
            DataSource::Other { name, .. } => name,
        }
    }
}

/// One object of an S3 channel's manifest (filled by sources that list the channel's objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag as S3 reports it (quotes stripped).
    pub etag: String,
    /// Last-modified time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<Timestamp>,
}

/// The listed objects of an S3 channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelManifest {
    /// The objects, in key order.
    pub objects: Vec<ManifestObject>,
    /// True when the listing stopped at the configured cap.
    #[serde(default)]
    pub truncated: bool,
}

/// One input channel of a training job (`InputDataConfig[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// `ChannelName` (`train`, `validation`, `test`, ...).
    pub name: String,
    /// Where the data comes from.
    pub source: DataSource,
    /// `ContentType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `CompressionType` (`None`, `Gzip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// `RecordWrapperType` (`None`, `RecordIO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_wrapper: Option<String>,
    /// `InputMode` (`File`, `Pipe`, `FastFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<String>,
    /// Listed S3 objects, when the source was asked for manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ChannelManifest>,
    /// The processing job that wrote the data, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_by: Option<Producer>,
}

/// One final metric value (`FinalMetricDataList[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetric {
    /// `MetricName`, e.g. `validation:auc`.
    pub name: String,
    /// `Value` (non-finite when training diverged: `NaN`, `Infinity`, `-Infinity`).
    #[serde(with = "metric_value")]
    pub value: f64,
    /// `Timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
}

/// One point of a metric's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// When the value was recorded (from the source, never the time of the sync); `None` when
    /// the source gives the point by iteration number only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Position in the series: the iteration number when the source knows it, else 0, 1, 2...
    /// in timestamp order.
    pub step: i64,
    /// Value (possibly non-finite).
    #[serde(with = "metric_value")]
    pub value: f64,
}

/// Where a metric's history was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistorySource {
    /// SageMaker's metrics service (`BatchGetMetrics`).
    SagemakerMetrics,
    /// CloudWatch (`GetMetricData`).
    Cloudwatch,
}

impl HistorySource {
    /// The name used in records, tags and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            HistorySource::SagemakerMetrics => "sagemaker_metrics",
            HistorySource::Cloudwatch => "cloudwatch",
        }
    }
}

/// The recorded history of one metric, oldest point first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// Metric name as the job reported it (`validation:auc`).
    pub name: String,
    /// The points, oldest first.
    pub points: Vec<MetricPoint>,
    /// Where the points were read (`None`: not said, as in records made before sources said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<HistorySource>,
    /// What one point stands for: `iteration` (one per iteration number) or a period in
    /// seconds (`60`, `300`, `3600`: one aggregate per period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The statistic each point holds (`Last`, `Avg`, `Average`...), as the source names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
    /// Whether the source returned only part of the series (it said so, or the cap on points
    /// per metric cut it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// What went wrong reading this metric (its points may be missing or partial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl MetricSeries {
    /// A series of `points` with nothing said about where they came from.
    pub fn new(name: impl Into<String>, points: Vec<MetricPoint>) -> Self {
        MetricSeries { name: name.into(), points, source: None, resolution: None, stat: None, truncated: false, problem: None }
    }
    /// One line on where the series came from and what is wrong with it, for tags and reports
    /// (`sagemaker_metrics, iteration, Last; truncated`); empty when nothing is said.
    pub fn provenance(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = self.source {
            parts.push(s.as_str().to_string());
        }
        if let Some(r) = &self.resolution {
            parts.push(if r.chars().all(|c| c.is_ascii_digit()) { format!("{r} s") } else { r.clone() });
        }
        if let Some(s) = &self.stat {
            parts.push(s.clone());
        }
        let mut line = parts.join(", ");
        if self.truncated {
            line.push_str("; truncated");
        }
        if let Some(p) = &self.problem {
            line.push_str("; ");
            line.push_str(p);
        }
        line
    }
}

/// One metric definition (`AlgorithmSpecification.MetricDefinitions[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricDefinition {
    /// `Name`.
    pub name: String,
    /// `Regex`.
    pub regex: String,
}

/// What ran: a container image or a marketplace/built-in algorithm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Algorithm {
    /// `TrainingImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `AlgorithmName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TrainingInputMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<String>,
}

/// The region and account an ARN names (`arn:<partition>:<service>:<region>:<account>:...`),
/// when both are there: how one tracker for many accounts tells their jobs apart.
pub fn arn_region_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let (region, account) = (parts.nth(2)?, parts.next()?);
    (!region.is_empty() && !account.is_empty()).then_some((region, account))
}

/// The status a source gives a resource it found gone (a model package deleted since it was
/// listed or synced): see [`TrainingJob::is_deleted`].
pub const DELETED_STATUS: &str = "Deleted";

/// A SageMaker training job as a source yields it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingJob {
    /// `TrainingJobName`.
    pub name: String,
    /// `TrainingJobArn`.
    pub arn: String,
    /// `TrainingJobStatus` (`InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`, `Deleting`).
    pub status: String,
    /// `SecondaryStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_status: Option<String>,
    /// `FailureReason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// `CreationTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Timestamp>,
    /// `TrainingStartTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// `TrainingEndTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// `LastModifiedTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_time: Option<Timestamp>,
    /// `HyperParameters`, in the order the source gave them. SageMaker gives every value as a
    /// string; script-mode frameworks JSON-quote them (`"\"train.py\""`).
    #[serde(default)]
    pub hyperparameters: IndexMap<String, String>,
    /// `InputDataConfig`.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// `FinalMetricDataList`.
    #[serde(default)]
    pub final_metrics: Vec<FinalMetric>,
    /// `AlgorithmSpecification.MetricDefinitions`.
    #[serde(default)]
    pub metric_definitions: Vec<MetricDefinition>,
    /// Metric histories, when the source was asked for them (`metrics = "history"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_history: Vec<MetricSeries>,
    /// `ModelArtifacts.S3ModelArtifacts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_artifact: Option<String>,
    /// `OutputDataConfig.S3OutputPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    /// `AlgorithmSpecification`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `ResourceConfig.InstanceType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// `ResourceConfig.InstanceCount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    /// `BillableTimeInSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable_seconds: Option<u64>,
    /// Resource tags (from ListTags, Search or the event), in order.
    #[serde(default)]
    pub tags: Tags,
    /// `MlflowDetails.MlflowRunId`: the run SageMaker-managed MLflow already logged, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_run_id: Option<String>,
    /// What kind of resource this is and what it belongs to (empty for a training job run on
    /// its own: its documents and digests are those of before resource kinds).
    #[serde(flatten)]
    pub lineage: Lineage,
    /// The original document the job was read from (DescribeTrainingJob output, Search record,
    /// event detail), for sinks and mappers that need a field the model does not carry.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub original: serde_json::Value,
}

impl TrainingJob {
    /// A job with only a name, ARN and status set; every other field empty.
    pub fn new(name: impl Into<String>, arn: impl Into<String>, status: impl Into<String>) -> Self {
        TrainingJob {
            name: name.into(),
            arn: arn.into(),
            status: status.into(),
            secondary_status: None,
            failure_reason: None,
            creation_time: None,
            start_time: None,
            end_time: None,
            last_modified_time: None,
            hyperparameters: IndexMap::new(),
            channels: Vec::new(),
            final_metrics: Vec::new(),
            metric_definitions: Vec::new(),
            metric_history: Vec::new(),
            model_artifact: None,
            output_path: None,
            algorithm: Algorithm::default(),
            instance_type: None,
            instance_count: None,
            billable_seconds: None,
            tags: Tags::default(),
            mlflow_run_id: None,
            lineage: Lineage::default(),
            original: serde_json::Value::Null,
        }
    }
    /// Whether this resource is a parent of other runs (a tuning job, a pipeline execution).
    pub fn is_parent(&self) -> bool {
        self.lineage.kind.is_parent()
    }
    /// Whether this resource may sync through the jobs its record lists as `children`
    /// (see [`ResourceKind::follows_children`]).
    pub fn follows_children(&self) -> bool {
        self.lineage.kind.follows_children()
    }
    /// Whether the source says this resource is deleted or being deleted: status
    /// [`DELETED_STATUS`] (a source found it gone), or a model package `Deleting`. Such a
    /// resource is never written; the engine treats it as ineligible (its records are
    /// retracted where `on_ineligible = "retract"`).
    pub fn is_deleted(&self) -> bool {
        self.status == DELETED_STATUS || (self.lineage.kind == ResourceKind::ModelPackage && self.status == "Deleting")
    }

    /// The channel named `name`, if any.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// The project a run belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project name.
    pub name: String,
    /// Owner / author.
    pub user: String,
    /// Free-text description.
    pub description: String,
}

/// Identity and lifecycle of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Run name (the training job name with the built-in mapper).
    pub name: String,
    /// The idempotency key every sink upserts on: the training job ARN.
    pub external_id: String,
    /// Job status at mapping time.
    pub status: String,
    /// Start of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    /// End of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
}

/// The trained model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Model name.
    pub name: String,
    /// Model type (e.g. `XGBoost`).
    #[serde(rename = "type")]
    pub model_type: String,
    /// URI of the model artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<String>,
}

/// One hyperparameter as the mapper decoded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HyperParameter {
    /// Name.
    pub name: String,
    /// The value exactly as the source gave it.
    pub raw: String,
    /// The decoded value: a JSON number or boolean when the raw text is one, a string otherwise
    /// (JSON-quoted strings unquoted).
    pub value: serde_json::Value,
}

/// One dataset the run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Name (the channel name with the built-in mapper).
    pub name: String,
    /// Location (S3 URI or another data-source URI).
    pub uri: String,
    /// Ordered string metadata (compression, record wrapper, content type, ...).
    #[serde(default)]
    pub metadata: IndexMap<String, String>,
    /// The listed objects, when the source produced a manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ChannelManifest>,
}

/// Which data split a metric was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training data (`train:` prefix).
    Train,
    /// Validation data (`validation:` or `val:` prefix).
    Validation,
    /// Test data (`test:` prefix).
    Test,
    /// No recognisable prefix.
    None,
}

impl Split {
    /// Reads the split from a SageMaker metric name's prefix (`train:loss` → `Train`).
    pub fn from_metric_name(name: &str) -> Split {
        let prefix = match name.split_once(':') {
            Some((p, _)) => p.trim().to_ascii_lowercase(),
            None => return Split::None,
        };
        match prefix.as_str() {
            "train" | "training" => Split::Train,
            "validation" | "val" | "valid" => Split::Validation,
            "test" => Split::Test,
            _ => Split::None,
        }
    }
    /// The lowercase name (`train`, `validation`, `test`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::None => "none",
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The full metric name as the job reported it (`validation:auc`).
    pub name: String,
    /// Value (possibly non-finite: `NaN`, `Infinity`, `-Infinity` in JSON).
    #[serde(with = "metric_value")]
    pub value: f64,
    /// Split read from the name.
    pub split: Split,
    /// When it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Step or epoch, when known (final metrics have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
}

/// What a sink receives: one training job mapped to a metadata-store run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Project.
    pub project: Project,
    /// Experiment name.
    pub experiment: String,
    /// The run.
    pub run: Run,
    /// The model.
    pub model: Model,
    /// Hyperparameters, in source order.
    #[serde(default)]
    pub hyperparameters: Vec<HyperParameter>,
    /// Datasets, in channel order.
    #[serde(default)]
    pub datasets: Vec<Dataset>,
    /// Metrics, in source order.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Metric histories (empty unless the source read them), in source order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_history: Vec<MetricSeries>,
    /// Tags, in source order.
    #[serde(default)]
    pub tags: Tags,
    /// Extra attributes (ARN, status, image, instance, times...), ordered.
    #[serde(default)]
    pub attributes: IndexMap<String, serde_json::Value>,
    /// What the run is (training job, tuning job, pipeline execution) and what it belongs to;
    /// empty for a training job on its own.
    #[serde(flatten)]
    pub lineage: Lineage,
}

impl RunRecord {
    /// Whether the run started less than `wait` ago (a model package created less than its
    /// link wait ago, whose version still waits for its training job's run). A run without a
    /// start time never waits.
    pub fn started_within(&self, wait: std::time::Duration) -> bool {
        self.run.start.and_then(|s| (chrono::Utc::now() - s).to_std().ok()).is_some_and(|age| age < wait)
    }
    /// The dataset named `name`, if any.
    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }
    /// The run name this record takes where another job's record holds its plain one: see
    /// [`namesake_name`].
    pub fn namesake_name(&self) -> String {
        namesake_name(&self.run.name, &self.run.external_id)
    }
}

/// The name a job's record takes in a store where another job's record already holds the
/// plain name `run` (SageMaker names are unique per account and region only, and a name is
/// reused once its job is deleted): `run`, `--` and 12 hex digits of the SHA-256 of the job's
/// ARN. Every sink that names records by the run name uses it, so that one ARN has one record.
pub fn namesake_name(run: &str, arn: &str) -> String {
    format!("{run}--{}", namesake_suffix(arn))
}

/// The part of [`namesake_name`] that comes from the ARN: 12 hex digits of its SHA-256.
pub fn namesake_suffix(arn: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(arn.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Decodes a SageMaker hyperparameter string: JSON numbers and booleans become JSON values,
/// JSON-quoted strings are unquoted, anything else stays the raw string.
pub fn decode_hyperparameter(raw: &str) -> serde_json::Value {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return serde_json::Value::String(raw.to_string());
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(v @ serde_json::Value::Number(_)) => v,
        Ok(v @ serde_json::Value::Bool(_)) => v,
        Ok(serde_json::Value::String(s)) => serde_json::Value::String(s),
        _ => {
            // Python-style booleans are common in script-mode jobs.
            match trimmed {
                "True" => serde_json::Value::Bool(true),
                "False" => serde_json::Value::Bool(false),
                _ => serde_json::Value::String(raw.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_prefixes() {
        assert_eq!(Split::from_metric_name("train:loss"), Split::Train);
        assert_eq!(Split::from_metric_name("validation:auc"), Split::Validation);
        assert_eq!(Split::from_metric_name("val:acc"), Split::Validation);
        assert_eq!(Split::from_metric_name("test:rmse"), Split::Test);
        assert_eq!(Split::from_metric_name("ObjectiveMetric"), Split::None);
        assert_eq!(Split::from_metric_name("epoch:1"), Split::None);
    }

    #[test]
    fn hyperparameter_decoding() {
        assert_eq!(decode_hyperparameter("5"), serde_json::json!(5));
        assert_eq!(decode_hyperparameter("0.1"), serde_json::json!(0.1));
        assert_eq!(decode_hyperparameter("\"train.py\""), serde_json::json!("train.py"));
        assert_eq!(decode_hyperparameter("binary:logistic"), serde_json::json!("binary:logistic"));
        assert_eq!(decode_hyperparameter("true"), serde_json::json!(true));
        assert_eq!(decode_hyperparameter("False"), serde_json::json!(false));
        assert_eq!(decode_hyperparameter("[1,2]"), serde_json::json!("[1,2]"));
        assert_eq!(decode_hyperparameter(""), serde_json::json!(""));
    }

    #[test]
    fn tags_last_wins_and_insert_keeps_position() {
        let mut t: Tags = [("a", "1"), ("b", "2")].into_iter().collect();
        t.0.push(Tag { key: "a".into(), value: "3".into() });
        assert_eq!(t.get("a"), Some("3"));
        t.insert("b", "9");
        assert_eq!(t.0[1].value, "9");
        assert!(t.contains("a") && !t.contains("c"));
    }
}

/// What kind of SageMaker resource a run stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A training job.
    #[default]
    TrainingJob,
    /// A hyperparameter tuning job: the parent of the training jobs it launched.
    TuningJob,
    /// A SageMaker Pipelines execution: the parent of the jobs its steps ran.
    PipelineExecution,
    /// A versioned model package of the SageMaker Model Registry: an entry of each store's
    /// registry, linked to the run of the training job that made its model.
    ModelPackage,
}

impl ResourceKind {
    /// Every kind, in the order sources list them.
    pub const ALL: [ResourceKind; 4] =
        [ResourceKind::TrainingJob, ResourceKind::TuningJob, ResourceKind::PipelineExecution, ResourceKind::ModelPackage];
    /// The name used in config (`resources`), documents and tags: `training_job`...
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::TrainingJob => "training_job",
            ResourceKind::TuningJob => "tuning_job",
            ResourceKind::PipelineExecution => "pipeline_execution",
            ResourceKind::ModelPackage => "model_package",
        }
    }
    /// Whether runs of this kind are parents of other runs.
    pub fn is_parent(self) -> bool {
        matches!(self, ResourceKind::TuningJob | ResourceKind::PipelineExecution)
    }
    /// Whether a resource of this kind may sync through the jobs its record lists as
    /// `children` (a parent's children; a model package's training job), when it does not pass
    /// the validators itself.
    pub fn follows_children(self) -> bool {
        self != ResourceKind::TrainingJob
    }
    /// Whether this is a training job (the default, left out of documents).
    pub fn is_training_job(&self) -> bool {
        *self == ResourceKind::TrainingJob
    }
}

/// The parent a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's kind.
    pub kind: ResourceKind,
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
}

/// A tuning job's objective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    /// The metric tuned (`validation:auc`).
    pub metric: String,
    /// `Maximize` or `Minimize`.
    #[serde(rename = "type")]
    pub objective_type: String,
}

/// Where a child of a tuning job stands against its tuner's objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildObjective {
    /// `ObjectiveStatus`: `Succeeded`, `Pending` or `Failed`.
    pub status: String,
    /// The final value of the objective metric, when the job reported one (non-finite values
    /// as the strings `NaN`, `Infinity`, `-Infinity`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_metric_value")]
    pub value: Option<f64>,
}

/// One child of a parent run, as the parent's summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildSummary {
    /// The child's ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: String,
    /// Against the tuner's objective (children of tuning jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ChildObjective>,
}

/// The best child of a tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestChild {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its final objective value.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_metric_value")]
    pub value: Option<f64>,
}

/// What a tuning job is and how its children stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TuningSummary {
    /// `Strategy` (`Bayesian`, `Random`, `Hyperband`, `Grid`).
    #[serde(default)]
    pub strategy: String,
    /// The objective, when the tuner has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// `ParameterRanges`, as SageMaker gives them.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub parameter_ranges: serde_json::Value,
    /// The static hyperparameters of its training job definition, in order.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub static_hyperparameters: IndexMap<String, String>,
    /// `TrainingJobStatusCounters`, in SageMaker's order.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub status_counts: IndexMap<String, u64>,
    /// `ObjectiveStatusCounters`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub objective_counts: IndexMap<String, u64>,
    /// `BestTrainingJob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestChild>,
}

/// A run's kind and family: empty (a training job on its own) unless the source says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// What the run stands for.
    #[serde(default, skip_serializing_if = "ResourceKind::is_training_job")]
    pub kind: ResourceKind,
    /// The parent it belongs to (a training job's tuner or pipeline execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// A child of a tuner: where it stands against the objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<ChildObjective>,
    /// A tuning job: its configuration and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningSummary>,
    /// A parent: its children, in the order the source lists them (by creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildSummary>,
    /// A pipeline execution: its pipeline and steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineSummary>,
    /// A model package: what the registry holds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageSummary>,
}

/// A versioned model package (DescribeModelPackage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackageSummary {
    /// `ModelPackageGroupName`.
    pub group: String,
    /// `ModelPackageVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// `ModelApprovalStatus`: `PendingManualApproval`, `Approved` or `Rejected`.
    pub approval_status: String,
    /// `ApprovalDescription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_description: Option<String>,
    /// `ModelPackageDescription`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `InferenceSpecification.Containers[].ModelDataUrl`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_data_urls: Vec<String>,
    /// `InferenceSpecification.Containers[].Image`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The first container's `Framework` and `FrameworkVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// `Task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// `ModelMetrics`, as SageMaker gives them (metric reports' S3 locations).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metrics: serde_json::Value,
    /// `CustomerMetadataProperties`, in key order.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub customer_metadata: IndexMap<String, String>,
    /// The training job that made the model, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_arn: Option<String>,
    /// How the training job was found: `artifact` (its `ModelArtifacts.S3ModelArtifacts` is the
    /// package's model data URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<String>,
}

/// What a pipeline execution ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineSummary {
    /// `PipelineArn`.
    pub pipeline_arn: String,
    /// The pipeline's name (from its ARN).
    pub pipeline_name: String,
    /// `PipelineExecutionDisplayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `PipelineExecutionStatus` as SageMaker gives it (`Executing`, `Stopping`, `Stopped`,
    /// `Failed`, `Succeeded`); the run's status is its training-job equivalent.
    pub status: String,
    /// Its steps, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepSummary>,
}

/// One step of a pipeline execution (`PipelineExecutionStep`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// `StepName`.
    pub name: String,
    /// `StepStatus`.
    pub status: String,
    /// What the step ran, as its `Metadata` names it (`TrainingJob`, `ProcessingJob`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The ARN of what it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `StartTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// `EndTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Timestamp>,
    /// `FailureReason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// The processing job whose output a training channel reads (its URI is the output's URI or
/// lies under it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// `ProcessingJobName`.
    pub processing_job: String,
    /// `ProcessingJobArn`.
    pub processing_job_arn: String,
    /// The output's `OutputName`.
    pub output: String,
    /// The output's `S3Output.S3Uri`.
    pub uri: String,
    /// The pipeline step that ran the processing job, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The pipeline execution it ran in, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_execution_arn: Option<String>,
}

impl Lineage {
    /// Whether there is nothing to say (a training job on its own).
    pub fn is_empty(&self) -> bool {
        *self == Lineage::default()
    }
}
