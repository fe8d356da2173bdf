//! EventBridge "SageMaker Training Job State Change", "SageMaker HyperParameter Tuning Job
//! State Change" and "SageMaker Model Building Pipeline Execution Status Change" events.
//!
//! The `detail` mirrors DescribeTrainingJob but differs between producers: `Tags` is a map or a
//! Key/Value list, timestamps are epoch milliseconds (numbers or strings) or ISO-8601, and every
//! field but the job name may be missing. No documented event carries final metrics, so a
//! terminal event costs one DescribeTrainingJob; tags come from the event (ListTags only when it
//! has none).

use sagesync_core::{JobRef, ResourceKind, SyncError, Tags, Timestamp};
use serde_json::Value;

use crate::document::{parse_tags, parse_timestamp};

/// The `detail-type` of training-job state changes.
pub const DETAIL_TYPE: &str = "SageMaker Training Job State Change";
/// The `detail-type` of tuning-job state changes (their `detail` mirrors
/// DescribeHyperParameterTuningJob).
pub const TUNING_DETAIL_TYPE: &str = "SageMaker HyperParameter Tuning Job State Change";
/// The `detail-type` of pipeline executions' status changes (their `detail` has
/// `pipelineExecutionArn` and `currentPipelineExecutionStatus`).
pub const PIPELINE_DETAIL_TYPE: &str = "SageMaker Model Building Pipeline Execution Status Change";
/// The `detail-type` of model packages' state changes (their `detail` mirrors
/// DescribeModelPackage).
pub const PACKAGE_DETAIL_TYPE: &str = "SageMaker Model Package State Change";
/// The `source` and `detail-type` of an EventBridge schedule's event (a rule with a
/// `ScheduleExpression`): the Lambda's cue to re-drive failed jobs whose retry time has come.
pub const SCHEDULED: (&str, &str) = ("aws.events", "Scheduled Event");
/// Statuses after which a job no longer changes.
pub const TERMINAL: [&str; 3] = ["Completed", "Failed", "Stopped"];

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    /// EventBridge event id.
    pub event_id: Option<String>,
    /// What changed: a training job or a tuning job.
    pub kind: ResourceKind,
    /// The job's name.
    pub name: String,
    /// ARN, from the detail or the envelope's `resources`.
    pub arn: Option<String>,
    /// `TrainingJobStatus`, when present.
    pub status: Option<String>,
    /// `LastModifiedTime` of the detail.
    pub last_modified: Option<Timestamp>,
    /// Tags carried by the event (`None` when it has none).
    pub tags: Option<Tags>,
}

/// A pipeline execution's status change: the execution's ARN (`detail.pipelineExecutionArn`,
/// else the envelope's `resources`) names it; its status (`currentPipelineExecutionStatus`) is
/// read as a training-job status (`Succeeded` is `Completed`).
fn read_execution_change(o: &serde_json::Map<String, Value>, id: Option<String>, origin: &str) -> Result<EventKind, SyncError> {
    let detail = match o.get("detail") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(malformed(origin, "`detail` is not an object")),
        None => return Err(malformed(origin, "no `detail`")),
    };
    let arn = match detail.get("pipelineExecutionArn") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => o
            .get("resources")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().filter_map(Value::as_str).find(|a| crate::document::execution_parts(a).is_some()))
            .map(str::to_string),
        Some(_) => return Err(malformed(origin, "`detail.pipelineExecutionArn` is not a string")),
    };
    let Some(arn) = arn else {
        return Err(malformed(origin, "no pipeline execution ARN (`detail.pipelineExecutionArn` or `resources`)"));
    };
    let Some(name) = crate::document::execution_name(&arn) else {
        return Err(malformed(origin, "`detail.pipelineExecutionArn` is not the ARN of a pipeline execution"));
    };
    let status = match detail.get("currentPipelineExecutionStatus") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(crate::document::training_status_of_step(s).to_string()),
        Some(_) => return Err(malformed(origin, "`detail.currentPipelineExecutionStatus` is not a string")),
    };
    // The end time stands for the change the event tells: a duplicate of the event is then
    // known to the ledger without a request.
    let last_modified = match detail.get("executionEndTime") {
        Some(v) => parse_timestamp(v, "detail.executionEndTime").map_err(|e| malformed(origin, e.to_string()))?,
        None => None,
    };
    Ok(EventKind::StateChange(StateChange {
        event_id: id,
        kind: ResourceKind::PipelineExecution,
        name,
        arn: Some(arn),
        status,
        last_modified,
        tags: None,
    }))
}

