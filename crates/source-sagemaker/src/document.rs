//! Reading a DescribeTrainingJob document (as `aws sagemaker describe-training-job` prints it,
//! as the API returns it, or as an EventBridge event's `detail` carries it) into a
//! [`TrainingJob`].
//!
//! Lenient where SageMaker's producers differ: `Tags` as a Key/Value list or a map; timestamps as
//! ISO-8601 strings, epoch seconds or epoch milliseconds (numbers above 10^11 are milliseconds),
//! numbers or numeric strings; every field but `TrainingJobName` optional.

use chrono::{DateTime, TimeZone, Utc};
use indexmap::IndexMap;
use sagesync_core::{
    Algorithm, BestChild, Channel, ChannelManifest, ChildObjective, ChildSummary, DataSource, FinalMetric, MetricDefinition, Objective,
    PackageSummary, ParentRef, PipelineSummary, ResourceKind, StepSummary, Tag, Tags, Timestamp, TrainingJob, TuningSummary,
};
use serde_json::{Map, Value};

/// A document that is not a usable training job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct DocumentError {
    /// The offending field (`InputDataConfig[1].DataSource`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> DocumentError {
    DocumentError { field: field.into(), message: message.into() }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, DocumentError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(v) => Err(err(field, format!("expected a string, found {}", type_name(v)))),
    }
}

fn opt_obj<'a>(obj: &'a Map<String, Value>, key: &str, field: &str) -> Result<Option<&'a Map<String, Value>>, DocumentError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(err(field, format!("expected an object, found {}", type_name(v)))),
    }
}

fn opt_arr<'a>(obj: &'a Map<String, Value>, key: &str, field: &str) -> Result<&'a [Value], DocumentError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(err(field, format!("expected an array, found {}", type_name(v)))),
    }
}

fn opt_u64(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<u64>, DocumentError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| err(field, "expected a non-negative integer")),
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| err(field, "expected a non-negative integer")),
        Some(v) => Err(err(field, format!("expected a number, found {}", type_name(v)))),
    }
}

fn epoch(n: f64, field: &str) -> Result<Timestamp, DocumentError> {
    if !n.is_finite() || n < 0.0 {
        return Err(err(field, "timestamp out of range"));
    }
    let millis = if n > 1e11 { n } else { n * 1000.0 };
    let ms = millis.round();
    if ms > 8.0e15 {
        return Err(err(field, "timestamp out of range"));
    }
    Utc.timestamp_millis_opt(ms as i64).single().ok_or_else(|| err(field, "timestamp out of range"))
}

/// Parses a timestamp in any of the accepted forms.
pub fn parse_timestamp(v: &Value, field: &str) -> Result<Option<Timestamp>, DocumentError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_f64().map(|f| epoch(f, field)).transpose(),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(f) = s.parse::<f64>() {
                return epoch(f, field).map(Some);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            // `2019-04-10 01:02:03.456000+00:00` (Python's str(datetime)) and naive UTC forms.
            for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
                if let Ok(t) = DateTime::parse_from_str(s, fmt) {
                    return Ok(Some(t.with_timezone(&Utc)));
                }
            }
            for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
                    return Ok(Some(Utc.from_utc_datetime(&t)));
                }
            }
            Err(err(field, "not a timestamp (expected ISO-8601 or epoch seconds/milliseconds)"))
        }
        v => Err(err(field, format!("expected a timestamp, found {}", type_name(v)))),
    }
}

fn opt_ts(obj: &Map<String, Value>, key: &str) -> Result<Option<Timestamp>, DocumentError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => parse_timestamp(v, key),
    }
}

/// Reads `Tags` in either shape: `[{"Key": k, "Value": v}]` or `{k: v}`.
pub fn parse_tags(v: &Value, field: &str) -> Result<Tags, DocumentError> {
    let mut tags = Tags::default();
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let f = format!("{field}[{i}]");
                let Value::Object(o) = item else {
                    return Err(err(f, format!("expected a {{\"Key\", \"Value\"}} object, found {}", type_name(item))));
                };
                let key = opt_str(o, "Key", &format!("{f}.Key"))?.ok_or_else(|| err(format!("{f}.Key"), "missing"))?;
                let value = opt_str(o, "Value", &format!("{f}.Value"))?.unwrap_or_default();
                tags.0.push(Tag { key, value });
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(err(format!("{field}.{k}"), format!("expected a string, found {}", type_name(other)))),
                };
                tags.0.push(Tag { key: k.clone(), value });
            }
        }
        other => return Err(err(field, format!("expected a list or a map, found {}", type_name(other)))),
    }
    Ok(tags)
}

