//! Mapper `tags`: the AWS sample's mapping, extended. Project and model identity come from the
//! job's tags (keys from `[tag_keys]`); every channel becomes a dataset; every hyperparameter and
//! final metric is kept (split read from the metric name's prefix); job facts become attributes.

use async_trait::async_trait;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::json;

use super::TagKeys;
use crate::error::SyncError;
use crate::model::{
    decode_hyperparameter, DataSource, Dataset, HyperParameter, Metric, Model, Project, Run, RunRecord, Split, Tags, TrainingJob,
};
use crate::registry::{BuildContext, FieldProblem, MapperPlugin};
use crate::stage::Mapper;

/// The `tags` mapper.
#[derive(Debug, Clone)]
pub struct TagsMapper {
    keys: TagKeys,
    experiment: String,
    experiment_tag: Option<String>,
    keep_job_tags: bool,
}

impl TagsMapper {
    /// The default mapping with these tag keys; experiment `Default_Experiment`.
    pub fn new(keys: TagKeys) -> Self {
        TagsMapper { keys, experiment: DEFAULT_EXPERIMENT.into(), experiment_tag: None, keep_job_tags: true }
    }
    /// Sets the experiment name.
    pub fn experiment(mut self, name: impl Into<String>) -> Self {
        self.experiment = name.into();
        self
    }
    /// Reads the experiment name from this tag when the job has it.
    pub fn experiment_tag(mut self, tag: impl Into<String>) -> Self {
        self.experiment_tag = Some(tag.into());
        self
    }
    /// Whether to copy the job's tags into the record (default true).
    pub fn keep_job_tags(mut self, yes: bool) -> Self {
        self.keep_job_tags = yes;
        self
    }
}

/// The experiment name used when none is configured (ModelDB's default experiment's name).
pub const DEFAULT_EXPERIMENT: &str = "Default_Experiment";

fn ts(t: Option<crate::model::Timestamp>) -> Option<serde_json::Value> {
    t.map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
}

#[async_trait]
impl Mapper for TagsMapper {
    async fn map(&self, job: &TrainingJob) -> Result<RunRecord, SyncError> {
        let project_name = job.tags.get(&self.keys.project_name).unwrap_or("").trim().to_string();
        if project_name.is_empty() {
            return Err(SyncError::permanent(format!("tag `{}` (the project name) is missing or empty", self.keys.project_name)));
        }
        let tag = |k: &str| job.tags.get(k).unwrap_or("").to_string();
        let experiment = self
            .experiment_tag
            .as_deref()
            .and_then(|t| job.tags.get(t))
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| self.experiment.clone());

        let hyperparameters = job
            .hyperparameters
            .iter()
            .map(|(k, v)| HyperParameter { name: k.clone(), raw: v.clone(), value: decode_hyperparameter(v) })
            .collect();

        let datasets = job
            .channels
            .iter()
            .map(|c| {
                let mut metadata = IndexMap::new();
                if let Some(v) = &c.compression {
                    metadata.insert("CompressionType".to_string(), v.clone());
                }
                if let Some(v) = &c.record_wrapper {
                    metadata.insert("RecordWrapperType".to_string(), v.clone());
                }
                if let Some(v) = &c.content_type {
                    metadata.insert("ContentType".to_string(), v.clone());
                }
                if let Some(v) = &c.input_mode {
                    metadata.insert("InputMode".to_string(), v.clone());
                }
                metadata.insert("DataSource".to_string(), c.source.kind_name().to_string());
                if let DataSource::S3 { data_type, distribution, .. } = &c.source {
                    if let Some(v) = data_type {
                        metadata.insert("S3DataType".to_string(), v.clone());
                    }
                    if let Some(v) = distribution {
                        metadata.insert("S3DataDistributionType".to_string(), v.clone());
                    }
                }
                // The processing job that wrote the data (a pipeline's step), when known.
                if let Some(p) = &c.produced_by {
                    metadata.insert("ProducedBy".to_string(), p.processing_job.clone());
                    metadata.insert("ProducedByArn".to_string(), p.processing_job_arn.clone());
                    metadata.insert("ProcessingOutput".to_string(), p.output.clone());
                    if let Some(step) = &p.step {
                        metadata.insert("PipelineStep".to_string(), step.clone());
                    }
                    if let Some(e) = &p.pipeline_execution_arn {
                        metadata.insert("PipelineExecutionArn".to_string(), e.clone());
                    }
                }
                Dataset { name: c.name.clone(), uri: c.source.uri(), metadata, manifest: c.manifest.clone() }
            })
            .collect();