/// A model package's state change: its ARN (`detail.ModelPackageArn`, else the envelope's
/// `resources`) names it; its status is `ModelPackageStatus` (an approval changes a package
/// already `Completed`: without a status, that is what it is), its time `LastModifiedTime`.
fn read_package_change(o: &serde_json::Map<String, Value>, id: Option<String>, origin: &str) -> Result<EventKind, SyncError> {
    let detail = match o.get("detail") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(malformed(origin, "`detail` is not an object")),
        None => return Err(malformed(origin, "no `detail`")),
    };
    let arn = match detail.get("ModelPackageArn") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => o
            .get("resources")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().filter_map(Value::as_str).find(|a| crate::document::package_parts(a).is_some()))
            .map(str::to_string),
        Some(_) => return Err(malformed(origin, "`detail.ModelPackageArn` is not a string")),
    };
    let Some(arn) = arn else {
        return Err(malformed(origin, "no model package ARN (`detail.ModelPackageArn` or `resources`)"));
    };
    let Some((group, version)) = crate::document::package_parts(&arn) else {
        return Err(malformed(origin, "`detail.ModelPackageArn` is not the ARN of a versioned model package"));
    };
    let status = match detail.get("ModelPackageStatus") {
        None | Some(Value::Null) => Some("Completed".to_string()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed(origin, "`detail.ModelPackageStatus` is not a string")),
    };
    let last_modified = match detail.get("LastModifiedTime") {
        Some(v) => parse_timestamp(v, "detail.LastModifiedTime").map_err(|e| malformed(origin, e.to_string()))?,
        None => None,
    };
    Ok(EventKind::StateChange(StateChange {
        event_id: id,
        kind: ResourceKind::ModelPackage,
        name: crate::document::package_name(group, Some(version)),
        arn: Some(arn),
        status,
        last_modified,
        tags: None,
    }))
}

impl StateChange {
    /// Whether the status is terminal (only then is the job synced).
    pub fn is_terminal(&self) -> bool {
        // A package being deleted is final too: what the sinks hold of it is retracted.
        self.status.as_deref().is_some_and(|s| TERMINAL.contains(&s) || (self.kind == ResourceKind::ModelPackage && s == "Deleting"))
    }
}

/// How an event is handled.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A training-job state change.
    StateChange(StateChange),
    /// A scheduled event: re-drive the failed jobs whose retry time has come.
    Scheduled,
    /// Something else (another detail-type or source): acknowledged, nothing done.
    Other(String),
}

fn malformed(origin: &str, message: impl Into<String>) -> SyncError {
    SyncError::Malformed { origin: origin.to_string(), message: message.into() }
}

/// SageMaker's rule for a training job name: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`.
pub fn is_job_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// SageMaker's rule for a tuning job name: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$`.
pub fn is_tuner_name(s: &str) -> bool {
    is_job_name(s) && s.len() <= 32
}