fn parse_channel(v: &Value, i: usize) -> Result<Channel, DocumentError> {
    let f = format!("InputDataConfig[{i}]");
    let Value::Object(o) = v else {
        return Err(err(f, format!("expected an object, found {}", type_name(v))));
    };
    let name = opt_str(o, "ChannelName", &format!("{f}.ChannelName"))?.ok_or_else(|| err(format!("{f}.ChannelName"), "missing"))?;
    let ds_field = format!("{f}.DataSource");
    let source = match opt_obj(o, "DataSource", &ds_field)? {
        None => DataSource::Other { name: "None".into(), raw: Value::Null },
        Some(ds) => {
            if let Some(s3) = opt_obj(ds, "S3DataSource", &format!("{ds_field}.S3DataSource"))? {
                let uf = format!("{ds_field}.S3DataSource.S3Uri");
                DataSource::S3 {
                    uri: opt_str(s3, "S3Uri", &uf)?.ok_or_else(|| err(uf, "missing"))?,
                    data_type: opt_str(s3, "S3DataType", "S3DataType")?,
                    distribution: opt_str(s3, "S3DataDistributionType", "S3DataDistributionType")?,
                }
            } else if let Some(fs) = opt_obj(ds, "FileSystemDataSource", &format!("{ds_field}.FileSystemDataSource"))? {
                let ff = format!("{ds_field}.FileSystemDataSource");
                DataSource::FileSystem {
                    file_system_type: opt_str(fs, "FileSystemType", &ff)?.unwrap_or_default(),
                    file_system_id: opt_str(fs, "FileSystemId", &ff)?.unwrap_or_default(),
                    directory_path: opt_str(fs, "DirectoryPath", &ff)?.unwrap_or_default(),
                    access_mode: opt_str(fs, "FileSystemAccessMode", &ff)?,
                }
            } else {
                match ds.iter().next() {
                    Some((k, raw)) => DataSource::Other { name: k.clone(), raw: raw.clone() },
                    None => DataSource::Other { name: "None".into(), raw: Value::Null },
                }
            }
        }
    };
    let manifest = match o.get("Manifest") {
        None | Some(Value::Null) => None,
        Some(m) => Some(serde_json::from_value::<ChannelManifest>(m.clone()).map_err(|e| err(format!("{f}.Manifest"), e.to_string()))?),
    };
    Ok(Channel {
        name,
        source,
        content_type: opt_str(o, "ContentType", &format!("{f}.ContentType"))?,
        compression: opt_str(o, "CompressionType", &format!("{f}.CompressionType"))?,
        record_wrapper: opt_str(o, "RecordWrapperType", &format!("{f}.RecordWrapperType"))?,
        input_mode: opt_str(o, "InputMode", &format!("{f}.InputMode"))?,
        manifest,
        produced_by: None,
    })
}

/// Reads one document into a [`TrainingJob`]. Only `TrainingJobName` is required; the ARN and
/// status are empty strings when absent (callers that need them check).
pub fn job_from_document(doc: &Value) -> Result<TrainingJob, DocumentError> {
    let Value::Object(o) = doc else {
        return Err(err("(document)", format!("expected a JSON object, found {}", type_name(doc))));
    };
    let name =
        opt_str(o, "TrainingJobName", "TrainingJobName")?.filter(|s| !s.is_empty()).ok_or_else(|| err("TrainingJobName", "missing"))?;
    let mut job = TrainingJob::new(
        name,
        opt_str(o, "TrainingJobArn", "TrainingJobArn")?.unwrap_or_default(),
        opt_str(o, "TrainingJobStatus", "TrainingJobStatus")?.unwrap_or_default(),
    );
    job.secondary_status = opt_str(o, "SecondaryStatus", "SecondaryStatus")?;
    job.failure_reason = opt_str(o, "FailureReason", "FailureReason")?;
    job.creation_time = opt_ts(o, "CreationTime")?;
    job.start_time = opt_ts(o, "TrainingStartTime")?;
    job.end_time = opt_ts(o, "TrainingEndTime")?;
    job.last_modified_time = opt_ts(o, "LastModifiedTime")?;
    if let Some(hp) = opt_obj(o, "HyperParameters", "HyperParameters")? {
        let mut map = IndexMap::new();
        for (k, v) in hp {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            map.insert(k.clone(), s);
        }
        job.hyperparameters = map;
    }
    job.channels =
        opt_arr(o, "InputDataConfig", "InputDataConfig")?.iter().enumerate().map(|(i, c)| parse_channel(c, i)).collect::<Result<_, _>>()?;
    for (i, m) in opt_arr(o, "FinalMetricDataList", "FinalMetricDataList")?.iter().enumerate() {
        let f = format!("FinalMetricDataList[{i}]");
        let Value::Object(mo) = m else {
            return Err(err(f, format!("expected an object, found {}", type_name(m))));
        };
        let mname = opt_str(mo, "MetricName", &format!("{f}.MetricName"))?.ok_or_else(|| err(format!("{f}.MetricName"), "missing"))?;
        let value = match mo.get("Value") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| err(format!("{f}.Value"), "not a number"))?,
            Some(v) => return Err(err(format!("{f}.Value"), format!("expected a number, found {}", type_name(v)))),
            None => return Err(err(format!("{f}.Value"), "missing")),
        };
        let timestamp = match mo.get("Timestamp") {
            Some(v) => parse_timestamp(v, &format!("{f}.Timestamp"))?,
            None => None,
        };
        job.final_metrics.push(FinalMetric { name: mname, value, timestamp });
    }
    if let Some(alg) = opt_obj(o, "AlgorithmSpecification", "AlgorithmSpecification")? {
        job.algorithm = Algorithm {
            image: opt_str(alg, "TrainingImage", "AlgorithmSpecification.TrainingImage")?,
            name: opt_str(alg, "AlgorithmName", "AlgorithmSpecification.AlgorithmName")?,
            input_mode: opt_str(alg, "TrainingInputMode", "AlgorithmSpecification.TrainingInputMode")?,
        };
        for (i, d) in opt_arr(alg, "MetricDefinitions", "AlgorithmSpecification.MetricDefinitions")?.iter().enumerate() {
            let f = format!("AlgorithmSpecification.MetricDefinitions[{i}]");
            let Value::Object(d) = d else {
                return Err(err(f, "expected an object"));
            };
            job.metric_definitions.push(MetricDefinition {
                name: opt_str(d, "Name", &f)?.unwrap_or_default(),
                regex: opt_str(d, "Regex", &f)?.unwrap_or_default(),
            });
        }
    }
    if let Some(ma) = opt_obj(o, "ModelArtifacts", "ModelArtifacts")? {
        job.model_artifact = opt_str(ma, "S3ModelArtifacts", "ModelArtifacts.S3ModelArtifacts")?;
    }
    if let Some(od) = opt_obj(o, "OutputDataConfig", "OutputDataConfig")? {
        job.output_path = opt_str(od, "S3OutputPath", "OutputDataConfig.S3OutputPath")?;
    }
    if let Some(rc) = opt_obj(o, "ResourceConfig", "ResourceConfig")? {
        job.instance_type = opt_str(rc, "InstanceType", "ResourceConfig.InstanceType")?;
        job.instance_count = opt_u64(rc, "InstanceCount", "ResourceConfig.InstanceCount")?.map(|n| n.min(u32::MAX as u64) as u32);
        if job.instance_type.is_none() {
            // Heterogeneous clusters list instance groups instead.
            if let Some(Value::Array(groups)) = rc.get("InstanceGroups") {
                let types: Vec<String> =
                    groups.iter().filter_map(|g| g.get("InstanceType").and_then(Value::as_str).map(str::to_string)).collect();
                if !types.is_empty() {
                    job.instance_type = Some(types.join(","));
                    let count: u64 = groups.iter().filter_map(|g| g.get("InstanceCount").and_then(Value::as_u64)).sum();
                    job.instance_count = Some(count.min(u32::MAX as u64) as u32);
                }
            }
        }
    }
    job.billable_seconds = opt_u64(o, "BillableTimeInSeconds", "BillableTimeInSeconds")?;
    if let Some(md) = opt_obj(o, "MlflowDetails", "MlflowDetails")? {
        job.mlflow_run_id = opt_str(md, "MlflowRunId", "MlflowDetails.MlflowRunId")?;
    }
    if let Some(t) = o.get("Tags") {
        job.tags = parse_tags(t, "Tags")?;
    }
    if let Some(arn) = opt_str(o, "TuningJobArn", "TuningJobArn")?.filter(|a| !a.is_empty()) {
        job.lineage.parent = Some(ParentRef { kind: ResourceKind::TuningJob, name: name_in_arn(&arn).to_string(), arn });
    }
    job.original = doc.clone();
    Ok(job)
}

