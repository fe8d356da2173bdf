use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagesync_core::config::parse_time;
use sagesync_core::keypath::KeyPath;
use sagesync_core::{BuildContext, FieldProblem, Source, SourcePlugin};
use serde::Deserialize;

use super::client::{ClientSettings, RetryMode};
use super::history::HistoryOptions;

/// The statistics `history_stat` accepts.
const HISTORY_STATS: [&str; 5] = ["Average", "Maximum", "Minimum", "Sum", "SampleCount"];
use super::source::{Filters, Mode, SageMakerSettings, SageMakerSource, OPERATIONS};

/// Options of `sagemaker`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SageMakerSourceConfig {
    /// AWS region (else the standard chain).
    pub region: Option<String>,
    /// Named AWS profile.
    pub profile: Option<String>,
    /// SageMaker endpoint override (`AWS_ENDPOINT_URL_SAGEMAKER` also works).
    pub endpoint_url: Option<String>,
    /// S3 endpoint override for dataset manifests.
    pub s3_endpoint_url: Option<String>,
    /// CloudWatch endpoint override for metric histories.
    pub cloudwatch_endpoint_url: Option<String>,
    /// Polls: `list` (ListTrainingJobs + Describe + ListTags) or `search` (Search, tags in bulk).
    /// Reconciliation passes and backfills always use Search.
    pub mode: Mode,
    /// Statuses to list (empty: all; the `status` validator decides what syncs).
    pub statuses: Vec<String>,
    /// Name substring.
    pub name_contains: Option<String>,
    /// Created after (date `2026-01-31` or RFC 3339).
    pub created_after: Option<String>,
    /// Created before.
    pub created_before: Option<String>,
    /// Modified at or after.
    pub modified_after: Option<String>,
    /// Modified before.
    pub modified_before: Option<String>,
    /// The budget of every operation without its own entry in `rate_limits`, calls per second
    /// (0 = unlimited). Unset: each operation's default.
    pub max_requests_per_second: Option<f64>,
    /// Budgets per operation, calls per second (`ListTrainingJobs = 2`...; 0 = unlimited).
    pub rate_limits: BTreeMap<String, f64>,
    /// Attempts per API call inside the AWS SDK, first included (1: the SDK does not retry;
    /// the engine's `[pipeline] max_attempts` is the one retry policy).
    pub max_attempts: u32,
    /// SDK retry mode: `standard` or `adaptive`.
    pub retry_mode: RetryMode,
    /// First SDK retry backoff, milliseconds.
    pub initial_backoff_ms: u64,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// Timeout of one attempt of a call, seconds.
    pub request_timeout_secs: u64,
    /// Page size for ListTrainingJobs / Search (1..=100).
    pub page_size: i32,
    /// Polls start this many seconds before the previous poll started, so that a job modified
    /// while a listing ran (or a clock that runs ahead) is listed again; the ledger makes the
    /// overlap cheap.
    pub watermark_overlap_secs: u64,
    /// List each S3 channel's objects (key, size, ETag, time) as a manifest, when the job is
    /// worked on.
    pub dataset_manifests: bool,
    /// Cap on objects per channel manifest.
    pub max_manifest_objects: usize,
    /// `final` (the job's `FinalMetricDataList` only) or `history` (also each metric's points
    /// from CloudWatch `GetMetricData`, when the job is worked on).
    pub metrics: MetricsMode,
    /// History: aggregation period, seconds (a multiple of 60).
    pub history_period_secs: i32,
    /// History: the statistic (`Average`, `Maximum`, `Minimum`, `Sum`, `SampleCount`).
    pub history_stat: String,
    /// History: points kept per metric (the oldest), 1 to 100000.
    pub history_max_points: usize,
    /// What to list: `training_jobs`, `tuning_jobs` (each a parent run of the training jobs it
    /// launched), `pipeline_executions` (each a parent run of the training jobs its steps ran),
    /// `model_packages` (the Model Registry's versioned packages, each linked to the training
    /// job that made its model; opt-in), each listed after the training jobs with its own
    /// cursor and budgets. Default: the first three.
    pub resources: Vec<Resource>,
}

