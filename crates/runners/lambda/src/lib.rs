//! The Lambda runner: EventBridge "SageMaker Training Job State Change" events (directly or in
//! SQS batches) become job references that go through the same engine as every other listing.
//! This crate reads the payload, calls [`Engine::sync_refs`] with the invocation's deadline, and
//! turns the report into the Lambda's answer; nothing else.
//!
//! Configuration: the TOML file at `SAGESYNC_CONFIG`, else the SSM parameter named by
//! `SAGESYNC_CONFIG_PARAMETER` (a whole sagesync.toml, read at cold start), else `sagesync.toml`
//! in the function's directory (`LAMBDA_TASK_ROOT`) or the working directory, else the built-in
//! pipeline of `SAGESYNC_STORE` ([`builtin_config`]: the AWS sample's ModelDB v1 pipeline,
//! [`DEFAULT_CONFIG`], by default). Secrets (`SECRET[...]`) are read once, at cold start.
//!
//! Each invocation prints one CloudWatch Embedded Metric Format line ([`emf_line`]) with the
//! counts the engine already has: no API call of its own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sagesync_core::config::ConfigErrors;
use sagesync_core::{CancellationToken, Config, Engine, EngineOptions, JobReport, NoObserver, Outcome, RefOptions, RefResult};
use sagesync_runner_settings::LambdaSettings;
use sagesync_source_sagemaker::api::{read_payload, ItemKind};
use serde_json::{json, Value};

// Link the standard plugins and every runner's config sections.
use sagesync_plugins as _;
use sagesync_runner_settings as _;

/// The pipeline used when no config file exists: the AWS sample's (SageMaker → required tags →
/// Completed only → tags mapper → ModelDB v1), with its environment knobs.
pub const DEFAULT_CONFIG: &str = r#"[source]
type = "sagemaker"
max_requests_per_second = 0
# The kinds whose events the template's rules send (the Lambda lists nothing).
resources = ["training_jobs", "tuning_jobs", "pipeline_executions", "model_packages"]

[[validators]]
type = "required_tags"

[[validators]]
type = "status"
statuses = ["Completed"]

[mapper]
type = "tags"

[tag_keys]
sync = "${TAG_MODEL_DB_SYNC:-MODEL_DB_SYNC}"
project_name = "${TAG_MODEL_DB_PROJECT_NAME:-MODEL_DB_PROJECT_NAME}"
project_user = "${TAG_MODEL_DB_PROJECT_USER:-MODEL_DB_PROJECT_USER}"
project_desc = "${TAG_MODEL_DB_PROJECT_DESC:-MODEL_DB_PROJECT_DESC}"
model_name = "${TAG_MODEL_DB_MODEL_NAME:-MODEL_DB_MODEL_NAME}"
model_type = "${TAG_MODEL_DB_MODEL_TYPE:-MODEL_DB_MODEL_TYPE}"

[[sinks]]
type = "modeldb_v1"
host = "${MODEL_DB_INSTANCE_URL:-localhost}"
port = "${MODEL_DB_INSTANCE_PORT:-6543}"
request_timeout_secs = 20
"#;

/// The sink, and the secrets it reads, of a built-in pipeline for `store` (the template's
/// `Store`), from the template's variables: `modeldb_v2` (`SAGESYNC_MODELDB_V2_URL`, and
/// `SAGESYNC_MODELDB_V2_EMAIL` with the Secrets Manager secret `SAGESYNC_MODELDB_V2_KEY_SECRET`
/// holding the developer key), `mlflow` (`SAGESYNC_MLFLOW_TRACKING_URI`: a SageMaker managed
/// MLflow ARN, signed with the function's role, or a URL with the token of the Secrets Manager
/// secret `SAGESYNC_MLFLOW_TOKEN_SECRET`).
fn store_sink(store: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigErrors> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    match store {
        "modeldb_v2" => {
            let mut t = "[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"${SAGESYNC_MODELDB_V2_URL}\"\nexperiment = \"${SAGESYNC_MODELDB_V2_EXPERIMENT:-sagemaker}\"\n".to_string();
            if set("SAGESYNC_MODELDB_V2_KEY_SECRET") {
                t.push_str("email = \"${SAGESYNC_MODELDB_V2_EMAIL}\"\ndeveloper_key = \"SECRET[modeldb_key]\"\n\n[secret.modeldb_key]\ntype = \"aws_secrets_manager\"\nsecret_id = \"${SAGESYNC_MODELDB_V2_KEY_SECRET}\"\n");
            }
            Ok(t)
        }
        "mlflow" => {
            // The experiment template's own braces are chosen here: `${VAR:-{project}}` would
            // end at the first `}`.
            let experiment = if set("SAGESYNC_MLFLOW_EXPERIMENT") { "${SAGESYNC_MLFLOW_EXPERIMENT}" } else { "{project}" };
            let mut t = format!(
                "[[sinks]]\ntype = \"mlflow\"\ntracking_uri = \"${{SAGESYNC_MLFLOW_TRACKING_URI}}\"\nexperiment = \"{experiment}\"\n"
            );
            if set("SAGESYNC_MLFLOW_TOKEN_SECRET") {
                t.push_str("\n[sinks.auth]\ntype = \"token\"\ntoken = \"SECRET[mlflow_token]\"\n\n[secret.mlflow_token]\ntype = \"aws_secrets_manager\"\nsecret_id = \"${SAGESYNC_MLFLOW_TOKEN_SECRET}\"\n");
            }
            Ok(t)
        }
        other => Err(ConfigErrors::one("SAGESYNC_STORE", format!("unknown store `{other}`; expected modeldb_v1, modeldb_v2 or mlflow"))),
    }
}