/// Whether `arn` is a SageMaker ARN (`arn:<partition>:sagemaker:<region>:<account>:<resource><name>`,
/// at most 256 characters) of the resource type `resource` (`training-job/`,
/// `hyper-parameter-tuning-job/`) naming `name` (SageMaker lower-cases names in ARNs).
fn is_arn_of(arn: &str, resource: &str, name: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    arn.len() <= 256
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sagemaker"
        && (1..=12).contains(&parts[4].len())
        && parts[4].bytes().all(|c| c.is_ascii_digit())
        && parts[5].strip_prefix(resource).is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// Reads an EventBridge event. Malformed training-job events are errors naming the problem.
pub fn parse_event(ev: &Value) -> Result<EventKind, SyncError> {
    let Value::Object(o) = ev else {
        return Err(malformed("event", "not a JSON object"));
    };
    let id = o.get("id").and_then(Value::as_str).map(|i| i.chars().take(128).collect::<String>());
    let origin = format!("event {}", id.as_deref().unwrap_or("(no id)"));
    let source = o.get("source").and_then(Value::as_str).unwrap_or("");
    let detail_type = o.get("detail-type").and_then(Value::as_str).unwrap_or("");
    if (source, detail_type) == SCHEDULED {
        return Ok(EventKind::Scheduled);
    }
    if source == "aws.sagemaker" && detail_type == TUNING_DETAIL_TYPE {
        return read_change(o, id, &origin, &TUNING);
    }
    if source == "aws.sagemaker" && detail_type == PIPELINE_DETAIL_TYPE {
        return read_execution_change(o, id, &origin);
    }
    if source == "aws.sagemaker" && detail_type == PACKAGE_DETAIL_TYPE {
        return read_package_change(o, id, &origin);
    }
    if source != "aws.sagemaker" || detail_type != DETAIL_TYPE {
        if source.is_empty() && detail_type.is_empty() {
            return Err(malformed(&origin, "not an EventBridge event (no `source` or `detail-type`)"));
        }
        return Ok(EventKind::Other(format!("ignored event: source `{source}`, detail-type `{detail_type}`")));
    }
    read_change(o, id, &origin, &TRAINING)
}

/// How a kind of state change names its job: the detail's fields, the name rule, the ARN's
/// resource type, and whether the ARN is required.
struct Shape {
    kind: ResourceKind,
    what: &'static str,
    name_key: &'static str,
    name_ok: fn(&str) -> bool,
    name_rule: &'static str,
    arn_key: &'static str,
    resource: &'static str,
    status_key: &'static str,
    /// A tuning job's ARN is what tells the source to read a tuning job.
    arn_required: bool,
}

const TRAINING: Shape = Shape {
    kind: ResourceKind::TrainingJob,
    what: "training job",
    name_key: "TrainingJobName",
    name_ok: is_job_name,
    name_rule: "1 to 63 letters, digits and inner hyphens",
    arn_key: "TrainingJobArn",
    resource: "training-job/",
    status_key: "TrainingJobStatus",
    arn_required: false,
};

const TUNING: Shape = Shape {
    kind: ResourceKind::TuningJob,
    what: "tuning job",
    name_key: "HyperParameterTuningJobName",
    name_ok: is_tuner_name,
    name_rule: "1 to 32 letters, digits and inner hyphens",
    arn_key: "HyperParameterTuningJobArn",
    resource: "hyper-parameter-tuning-job/",
    status_key: "HyperParameterTuningJobStatus",
    arn_required: true,
};

/// A state change's detail, read by its [`Shape`]: name, ARN (from the detail or the envelope's
/// `resources`), status, time and tags, each checked.
fn read_change(o: &serde_json::Map<String, Value>, id: Option<String>, origin: &str, shape: &Shape) -> Result<EventKind, SyncError> {
    let detail = match o.get("detail") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(malformed(origin, "`detail` is not an object")),
        None => return Err(malformed(origin, "no `detail`")),
    };
    let name_key = shape.name_key;
    let name = match detail.get(name_key) {
        Some(Value::String(s)) if (shape.name_ok)(s) => s.clone(),
        Some(Value::String(_)) => {
            return Err(malformed(origin, format!("`detail.{name_key}` is not a {} name ({})", shape.what, shape.name_rule)))
        }
        Some(_) => return Err(malformed(origin, format!("`detail.{name_key}` is not a non-empty string"))),
        None => return Err(malformed(origin, format!("`detail.{name_key}` is missing"))),
    };
    let str_field = |k: &str| -> Result<Option<String>, SyncError> {
        match detail.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(origin, format!("`detail.{k}` is not a string"))),
        }
    };
    let marker = format!(":{}", shape.resource);
    let arn = str_field(shape.arn_key)?.or_else(|| {
        o.get("resources")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().filter_map(Value::as_str).find(|a| a.contains(&marker)))
            .map(str::to_string)
    });
    match &arn {
        Some(a) if !is_arn_of(a, shape.resource, &name) => {
            return Err(malformed(origin, format!("`detail.{}` is not the ARN of this {}", shape.arn_key, shape.what)))
        }
        None if shape.arn_required => {
            return Err(malformed(origin, format!("no {} ARN (`detail.{}` or `resources`)", shape.what, shape.arn_key)))
        }
        _ => {}
    }
    let status = str_field(shape.status_key)?;
    let last_modified = match detail.get("LastModifiedTime") {
        Some(v) => parse_timestamp(v, "detail.LastModifiedTime").map_err(|e| malformed(origin, e.to_string()))?,
        None => None,
    };
    let tags = match detail.get("Tags") {
        None | Some(Value::Null) => None,
        Some(t) => Some(parse_tags(t, "detail.Tags").map_err(|e| malformed(origin, e.to_string()))?).filter(|t| !t.is_empty()),
    };
    Ok(EventKind::StateChange(StateChange { event_id: id, kind: shape.kind, name, arn, status, last_modified, tags }))
}