/// A kind of resource the source lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Training jobs.
    TrainingJobs,
    /// Hyperparameter tuning jobs.
    TuningJobs,
    /// SageMaker Pipelines executions.
    PipelineExecutions,
    /// The Model Registry's versioned model packages (opt-in).
    ModelPackages,
}

/// Which metrics a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsMode {
    /// The final metrics only.
    #[default]
    Final,
    /// Final metrics and their CloudWatch histories.
    History,
}

impl Default for SageMakerSourceConfig {
    fn default() -> Self {
        SageMakerSourceConfig {
            region: None,
            profile: None,
            endpoint_url: None,
            s3_endpoint_url: None,
            mode: Mode::List,
            statuses: Vec::new(),
            name_contains: None,
            created_after: None,
            created_before: None,
            modified_after: None,
            modified_before: None,
            max_requests_per_second: None,
            rate_limits: BTreeMap::new(),
            max_attempts: 1,
            retry_mode: RetryMode::Standard,
            initial_backoff_ms: 1000,
            connect_timeout_secs: 10,
            request_timeout_secs: 30,
            page_size: 100,
            watermark_overlap_secs: 300,
            dataset_manifests: false,
            max_manifest_objects: 1000,
            cloudwatch_endpoint_url: None,
            metrics: MetricsMode::Final,
            history_period_secs: 60,
            history_stat: "Average".into(),
            history_max_points: super::history::DEFAULT_MAX_POINTS_PER_METRIC,
            resources: vec![Resource::TrainingJobs, Resource::TuningJobs, Resource::PipelineExecutions],
        }
    }
}

/// Parses `2026-01-31` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_time_filter(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s)
}

fn rate_ok(r: f64) -> bool {
    r == 0.0 || (r.is_finite() && (0.001..=10_000.0).contains(&r))
}