/// The built-in pipeline of `SAGESYNC_STORE` (unset or `modeldb_v1`: [`DEFAULT_CONFIG`]; the
/// others: the same source, validators and mapper with their sink and its secrets, from the
/// template's `SAGESYNC_*` variables).
pub fn builtin_config(env: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigErrors> {
    let store = env("SAGESYNC_STORE").filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "modeldb_v1".into());
    if store == "modeldb_v1" {
        return Ok(DEFAULT_CONFIG.to_string());
    }
    let head = DEFAULT_CONFIG.split("[[sinks]]").next().unwrap_or(DEFAULT_CONFIG);
    Ok(format!("{head}{}", store_sink(&store, env)?))
}

/// The counts one invocation reports as CloudWatch metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationCounts {
    /// Jobs synced.
    pub synced: u64,
    /// Jobs skipped (not eligible).
    pub skipped: u64,
    /// Jobs rejected by a validator.
    pub rejected: u64,
    /// Jobs failed.
    pub failed: u64,
    /// Jobs parked (left alone until their content changes).
    pub parked: u64,
    /// Events answered "deliver again" (retryable failures, busy jobs, interruptions).
    pub retried: u64,
    /// Events of jobs already synced (duplicate deliveries).
    pub already_synced: u64,
    /// Calls made to SageMaker (and S3, CloudWatch, STS...) by the source.
    pub sagemaker_requests: u64,
    /// Write requests made to the stores.
    pub store_writes: u64,
    /// Scheduled re-drives run (the re-drive alarm watches that one runs on schedule).
    pub redrives: u64,
}

/// The metrics of [`emf_line`], in order.
pub const EMF_METRICS: [&str; 10] = [
    "JobsSynced",
    "JobsSkipped",
    "JobsRejected",
    "JobsFailed",
    "JobsParked",
    "EventsRetried",
    "JobsAlreadySynced",
    "SageMakerRequests",
    "StoreWrites",
    "RedrivesRun",
];
/// The namespace of [`emf_line`].
pub const EMF_NAMESPACE: &str = "sagesync";