/// The name at the end of an ARN (`...:hyper-parameter-tuning-job/NAME`), or the whole text.
pub fn name_in_arn(arn: &str) -> &str {
    match arn.split_once(':') {
        Some(("arn", _)) => arn.rsplit('/').next().unwrap_or(arn),
        _ => arn,
    }
}

/// Which document this is, by its ARN field: `HyperParameterTuningJobArn` for a tuning job,
/// `PipelineExecutionArn` for a pipeline execution, `ModelPackageArn` for a model package, else
/// a training job.
pub fn kind_of_document(doc: &Value) -> ResourceKind {
    if doc.get("HyperParameterTuningJobArn").is_some() || doc.get("HyperParameterTuningJobName").is_some() {
        ResourceKind::TuningJob
    } else if doc.get("PipelineExecutionArn").is_some() && doc.get("TrainingJobArn").is_none() && doc.get("TrainingJobName").is_none() {
        ResourceKind::PipelineExecution
    } else if doc.get("ModelPackageArn").is_some() && doc.get("TrainingJobArn").is_none() && doc.get("TrainingJobName").is_none() {
        ResourceKind::ModelPackage
    } else {
        ResourceKind::TrainingJob
    }
}

fn opt_f64(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<f64>, DocumentError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| err(field, "not a number")),
        Some(v) => Err(err(field, format!("expected a number, found {}", type_name(v)))),
    }
}

fn counters(obj: &Map<String, Value>, key: &str) -> Result<IndexMap<String, u64>, DocumentError> {
    let mut out = IndexMap::new();
    if let Some(c) = opt_obj(obj, key, key)? {
        for k in c.keys() {
            out.insert(k.clone(), opt_u64(c, k, &format!("{key}.{k}"))?.unwrap_or(0));
        }
    }
    Ok(out)
}

