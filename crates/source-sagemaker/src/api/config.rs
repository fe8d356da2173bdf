use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sagesync_core::config::KeyPath;
use sagesync_core::{BuildContext, Component, FieldProblem, PluginConfig};
use serde::Deserialize;

use super::client::{ClientSettings, RetryMode};
use super::source::{Filters, Mode, SageMakerSettings, SageMakerSource};

/// Options of `sagemaker`.
#[derive(Debug, Clone, Deserialize)]
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
    /// `list` (polling) or `search` (bulk/backfill).
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
    /// Client-side rate limit, calls per second (0 = none).
    pub max_requests_per_second: f64,
    /// Attempts per API call, first included (SDK retry).
    pub max_attempts: u32,
    /// SDK retry mode: `standard` or `adaptive`.
    pub retry_mode: RetryMode,
    /// First SDK retry backoff, milliseconds.
    pub initial_backoff_ms: u64,
    /// Page size for ListTrainingJobs / Search (1..=100).
    pub page_size: i32,
    /// List each S3 channel's objects (key, size, ETag, time) as a manifest.
    pub dataset_manifests: bool,
    /// Cap on objects per channel manifest.
    pub max_manifest_objects: usize,
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
            max_requests_per_second: 2.0,
            max_attempts: 5,
            retry_mode: RetryMode::Standard,
            initial_backoff_ms: 1000,
            page_size: 100,
            dataset_manifests: false,
            max_manifest_objects: 1000,
        }
    }
}

/// Parses `2026-01-31` (midnight UTC) or an RFC 3339 timestamp.
pub fn parse_time_filter(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 timestamp"))
}

/// Turns a `sagemaker` source's options into a backfill: Search mode, LastModifiedTime in
/// `[since, until)`. Checks the dates.
pub fn backfill_options(options: &mut toml::Table, since: &str, until: Option<&str>) -> Result<(), String> {
    parse_time_filter(since)?;
    if let Some(u) = until {
        parse_time_filter(u)?;
    }
    options.insert("mode".into(), toml::Value::String("search".into()));
    options.insert("modified_after".into(), toml::Value::String(since.to_string()));
    match until {
        Some(u) => options.insert("modified_before".into(), toml::Value::String(u.to_string())),
        None => options.remove("modified_before"),
    };
    Ok(())
}

impl SageMakerSourceConfig {
    /// Checks the options and turns them into settings.
    pub fn settings(&self) -> Result<SageMakerSettings, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut time = |key: &str, v: &Option<String>| -> Option<DateTime<Utc>> {
            v.as_ref().and_then(|s| match parse_time_filter(s) {
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
        for (i, s) in self.statuses.iter().enumerate() {
            if !sagesync_core::builtin::status::KNOWN_STATUSES.contains(&s.as_str()) {
                problems.push(FieldProblem { path: KeyPath::root().key("statuses").index(i), message: format!("unknown status `{s}`; expected one of: {}", sagesync_core::builtin::status::KNOWN_STATUSES.join(", ")) });
            }
        }
        for (k, v) in [("endpoint_url", &self.endpoint_url), ("s3_endpoint_url", &self.s3_endpoint_url)] {
            if let Some(u) = v {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    problems.push(FieldProblem::at(k, "must be an http:// or https:// URL"));
                }
            }
        }
        if !self.max_requests_per_second.is_finite() || self.max_requests_per_second < 0.0 {
            problems.push(FieldProblem::at("max_requests_per_second", "must be 0 (unlimited) or positive"));
        }
        if !(1..=20).contains(&self.max_attempts) {
            problems.push(FieldProblem::at("max_attempts", format!("must be between 1 and 20, got {}", self.max_attempts)));
        }
        if !(1..=100).contains(&self.page_size) {
            problems.push(FieldProblem::at("page_size", format!("must be between 1 and 100, got {}", self.page_size)));
        }
        if self.max_manifest_objects == 0 || self.max_manifest_objects > 1_000_000 {
            problems.push(FieldProblem::at("max_manifest_objects", "must be between 1 and 1000000"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(SageMakerSettings {
            client: ClientSettings {
                region: self.region.clone(),
                profile: self.profile.clone(),
                endpoint_url: self.endpoint_url.clone(),
                s3_endpoint_url: self.s3_endpoint_url.clone(),
                max_attempts: self.max_attempts,
                initial_backoff: Duration::from_millis(self.initial_backoff_ms),
                retry_mode: self.retry_mode,
            },
            mode: self.mode,
            filters,
            max_requests_per_second: self.max_requests_per_second,
            page_size: self.page_size,
            dataset_manifests: self.dataset_manifests,
            max_manifest_objects: self.max_manifest_objects,
        })
    }
}

impl PluginConfig for SageMakerSourceConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Component, Vec<FieldProblem>> {
        Ok(Component::Source(Arc::new(SageMakerSource::new(self.settings()?))))
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
# "list": ListTrainingJobs watermark + Describe + ListTags per job (polling).
# "search": Search(TrainingJob), 100 full jobs with tags per call (backfills).
mode = "list"
statuses = []          # e.g. ["Completed", "Failed"]; empty lists every status
# name_contains = "xgboost"
# created_after = "2026-01-01"
# modified_before = "2026-06-30T00:00:00Z"
max_requests_per_second = 2.0
max_attempts = 5
retry_mode = "standard"   # or "adaptive"
dataset_manifests = false
max_manifest_objects = 1000
"#
);
