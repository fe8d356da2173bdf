//! SDK shapes → the DescribeTrainingJob JSON document → [`sagesync_core::TrainingJob`], so that Describe output
//! and Search records go through the one reader ([`crate::document::job_from_document`]) and
//! give identical jobs.

use aws_smithy_types::DateTime;
use serde_json::{json, Map, Value};

/// An SDK timestamp as RFC 3339 UTC, rounded to the millisecond (SageMaker's precision; the
/// wire's float seconds otherwise leave artefacts like `.643999`).
pub fn time(dt: &DateTime) -> Value {
    let millis = dt.secs() as i128 * 1000 + ((dt.subsec_nanos() as i128 + 500_000) / 1_000_000);
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis as i64) {
        Some(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        None => Value::Null,
    }
}

/// A SageMaker `MetricData.Value` (a 32-bit float in the service's model) as the JSON the wire
/// held: the shortest decimal that reads back as the same f32 (`0.5396`, never the widened
/// `0.5396000146865845`), and `NaN`, `Infinity`, `-Infinity` as the strings the service sends.
pub fn metric_f32(v: Option<f32>) -> Value {
    match v {
        None => Value::Null,
        Some(x) if x.is_nan() => json!("NaN"),
        Some(x) if x == f32::INFINITY => json!("Infinity"),
        Some(x) if x == f32::NEG_INFINITY => json!("-Infinity"),
        // `Display` of an f32 is its shortest round-tripping decimal.
        Some(x) => format!("{x}").parse::<f64>().map(|f| json!(f)).unwrap_or(Value::Null),
    }
}

fn opt_time(dt: Option<&DateTime>) -> Value {
    dt.map(time).unwrap_or(Value::Null)
}

fn s(v: Option<&str>) -> Value {
    v.map(|x| json!(x)).unwrap_or(Value::Null)
}

/// `InputDataConfig[]` entries.
pub fn channels(chs: &[aws_sdk_sagemaker::types::Channel]) -> Value {
    Value::Array(
        chs.iter()
            .map(|c| {
                let mut ds = Map::new();
                if let Some(d) = c.data_source() {
                    if let Some(s3) = d.s3_data_source() {
                        ds.insert(
                            "S3DataSource".into(),
                            json!({
                                "S3DataType": s3.s3_data_type().map(|x| x.as_str()),
                                "S3Uri": s3.s3_uri(),
                                "S3DataDistributionType": s3.s3_data_distribution_type().map(|x| x.as_str()),
                            }),
                        );
                    } else if let Some(fs) = d.file_system_data_source() {
                        ds.insert(
                            "FileSystemDataSource".into(),
                            json!({
                                "FileSystemId": fs.file_system_id(),
                                "FileSystemAccessMode": fs.file_system_access_mode().map(|x| x.as_str()),
                                "FileSystemType": fs.file_system_type().map(|x| x.as_str()),
                                "DirectoryPath": fs.directory_path(),
                            }),
                        );
                    } else if d.dataset_source().is_some() {
                        ds.insert("DatasetSource".into(), json!({}));
                    }
                }
                json!({
                    "ChannelName": c.channel_name(),
                    "DataSource": Value::Object(ds),
                    "ContentType": c.content_type(),
                    "CompressionType": c.compression_type().map(|x| x.as_str()),
                    "RecordWrapperType": c.record_wrapper_type().map(|x| x.as_str()),
                    "InputMode": c.input_mode().map(|x| x.as_str()),
                })
            })
            .collect(),
    )
}