/// Reads a DescribeHyperParameterTuningJob document (as the API returns it, or as `aws
/// sagemaker describe-hyper-parameter-tuning-job` prints it) into a job of kind
/// [`ResourceKind::TuningJob`]: its status, times and tags; its static hyperparameters as the
/// job's hyperparameters; the best child's objective value as its one final metric (named after
/// the objective metric); and the tuning summary (strategy, objective, ranges, counters, best).
/// Its children are added by the caller.
pub fn tuner_from_document(doc: &Value) -> Result<TrainingJob, DocumentError> {
    let Value::Object(o) = doc else {
        return Err(err("(document)", format!("expected a JSON object, found {}", type_name(doc))));
    };
    let name = opt_str(o, "HyperParameterTuningJobName", "HyperParameterTuningJobName")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err("HyperParameterTuningJobName", "missing"))?;
    let mut job = TrainingJob::new(
        name,
        opt_str(o, "HyperParameterTuningJobArn", "HyperParameterTuningJobArn")?.unwrap_or_default(),
        opt_str(o, "HyperParameterTuningJobStatus", "HyperParameterTuningJobStatus")?.unwrap_or_default(),
    );
    job.lineage.kind = ResourceKind::TuningJob;
    if !job.arn.is_empty() && !job.arn.contains(":hyper-parameter-tuning-job/") {
        return Err(err("HyperParameterTuningJobArn", "not the ARN of a tuning job (`arn:...:hyper-parameter-tuning-job/NAME`)"));
    }
    job.failure_reason = opt_str(o, "FailureReason", "FailureReason")?.filter(|s| !s.is_empty());
    job.creation_time = opt_ts(o, "CreationTime")?;
    job.start_time = job.creation_time;
    job.end_time = opt_ts(o, "HyperParameterTuningEndTime")?;
    job.last_modified_time = opt_ts(o, "LastModifiedTime")?;
    let mut summary = TuningSummary::default();
    if let Some(cfg) = opt_obj(o, "HyperParameterTuningJobConfig", "HyperParameterTuningJobConfig")? {
        summary.strategy = opt_str(cfg, "Strategy", "HyperParameterTuningJobConfig.Strategy")?.unwrap_or_default();
        if let Some(obj) =
            opt_obj(cfg, "HyperParameterTuningJobObjective", "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective")?
        {
            let f = "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective";
            summary.objective = Some(Objective {
                metric: opt_str(obj, "MetricName", &format!("{f}.MetricName"))?.unwrap_or_default(),
                objective_type: opt_str(obj, "Type", &format!("{f}.Type"))?.unwrap_or_default(),
            });
        }
        if let Some(r) = cfg.get("ParameterRanges").filter(|r| !r.is_null()) {
            if !r.is_object() {
                return Err(err("HyperParameterTuningJobConfig.ParameterRanges", format!("expected an object, found {}", type_name(r))));
            }
            summary.parameter_ranges = r.clone();
        }
    }
    // One definition, or the first of several (`TrainingJobDefinitions`).
    let definition = match opt_obj(o, "TrainingJobDefinition", "TrainingJobDefinition")? {
        Some(d) => Some(d),
        None => opt_arr(o, "TrainingJobDefinitions", "TrainingJobDefinitions")?.first().and_then(Value::as_object),
    };
    if let Some(d) = definition {
        if let Some(hp) = opt_obj(d, "StaticHyperParameters", "TrainingJobDefinition.StaticHyperParameters")? {
            for (k, v) in hp {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                summary.static_hyperparameters.insert(k.clone(), v);
            }
        }
        if let Some(alg) = opt_obj(d, "AlgorithmSpecification", "TrainingJobDefinition.AlgorithmSpecification")? {
            job.algorithm.image = opt_str(alg, "TrainingImage", "TrainingJobDefinition.AlgorithmSpecification.TrainingImage")?;
            job.algorithm.name = opt_str(alg, "AlgorithmName", "TrainingJobDefinition.AlgorithmSpecification.AlgorithmName")?;
        }
    }
    job.hyperparameters = summary.static_hyperparameters.clone();
    summary.status_counts = counters(o, "TrainingJobStatusCounters")?;
    summary.objective_counts = counters(o, "ObjectiveStatusCounters")?;
    if let Some(b) = opt_obj(o, "BestTrainingJob", "BestTrainingJob")? {
        let value =
            match opt_obj(b, "FinalHyperParameterTuningJobObjectiveMetric", "BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric")?
            {
                Some(m) => opt_f64(m, "Value", "BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric.Value")?,
                None => None,
            };
        let best = BestChild {
            name: opt_str(b, "TrainingJobName", "BestTrainingJob.TrainingJobName")?.unwrap_or_default(),
            arn: opt_str(b, "TrainingJobArn", "BestTrainingJob.TrainingJobArn")?.unwrap_or_default(),
            value,
        };
        if let (Some(v), Some(obj)) = (value, &summary.objective) {
            job.final_metrics.push(FinalMetric { name: obj.metric.clone(), value: v, timestamp: None });
        }
        summary.best = Some(best);
    }
    if let Some(t) = o.get("Tags") {
        job.tags = parse_tags(t, "Tags")?;
    }
    job.lineage.tuning = Some(summary);
    if let Some(children) = o.get("Children") {
        let Value::Array(a) = children else { return Err(err("Children", "expected an array")) };
        job.lineage.children =
            a.iter().enumerate().map(|(i, c)| child_from_summary(c, &format!("Children[{i}]"))).collect::<Result<_, _>>()?;
    }
    job.original = doc.clone();
    Ok(job)
}

/// Steps of one execution read at most.
pub const MAX_EXECUTION_STEPS: usize = 10_000;

/// The tag SageMaker Pipelines puts on the jobs its steps start, naming the execution.
pub const PIPELINE_EXECUTION_TAG: &str = "sagemaker:pipeline-execution-arn";

