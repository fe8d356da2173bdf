use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sagesync_core::config::parse_time;
use sagesync_core::keypath::KeyPath;
use sagesync_core::{BuildContext, FieldProblem, Source, SourcePlugin};
use serde::Deserialize;

use super::client::{ClientSettings, RetryMode};
use super::history::{cloudwatch_stat, HistoryOptions, HistorySourceMode};
use super::metrics::service_stat;

/// The statistics `history_stat` accepts: CloudWatch's names and the metrics service's.
const HISTORY_STATS: [&str; 11] = ["Last", "Average", "Maximum", "Minimum", "Sum", "SampleCount", "Avg", "Max", "Min", "Count", "StdDev"];
use super::source::{Filters, Mode, SageMakerSettings, OPERATIONS};

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
    /// SageMaker metrics service endpoint override for metric histories
    /// (`AWS_ENDPOINT_URL_SAGEMAKER_METRICS` also works).
    pub metrics_endpoint_url: Option<String>,
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
    /// `final` (the job's `FinalMetricDataList` only) or `history` (also each metric's points,
    /// when the job is worked on; see `history_source`).
    pub metrics: MetricsMode,
    /// History: where points are read. `auto` (SageMaker's metrics service by iteration
    /// number, CloudWatch for a job the service has nothing for), `sagemaker` (the service
    /// only) or `cloudwatch` (CloudWatch `GetMetricData` only, by time).
    pub history_source: HistorySourceMode,
    /// History: CloudWatch's aggregation period, seconds (a multiple of 60; older jobs get
    /// coarser points, as CloudWatch keeps them).
    pub history_period_secs: i32,
    /// History: the statistic, by either name (`Last`, `Average`/`Avg`, `Maximum`/`Max`,
    /// `Minimum`/`Min`, `SampleCount`/`Count`, `StdDev`, `Sum`). Unset: `Last` from the
    /// metrics service, `Average` from CloudWatch; a statistic only one of them has is used
    /// there, and the other uses its default.
    pub history_stat: Option<String>,
    /// History: points kept per metric (the oldest), 1 to 100000.
    pub history_max_points: usize,
    /// What to list: `training_jobs`, `tuning_jobs` (each a parent run of the training jobs it
    /// launched), `pipeline_executions` (each a parent run of the training jobs its steps ran),
    /// `model_packages` (the Model Registry's versioned packages, each linked to the training
    /// job that made its model; opt-in), each listed after the training jobs with its own
    /// cursor and budgets. Default: the first three.
    pub resources: Vec<Resource>,
    /// Regions to read, each with its own clients, budgets and cursor (empty: the one region of
    /// `region`, else of the credential chain).
    pub regions: Vec<String>,
    /// Also read the account of the base credentials (with `accounts`; default true).
    pub own_account: bool,
    /// Further accounts, reached by assuming a role in each.
    pub accounts: Vec<AccountConfig>,
    /// STS endpoint for role assumption (`AWS_ENDPOINT_URL_STS` also works): tests, VPC
    /// endpoints.
    pub sts_endpoint_url: Option<String>,
    /// Account × region pairs listed at once (1 to 32).
    pub max_concurrent_pairs: usize,
}

/// One account reached by role assumption (`[[source.accounts]]`).
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The external id the role's trust policy asks for (a secret: never logged).
    #[serde(default)]
    pub external_id: Option<sagesync_core::Secret>,
    /// The role session's name (default `sagesync`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// Regions of this account (default: the source's).
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

impl std::fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountConfig")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id)
            .field("session_name", &self.session_name)
            .field("regions", &self.regions)
            .finish()
    }
}

/// The account id a role ARN names (`arn:<partition>:iam::<12 digits>:role/<path/>name`, in
/// any partition: `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`...).
pub fn role_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let ok_partition =
        partition.starts_with("aws") && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !partition.ends_with('-');
    let (account, role) = rest.strip_prefix("iam::")?.split_once(':')?;
    let name = role.strip_prefix("role/")?;
    let ok_name = !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        && name.split('/').all(|segment| !segment.is_empty());
    (ok_partition && account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && ok_name).then_some(account)
}

/// Whether `r` looks like an AWS region name: a 2 to 4 letter area, words, a number without a
/// leading zero (`us-east-1`, `us-gov-west-1`, `cn-north-1`, `eusc-de-east-1`).
pub fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    let last = parts[parts.len() - 1];
    parts.len() >= 3
        && (2..=4).contains(&parts[0].len())
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && !last.starts_with('0')
        && last.parse::<u8>().is_ok_and(|n| n > 0)
}