        let metrics = job
            .final_metrics
            .iter()
            // Non-finite values (a diverged loss) are kept: each sink records them the way it
            // can (docs/mapping.md).
            .map(|m| Metric {
                name: m.name.clone(),
                value: m.value,
                split: Split::from_metric_name(&m.name),
                timestamp: m.timestamp,
                step: None,
            })
            .collect();

        let mut attributes: IndexMap<String, serde_json::Value> = IndexMap::new();
        // `training_job_name`..., `tuning_job_name`... after the resource's kind.
        let kind = job.lineage.kind.as_str();
        attributes.insert(format!("{kind}_name"), json!(job.name));
        attributes.insert(format!("{kind}_arn"), json!(job.arn));
        attributes.insert(format!("{kind}_status"), json!(job.status));
        // The account and region the ARN names (`arn:<partition>:sagemaker:<region>:<account>:...`):
        // one tracker for many accounts tells their jobs apart by them.
        if let Some((region, account)) = crate::model::arn_region_account(&job.arn) {
            attributes.insert("account".into(), json!(account));
            attributes.insert("region".into(), json!(region));
        }
        let opt = |a: &mut IndexMap<String, serde_json::Value>, k: &str, v: Option<serde_json::Value>| {
            if let Some(v) = v {
                a.insert(k.to_string(), v);
            }
        };
        opt(&mut attributes, "secondary_status", job.secondary_status.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "failure_reason", job.failure_reason.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "training_image", job.algorithm.image.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "algorithm_name", job.algorithm.name.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "instance_type", job.instance_type.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "instance_count", job.instance_count.map(|v| json!(v)));
        opt(&mut attributes, "billable_seconds", job.billable_seconds.map(|v| json!(v)));
        opt(&mut attributes, "creation_time", ts(job.creation_time));
        opt(&mut attributes, "training_start_time", ts(job.start_time));
        opt(&mut attributes, "training_end_time", ts(job.end_time));
        opt(&mut attributes, "last_modified_time", ts(job.last_modified_time));
        opt(&mut attributes, "output_path", job.output_path.as_ref().map(|v| json!(v)));
        opt(&mut attributes, "mlflow_run_id", job.mlflow_run_id.as_ref().map(|v| json!(v)));

        Ok(RunRecord {
            project: Project { name: project_name, user: tag(&self.keys.project_user), description: tag(&self.keys.project_desc) },
            experiment,
            run: Run {
                name: job.name.clone(),
                external_id: job.arn.clone(),
                status: job.status.clone(),
                start: job.start_time,
                end: job.end_time,
            },
            model: Model {
                name: tag(&self.keys.model_name),
                model_type: tag(&self.keys.model_type),
                artifact_uri: job.model_artifact.clone(),
            },
            hyperparameters,
            datasets,
            metrics,
            // A series without points is kept only when it says what went wrong reading it.
            metric_history: job.metric_history.iter().filter(|s| !s.points.is_empty() || s.problem.is_some()).cloned().collect(),
            tags: if self.keep_job_tags { job.tags.clone() } else { Tags::default() },
            attributes,
            lineage: job.lineage.clone(),
        })
    }
}

/// Options of `tags`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagsMapperConfig {
    /// Experiment name.
    pub experiment: String,
    /// Tag whose value, when present, names the experiment instead.
    pub experiment_tag: Option<String>,
    /// Copy the job's tags into the record.
    pub keep_job_tags: bool,
}

impl Default for TagsMapperConfig {
    fn default() -> Self {
        TagsMapperConfig { experiment: DEFAULT_EXPERIMENT.into(), experiment_tag: None, keep_job_tags: true }
    }
}

