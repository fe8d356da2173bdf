//! The Lambda runner: EventBridge "SageMaker Training Job State Change" events (directly or
//! wrapped in SQS records) through the one pipeline.
//!
//! Configuration: the TOML file at `SAGESYNC_CONFIG`, else `sagesync.toml` in the function's
//! directory (`LAMBDA_TASK_ROOT`) or the working directory, else the AWS sample's pipeline
//! (SageMaker → required tags → Completed only → tags mapper → ModelDB v1). The sample's
//! environment knobs apply on top: `TAG_MODEL_DB_SYNC`, `TAG_MODEL_DB_PROJECT_NAME`, ...,
//! `MODEL_DB_INSTANCE_URL` and `MODEL_DB_INSTANCE_PORT` (for every `modeldb_v1` sink).

use std::path::PathBuf;
use std::sync::Arc;

use sagesync_core::config::{ConfigError, ConfigErrors};
use sagesync_core::{CancellationToken, Config, Outcome, Pipeline, Source};
use sagesync_source_sagemaker::api::{parse_event, EventKind, SageMakerSource, SageMakerSourceConfig};
use serde_json::{json, Value};

// Link every plugin crate.
use sagesync_sink_file as _;
use sagesync_sink_modeldb as _;

/// The pipeline used when no config file exists: the AWS sample's.
pub const DEFAULT_CONFIG: &str = r#"[source]
type = "sagemaker"
max_requests_per_second = 0

[[validators]]
type = "required_tags"

[[validators]]
type = "status"
statuses = ["Completed"]

[mapper]
type = "tags"

[[sinks]]
type = "modeldb_v1"
host = "localhost"
port = 6543
"#;

/// The sample's tag-key environment variables and the `[tag_keys]` field each sets.
pub const TAG_ENV: [(&str, &str); 6] = [
    ("TAG_MODEL_DB_SYNC", "sync"),
    ("TAG_MODEL_DB_PROJECT_NAME", "project_name"),
    ("TAG_MODEL_DB_PROJECT_USER", "project_user"),
    ("TAG_MODEL_DB_PROJECT_DESC", "project_desc"),
    ("TAG_MODEL_DB_MODEL_NAME", "model_name"),
    ("TAG_MODEL_DB_MODEL_TYPE", "model_type"),
];

/// Why an invocation failed (reported to the Lambda runtime, which retries and then sends the
/// event to the failure destination).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event cannot be read.
    #[error("{0}")]
    MalformedEvent(String),
    /// A sink write failed after retries.
    #[error("{0}")]
    SinkWriteFailed(String),
    /// A retryable failure reading the job (throttling, network).
    #[error("{0}")]
    Retryable(String),
}

impl HandlerError {
    /// The `errorType` reported to the runtime.
    pub fn error_type(&self) -> &'static str {
        match self {
            HandlerError::MalformedEvent(_) => "MalformedEvent",
            HandlerError::SinkWriteFailed(_) => "SinkWriteFailed",
            HandlerError::Retryable(_) => "RetryableError",
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_type().to_string(), error_message: e.to_string() }
    }
}

/// The loaded function: a pipeline plus the typed SageMaker source it reads events with.
pub struct App {
    pipeline: Pipeline,
    source: Arc<SageMakerSource>,
}

fn cfg_error(file: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { file: file.to_string(), line: 1, column: 1, key: String::new(), message }])
}

/// Where the config comes from.
pub fn config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("SAGESYNC_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let root = env("LAMBDA_TASK_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    [root.join("sagesync.toml"), PathBuf::from("sagesync.toml")].into_iter().find(|p| p.exists())
}

impl App {
    /// Loads the configuration from the process environment.
    pub fn from_env() -> Result<App, ConfigErrors> {
        Self::load(&|k| std::env::var(k).ok())
    }