impl SageMakerSourceConfig {
    /// Checks the options and turns them into settings.
    pub fn settings(&self) -> Result<SageMakerSettings, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut time = |key: &str, v: &Option<String>| -> Option<DateTime<Utc>> {
            v.as_ref().and_then(|s| match parse_time(s) {
                Ok(t) => Some(t),
                Err(m) => {
                    problems.push(FieldProblem::at(key, m));
                    None
                }
            })
        };
        let filters = Filters {
            statuses: self.statuses.clone(),
            name_contains: self.name_contains.clone(),
            created_after: time("created_after", &self.created_after),
            created_before: time("created_before", &self.created_before),
            modified_after: time("modified_after", &self.modified_after),
            modified_before: time("modified_before", &self.modified_before),
        };
        if self.resources.is_empty() {
            problems.push(FieldProblem::at(
                "resources",
                "lists nothing; name at least one of `training_jobs`, `tuning_jobs`, `pipeline_executions`, `model_packages`",
            ));
        }
        for (i, r) in self.resources.iter().enumerate() {
            if self.resources[..i].contains(r) {
                problems.push(FieldProblem { path: KeyPath::root().key("resources").index(i), message: "named twice".into() });
            }
        }
        for (i, s) in self.statuses.iter().enumerate() {
            if !sagesync_core::builtin::status::KNOWN_STATUSES.contains(&s.as_str()) {
                problems.push(FieldProblem {
                    path: KeyPath::root().key("statuses").index(i),
                    message: format!(
                        "unknown status `{s}`; expected one of: {}",
                        sagesync_core::builtin::status::KNOWN_STATUSES.join(", ")
                    ),
                });
            }
        }
        for (k, v) in [
            ("endpoint_url", &self.endpoint_url),
            ("s3_endpoint_url", &self.s3_endpoint_url),
            ("cloudwatch_endpoint_url", &self.cloudwatch_endpoint_url),
        ] {
            if let Some(u) = v {
                if let Err(m) = sagesync_core::config::endpoint_url(u) {
                    problems.push(FieldProblem::at(k, m));
                }
            }
        }
        // An empty window lists nothing: that is a mistake, not a filter.
        for (after, before, a, b) in [
            ("modified_after", "modified_before", filters.modified_after, filters.modified_before),
            ("created_after", "created_before", filters.created_after, filters.created_before),
        ] {
            if let (Some(a), Some(b)) = (a, b) {
                if b <= a {
                    problems.push(FieldProblem::at(before, format!("must be later than `{after}`; this window holds no job")));
                }
            }
        }
        if let Some(r) = self.max_requests_per_second {
            if !rate_ok(r) {
                problems.push(FieldProblem::at("max_requests_per_second", "must be 0 (unlimited) or between 0.001 and 10000"));
            }
        }
        let mut rates: BTreeMap<String, f64> =
            OPERATIONS.iter().map(|(op, def)| (op.to_string(), self.max_requests_per_second.unwrap_or(*def))).collect();
        for (op, r) in &self.rate_limits {
            if !OPERATIONS.iter().any(|(o, _)| o == op) {
                problems.push(FieldProblem {
                    path: KeyPath::root().key("rate_limits").key(op),
                    message: format!(
                        "unknown operation; expected one of: {}",
                        OPERATIONS.iter().map(|(o, _)| *o).collect::<Vec<_>>().join(", ")
                    ),
                });
            } else if !rate_ok(*r) {
                problems.push(FieldProblem {
                    path: KeyPath::root().key("rate_limits").key(op),
                    message: "must be 0 (unlimited) or between 0.001 and 10000".into(),
                });
            } else {
                rates.insert(op.clone(), *r);
            }
        }
        if !(1..=20).contains(&self.max_attempts) {
            problems.push(FieldProblem::at("max_attempts", format!("must be between 1 and 20, got {}", self.max_attempts)));
        }
        if !(1..=3_600_000).contains(&self.initial_backoff_ms) {
            problems.push(FieldProblem::at("initial_backoff_ms", "must be between 1 and 3600000"));
        }
        for (k, v) in [("connect_timeout_secs", self.connect_timeout_secs), ("request_timeout_secs", self.request_timeout_secs)] {
            if !(1..=3600).contains(&v) {
                problems.push(FieldProblem::at(k, format!("must be between 1 and 3600, got {v}")));
            }
        }
        if !(1..=100).contains(&self.page_size) {
            problems.push(FieldProblem::at("page_size", format!("must be between 1 and 100, got {}", self.page_size)));
        }
        if self.watermark_overlap_secs > 7 * 86_400 {
            problems.push(FieldProblem::at("watermark_overlap_secs", "must be at most 604800 (7 days)"));
        }
        if self.max_manifest_objects == 0 || self.max_manifest_objects > 1_000_000 {
            problems.push(FieldProblem::at("max_manifest_objects", "must be between 1 and 1000000"));
        }
        if self.history_period_secs <= 0 || self.history_period_secs % 60 != 0 || self.history_period_secs > 86_400 {
            problems.push(FieldProblem::at("history_period_secs", "must be a multiple of 60 between 60 and 86400"));
        }
        if !HISTORY_STATS.contains(&self.history_stat.as_str()) {
            problems.push(FieldProblem::at("history_stat", format!("unknown statistic; expected one of: {}", HISTORY_STATS.join(", "))));
        }
        if !(1..=100_000).contains(&self.history_max_points) {
            problems.push(FieldProblem::at("history_max_points", "must be between 1 and 100000"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let history = (self.metrics == MetricsMode::History).then(|| HistoryOptions {
            period_secs: self.history_period_secs,
            stat: self.history_stat.clone(),
            max_points_per_metric: self.history_max_points,
            ..HistoryOptions::default()
        });
        Ok(SageMakerSettings {
            client: ClientSettings {
                region: self.region.clone(),
                profile: self.profile.clone(),
                endpoint_url: self.endpoint_url.clone(),
                s3_endpoint_url: self.s3_endpoint_url.clone(),
                cloudwatch_endpoint_url: self.cloudwatch_endpoint_url.clone(),
                max_attempts: self.max_attempts,
                initial_backoff: Duration::from_millis(self.initial_backoff_ms),
                retry_mode: self.retry_mode,
                connect_timeout: Duration::from_secs(self.connect_timeout_secs),
                attempt_timeout: Duration::from_secs(self.request_timeout_secs),
            },
            mode: self.mode,
            filters,
            rate_limits: rates,
            page_size: self.page_size,
            watermark_overlap: Duration::from_secs(self.watermark_overlap_secs),
            dataset_manifests: self.dataset_manifests,
            max_manifest_objects: self.max_manifest_objects,
            history,
            tuning_jobs: self.resources.contains(&Resource::TuningJobs),
            pipeline_executions: self.resources.contains(&Resource::PipelineExecutions),
            model_packages: self.resources.contains(&Resource::ModelPackages),
            training_jobs: self.resources.contains(&Resource::TrainingJobs),
        })
    }
}

impl SourcePlugin for SageMakerSourceConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Source>, Vec<FieldProblem>> {
        Ok(Arc::new(SageMakerSource::new(self.settings()?)))
    }
}

sagesync_core::register_plugin!(
    Source,
    "sagemaker",
    SageMakerSourceConfig,
    summary = "Training jobs from the SageMaker API (ListTrainingJobs + Describe, or Search)",
    example = r#"[source]
type = "sagemaker"
# Credentials and region come from the standard AWS chain (env, profile, SSO, IMDS, ECS...).
region = "us-east-1"
# profile = "ml-prod"
# endpoint_url = "https://api.sagemaker.us-east-1.amazonaws.com"
# Polls: "list" (ListTrainingJobs + Describe + ListTags per job) or "search" (Search, 100 full
# jobs with tags per call). Reconciliation passes and backfills always use Search.
mode = "list"
statuses = []          # e.g. ["Completed", "Failed"]; empty lists every status
# name_contains = "xgboost"
# created_after = "2026-01-01"
# modified_before = "2026-06-30T00:00:00Z"
# Metrics: "final" (FinalMetricDataList) or "history" (also every metric's points from
# CloudWatch GetMetricData, namespace /aws/sagemaker/TrainingJobs, one call per job).
metrics = "final"
# history_period_secs = 60
# history_stat = "Average"
# history_max_points = 10000
# Client-side budgets per operation, calls per second (defaults shown; 0 = unlimited).
# max_requests_per_second = 1.0   # one budget for every operation not listed below
[source.rate_limits]
ListTrainingJobs = 2.0      # AWS: 2 TPS per account and region, not adjustable
DescribeTrainingJob = 10.0
ListTags = 10.0
Search = 2.0
ListObjectsV2 = 50.0
GetMetricData = 10.0        # AWS: 50 TPS; only with metrics = "history"
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, item 15: with the default settings, a SageMaker endpoint that accepts and never
    /// answers ends a CLI run within about three minutes (the AWS CLI: 3 attempts of 60 s). One
    /// retry layer: the SDK does not retry under the engine, the engine's `max_attempts`
    /// attempts each wait at most `request_timeout_secs`, with the engine's backoffs between.
    #[test]
    fn defaults_end_a_run_against_a_silent_endpoint_within_three_minutes() {
        let source = SageMakerSourceConfig::default().settings().unwrap();
        assert_eq!(source.client.max_attempts, 1, "the SDK does not retry under the engine");
        let pipeline = sagesync_core::PipelineSettings::default();
        let backoffs: u64 = (1..pipeline.max_attempts).map(|a| (pipeline.initial_backoff_ms << (a - 1)).min(pipeline.max_backoff_ms)).sum();
        let worst = source.client.attempt_timeout.as_secs() * u64::from(pipeline.max_attempts) + backoffs / 1000 + 1;
        assert!(worst <= 180, "a silent endpoint keeps a run for up to {worst} s");
        assert!(source.client.attempt_timeout >= Duration::from_secs(20), "long enough for a Search of 100 jobs");
    }
}