/// One CloudWatch Embedded Metric Format line: the counts of one invocation in the `sagesync`
/// namespace, dimension `FunctionName`, unit `Count`, at `now_ms`.
pub fn emf_line(function: &str, c: &InvocationCounts, now_ms: i64) -> String {
    let values = [
        c.synced,
        c.skipped,
        c.rejected,
        c.failed,
        c.parked,
        c.retried,
        c.already_synced,
        c.sagemaker_requests,
        c.store_writes,
        c.redrives,
    ];
    let mut o = serde_json::Map::new();
    o.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": EMF_NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": EMF_METRICS.iter().map(|m| json!({"Name": m, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    o.insert("FunctionName".into(), json!(function));
    for (m, v) in EMF_METRICS.iter().zip(values) {
        o.insert((*m).into(), json!(v));
    }
    Value::Object(o).to_string()
}

fn counts_of(reports: &[&sagesync_core::PassReport], redrives: u64, results: &[(Option<String>, ItemResult)]) -> InvocationCounts {
    let mut c = InvocationCounts { redrives, ..Default::default() };
    for r in reports {
        c.synced += r.synced as u64;
        c.skipped += r.skipped as u64;
        c.rejected += r.rejected as u64;
        c.failed += r.failed as u64;
        c.already_synced += r.already_done as u64;
        c.parked += r.jobs.iter().filter(|j| j.parked).count() as u64;
        c.sagemaker_requests += r.api_calls.values().sum::<u64>();
        c.store_writes += r.store_writes;
    }
    c.retried = results.iter().filter(|(_, r)| matches!(r, ItemResult::Err(HandlerError::Retryable(_)))).count() as u64;
    c
}

/// Declares the answers of the function from one list, so that the list every caller checks
/// against (the Step Functions definition's test) is the code's own.
macro_rules! answers {
    ($($(#[doc = $doc:literal])* $v:ident => $s:literal,)*) => {
        /// The `outcome` of a successful answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Answer {
            $($(#[doc = $doc])* $v,)*
        }
        impl Answer {
            /// Every answer.
            pub const ALL: &'static [Answer] = &[$(Answer::$v),*];
            /// Its name in the response.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Answer::$v => $s,)*
                }
            }
        }
    };
}

answers! {
    /// Written to every sink (or, with nothing to write, already there once read afresh).
    Synced => "synced",
    /// Not meant to be synced (the validators said so).
    Skipped => "skipped",
    /// Meant to be synced, but unusable (a required tag missing...).
    Rejected => "rejected",
    /// A failure recorded in a persistent ledger: parked (after `max_job_attempts` failures of
    /// the job's own content) or awaiting its retry time; `sagesync status` shows it, and the
    /// scheduled re-drive or `sagesync retry` works on it again.
    Failed => "failed",
    /// Not a training-job event, or not a final status.
    Ignored => "ignored",
    /// A duplicate or stale event of a job the ledger already holds as it is: nothing done.
    AlreadySynced => "already_synced",
    /// A scheduled event: the failed jobs whose retry time had come were worked on.
    Redriven => "redriven",
}

/// Declares [`HandlerError`] with the list of its `errorType` names.
macro_rules! handler_errors {
    ($($(#[doc = $doc:literal])* $v:ident => $s:literal,)*) => {
        /// Why an invocation failed (the runtime retries it, then sends it to the failure
        /// destination).
        #[derive(Debug, thiserror::Error)]
        pub enum HandlerError {
            $($(#[doc = $doc])* #[error("{0}")] $v(String),)*
        }
        impl HandlerError {
            /// Every `errorType` the function reports.
            pub const TYPES: &'static [&'static str] = &[$($s),*];
            /// The `errorType` reported to the runtime.
            pub fn error_type(&self) -> &'static str {
                match self {
                    $(HandlerError::$v(_) => $s,)*
                }
            }
        }
    };
}

handler_errors! {
    /// The event cannot be read.
    MalformedEvent => "MalformedEvent",
    /// A retryable failure (or an interruption): deliver the event again.
    Retryable => "RetryableError",
    /// A failure of the job's content, with no persistent ledger to park it in: the failure
    /// destination is where a person sees it.
    PermanentFailure => "PermanentFailure",
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_type().to_string(), error_message: e.to_string() }
    }
}

/// The loaded function.
pub struct App {
    engine: Engine,
    settings: LambdaSettings,
}

/// Where the config comes from.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("SAGESYNC_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let root = env("LAMBDA_TASK_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    [root.join("sagesync.toml"), PathBuf::from("sagesync.toml")].into_iter().find(|p| p.exists())
}

/// The state used when the config has no `[state]`: the DynamoDB table named by
/// `SAGESYNC_STATE_TABLE` (the SAM template sets it), else memory (one sandbox's lifetime).
pub fn default_state(env: &dyn Fn(&str) -> Option<String>) -> EngineOptions {
    match env("SAGESYNC_STATE_TABLE").filter(|t| !t.is_empty()) {
        Some(table) => {
            let mut options = toml::Table::new();
            options.insert("table".into(), toml::Value::String(table));
            if let Some(url) = env("SAGESYNC_STATE_ENDPOINT_URL").filter(|u| !u.is_empty()) {
                options.insert("endpoint_url".into(), toml::Value::String(url));
            }
            EngineOptions { default_state: "dynamodb".into(), default_state_options: options, ..EngineOptions::memory() }
        }
        None => EngineOptions::memory(),
    }
}

/// Registered plugin type names (for the linking test).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    sagesync_core::registry::registered()
}

/// How one payload item ended.
enum ItemResult {
    Ok(Value),
    Err(HandlerError),
}

impl App {
    /// Loads the configuration from the process environment.
    pub fn from_env() -> Result<App, ConfigErrors> {
        Self::load(&|k| std::env::var(k).ok())
    }

    /// Loads the configuration, reading variables through `env`. Without `[state]`, the ledger
    /// is the DynamoDB table named by `SAGESYNC_STATE_TABLE` when set, else in memory (one
    /// sandbox's lifetime); `[state] type = "dynamodb"` in the file shares it across invocations
    /// too.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<App, ConfigErrors> {
        // An explicit file first, then the SSM parameter, then a bundled file, then the
        // built-in pipeline of the template's store.
        let explicit = env("SAGESYNC_CONFIG").is_some_and(|p| !p.trim().is_empty());
        let mut cfg = match (config_path(env), env("SAGESYNC_CONFIG_PARAMETER").filter(|p| !p.trim().is_empty())) {
            (Some(p), _) if explicit => Config::from_file_with(&p, env)?,
            (Some(p), None) => Config::from_file_with(&p, env)?,
            (_, Some(name)) => {
                let text = sagesync_aws::secrets::read_ssm_parameter(&name, env("SAGESYNC_CONFIG_PARAMETER_ENDPOINT_URL").as_deref())
                    .map_err(|e| ConfigErrors::one(&format!("ssm:{name}"), format!("cannot read the config parameter: {e}")))?;
                Config::parse(text.expose(), &format!("ssm:{name}"), env)?
            }
            (None, None) => Config::parse(&builtin_config(env)?, "<built-in Lambda config>", env)?,
        };
        // Secrets are read once, at cold start.
        cfg.resolve_secrets(sagesync_core::config::SecretMode::Resolve)?;
        let engine = Engine::from_config(&cfg, &default_state(env))?;
        Ok(App { engine, settings: cfg.section("lambda") })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Handles one invocation payload: an EventBridge event or an SQS batch of them, to be done
    /// by `deadline`. A scheduled event re-drives the failed jobs whose retry time has come.
    pub async fn handle(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let items = read_payload(&payload);
        let batch = items.iter().any(|i| i.message_id.is_some());
        let refs: Vec<_> = items
            .iter()
            .filter_map(|i| match &i.kind {
                ItemKind::Job(c) => Some(c.job_ref()),
                _ => None,
            })
            .collect();
        let stop_at = deadline.map(|d| d.checked_sub(Duration::from_millis(self.settings.deadline_margin_ms)).unwrap_or(d));
        let report = if refs.is_empty() {
            None
        } else {
            let opts = RefOptions {
                urgent: true,
                collect: true,
                deadline: stop_at,
                lease_wait: Some(self.settings.lease_wait()),
                ..Default::default()
            };
            Some(self.engine.sync_refs(refs, &opts, &CancellationToken::new(), &NoObserver).await)
        };
        // The engine answers each reference, in order: the n-th job event's is `refs[n]`.
        let mut answers = report.as_ref().map(|r| r.refs.iter()).into_iter().flatten();
        let redrive = if items.iter().any(|i| matches!(i.kind, ItemKind::Scheduled)) {
            let opts = RefOptions { collect: false, deadline: stop_at, lease_wait: Some(self.settings.lease_wait()), ..Default::default() };
            let rep = self.engine.redrive(&opts, &CancellationToken::new(), &NoObserver).await;
            tracing::info!(
                synced = rep.synced,
                skipped = rep.skipped,
                rejected = rep.rejected,
                failed = rep.failed,
                interrupted = rep.interrupted,
                busy = rep.busy,
                "scheduled re-drive done"
            );
            Some(rep)
        } else {
            None
        };
        let persistent = self.engine.state().persistent();
        let mut results = Vec::new();
        for item in &items {
            let r = match &item.kind {
                ItemKind::Malformed(e) => {
                    tracing::error!(error = %e.chain(), "malformed event");
                    ItemResult::Err(HandlerError::MalformedEvent(e.chain()))
                }
                ItemKind::Ignored(reason) => ItemResult::Ok(json!({"outcome": Answer::Ignored.as_str(), "reason": reason})),
                ItemKind::Scheduled => match &redrive {
                    Some(rep) if rep.state_error.is_some() => {
                        ItemResult::Err(HandlerError::Retryable(format!("re-drive: {}", rep.state_error.as_deref().unwrap_or(""))))
                    }
                    Some(rep) => ItemResult::Ok(json!({
                        "outcome": Answer::Redriven.as_str(),
                        "synced": rep.synced, "skipped": rep.skipped, "rejected": rep.rejected, "failed": rep.failed,
                        "interrupted": rep.interrupted, "busy": rep.busy, "api_calls": rep.api_calls,
                    })),
                    None => ItemResult::Ok(json!({"outcome": Answer::Redriven.as_str()})),
                },
                ItemKind::Job(change) => match answers.next() {
                    Some(RefResult::Worked(j)) => outcome_of(j, persistent, change.event_id.as_deref()),
                    Some(RefResult::AlreadyDone) => {
                        ItemResult::Ok(json!({"job": change.name, "outcome": Answer::AlreadySynced.as_str(), "event_id": change.event_id}))
                    }
                    Some(RefResult::Busy) => ItemResult::Err(HandlerError::Retryable(format!(
                        "training job {}: another writer holds it; deliver again",
                        change.name
                    ))),
                    // Not due yet (never for an event, which is urgent), or nothing known: the
                    // state store could not be read. Delivered again, never answered as done.
                    Some(RefResult::Deferred) => {
                        ItemResult::Err(HandlerError::Retryable(format!("training job {}: its retry time has not come", change.name)))
                    }
                    Some(RefResult::NotStarted { reason }) => {
                        ItemResult::Err(HandlerError::Retryable(format!("training job {}: {reason}; deliver again", change.name)))
                    }
                    None => ItemResult::Err(HandlerError::Retryable(format!("training job {}: not worked on; deliver again", change.name))),
                },
            };
            results.push((item.message_id.clone(), r));
        }
        let reports: Vec<&sagesync_core::PassReport> = report.iter().chain(redrive.iter()).collect();
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "sagesync".into());
        // One line of its own on stdout: CloudWatch Logs turns it into the metrics.
        let counts = counts_of(&reports, u64::from(redrive.is_some()), &results);
        println!("{}", emf_line(&function, &counts, chrono::Utc::now().timestamp_millis()));
        if let Some(rep) = &report {
            tracing::info!(synced = rep.synced, skipped = rep.skipped, rejected = rep.rejected, failed = rep.failed, interrupted = rep.interrupted, already_done = rep.already_done, busy = rep.busy, api_calls = ?rep.api_calls, "invocation handled");
        }
        if batch {
            let mut failures = Vec::new();
            let mut out = Vec::new();
            for (id, r) in results {
                let id = id.unwrap_or_default();
                match r {
                    ItemResult::Ok(v) => out.push(json!({"messageId": id, "result": v})),
                    ItemResult::Err(e) => {
                        tracing::warn!(message_id = %id, error_type = e.error_type(), error = %e, "SQS record failed");
                        out.push(json!({"messageId": id, "error": {"errorType": e.error_type(), "errorMessage": e.to_string()}}));
                        failures.push(json!({"itemIdentifier": id}));
                    }
                }
            }
            return Ok(json!({"batchItemFailures": failures, "results": out}));
        }
        match results.into_iter().next().map(|(_, r)| r) {
            Some(ItemResult::Ok(mut v)) => {
                if let Some(o) = v.as_object_mut() {
                    if !o.contains_key("api_calls") {
                        o.insert("api_calls".into(), report.as_ref().map(|r| json!(r.api_calls)).unwrap_or_else(|| json!({})));
                    }
                }
                Ok(v)
            }
            Some(ItemResult::Err(e)) => Err(e),
            None => Err(HandlerError::MalformedEvent("empty payload".into())),
        }
    }
}

fn outcome_of(j: &JobReport, persistent: bool, event_id: Option<&str>) -> ItemResult {
    let mut v = serde_json::to_value(j).unwrap_or_else(|_| json!({}));
    v["event_id"] = json!(event_id);
    let answer = match j.outcome {
        Outcome::Interrupted => {
            return ItemResult::Err(HandlerError::Retryable(format!(
                "training job {}: {}",
                j.job,
                j.reason.as_deref().unwrap_or("interrupted")
            )))
        }
        Outcome::Failed if j.retryable || !j.recorded => {
            return ItemResult::Err(HandlerError::Retryable(format!("training job {}: {}", j.job, j.reason.as_deref().unwrap_or("failed"))))
        }
        // In a persistent ledger, where `sagesync status` shows it and the scheduled re-drive
        // (or `sagesync retry`) picks it up: done here.
        Outcome::Failed if persistent => {
            tracing::warn!(job = %j.job, parked = j.parked, reason = j.reason.as_deref().unwrap_or(""), "failure recorded in the ledger");
            Answer::Failed
        }
        Outcome::Failed => {
            return ItemResult::Err(HandlerError::PermanentFailure(format!(
                "training job {}: {}",
                j.job,
                j.reason.as_deref().unwrap_or("failed")
            )))
        }
        Outcome::Synced => Answer::Synced,
        Outcome::Skipped => Answer::Skipped,
        Outcome::Rejected => Answer::Rejected,
    };
    v["outcome"] = json!(answer.as_str());
    ItemResult::Ok(v)
}