    /// Loads the configuration, reading variables through `env`.
    pub fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<App, ConfigErrors> {
        let mut cfg = match config_path(env) {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| cfg_error(&p.display().to_string(), format!("cannot read config file: {e}")))?;
                let mut c = Config::parse(&text, &p.display().to_string(), env)?;
                c.dir = p.parent().map(|d| d.to_path_buf());
                c
            }
            None => Config::parse(DEFAULT_CONFIG, "<built-in Lambda config>", env)?,
        };
        // The sample's knobs.
        for (var, field) in TAG_ENV {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                let k = &mut cfg.tag_keys;
                *match field {
                    "sync" => &mut k.sync,
                    "project_name" => &mut k.project_name,
                    "project_user" => &mut k.project_user,
                    "project_desc" => &mut k.project_desc,
                    "model_name" => &mut k.model_name,
                    _ => &mut k.model_type,
                } = v;
            }
        }
        let host = env("MODEL_DB_INSTANCE_URL").filter(|v| !v.is_empty());
        let port = match env("MODEL_DB_INSTANCE_PORT").filter(|v| !v.is_empty()) {
            Some(p) => Some(p.trim().parse::<u16>().map_err(|_| cfg_error(&cfg.file, format!("MODEL_DB_INSTANCE_PORT `{p}` is not a port number")))?),
            None => None,
        };
        for s in cfg.sinks.iter_mut().filter(|s| s.type_name == "modeldb_v1") {
            if let Some(h) = &host {
                s.options.insert("host".into(), toml::Value::String(h.clone()));
            }
            if let Some(p) = port {
                s.options.insert("port".into(), toml::Value::Integer(p.into()));
            }
        }
        // The event path needs the SageMaker source itself (Describe, ListTags).
        let src = cfg.source.clone().ok_or_else(|| cfg_error(&cfg.file, "missing `[source]`".into()))?;
        if src.type_name != "sagemaker" {
            return Err(cfg_error(&cfg.file, format!("the Lambda runner reads SageMaker events: `[source] type` must be \"sagemaker\", not \"{}\"", src.type_name)));
        }
        let built = cfg.build()?;
        let source_cfg: SageMakerSourceConfig = toml::Value::Table(src.options.clone()).try_into().map_err(|e: toml::de::Error| cfg_error(&cfg.file, format!("[source]: {}", e.message())))?;
        let settings = source_cfg.settings().map_err(|p| ConfigErrors(p.into_iter().map(|p| ConfigError { file: cfg.file.clone(), line: 1, column: 1, key: format!("source.{}", p.path), message: p.message }).collect()))?;
        let source = Arc::new(SageMakerSource::new(settings));
        let mut b = Pipeline::builder().source_arc(source.clone() as Arc<dyn Source>).mapper_arc(built.mapper.1).settings(built.settings);
        for (id, v) in built.validators {
            b = b.validator_arc(id, v);
        }
        for (id, s) in built.sinks {
            b = b.sink_arc(id, s);
        }
        let pipeline = b.build().map_err(|e| cfg_error(&cfg.file, e.to_string()))?;
        Ok(App { pipeline, source })
    }

    /// Handles one invocation payload: an EventBridge event or an SQS batch of them.
    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
        if let Some(records) = payload.get("Records").and_then(Value::as_array) {
            if records.iter().any(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs")) {
                return Ok(self.handle_sqs(records).await);
            }
        }
        self.handle_event(&payload).await
    }

    async fn handle_sqs(&self, records: &[Value]) -> Value {
        let mut failures = Vec::new();
        let mut results = Vec::new();
        for r in records {
            let id = r.get("messageId").and_then(Value::as_str).unwrap_or("").to_string();
            let outcome = match r.get("body").and_then(Value::as_str).map(serde_json::from_str::<Value>) {
                Some(Ok(ev)) => self.handle_event(&ev).await,
                Some(Err(e)) => Err(HandlerError::MalformedEvent(format!("SQS message {id}: body is not JSON: {e}"))),
                None => Err(HandlerError::MalformedEvent(format!("SQS message {id}: no body"))),
            };
            match outcome {
                Ok(v) => results.push(json!({"messageId": id, "result": v})),
                Err(e) => {
                    tracing::warn!(message_id = %id, error_type = e.error_type(), error = %e, "SQS record failed");
                    results.push(json!({"messageId": id, "error": {"errorType": e.error_type(), "errorMessage": e.to_string()}}));
                    failures.push(json!({"itemIdentifier": id}));
                }
            }
        }
        json!({"batchItemFailures": failures, "results": results})
    }

    /// Handles one EventBridge event.
    pub async fn handle_event(&self, ev: &Value) -> Result<Value, HandlerError> {
        let calls_before = self.source.api_calls();
        let change = match parse_event(ev) {
            Err(e) => {
                tracing::error!(error = %e, "malformed event");
                return Err(HandlerError::MalformedEvent(e.to_string()));
            }
            Ok(EventKind::Other(reason)) => return Ok(json!({"outcome": "ignored", "reason": reason})),
            Ok(EventKind::StateChange(c)) => c,
        };
        if !change.is_terminal() {
            let reason = format!("status {} is not terminal; nothing to sync yet", change.status.as_deref().unwrap_or("(none)"));
            tracing::info!(job = %change.name, reason = %reason, "event acknowledged");
            return Ok(json!({"job": change.name, "outcome": "ignored", "reason": reason, "api_calls": {}}));
        }
        let cancel = CancellationToken::new();
        let job = match self.pipeline.with_retries(&cancel, || self.source.job_for_event(&change)).await {
            Ok((job, _)) => job,
            Err((e, attempts)) if e.is_retryable() => return Err(HandlerError::Retryable(format!("training job {}: {} (after {attempts} attempts)", change.name, e.chain()))),
            Err((e, _)) => {
                tracing::warn!(job = %change.name, error = %e.chain(), "job cannot be read; not retrying");
                return Ok(json!({"job": change.name, "arn": change.arn, "outcome": "failed", "reason": format!("source: {}", e.chain()), "retryable": false, "api_calls": self.calls_since(&calls_before)}));
            }
        };
        let report = self.pipeline.sync_job(job, &cancel).await;
        tracing::info!(job = %report.job, outcome = report.outcome.as_str(), reason = report.reason.as_deref().unwrap_or(""), "event handled");
        let mut out = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
        out["event_id"] = json!(change.event_id);
        out["api_calls"] = json!(self.calls_since(&calls_before));
        if report.outcome == Outcome::Failed && report.retryable {
            return Err(HandlerError::SinkWriteFailed(format!("training job {}: {}", report.job, report.reason.unwrap_or_default())));
        }
        Ok(out)
    }

    fn calls_since(&self, before: &std::collections::BTreeMap<String, u64>) -> std::collections::BTreeMap<String, u64> {
        self.source.api_calls().into_iter().filter_map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (d > 0).then_some((k, d))
        }).collect()
    }
}

/// Registered plugin type names (for the linking test).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    sagesync_core::registry::all().into_iter().map(|d| (d.kind.as_str(), d.type_name)).collect()
}