/// The pipeline and execution id of a pipeline execution's ARN
/// (`arn:aws:sagemaker:REGION:ACCOUNT:pipeline/PIPELINE/execution/ID`).
/// As SageMaker's pattern (`arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:[0-9]{12}:pipeline/NAME/execution/ID`)
/// says, with the pipeline-name rule (letters, digits and inner hyphens, at most 256) and an id
/// of letters and digits (at most 256).
pub fn execution_parts(arn: &str) -> Option<(&str, &str)> {
    if arn.len() > 2048 {
        return None;
    }
    let mut f = arn.splitn(6, ':');
    let (arn_, partition, service, region, account, resource) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let partition_ok = partition.strip_prefix("aws").is_some_and(|r| r.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    let region_ok = region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    if arn_ != "arn" || !partition_ok || service != "sagemaker" || !region_ok || !account_ok {
        return None;
    }
    let (pipeline, id) = resource.strip_prefix("pipeline/")?.split_once("/execution/")?;
    let name_ok = pipeline.len() <= 256
        && pipeline.split('-').all(|part| part.is_empty() || part.chars().all(|c| c.is_ascii_alphanumeric()))
        && pipeline.starts_with(|c: char| c.is_ascii_alphanumeric())
        && pipeline.ends_with(|c: char| c.is_ascii_alphanumeric());
    let id_ok = !id.is_empty() && id.len() <= 256 && id.chars().all(|c| c.is_ascii_alphanumeric());
    (name_ok && id_ok).then_some((pipeline, id))
}

/// The name a pipeline execution's run goes by: `PIPELINE-ID`, from its ARN (the same for the
/// execution's own record and for the children that name it by the tag).
pub fn execution_name(arn: &str) -> Option<String> {
    execution_parts(arn).map(|(p, id)| format!("{p}-{id}"))
}

/// A pipeline step's status as a training-job status (validators and sinks read those).
pub fn training_status_of_step(status: &str) -> &str {
    match status {
        "Succeeded" => "Completed",
        "Executing" | "Starting" => "InProgress",
        other => other,
    }
}

/// Reads a DescribePipelineExecution document into a job of kind
/// [`ResourceKind::PipelineExecution`]: its status as a training-job status (`Executing` is
/// `InProgress`, `Succeeded` is `Completed`), times and tags (its pipeline's: executions carry
/// none of their own); with `Steps` (ListPipelineExecutionSteps' steps, added by the caller),
/// its steps oldest first and the training jobs they ran as its children.
pub fn execution_from_document(doc: &Value) -> Result<TrainingJob, DocumentError> {
    let Value::Object(o) = doc else {
        return Err(err("(document)", format!("expected a JSON object, found {}", type_name(doc))));
    };
    let arn = opt_str(o, "PipelineExecutionArn", "PipelineExecutionArn")?.unwrap_or_default();
    let name = execution_name(&arn)
        .ok_or_else(|| err("PipelineExecutionArn", "not the ARN of a pipeline execution (`arn:...:pipeline/NAME/execution/ID`)"))?;
    let raw_status = opt_str(o, "PipelineExecutionStatus", "PipelineExecutionStatus")?.unwrap_or_default();
    let mut job = TrainingJob::new(name, arn.clone(), training_status_of_step(&raw_status).to_string());
    job.lineage.kind = ResourceKind::PipelineExecution;
    job.failure_reason = opt_str(o, "FailureReason", "FailureReason")?.filter(|s| !s.is_empty());
    job.creation_time = opt_ts(o, "CreationTime")?;
    job.start_time = job.creation_time;
    job.last_modified_time = opt_ts(o, "LastModifiedTime")?;
    if matches!(raw_status.as_str(), "Succeeded" | "Failed" | "Stopped") {
        job.end_time = job.last_modified_time;
    }
    if let Some(t) = o.get("Tags") {
        job.tags = parse_tags(t, "Tags")?;
    }
    let pipeline_arn = opt_str(o, "PipelineArn", "PipelineArn")?.unwrap_or_default();
    let mut summary = PipelineSummary {
        pipeline_name: execution_parts(&arn).map(|(p, _)| p.to_string()).unwrap_or_default(),
        pipeline_arn,
        display_name: opt_str(o, "PipelineExecutionDisplayName", "PipelineExecutionDisplayName")?.filter(|s| !s.is_empty()),
        status: raw_status,
        steps: Vec::new(),
    };
    let steps = opt_arr(o, "Steps", "Steps")?;
    if steps.len() > MAX_EXECUTION_STEPS {
        return Err(err("Steps", format!("more than {MAX_EXECUTION_STEPS} steps")));
    }
    for (i, st) in steps.iter().enumerate() {
        let f = format!("Steps[{i}]");
        let Value::Object(so) = st else { return Err(err(f, format!("expected an object, found {}", type_name(st)))) };
        let (kind, step_arn) = match opt_obj(so, "Metadata", &format!("{f}.Metadata"))? {
            Some(m) => match m.iter().find(|(_, v)| v.is_object()) {
                Some((k, v)) => (Some(k.clone()), v.get("Arn").and_then(Value::as_str).filter(|a| !a.is_empty()).map(str::to_string)),
                None => (None, None),
            },
            None => (None, None),
        };
        summary.steps.push(StepSummary {
            name: opt_str(so, "StepName", &format!("{f}.StepName"))?.unwrap_or_default(),
            status: opt_str(so, "StepStatus", &format!("{f}.StepStatus"))?.unwrap_or_default(),
            kind,
            arn: step_arn,
            start_time: opt_ts(so, "StartTime")?,
            end_time: opt_ts(so, "EndTime")?,
            failure_reason: opt_str(so, "FailureReason", &format!("{f}.FailureReason"))?.filter(|s| !s.is_empty()),
        });
    }
    // Oldest first, ties by name: the same order on every read (the first eligible child
    // decides a parent's project).
    summary.steps.sort_by(|a, b| (a.start_time, &a.name).cmp(&(b.start_time, &b.name)));
    let mut seen = std::collections::HashSet::new();
    for st in &summary.steps {
        if let (Some("TrainingJob"), Some(a)) = (st.kind.as_deref(), &st.arn) {
            if seen.insert(a.clone()) {
                job.lineage.children.push(ChildSummary {
                    arn: a.clone(),
                    name: name_in_arn(a).to_string(),
                    status: training_status_of_step(&st.status).to_string(),
                    objective: None,
                });
            }
        }
    }
    job.lineage.pipeline = Some(summary);
    job.original = doc.clone();
    Ok(job)
}

/// The group and version of a versioned model package's ARN
/// (`arn:aws:sagemaker:REGION:ACCOUNT:model-package/GROUP/VERSION`).
pub fn package_parts(arn: &str) -> Option<(&str, u64)> {
    if arn.len() > 2048 || !arn.starts_with("arn:") {
        return None;
    }
    let (group, version) = arn.split_once(":model-package/")?.1.split_once('/')?;
    let digits = !version.is_empty() && version.len() <= 10 && version.chars().all(|c| c.is_ascii_digit());
    let version = version.parse::<u64>().ok().filter(|_| digits)?;
    is_group_name(group).then_some((group, version))
}

/// SageMaker's rule for a package group's name: 1 to 63 letters, digits and inner hyphens.
pub fn is_group_name(g: &str) -> bool {
    !g.is_empty() && g.len() <= 63 && g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !g.starts_with('-') && !g.ends_with('-')
}

/// The name a model package goes by: `GROUP-VERSION`.
pub fn package_name(group: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{group}-{v}"),
        None => group.to_string(),
    }
}