/// One account × region pair a source reads.
#[derive(Debug, Clone)]
pub struct PairSettings {
    /// The account (its id, from the role ARN), or `None` for the base credentials' own.
    pub account: Option<String>,
    /// The region, or `None` for the credential chain's.
    pub region: Option<String>,
    /// The settings of its source.
    pub settings: SageMakerSettings,
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
            metrics_endpoint_url: None,
            metrics: MetricsMode::Final,
            history_source: HistorySourceMode::Auto,
            history_period_secs: 60,
            history_stat: None,
            history_max_points: super::history::DEFAULT_MAX_POINTS_PER_METRIC,
            resources: vec![Resource::TrainingJobs, Resource::TuningJobs, Resource::PipelineExecutions],
            regions: Vec::new(),
            own_account: true,
            accounts: Vec::new(),
            sts_endpoint_url: None,
            max_concurrent_pairs: 4,
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
            ("metrics_endpoint_url", &self.metrics_endpoint_url),
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
        if let Some(stat) = &self.history_stat {
            if !HISTORY_STATS.contains(&stat.as_str()) {
                problems
                    .push(FieldProblem::at("history_stat", format!("unknown statistic; expected one of: {}", HISTORY_STATS.join(", "))));
            } else if self.history_source == HistorySourceMode::Sagemaker && service_stat(stat).is_none() {
                problems.push(FieldProblem::at(
                    "history_stat",
                    format!("SageMaker's metrics service has no `{stat}`; use one of Last, Avg, Min, Max, Count, StdDev, or history_source = \"cloudwatch\""),
                ));
            } else if self.history_source == HistorySourceMode::Cloudwatch && cloudwatch_stat(stat).is_none() {
                problems.push(FieldProblem::at(
                    "history_stat",
                    format!("CloudWatch has no `{stat}`; use one of Average, Maximum, Minimum, Sum, SampleCount, or history_source = \"sagemaker\""),
                ));
            }
        }
        if !(1..=100_000).contains(&self.history_max_points) {
            problems.push(FieldProblem::at("history_max_points", "must be between 1 and 100000"));
        }
        self.check_pairs(&mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let stat = self.history_stat.as_deref();
        let history = (self.metrics == MetricsMode::History).then(|| HistoryOptions {
            source: self.history_source,
            period_secs: self.history_period_secs,
            stat: stat.and_then(cloudwatch_stat).unwrap_or("Average").to_string(),
            service_stat: stat.and_then(service_stat).unwrap_or("Last").to_string(),
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
                metrics_endpoint_url: self.metrics_endpoint_url.clone(),
                max_attempts: self.max_attempts,
                initial_backoff: Duration::from_millis(self.initial_backoff_ms),
                retry_mode: self.retry_mode,
                connect_timeout: Duration::from_secs(self.connect_timeout_secs),
                attempt_timeout: Duration::from_secs(self.request_timeout_secs),
                assume: None,
                sts_endpoint_url: self.sts_endpoint_url.clone(),
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

impl SageMakerSourceConfig {
    /// The account × region pairs, checked offline: region names, role ARNs, session names,
    /// duplicates.
    fn check_pairs(&self, problems: &mut Vec<FieldProblem>) {
        let region_list = |path: KeyPath, list: &[String], problems: &mut Vec<FieldProblem>| {
            for (i, r) in list.iter().enumerate() {
                if !is_region_name(r) {
                    problems.push(FieldProblem {
                        path: path.clone().index(i),
                        message: format!("`{r}` is not a region name (e.g. `us-east-1`)"),
                    });
                } else if list[..i].contains(r) {
                    problems.push(FieldProblem { path: path.clone().index(i), message: format!("`{r}` named twice") });
                }
            }
        };
        region_list(KeyPath::root().key("regions"), &self.regions, problems);
        if self.region.is_some() && !self.regions.is_empty() {
            problems.push(FieldProblem::at("regions", "give `region` or `regions`, not both"));
        }
        if let Some(r) = &self.region {
            if !is_region_name(r) {
                problems.push(FieldProblem::at("region", format!("`{r}` is not a region name (e.g. `us-east-1`)")));
            }
        }
        if !self.own_account && self.accounts.is_empty() {
            problems.push(FieldProblem::at("own_account", "false, and no `accounts`: this source reads nothing"));
        }
        if let Some(u) = &self.sts_endpoint_url {
            if let Err(m) = sagesync_core::config::endpoint_url(u) {
                problems.push(FieldProblem::at("sts_endpoint_url", m));
            }
        }
        if !(1..=32).contains(&self.max_concurrent_pairs) {
            problems.push(FieldProblem::at("max_concurrent_pairs", "must be between 1 and 32"));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, a) in self.accounts.iter().enumerate() {
            let at = KeyPath::root().key("accounts").index(i);
            match role_account(&a.role_arn) {
                None => problems.push(FieldProblem {
                    path: at.clone().key("role_arn"),
                    message: format!("`{}` is not an IAM role ARN (`arn:aws:iam::<12-digit account>:role/<name>`)", a.role_arn),
                }),
                Some(acct) if seen.contains(&acct) => problems.push(FieldProblem {
                    path: at.clone().key("role_arn"),
                    message: format!("account {acct} is named twice (one role per account)"),
                }),
                Some(acct) => seen.push(acct),
            }
            if let Some(n) = &a.session_name {
                let ok = (2..=64).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
                if !ok {
                    problems.push(FieldProblem {
                        path: at.clone().key("session_name"),
                        message: "must be 2 to 64 letters, digits or `+=,.@_-`".into(),
                    });
                }
            }
            if let Some(x) = &a.external_id {
                let v = x.expose();
                if !(2..=1224).contains(&v.len()) || !v.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c)) {
                    // Never the value itself: it is a secret.
                    problems.push(FieldProblem {
                        path: at.clone().key("external_id"),
                        message: "must be 2 to 1224 letters, digits or `+=,.@:/-_`".into(),
                    });
                }
            }
            if let Some(list) = &a.regions {
                if list.is_empty() {
                    problems.push(FieldProblem {
                        path: at.clone().key("regions"),
                        message: "empty: leave it out to use the source's regions".into(),
                    });
                }
                region_list(at.key("regions"), list, problems);
            }
        }
    }

    /// The pairs this source reads, each with its source's settings (the base `settings()`
    /// with its region, and its role for an assumed account).
    pub fn pairs(&self) -> Result<Vec<PairSettings>, Vec<FieldProblem>> {
        let base = self.settings()?;
        let regions: Vec<Option<String>> =
            if self.regions.is_empty() { vec![self.region.clone()] } else { self.regions.iter().cloned().map(Some).collect() };
        let mut out = Vec::new();
        let with_region = |region: &Option<String>| {
            let mut s = base.clone();
            s.client.region = region.clone();
            s
        };
        if self.own_account {
            for r in &regions {
                out.push(PairSettings { account: None, region: r.clone(), settings: with_region(r) });
            }
        }
        for a in &self.accounts {
            let account = role_account(&a.role_arn).map(str::to_string);
            let list: Vec<Option<String>> = match &a.regions {
                Some(l) => l.iter().cloned().map(Some).collect(),
                None => regions.clone(),
            };
            for r in &list {
                let mut s = with_region(r);
                s.client.assume = Some(sagesync_aws::AssumeRole {
                    role_arn: a.role_arn.clone(),
                    external_id: a.external_id.as_ref().map(|x| x.expose().to_string()),
                    session_name: a.session_name.clone().unwrap_or_else(|| "sagesync".into()),
                    sts_endpoint_url: self.sts_endpoint_url.clone(),
                });
                out.push(PairSettings { account: account.clone(), region: r.clone(), settings: s });
            }
        }
        Ok(out)
    }
}

impl SourcePlugin for SageMakerSourceConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Source>, Vec<FieldProblem>> {
        // One pair of the base credentials lists and fetches as a single-account source always
        // did (its cursor unchanged); after several pairs, it takes its own part of their cursor.
        Ok(Arc::new(super::pairs::PairedSource::new(self.pairs()?, self.max_concurrent_pairs)))
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
# Metrics: "final" (FinalMetricDataList) or "history" (also every metric's points).
metrics = "final"
# Histories from "auto" (SageMaker's metrics service by iteration number, CloudWatch for a
# job it has nothing for), "sagemaker" (BatchGetMetrics only) or "cloudwatch" (GetMetricData
# only, by time).
# history_source = "auto"
# history_stat = "Last"        # unset: Last from the service, Average from CloudWatch
# history_period_secs = 60     # CloudWatch only; older jobs get 300 (after 15 days) or 3600 (63)
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
BatchGetMetrics = 10.0      # only with metrics = "history"; up to 100 metrics a call
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_and_role_arns_are_checked_offline() {
        for ok in ["us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-5", "il-central-1", "mx-central-1", "eusc-de-east-1"] {
            assert!(is_region_name(ok), "{ok}");
        }
        for bad in ["us-east-01", "us-east", "useast1", "US-EAST-1", "us--east-1", "mars-1", "us-east-0", ""] {
            assert!(!is_region_name(bad), "{bad}");
        }
        assert_eq!(role_account("arn:aws:iam::111111111111:role/sagesync-reader"), Some("111111111111"));
        assert_eq!(role_account("arn:aws-us-gov:iam::111111111111:role/path/to/r"), Some("111111111111"));
        assert_eq!(role_account("arn:aws-iso-b:iam::111111111111:role/r"), Some("111111111111"));
        for bad in [
            "arn:aws:iam::111111111111:user/bob",
            "arn:aws:iam::11111111111:role/r",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:iam::111111111111:role/a//b",
            "arn:aws:sts::111111111111:role/r",
            "arn:gcp:iam::111111111111:role/r",
        ] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
    }

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