/// Builds the Describe-shaped document from any SDK type with the DescribeTrainingJob getters
/// (`DescribeTrainingJobOutput`, `types::TrainingJob`).
macro_rules! job_document {
    ($j:expr) => {{
        let j = $j;
        let mut hp: Vec<(&String, &String)> = j.hyper_parameters().map(|m| m.iter().collect()).unwrap_or_default();
        // The SDK gives an unordered map: order by name for stable output.
        hp.sort();
        let mut doc = serde_json::json!({
            "TrainingJobName": j.training_job_name(),
            "TrainingJobArn": j.training_job_arn(),
            "TrainingJobStatus": j.training_job_status().map(|x| x.as_str()),
            "SecondaryStatus": j.secondary_status().map(|x| x.as_str()),
            "FailureReason": j.failure_reason(),
            "CreationTime": $crate::api::convert::opt_time_pub(j.creation_time()),
            "TrainingStartTime": $crate::api::convert::opt_time_pub(j.training_start_time()),
            "TrainingEndTime": $crate::api::convert::opt_time_pub(j.training_end_time()),
            "LastModifiedTime": $crate::api::convert::opt_time_pub(j.last_modified_time()),
            "HyperParameters": hp.into_iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect::<serde_json::Map<String, serde_json::Value>>(),
            "InputDataConfig": $crate::api::convert::channels(j.input_data_config()),
            "FinalMetricDataList": j.final_metric_data_list().iter().map(|m| serde_json::json!({
                "MetricName": m.metric_name(),
                "Value": $crate::api::convert::metric_f32(m.value()),
                "Timestamp": $crate::api::convert::opt_time_pub(m.timestamp()),
            })).collect::<Vec<_>>(),
            "BillableTimeInSeconds": j.billable_time_in_seconds(),
        });
        if let Some(o) = doc.as_object_mut() {
            // Only when the job belongs to a tuner: other jobs' documents stay as they were.
            if let Some(t) = j.tuning_job_arn() {
                o.insert("TuningJobArn".into(), serde_json::json!(t));
            }
            if let Some(a) = j.algorithm_specification() {
                o.insert("AlgorithmSpecification".into(), serde_json::json!({
                    "TrainingImage": a.training_image(),
                    "AlgorithmName": a.algorithm_name(),
                    "TrainingInputMode": a.training_input_mode().map(|x| x.as_str()),
                    "MetricDefinitions": a.metric_definitions().iter().map(|d| serde_json::json!({"Name": d.name(), "Regex": d.regex()})).collect::<Vec<_>>(),
                }));
            }
            if let Some(m) = j.model_artifacts() {
                o.insert("ModelArtifacts".into(), serde_json::json!({"S3ModelArtifacts": m.s3_model_artifacts()}));
            }
            if let Some(od) = j.output_data_config() {
                o.insert("OutputDataConfig".into(), serde_json::json!({"S3OutputPath": od.s3_output_path()}));
            }
            if let Some(rc) = j.resource_config() {
                o.insert("ResourceConfig".into(), serde_json::json!({
                    "InstanceType": rc.instance_type().map(|x| x.as_str()),
                    "InstanceCount": rc.instance_count(),
                    "InstanceGroups": rc.instance_groups().iter().map(|g| serde_json::json!({
                        "InstanceType": g.instance_type().map(|x| x.as_str()),
                        "InstanceCount": g.instance_count(),
                        "InstanceGroupName": g.instance_group_name(),
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        doc
    }};
}
#[allow(unused_imports)]
pub(crate) use job_document;

/// `opt_time` for the macro: an optional SDK time as the document holds it.
pub fn opt_time_pub(dt: Option<&DateTime>) -> Value {
    opt_time(dt)
}

/// The document of a DescribeTrainingJob response.
pub fn describe_document(out: &aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput) -> Value {
    let mut doc = job_document!(out);
    if let Some(md) = out.mlflow_details() {
        if let Some(o) = doc.as_object_mut() {
            o.insert(
                "MlflowDetails".into(),
                json!({"MlflowExperimentId": s(md.mlflow_experiment_id()), "MlflowRunId": s(md.mlflow_run_id())}),
            );
        }
    }
    doc
}

/// The document of a Search record's `TrainingJob`, with its `Tags`.
pub fn search_document(j: &aws_sdk_sagemaker::types::TrainingJob) -> Value {
    let mut doc = job_document!(j);
    if let Some(o) = doc.as_object_mut() {
        o.insert("Tags".into(), tags(j.tags()));
    }
    doc
}

/// Tags as the Key/Value list.
pub fn tags(t: &[aws_sdk_sagemaker::types::Tag]) -> Value {
    Value::Array(t.iter().map(|t| json!({"Key": t.key(), "Value": t.value()})).collect())
}

/// The document of a DescribeHyperParameterTuningJob response, with the fields sagesync reads
/// (see [`crate::document::tuner_from_document`]).
pub fn tuner_document(
    out: &aws_sdk_sagemaker::operation::describe_hyper_parameter_tuning_job::DescribeHyperParameterTuningJobOutput,
) -> Value {
    let mut doc = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            doc.insert(k.to_string(), v);
        }
    };
    put("HyperParameterTuningJobName", s(out.hyper_parameter_tuning_job_name()));
    put("HyperParameterTuningJobArn", s(out.hyper_parameter_tuning_job_arn()));
    put("HyperParameterTuningJobStatus", s(out.hyper_parameter_tuning_job_status().map(|x| x.as_str())));
    put("CreationTime", opt_time(out.creation_time()));
    put("HyperParameterTuningEndTime", opt_time(out.hyper_parameter_tuning_end_time()));
    put("LastModifiedTime", opt_time(out.last_modified_time()));
    put("FailureReason", s(out.failure_reason()));
    if let Some(cfg) = out.hyper_parameter_tuning_job_config() {
        let mut c = Map::new();
        if let Some(st) = cfg.strategy() {
            c.insert("Strategy".into(), json!(st.as_str()));
        }
        if let Some(o) = cfg.hyper_parameter_tuning_job_objective() {
            c.insert(
                "HyperParameterTuningJobObjective".into(),
                json!({"Type": o.r#type().map(|t| t.as_str()), "MetricName": o.metric_name()}),
            );
        }
        if let Some(r) = cfg.parameter_ranges() {
            let int: Vec<Value> = r
                .integer_parameter_ranges()
                .iter()
                .map(|x| json!({"Name": x.name(), "MinValue": x.min_value(), "MaxValue": x.max_value(), "ScalingType": x.scaling_type().map(|t| t.as_str())}))
                .collect();
            let cont: Vec<Value> = r
                .continuous_parameter_ranges()
                .iter()
                .map(|x| json!({"Name": x.name(), "MinValue": x.min_value(), "MaxValue": x.max_value(), "ScalingType": x.scaling_type().map(|t| t.as_str())}))
                .collect();
            let cat: Vec<Value> =
                r.categorical_parameter_ranges().iter().map(|x| json!({"Name": x.name(), "Values": x.values()})).collect();
            let mut ranges = Map::new();
            for (k, v) in [("IntegerParameterRanges", int), ("ContinuousParameterRanges", cont), ("CategoricalParameterRanges", cat)] {
                if !v.is_empty() {
                    ranges.insert(k.into(), Value::Array(v.into_iter().map(strip_nulls).collect()));
                }
            }
            c.insert("ParameterRanges".into(), Value::Object(ranges));
        }
        put("HyperParameterTuningJobConfig", Value::Object(c));
    }
    let definition = out.training_job_definition().or_else(|| out.training_job_definitions().first());
    if let Some(d) = definition {
        let mut hp: Vec<(&String, &String)> = d.static_hyper_parameters().map(|m| m.iter().collect()).unwrap_or_default();
        // The SDK gives an unordered map: by name, as for a training job's hyperparameters.
        hp.sort();
        let mut def = Map::new();
        def.insert("StaticHyperParameters".into(), Value::Object(hp.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect()));
        if let Some(a) = d.algorithm_specification() {
            def.insert(
                "AlgorithmSpecification".into(),
                strip_nulls(json!({"TrainingImage": a.training_image(), "AlgorithmName": a.algorithm_name()})),
            );
        }
        put("TrainingJobDefinition", Value::Object(def));
    }
    if let Some(c) = out.training_job_status_counters() {
        put(
            "TrainingJobStatusCounters",
            json!({"Completed": c.completed().unwrap_or(0), "InProgress": c.in_progress().unwrap_or(0),
                   "RetryableError": c.retryable_error().unwrap_or(0), "NonRetryableError": c.non_retryable_error().unwrap_or(0),
                   "Stopped": c.stopped().unwrap_or(0)}),
        );
    }
    if let Some(c) = out.objective_status_counters() {
        put(
            "ObjectiveStatusCounters",
            json!({"Succeeded": c.succeeded().unwrap_or(0), "Pending": c.pending().unwrap_or(0), "Failed": c.failed().unwrap_or(0)}),
        );
    }
    if let Some(b) = out.best_training_job() {
        put("BestTrainingJob", child_document(b));
    }
    Value::Object(doc)
}

/// A `HyperParameterTrainingJobSummary` as its JSON document.
pub fn child_document(c: &aws_sdk_sagemaker::types::HyperParameterTrainingJobSummary) -> Value {
    let metric = c
        .final_hyper_parameter_tuning_job_objective_metric()
        .map(|m| json!({"Type": m.r#type().map(|t| t.as_str()), "MetricName": m.metric_name(), "Value": metric_f32(m.value())}));
    strip_nulls(json!({
        "TrainingJobName": c.training_job_name(),
        "TrainingJobArn": c.training_job_arn(),
        "TrainingJobStatus": c.training_job_status().map(|x| x.as_str()),
        "CreationTime": opt_time(c.creation_time()),
        "ObjectiveStatus": c.objective_status().map(|o| o.as_str()),
        "FinalHyperParameterTuningJobObjectiveMetric": metric,
    }))
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// A DescribeModelPackage answer as the document [`crate::document::package_from_document`]
/// reads (the fields sagesync records).
pub fn package_document(out: &aws_sdk_sagemaker::operation::describe_model_package::DescribeModelPackageOutput) -> Value {
    let mut o = serde_json::Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("ModelPackageArn", out.model_package_arn().map(|s| json!(s)));
    put("ModelPackageGroupName", out.model_package_group_name().map(|s| json!(s)));
    put("ModelPackageVersion", out.model_package_version().map(|v| json!(v)));
    put("ModelPackageStatus", out.model_package_status().map(|s| json!(s.as_str())));
    put("ModelApprovalStatus", out.model_approval_status().map(|s| json!(s.as_str())));
    put("ApprovalDescription", out.approval_description().map(|s| json!(s)));
    put("ModelPackageDescription", out.model_package_description().map(|s| json!(s)));
    put("Task", out.task().map(|s| json!(s)));
    put("CreationTime", out.creation_time().map(time));
    put("LastModifiedTime", out.last_modified_time().map(time));
    put(
        "InferenceSpecification",
        out.inference_specification().map(|s| {
            let containers: Vec<Value> = s
                .containers()
                .iter()
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    for (k, v) in [
                        ("Image", c.image()),
                        ("ModelDataUrl", c.model_data_url()),
                        ("Framework", c.framework()),
                        ("FrameworkVersion", c.framework_version()),
                    ] {
                        if let Some(v) = v {
                            m.insert(k.into(), json!(v));
                        }
                    }
                    Value::Object(m)
                })
                .collect();
            json!({"Containers": containers})
        }),
    );
    put(
        "ModelMetrics",
        out.model_metrics().map(|m| {
            let src = |s: Option<&aws_sdk_sagemaker::types::MetricsSource>| {
                s.map(|s| json!({"ContentType": s.content_type(), "ContentDigest": s.content_digest(), "S3Uri": s.s3_uri()}))
            };
            let mut mm = serde_json::Map::new();
            let mut section = |name: &str, parts: Vec<(&str, Option<Value>)>| {
                let p: serde_json::Map<String, Value> = parts.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect();
                if !p.is_empty() {
                    mm.insert(name.into(), Value::Object(p));
                }
            };
            if let Some(q) = m.model_quality() {
                section("ModelQuality", vec![("Statistics", src(q.statistics())), ("Constraints", src(q.constraints()))]);
            }
            if let Some(q) = m.model_data_quality() {
                section("ModelDataQuality", vec![("Statistics", src(q.statistics())), ("Constraints", src(q.constraints()))]);
            }
            if let Some(b) = m.bias() {
                section(
                    "Bias",
                    vec![
                        ("Report", src(b.report())),
                        ("PreTrainingReport", src(b.pre_training_report())),
                        ("PostTrainingReport", src(b.post_training_report())),
                    ],
                );
            }
            if let Some(x) = m.explainability() {
                section("Explainability", vec![("Report", src(x.report()))]);
            }
            Value::Object(mm)
        }),
    );
    put(
        "CustomerMetadataProperties",
        out.customer_metadata_properties().map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())),
    );
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_what_the_wire_held() {
        assert_eq!(metric_f32(Some(0.5396)), json!(0.5396));
        assert_eq!(metric_f32(Some(0.5396)).to_string(), "0.5396");
        assert_eq!(metric_f32(Some(1e-7)).as_f64(), Some(1e-7));
        assert_eq!(metric_f32(Some(3.4028235e38)).as_f64(), Some(3.4028235e38));
        assert_eq!(metric_f32(Some(f32::NAN)), json!("NaN"));
        assert_eq!(metric_f32(Some(f32::INFINITY)), json!("Infinity"));
        assert_eq!(metric_f32(Some(f32::NEG_INFINITY)), json!("-Infinity"));
        assert_eq!(metric_f32(None), Value::Null);
        for bits in [0x3f0a_3d71u32, 0x0000_0001, 0x7f7f_ffff, 0x3eaa_aaab, 0x4049_0fdb] {
            let x = f32::from_bits(bits);
            assert_eq!(metric_f32(Some(x)).as_f64().map(|f| f as f32), Some(x), "round trip of {x}");
        }
    }

    #[test]
    fn times_round_to_millis() {
        let dt = DateTime::from_fractional_secs(1795403589, 0.643999);
        assert_eq!(time(&dt), json!("2026-11-23T03:13:09.644Z"));
    }

    #[test]
    fn search_and_describe_give_the_same_document() {
        use aws_sdk_sagemaker::types::*;
        let ch = Channel::builder()
            .channel_name("train")
            .data_source(
                DataSource::builder()
                    .s3_data_source(S3DataSource::builder().s3_uri("s3://b/t/").s3_data_type(S3DataType::S3Prefix).build())
                    .build(),
            )
            .compression_type(CompressionType::None)
            .build();
        let md = MetricData::builder().metric_name("train:loss").value(0.5).timestamp(DateTime::from_secs(1_700_000_000)).build();
        let tj = TrainingJob::builder()
            .training_job_name("j")
            .training_job_arn("arn:j")
            .training_job_status(TrainingJobStatus::Completed)
            .hyper_parameters("b", "2")
            .hyper_parameters("a", "1")
            .input_data_config(ch.clone())
            .final_metric_data_list(md.clone())
            .last_modified_time(DateTime::from_secs(1_700_000_100))
            .tags(Tag::builder().key("k").value("v").build())
            .build();
        let d = aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput::builder()
            .training_job_name("j")
            .training_job_arn("arn:j")
            .training_job_status(TrainingJobStatus::Completed)
            .hyper_parameters("b", "2")
            .hyper_parameters("a", "1")
            .input_data_config(ch)
            .final_metric_data_list(md)
            .last_modified_time(DateTime::from_secs(1_700_000_100))
            .build();
        let mut from_describe = describe_document(&d);
        from_describe.as_object_mut().unwrap().insert("Tags".into(), json!([{"Key": "k", "Value": "v"}]));
        assert_eq!(from_describe, search_document(&tj));
        let job = crate::job_from_document(&search_document(&tj)).unwrap();
        assert_eq!(job.hyperparameters.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(job.tags.get("k"), Some("v"));
        assert_eq!(job.final_metrics[0].value, 0.5);
    }
}