impl StateChange {
    /// The job reference this event stands for: the engine fetches the job (one
    /// DescribeTrainingJob; tags from the event, or ListTags when it has none) and decides
    /// against the ledger like any other listed job.
    pub fn job_ref(&self) -> JobRef {
        JobRef {
            name: self.name.clone(),
            arn: self.arn.clone(),
            last_modified: self.last_modified,
            status: self.status.clone(),
            tags: self.tags.clone(),
            origin: Some(format!("event {}", self.event_id.as_deref().unwrap_or("(no id)"))),
            job: None,
        }
    }
}

/// One item of a Lambda payload: an EventBridge event, directly or as an SQS message's body.
#[derive(Debug)]
pub struct PayloadItem {
    /// The SQS message id, for `batchItemFailures`.
    pub message_id: Option<String>,
    /// What the item holds.
    pub kind: ItemKind,
}

/// What a payload item holds.
#[derive(Debug)]
pub enum ItemKind {
    /// A terminal state change: a job to sync.
    Job(Box<StateChange>),
    /// A scheduled event: re-drive due retries.
    Scheduled,
    /// Nothing to do (another event type, a status that is not final yet).
    Ignored(String),
    /// Unreadable.
    Malformed(SyncError),
}

/// Reads a Lambda payload: one EventBridge event, or an SQS batch of them.
pub fn read_payload(payload: &Value) -> Vec<PayloadItem> {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .filter(|r| r.iter().any(|x| x.get("eventSource").and_then(Value::as_str) == Some("aws:sqs")));
    match records {
        Some(records) => records
            .iter()
            .map(|r| {
                let id = r.get("messageId").and_then(Value::as_str).unwrap_or("").to_string();
                let kind = match r.get("body").and_then(Value::as_str).map(serde_json::from_str::<Value>) {
                    Some(Ok(ev)) => classify(&ev),
                    Some(Err(e)) => ItemKind::Malformed(SyncError::Malformed {
                        origin: format!("SQS message {id}"),
                        message: format!("body is not JSON: {e}"),
                    }),
                    None => ItemKind::Malformed(SyncError::Malformed { origin: format!("SQS message {id}"), message: "no body".into() }),
                };
                PayloadItem { message_id: Some(id), kind }
            })
            .collect(),
        None => vec![PayloadItem { message_id: None, kind: classify(payload) }],
    }
}