impl MapperPlugin for TagsMapperConfig {
    fn build(self, ctx: &BuildContext) -> Result<std::sync::Arc<dyn Mapper>, Vec<FieldProblem>> {
        if self.experiment.trim().is_empty() {
            return Err(vec![FieldProblem::at("experiment", "must not be empty")]);
        }
        let mut m = TagsMapper::new(ctx.section::<TagKeys>(TagKeys::SECTION)).experiment(self.experiment).keep_job_tags(self.keep_job_tags);
        if let Some(t) = self.experiment_tag {
            m = m.experiment_tag(t);
        }
        Ok(std::sync::Arc::new(m))
    }
}

crate::register_plugin!(
    Mapper,
    "tags",
    TagsMapperConfig,
    summary = "Project and model from the job's tags; channels, hyperparameters, split metrics, attributes",
    example = r#"[mapper]
type = "tags"
experiment = "Default_Experiment"
# Take the experiment name from this tag when a job has it.
# experiment_tag = "MODEL_DB_EXPERIMENT"
keep_job_tags = true
"#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, FinalMetric};

    #[tokio::test]
    async fn maps_everything() {
        let mut j = TrainingJob::new("xgb-1", "arn:aws:sagemaker:us-east-1:1:training-job/xgb-1", "Completed");
        j.tags = [("MODEL_DB_PROJECT_NAME", "churn"), ("MODEL_DB_PROJECT_USER", "ana"), ("MODEL_DB_MODEL_TYPE", "XGBoost"), ("EXP", "e1")]
            .into_iter()
            .collect();
        j.hyperparameters.insert("max_depth".into(), "5".into());
        j.hyperparameters.insert("sagemaker_program".into(), "\"train.py\"".into());
        j.channels.push(Channel {
            name: "train".into(),
            source: DataSource::S3 { uri: "s3://b/train/".into(), data_type: Some("S3Prefix".into()), distribution: None },
            content_type: Some("text/csv".into()),
            compression: Some("None".into()),
            record_wrapper: Some("None".into()),
            input_mode: None,
            manifest: None,
            produced_by: None,
        });
        j.final_metrics.push(FinalMetric { name: "validation:auc".into(), value: 0.9, timestamp: None });
        j.final_metrics.push(FinalMetric { name: "bad".into(), value: f64::NAN, timestamp: None });
        j.instance_count = Some(2);
        let r = TagsMapper::new(TagKeys::default()).experiment_tag("EXP").map(&j).await.unwrap();
        assert_eq!(r.project.name, "churn");
        assert_eq!(r.project.description, "");
        assert_eq!(r.experiment, "e1");
        assert_eq!(r.run.external_id, j.arn);
        assert_eq!(r.model.model_type, "XGBoost");
        assert_eq!(r.hyperparameters[1].value, json!("train.py"));
        assert_eq!(r.hyperparameters[0].value, json!(5));
        assert_eq!(
            r.datasets[0].metadata.keys().collect::<Vec<_>>(),
            ["CompressionType", "RecordWrapperType", "ContentType", "DataSource", "S3DataType"]
        );
        assert_eq!(r.metrics.len(), 2, "non-finite values are kept for the sinks");
        assert_eq!(r.metrics[0].split, Split::Validation);
        assert!(r.metrics[1].value.is_nan());
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""value":"NaN""#), "NaN is written as the string AWS and MLflow use: {text}");
        let back: crate::model::RunRecord = serde_json::from_str(&text).unwrap();
        assert!(back.metrics[1].value.is_nan());
        assert_eq!(r.attributes["instance_count"], json!(2));
        assert_eq!(r.tags.len(), 4);
    }

    #[tokio::test]
    async fn missing_project_tag_is_an_error() {
        let j = TrainingJob::new("a", "b", "Completed");
        let e = TagsMapper::new(TagKeys::default()).map(&j).await.unwrap_err();
        assert!(e.to_string().contains("MODEL_DB_PROJECT_NAME"));
        assert!(!e.is_retryable());
    }
}