/// Reads a DescribeModelPackage document into a resource of kind
/// [`ResourceKind::ModelPackage`]: its status (`ModelPackageStatus`), times, tags (added by the
/// caller: its group's, then its own), the registry's fields, and with `TrainingJob` (`Arn`,
/// `Name`, `Status`, `LinkedBy`; added by the caller when it found the job that made the model)
/// that job as the one it follows.
pub fn package_from_document(doc: &Value) -> Result<TrainingJob, DocumentError> {
    let Value::Object(o) = doc else {
        return Err(err("(document)", format!("expected a JSON object, found {}", type_name(doc))));
    };
    let arn = opt_str(o, "ModelPackageArn", "ModelPackageArn")?.unwrap_or_default();
    let parts = package_parts(&arn);
    let group = match opt_str(o, "ModelPackageGroupName", "ModelPackageGroupName")? {
        Some(g) if !g.is_empty() => g,
        _ => parts.map(|(g, _)| g.to_string()).ok_or_else(|| err("ModelPackageGroupName", "missing (and the ARN names no group)"))?,
    };
    if !is_group_name(&group) {
        return Err(err("ModelPackageGroupName", "not a package group name (1 to 63 letters, digits and inner hyphens)"));
    }
    let version = match opt_u64(o, "ModelPackageVersion", "ModelPackageVersion")? {
        Some(v) => Some(v),
        None => parts.map(|(_, v)| v),
    };
    let status = opt_str(o, "ModelPackageStatus", "ModelPackageStatus")?.unwrap_or_default();
    let mut job = TrainingJob::new(package_name(&group, version), arn, status);
    job.lineage.kind = ResourceKind::ModelPackage;
    job.creation_time = opt_ts(o, "CreationTime")?;
    job.start_time = job.creation_time;
    job.last_modified_time = opt_ts(o, "LastModifiedTime")?;
    if let Some(t) = o.get("Tags") {
        job.tags = parse_tags(t, "Tags")?;
    }
    let mut summary = PackageSummary {
        group,
        version,
        approval_status: opt_str(o, "ModelApprovalStatus", "ModelApprovalStatus")?.unwrap_or_default(),
        approval_description: opt_str(o, "ApprovalDescription", "ApprovalDescription")?.filter(|s| !s.is_empty()),
        description: opt_str(o, "ModelPackageDescription", "ModelPackageDescription")?.filter(|s| !s.is_empty()),
        task: opt_str(o, "Task", "Task")?.filter(|s| !s.is_empty()),
        ..Default::default()
    };
    if let Some(spec) = opt_obj(o, "InferenceSpecification", "InferenceSpecification")? {
        for (i, c) in opt_arr(spec, "Containers", "InferenceSpecification.Containers")?.iter().enumerate() {
            let f = format!("InferenceSpecification.Containers[{i}]");
            let Value::Object(c) = c else { return Err(err(f, "expected an object")) };
            if let Some(u) = opt_str(c, "ModelDataUrl", &format!("{f}.ModelDataUrl"))?.filter(|u| !u.is_empty()) {
                summary.model_data_urls.push(u);
            }
            if let Some(im) = opt_str(c, "Image", &format!("{f}.Image"))?.filter(|u| !u.is_empty()) {
                summary.images.push(im);
            }
            if summary.framework.is_none() {
                let fw = opt_str(c, "Framework", &format!("{f}.Framework"))?.filter(|s| !s.is_empty());
                let fv = opt_str(c, "FrameworkVersion", &format!("{f}.FrameworkVersion"))?.filter(|s| !s.is_empty());
                summary.framework = match (fw, fv) {
                    (Some(fw), Some(fv)) => Some(format!("{fw} {fv}")),
                    (fw, _) => fw,
                };
            }
        }
    }
    if let Some(m) = o.get("ModelMetrics").filter(|m| !m.is_null()) {
        if !m.is_object() {
            return Err(err("ModelMetrics", format!("expected an object, found {}", type_name(m))));
        }
        summary.metrics = m.clone();
    }
    if let Some(cm) = opt_obj(o, "CustomerMetadataProperties", "CustomerMetadataProperties")? {
        let mut keys: Vec<&String> = cm.keys().collect();
        keys.sort();
        for k in keys {
            let v = match &cm[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            summary.customer_metadata.insert(k.clone(), v);
        }
    }
    job.model_artifact = summary.model_data_urls.first().cloned();
    job.algorithm.image = summary.images.first().cloned();
    if let Some(t) = opt_obj(o, "TrainingJob", "TrainingJob")? {
        let tarn = opt_str(t, "Arn", "TrainingJob.Arn")?.filter(|a| !a.is_empty()).ok_or_else(|| err("TrainingJob.Arn", "missing"))?;
        job.lineage.children.push(ChildSummary {
            name: opt_str(t, "Name", "TrainingJob.Name")?.unwrap_or_else(|| name_in_arn(&tarn).to_string()),
            status: opt_str(t, "Status", "TrainingJob.Status")?.unwrap_or_default(),
            arn: tarn.clone(),
            objective: None,
        });
        summary.training_job_arn = Some(tarn);
        summary.linked_by = opt_str(t, "LinkedBy", "TrainingJob.LinkedBy")?;
    }
    job.lineage.package = Some(summary);
    job.original = doc.clone();
    Ok(job)
}

/// One `HyperParameterTrainingJobSummary` (ListTrainingJobsForHyperParameterTuningJob) as a
/// child of its tuner.
pub fn child_from_summary(v: &Value, field: &str) -> Result<ChildSummary, DocumentError> {
    let Value::Object(o) = v else { return Err(err(field, format!("expected an object, found {}", type_name(v)))) };
    let f = |k: &str| format!("{field}.{k}");
    let value = match opt_obj(o, "FinalHyperParameterTuningJobObjectiveMetric", &f("FinalHyperParameterTuningJobObjectiveMetric"))? {
        Some(m) => opt_f64(m, "Value", &f("FinalHyperParameterTuningJobObjectiveMetric.Value"))?,
        None => None,
    };
    let objective = opt_str(o, "ObjectiveStatus", &f("ObjectiveStatus"))?.map(|status| ChildObjective { status, value });
    Ok(ChildSummary {
        arn: opt_str(o, "TrainingJobArn", &f("TrainingJobArn"))?
            .filter(|a| !a.is_empty())
            .ok_or_else(|| err(f("TrainingJobArn"), "missing"))?,
        name: opt_str(o, "TrainingJobName", &f("TrainingJobName"))?.unwrap_or_default(),
        status: opt_str(o, "TrainingJobStatus", &f("TrainingJobStatus"))?.unwrap_or_default(),
        objective,
    })
}

/// Where a child stands against its tuner's objective, as SageMaker decides it: `Succeeded`
/// with the value of the objective metric among its final metrics once it completed, `Failed`
/// when it ended without one, `Pending` while it runs.
pub fn child_objective(job: &TrainingJob, objective: &Objective) -> ChildObjective {
    let value = job.final_metrics.iter().rev().find(|m| m.name == objective.metric).map(|m| m.value).filter(|v| v.is_finite());
    let status = match (job.status.as_str(), value) {
        ("Completed", Some(_)) => "Succeeded",
        ("Completed" | "Failed" | "Stopped", _) => "Failed",
        _ => "Pending",
    };
    ChildObjective { status: status.to_string(), value: value.filter(|_| status == "Succeeded") }
}

/// `NaN`, `Infinity` and `-Infinity` written as bare JSON tokens (outside strings), quoted: what
/// some producers write (Python's `json.dumps`, moto), read as the strings the service sends.
pub fn quote_bare_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if let Some(tok) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push('"');
            out.push_str(tok);
            out.push('"');
            rest = &rest[tok.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_recorded_pipeline_execution_reads_as_a_parent() {
        let arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn/execution/x1";
        let doc = json!({
            "PipelineArn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/churn", "PipelineExecutionArn": arn,
            "PipelineExecutionStatus": "Succeeded", "PipelineExecutionDisplayName": "nightly",
            "CreationTime": "2026-11-01T10:00:00Z", "LastModifiedTime": "2026-11-01T11:00:00Z",
            "Tags": [{"Key": "MODEL_DB_SYNC", "Value": "true"}],
            "Steps": [
                {"StepName": "Train", "StepStatus": "Failed", "StartTime": 1793527800, "Metadata": {"TrainingJob": {"Arn": "arn:aws:sagemaker:us-east-1:1:training-job/t1"}}},
                {"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": "2026-11-01T10:00:00Z", "Metadata": {"ProcessingJob": {"Arn": "arn:aws:sagemaker:us-east-1:1:processing-job/p1"}}},
                {"StepName": "Gate", "StepStatus": "Succeeded", "Metadata": {"Condition": {"Outcome": "True"}}}
            ]
        });
        assert_eq!(kind_of_document(&doc), ResourceKind::PipelineExecution);
        let j = execution_from_document(&doc).unwrap();
        assert_eq!((j.name.as_str(), j.status.as_str(), j.lineage.kind), ("churn-x1", "Completed", ResourceKind::PipelineExecution));
        let p = j.lineage.pipeline.as_ref().unwrap();
        assert_eq!((p.status.as_str(), p.display_name.as_deref(), p.pipeline_name.as_str()), ("Succeeded", Some("nightly"), "churn"));
        let steps: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["Gate", "Prep", "Train"], "by start time (none first), then name");
        assert_eq!(j.lineage.children.len(), 1);
        assert_eq!((j.lineage.children[0].name.as_str(), j.lineage.children[0].status.as_str()), ("t1", "Failed"));
        assert!(execution_from_document(&json!({"PipelineExecutionArn": "arn:aws:sagemaker:us-east-1:1:training-job/t"})).is_err());
        assert!(execution_from_document(&json!({"PipelineExecutionArn": arn, "Steps": {}})).is_err(), "steps must be a list");
    }

    #[test]
    fn timestamps_in_every_form() {
        let want = Utc.with_ymd_and_hms(2020, 3, 10, 9, 18, 9).unwrap() + chrono::Duration::milliseconds(50);
        for v in [
            json!(1583831889.05),
            json!(1583831889050u64),
            json!("1583831889050"),
            json!("2020-03-10T09:18:09.050000+00:00"),
            json!("2020-03-10T09:18:09.05Z"),
            json!("2020-03-10 09:18:09.050"),
        ] {
            assert_eq!(parse_timestamp(&v, "t").unwrap(), Some(want), "{v}");
        }
        assert!(parse_timestamp(&json!("yesterday"), "t").is_err());
        assert!(parse_timestamp(&json!(-5), "t").is_err());
        assert!(parse_timestamp(&json!(1e300), "t").is_err());
        assert_eq!(parse_timestamp(&json!(null), "t").unwrap(), None);
    }

    #[test]
    fn tags_both_shapes_same_result() {
        let a = parse_tags(&json!([{"Key": "a", "Value": "1"}, {"Key": "b", "Value": ""}]), "Tags").unwrap();
        let b = parse_tags(&json!({"a": "1", "b": ""}), "Tags").unwrap();
        assert_eq!(a, b);
        assert!(parse_tags(&json!("x"), "Tags").is_err());
        assert!(parse_tags(&json!([{"Value": "1"}]), "Tags").unwrap_err().field.contains("Key"));
    }

    #[test]
    fn minimal_and_bad_documents() {
        let j = job_from_document(&json!({"TrainingJobName": "x"})).unwrap();
        assert_eq!(j.name, "x");
        assert!(j.arn.is_empty());
        let e = job_from_document(&json!({"TrainingJobName": "x", "HyperParameters": [1]})).unwrap_err();
        assert_eq!(e.field, "HyperParameters");
        let e = job_from_document(
            &json!({"TrainingJobName": "x", "InputDataConfig": [{"ChannelName": "t", "DataSource": {"S3DataSource": {}}}]}),
        )
        .unwrap_err();
        assert_eq!(e.field, "InputDataConfig[0].DataSource.S3DataSource.S3Uri");
        assert!(job_from_document(&json!([])).is_err());
        assert!(job_from_document(&json!({})).is_err());
    }

    #[test]
    fn full_document() {
        let doc = json!({
            "TrainingJobName": "j", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/j",
            "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
            "HyperParameters": {"b": "2", "a": "1"},
            "InputDataConfig": [
                {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/t/"}}, "CompressionType": "None"},
                {"ChannelName": "fs", "DataSource": {"FileSystemDataSource": {"FileSystemId": "fs-1", "FileSystemType": "EFS", "DirectoryPath": "/d", "FileSystemAccessMode": "ro"}}}
            ],
            "FinalMetricDataList": [{"MetricName": "train:loss", "Value": 0.5, "Timestamp": 1583831889.0}],
            "AlgorithmSpecification": {"TrainingImage": "img", "MetricDefinitions": [{"Name": "n", "Regex": "r"}]},
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
            "BillableTimeInSeconds": 120,
            "MlflowDetails": {"MlflowRunId": "run-1"},
            "Tags": [{"Key": "k", "Value": "v"}]
        });
        let j = job_from_document(&doc).unwrap();
        assert_eq!(j.hyperparameters.keys().collect::<Vec<_>>(), ["b", "a"], "order kept");
        assert_eq!(j.channels[1].source.uri(), "efs://fs-1/d");
        assert_eq!(j.final_metrics[0].value, 0.5);
        assert_eq!(j.instance_count, Some(2));
        assert_eq!(j.billable_seconds, Some(120));
        assert_eq!(j.mlflow_run_id.as_deref(), Some("run-1"));
        assert_eq!(j.tags.get("k"), Some("v"));
        assert_eq!(j.metric_definitions.len(), 1);
        assert_eq!(j.original, doc);
    }
}