fn classify(ev: &Value) -> ItemKind {
    match parse_event(ev) {
        Err(e) => ItemKind::Malformed(e),
        Ok(EventKind::Other(reason)) => ItemKind::Ignored(reason),
        Ok(EventKind::Scheduled) => ItemKind::Scheduled,
        Ok(EventKind::StateChange(c)) if !c.is_terminal() => {
            ItemKind::Ignored(format!("status {} is not final; nothing to sync yet", c.status.as_deref().unwrap_or("(none)")))
        }
        Ok(EventKind::StateChange(c)) => ItemKind::Job(Box::new(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn is_job_arn(arn: &str, name: &str) -> bool {
        is_arn_of(arn, "training-job/", name)
    }

    fn ev(detail: Value) -> Value {
        json!({"version": "0", "id": "e-1", "detail-type": DETAIL_TYPE, "source": "aws.sagemaker", "account": "1", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
               "resources": ["arn:aws:sagemaker:us-east-1:1:training-job/j"], "detail": detail})
    }

    #[test]
    fn both_tag_shapes_and_timestamp_forms() {
        let a = parse_event(&ev(
            json!({"TrainingJobName": "j", "TrainingJobStatus": "Completed", "Tags": {"a": "1"}, "LastModifiedTime": 1583831889050u64}),
        ))
        .unwrap();
        let b = parse_event(&ev(json!({"TrainingJobName": "j", "TrainingJobStatus": "Completed", "Tags": [{"Key": "a", "Value": "1"}], "LastModifiedTime": "1583831889050"}))).unwrap();
        assert_eq!(a, b);
        let EventKind::StateChange(c) = a else { panic!() };
        assert!(c.is_terminal());
        assert_eq!(c.arn.as_deref(), Some("arn:aws:sagemaker:us-east-1:1:training-job/j"));
        let c2 = parse_event(&ev(json!({"TrainingJobName": "j", "LastModifiedTime": "2020-03-10T09:18:09.050Z"}))).unwrap();
        let EventKind::StateChange(c2) = c2 else { panic!() };
        assert_eq!(c2.last_modified, c.last_modified);
        assert!(!c2.is_terminal());
        assert_eq!(c2.tags, None);
    }

    #[test]
    fn malformed_and_foreign_events() {
        assert!(matches!(parse_event(&json!([])), Err(SyncError::Malformed { .. })));
        assert!(matches!(parse_event(&json!({"foo": 1})), Err(SyncError::Malformed { .. })));
        let e = parse_event(&ev(json!({"TrainingJobStatus": "Completed"}))).unwrap_err();
        assert!(e.to_string().contains("TrainingJobName` is missing"), "{e}");
        let e = parse_event(&ev(json!({"TrainingJobName": "j", "Tags": 5}))).unwrap_err();
        assert!(e.to_string().contains("Tags"), "{e}");
        let e = parse_event(&ev(json!({"TrainingJobName": "j", "LastModifiedTime": "soon"}))).unwrap_err();
        assert!(e.to_string().contains("LastModifiedTime"), "{e}");
        assert!(matches!(
            parse_event(&json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})).unwrap(),
            EventKind::Other(_)
        ));
        assert_eq!(
            parse_event(&json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}, "resources": []})).unwrap(),
            EventKind::Scheduled
        );
    }

    #[test]
    fn tuning_job_events() {
        let arn = "arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/t-1";
        let ev = |detail: Value, resources: Value| json!({"id": "e-2", "detail-type": TUNING_DETAIL_TYPE, "source": "aws.sagemaker", "resources": resources, "detail": detail});
        let c = parse_event(&ev(
            json!({"HyperParameterTuningJobName": "t-1", "HyperParameterTuningJobStatus": "Completed", "Tags": {"a": "1"}}),
            json!([arn]),
        ))
        .unwrap();
        let EventKind::StateChange(c) = c else { panic!() };
        assert_eq!((c.kind, c.arn.as_deref(), c.is_terminal()), (ResourceKind::TuningJob, Some(arn), true));
        assert_eq!(c.job_ref().arn.as_deref(), Some(arn), "the ARN tells the source it is a tuner");
        let e = parse_event(&ev(json!({"HyperParameterTuningJobName": "t-1"}), json!([]))).unwrap_err();
        assert!(e.to_string().contains("no tuning job ARN"), "{e}");
        let e = parse_event(&ev(json!({"HyperParameterTuningJobName": "t-2"}), json!([arn]))).unwrap_err();
        assert!(e.to_string().contains("not the ARN of this tuning job"), "{e}");
        let e = parse_event(&ev(json!({"HyperParameterTuningJobName": "x".repeat(33)}), json!([arn]))).unwrap_err();
        assert!(e.to_string().contains("not a tuning job name"), "{e}");
    }

    #[test]
    fn pipeline_execution_events() {
        let arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc";
        let ev = |detail: Value, resources: Value| json!({"id": "e-3", "detail-type": PIPELINE_DETAIL_TYPE, "source": "aws.sagemaker", "resources": resources, "detail": detail});
        let EventKind::StateChange(c) = parse_event(&ev(
            json!({"pipelineExecutionArn": arn, "currentPipelineExecutionStatus": "Succeeded", "previousPipelineExecutionStatus": "Executing"}),
            json!(["arn:aws:sagemaker:us-east-1:123456789012:pipeline/p", arn]),
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.kind, c.name.as_str(), c.arn.as_deref(), c.is_terminal()),
            (ResourceKind::PipelineExecution, "p-abc", Some(arn), true)
        );
        let EventKind::StateChange(c) = parse_event(&ev(
            json!({"currentPipelineExecutionStatus": "Executing"}),
            json!(["arn:aws:sagemaker:us-east-1:123456789012:pipeline/p", arn]),
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!((c.arn.as_deref(), c.is_terminal()), (Some(arn), false), "the ARN from `resources`; running is not final");
        let e = parse_event(&ev(json!({}), json!(["arn:aws:sagemaker:us-east-1:123456789012:pipeline/p"]))).unwrap_err();
        assert!(e.to_string().contains("no pipeline execution ARN"), "{e}");
        let e = parse_event(&ev(json!({"pipelineExecutionArn": "arn:aws:sagemaker:us-east-1:1:training-job/t"}), json!([]))).unwrap_err();
        assert!(e.to_string().contains("not the ARN of a pipeline execution"), "{e}");
    }

    #[test]
    fn model_package_events() {
        let arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3";
        let ev = |detail: Value, resources: Value| json!({"id": "e-4", "detail-type": PACKAGE_DETAIL_TYPE, "source": "aws.sagemaker", "resources": resources, "detail": detail});
        let EventKind::StateChange(c) = parse_event(&ev(
            json!({"ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ModelPackageStatus": "Completed", "LastModifiedTime": 1796600000000_u64}),
            json!([arn]),
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!((c.kind, c.name.as_str(), c.is_terminal()), (ResourceKind::ModelPackage, "churn-3", true));
        assert!(c.last_modified.is_some(), "a duplicate is known by its time");
        let EventKind::StateChange(c) = parse_event(&ev(json!({"ModelApprovalStatus": "Rejected"}), json!([arn]))).unwrap() else {
            panic!()
        };
        assert_eq!((c.arn.as_deref(), c.is_terminal()), (Some(arn), true), "an approval changes a completed package");
        let Ok(EventKind::StateChange(c)) = parse_event(&ev(json!({"ModelPackageArn": arn, "ModelPackageStatus": "Deleting"}), json!([])))
        else {
            panic!("a deletion")
        };
        assert!(c.is_terminal(), "a package being deleted is worked on (its records retracted)");
        let e = parse_event(&ev(json!({}), json!(["arn:aws:sagemaker:us-east-1:123456789012:model-package-group/churn"]))).unwrap_err();
        assert!(e.to_string().contains("no model package ARN"), "{e}");
        let e = parse_event(&ev(json!({"ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/x"}), json!([])))
            .unwrap_err();
        assert!(e.to_string().contains("versioned model package"), "{e}");
    }

    #[test]
    fn names_and_arns_follow_sagemakers_rules() {
        for ok in ["j", "job-1", "A-b--c9", &"x".repeat(63)] {
            assert!(is_job_name(ok), "{ok}");
        }
        for bad in ["", "-j", "j-", "a_b", "../../etc/passwd", "ü", &"x".repeat(64), " j"] {
            assert!(!is_job_name(bad), "{bad}");
        }
        assert!(is_job_arn("arn:aws:sagemaker:us-east-1:123456789012:training-job/job-1", "job-1"));
        assert!(is_job_arn("arn:aws-cn:sagemaker:cn-north-1:123456789012:training-job/job-1", "JOB-1"), "ARNs lower-case names");
        assert!(!is_job_arn("arn:aws:sagemaker:us-east-1:123456789012:training-job/other", "job-1"));
        assert!(!is_job_arn("arn:aws:s3:::bucket", "job-1"));
        let huge = "x".repeat(3000);
        let e = parse_event(&ev(json!({"TrainingJobName": huge, "TrainingJobStatus": "Completed"}))).unwrap_err();
        assert!(matches!(e, SyncError::Malformed { .. }) && e.to_string().len() < 400, "{e}");
    }
}
