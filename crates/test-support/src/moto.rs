//! moto (tests/peers/moto_launcher.py) on 127.0.0.1, seeded through the real SDK. Fails loudly
//! when the peer cannot start: run `scripts/setup-peers.sh`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sagemaker::types::*;
use futures::stream::{self, StreamExt};

use crate::locate::{python, repo_root};
use crate::stderr::StderrLog;

/// Environment every SDK client and child process in the tests uses.
pub const TEST_ENV: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("NO_PROXY", "127.0.0.1,localhost"),
    ("no_proxy", "127.0.0.1,localhost"),
];

/// Sets [`TEST_ENV`] in this process (once).
pub fn set_test_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in TEST_ENV {
            // Set once, before any client exists; every test sets the same values.
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_ENDPOINT_URL_SAGEMAKER");
    });
}

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its port.
    pub port: u16,
    /// moto's stderr (printed when the test panics).
    pub log: StderrLog,
}

impl Moto {
    /// Starts moto and resets it.
    pub fn start() -> Moto {
        set_test_env();
        let log = StderrLog::new("moto");
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/peers/moto_launcher.py"))
            .stdout(Stdio::piped())
            .stderr(log.stdio())
            .spawn()
            .expect("cannot start moto");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let line = loop {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                break l;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto exited ({status}) before it was ready; run scripts/setup-peers.sh; stderr:\n{}", log.tail(24 << 10));
            }
            assert!(Instant::now() < deadline, "moto not ready within 90 s; stderr:\n{}", log.tail(24 << 10));
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected moto output: {line}; stderr:\n{}", log.tail(24 << 10)));
        let m = Moto { child, port, log };
        m.post("/moto-api/reset", "{}");
        m
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP POST to the launcher.
    pub fn post(&self, path: &str, body: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{path}: {out}");
        out
    }

    /// A plain HTTP request to the launcher; the answer's body (asserting a 200).
    pub fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{method} {path}: {out}");
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
    }

    /// One AWS JSON 1.1 call to moto (`service` as SigV4 names it, `target` its X-Amz-Target):
    /// the answer's body, asserting a 200. For services this crate has no SDK client of.
    pub fn aws_json(&self, service: &str, target: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: {target}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{target}: {out}");
        let text = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
    }

    /// Creates a Secrets Manager secret `name` holding `value`; returns its ARN.
    pub fn put_secret(&self, name: &str, value: &str) -> String {
        let v = self.aws_json("secretsmanager", "secretsmanager.CreateSecret", &serde_json::json!({"Name": name, "SecretString": value}));
        v["ARN"].as_str().unwrap_or_default().to_string()
    }

    /// Creates a SecureString SSM parameter `name` holding `value`.
    pub fn put_parameter(&self, name: &str, value: &str) {
        self.aws_json(
            "ssm",
            "AmazonSSM.PutParameter",
            &serde_json::json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true}),
        );
    }

    /// Seeds the metrics service's series of training job `job` (its trial component
    /// `<job>-aws-training-job`) through the service's own BatchPutMetrics, 10 points a call:
    /// `(step, seconds since the epoch, value)` for each point.
    pub async fn put_metrics(&self, job: &str, metric: &str, points: &[(Option<i32>, f64, f64)]) {
        use aws_sdk_sagemakermetrics::types::RawMetricData;
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(self.url()).load().await;
        let c = aws_sdk_sagemakermetrics::Client::new(&conf);
        let component = format!("{}-aws-training-job", job.to_lowercase());
        for chunk in points.chunks(10) {
            let data: Vec<RawMetricData> = chunk
                .iter()
                .map(|(step, t, v)| {
                    RawMetricData::builder()
                        .metric_name(metric)
                        .timestamp(aws_sdk_sagemakermetrics::primitives::DateTime::from_secs_f64(*t))
                        .set_step(*step)
                        .value(*v)
                        .build()
                })
                .collect();
            let out = c
                .batch_put_metrics()
                .trial_component_name(&component)
                .set_metric_data(Some(data))
                .send()
                .await
                .unwrap_or_else(|e| panic!("BatchPutMetrics {component}: {e:?}"));
            assert!(out.errors().is_empty(), "BatchPutMetrics {component}: {:?}", out.errors());
        }
    }

    /// Makes the metrics service answer `status` (`Truncated` with its first `keep` points,
    /// `ValidationError`, `InternalError`) to queries of one metric of `arn`, `times` times
    /// (`None`: always).
    pub fn metrics_status(&self, arn: &str, metric: &str, status: &str, keep: Option<usize>, times: Option<usize>) {
        let mut b = serde_json::json!({"resource_arn": arn, "metric": metric, "status": status, "message": format!("forced {status}")});
        if let Some(k) = keep {
            b["keep"] = k.into();
        }
        if let Some(t) = times {
            b["times"] = t.into();
        }
        self.post("/_sm/metrics/status", &b.to_string());
    }

    /// Makes the metrics service fail the next `times` BatchGetMetrics calls as a whole with
    /// HTTP `status` (500, 503, 429, 400, 403 or 404, each with its error code).
    pub fn metrics_fail(&self, status: u16, times: usize) {
        self.post("/_sm/metrics/fail", &serde_json::json!({"status": status, "times": times}).to_string());
    }

    /// The number of queries in each BatchGetMetrics call the metrics service answered, in
    /// order; and resets the log.
    pub fn metrics_calls(&self) -> Vec<usize> {
        let body = self.request("GET", "/_sm/metrics/calls", "");
        self.request("DELETE", "/_sm/metrics/calls", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v["BatchGetMetrics"].as_array().map(|a| a.iter().filter_map(|n| n.as_u64()).map(|n| n as usize).collect()).unwrap_or_default()
    }

    /// Edits a stored job (status, failure reason, metrics, timestamps...).
    pub fn edit(&self, name: &str, set: serde_json::Value) {
        self.post("/_sm/training-job", &serde_json::json!({"name": name, "set": set}).to_string());
    }

    /// Edits a stored tuning job (status, times...).
    pub fn edit_tuner(&self, name: &str, set: serde_json::Value) {
        self.post("/_sm/tuning-job", &serde_json::json!({"name": name, "set": set}).to_string());
    }

    /// Creates a tuning job `name` (Bayesian, maximising `validation:auc` over `max_depth` and
    /// `eta`, the static hyperparameter `objective`) with `tags`; returns its ARN.
    pub async fn create_tuner(&self, name: &str, tags: &[(&str, &str)]) -> String {
        use aws_sdk_sagemaker::types::{
            ContinuousParameterRange, HyperParameterAlgorithmSpecification, HyperParameterTrainingJobDefinition,
            HyperParameterTuningJobConfig, HyperParameterTuningJobObjective, HyperParameterTuningJobObjectiveType,
            HyperParameterTuningJobStrategyType, IntegerParameterRange, ParameterRanges, ResourceLimits,
        };
        let c = self.client().await;
        let config = HyperParameterTuningJobConfig::builder()
            .strategy(HyperParameterTuningJobStrategyType::Bayesian)
            .hyper_parameter_tuning_job_objective(
                HyperParameterTuningJobObjective::builder()
                    .r#type(HyperParameterTuningJobObjectiveType::Maximize)
                    .metric_name("validation:auc")
                    .build(),
            )
            .resource_limits(ResourceLimits::builder().max_number_of_training_jobs(50).max_parallel_training_jobs(2).build())
            .parameter_ranges(
                ParameterRanges::builder()
                    .integer_parameter_ranges(IntegerParameterRange::builder().name("max_depth").min_value("3").max_value("9").build())
                    .continuous_parameter_ranges(ContinuousParameterRange::builder().name("eta").min_value("0.1").max_value("0.5").build())
                    .build(),
            )
            .build();
        let definition = HyperParameterTrainingJobDefinition::builder()
            .static_hyper_parameters("objective", "binary:logistic")
            .algorithm_specification(
                HyperParameterAlgorithmSpecification::builder()
                    .training_image("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
                    .training_input_mode(TrainingInputMode::File)
                    .build(),
            )
            .role_arn("arn:aws:iam::123456789012:role/sagemaker")
            .output_data_config(OutputDataConfig::builder().s3_output_path("s3://moto-out/output").build())
            .resource_config(
                ResourceConfig::builder().instance_type(TrainingInstanceType::MlM5Xlarge).instance_count(1).volume_size_in_gb(10).build(),
            )
            .stopping_condition(StoppingCondition::builder().max_runtime_in_seconds(3600).build())
            .build();
        let mut req = c
            .create_hyper_parameter_tuning_job()
            .hyper_parameter_tuning_job_name(name)
            .hyper_parameter_tuning_job_config(config)
            .training_job_definition(definition);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(*v).build());
        }
        let out = req.send().await.unwrap_or_else(|e| panic!("CreateHyperParameterTuningJob {name}: {e:?}"));
        out.hyper_parameter_tuning_job_arn().unwrap_or_default().to_string()
    }

    /// Creates the training job `name` as a child of the tuner `tuner_arn`, with `tags`, created
    /// and modified `order` seconds from now (so that children sort by `order`, and the tuner's
    /// `LastModifiedTime` moves with its newest child, as SageMaker's does): completed with
    /// `value` as its `validation:auc`, or failed (`None`).
    pub async fn create_child(&self, tuner_arn: &str, name: &str, value: Option<f64>, order: u32, tags: &[(&str, &str)]) {
        let tags: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        create_job(&self.client().await, name, &tags).await;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let when = (now + f64::from(order)).floor();
        let minute = order;
        let mut set = serde_json::json!({"TuningJobArn": tuner_arn, "CreationTime": when, "LastModifiedTime": when,
            "TrainingStartTime": when, "TrainingEndTime": when, "HyperParameters": {"max_depth": (3 + minute % 6).to_string(), "eta": "0.2", "objective": "binary:logistic"}});
        match value {
            Some(v) => set["FinalMetricDataList"] = serde_json::json!([{"MetricName": "validation:auc", "Value": v, "Timestamp": when}]),
            None => {
                set["TrainingJobStatus"] = serde_json::json!("Failed");
                set["SecondaryStatus"] = serde_json::json!("Failed");
                set["FailureReason"] = serde_json::json!("AlgorithmError: diverged");
                set["FinalMetricDataList"] = serde_json::json!([]);
            }
        }
        self.edit(name, set);
    }

    /// Starts an execution of the pipeline `pipeline` (created with `tags` if it does not exist
    /// yet); returns the execution's ARN.
    pub async fn start_execution(&self, pipeline: &str, tags: &[(&str, &str)]) -> String {
        let c = self.client().await;
        if c.describe_pipeline().pipeline_name(pipeline).send().await.is_err() {
            let mut req = c
                .create_pipeline()
                .pipeline_name(pipeline)
                .pipeline_definition(r#"{"Version": "2020-12-01", "Steps": []}"#)
                .role_arn("arn:aws:iam::123456789012:role/sagemaker");
            for (k, v) in tags {
                req = req.tags(Tag::builder().key(*k).value(*v).build());
            }
            req.send().await.unwrap_or_else(|e| panic!("CreatePipeline {pipeline}: {e:?}"));
        }
        let out = c
            .start_pipeline_execution()
            .pipeline_name(pipeline)
            .send()
            .await
            .unwrap_or_else(|e| panic!("StartPipelineExecution {pipeline}: {e:?}"));
        out.pipeline_execution_arn().unwrap_or_default().to_string()
    }

    /// Makes every later request to the SageMaker operation `op` fail with `code` (HTTP 400);
    /// `None` lets it through again.
    pub fn fail_operation(&self, op: &str, code: Option<&str>) {
        self.post(
            "/_sm/fault",
            &serde_json::json!({"target": format!("SageMaker.{op}"), "status": 400, "code": code.unwrap_or("")}).to_string(),
        );
    }

    /// Sets an execution's status, steps (PipelineExecutionStep documents) or times.
    pub fn edit_execution(&self, arn: &str, set: serde_json::Value) {
        self.post("/_sm/pipeline-execution", &serde_json::json!({"arn": arn, "set": set}).to_string());
    }

    /// Creates the processing job `name` whose output `output` is written to `uri`; returns its
    /// ARN.
    pub async fn create_processing_job(&self, name: &str, output: &str, uri: &str) -> String {
        use aws_sdk_sagemaker::types::{
            AppSpecification, ProcessingClusterConfig, ProcessingInstanceType, ProcessingOutput, ProcessingOutputConfig,
            ProcessingResources, ProcessingS3Output, ProcessingS3UploadMode,
        };
        let c = self.client().await;
        let out = c
            .create_processing_job()
            .processing_job_name(name)
            .role_arn("arn:aws:iam::123456789012:role/sagemaker")
            .app_specification(
                AppSpecification::builder().image_uri("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1").build(),
            )
            .processing_resources(
                ProcessingResources::builder()
                    .cluster_config(
                        ProcessingClusterConfig::builder()
                            .instance_count(1)
                            .instance_type(ProcessingInstanceType::MlM5Xlarge)
                            .volume_size_in_gb(10)
                            .build(),
                    )
                    .build(),
            )
            .processing_output_config(
                ProcessingOutputConfig::builder()
                    .outputs(
                        ProcessingOutput::builder()
                            .output_name(output)
                            .s3_output(
                                ProcessingS3Output::builder()
                                    .s3_uri(uri)
                                    .local_path("/opt/ml/processing/output")
                                    .s3_upload_mode(ProcessingS3UploadMode::EndOfJob)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateProcessingJob {name}: {e:?}"));
        out.processing_job_arn().unwrap_or_default().to_string()
    }

    /// Creates the training job `name` as a pipeline step's job: `tags` plus the tag SageMaker
    /// Pipelines puts on the jobs it starts (`sagemaker:pipeline-execution-arn`).
    pub async fn create_step_job(&self, execution_arn: &str, name: &str, tags: &[(&str, &str)]) -> String {
        let mut all: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all.push(("sagemaker:pipeline-execution-arn".into(), execution_arn.to_string()));
        let c = self.client().await;
        create_job(&c, name, &all).await;
        let d =
            c.describe_training_job().training_job_name(name).send().await.unwrap_or_else(|e| panic!("DescribeTrainingJob {name}: {e:?}"));
        d.training_job_arn().unwrap_or_default().to_string()
    }

    /// Creates the model package group `group` (with `tags`) when it does not exist yet.
    pub async fn create_package_group(&self, group: &str, tags: &[(&str, &str)]) {
        let c = self.client().await;
        if c.describe_model_package_group().model_package_group_name(group).send().await.is_ok() {
            return;
        }
        let mut req = c.create_model_package_group().model_package_group_name(group);
        for (k, v) in tags {
            req = req.tags(Tag::builder().key(*k).value(*v).build());
        }
        req.send().await.unwrap_or_else(|e| panic!("CreateModelPackageGroup {group}: {e:?}"));
    }

    /// Sets a model package's approval status (and its approval description, when given).
    pub async fn approve_package(&self, arn: &str, approval: &str, description: Option<&str>) {
        let c = self.client().await;
        c.update_model_package()
            .model_package_arn(arn)
            .model_approval_status(aws_sdk_sagemaker::types::ModelApprovalStatus::from(approval))
            .set_approval_description(description.map(str::to_string))
            .send()
            .await
            .unwrap_or_else(|e| panic!("UpdateModelPackage {arn}: {e:?}"));
    }

    /// Deletes a model package (by ARN) through the launcher's DeleteModelPackage.
    pub async fn delete_package(&self, arn: &str) {
        let c = self.client().await;
        c.delete_model_package().model_package_name(arn).send().await.unwrap_or_else(|e| panic!("DeleteModelPackage {arn}: {e:?}"));
    }

    /// Creates a versioned model package in `group` for the model at `model_data_url`, with
    /// `approval` (`PendingManualApproval`, `Approved`, `Rejected`); returns its ARN.
    pub async fn create_package(&self, group: &str, model_data_url: &str, approval: &str) -> String {
        use aws_sdk_sagemaker::types::{InferenceSpecification, ModelApprovalStatus, ModelPackageContainerDefinition};
        self.create_package_group(group, &[]).await;
        let c = self.client().await;
        let spec = InferenceSpecification::builder()
            .containers(
                ModelPackageContainerDefinition::builder()
                    .image("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
                    .model_data_url(model_data_url)
                    .framework("XGBOOST")
                    .framework_version("1.7")
                    .build(),
            )
            .supported_content_types("text/csv")
            .supported_response_mime_types("text/csv")
            .build();
        let out = c
            .create_model_package()
            .model_package_group_name(group)
            .model_approval_status(ModelApprovalStatus::from(approval))
            .inference_specification(spec)
            .customer_metadata_properties("team", "churn")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateModelPackage {group}: {e:?}"));
        out.model_package_arn().unwrap_or_default().to_string()
    }

    /// A SageMaker client on moto.
    pub async fn client(&self) -> aws_sdk_sagemaker::Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(self.url()).load().await;
        aws_sdk_sagemaker::Client::new(&conf)
    }

    /// A SageMaker client on moto in `region`, with the credentials of `role_arn` assumed
    /// through moto's STS (its calls land in the role's account), or the default account's.
    pub async fn client_as(&self, role_arn: Option<&str>, region: &str) -> aws_sdk_sagemaker::Client {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.url())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let conf = match role_arn {
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role).session_name("seed").configure(&base).build().await;
                base.to_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider)).build()
            }
            None => base,
        };
        aws_sdk_sagemaker::Client::new(&conf)
    }

    /// Creates jobs `{prefix}-{i:04}` in the account of `role_arn` (or the default one) and
    /// `region`.
    pub async fn create_jobs_in(&self, role_arn: Option<&str>, region: &str, prefix: &str, n: usize, tags: &[(&str, &str)]) -> Vec<String> {
        let c = self.client_as(role_arn, region).await;
        let tags: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
        for name in &names {
            create_job(&c, name, &tags).await;
        }
        names
    }

    /// An S3 client on moto (path-style).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(self.url()).load().await;
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&conf).force_path_style(true).build())
    }

    /// Creates jobs `{prefix}-{i:04}` through CreateTrainingJob, 8 at a time.
    pub async fn create_jobs(&self, prefix: &str, n: usize, tags: &[(&str, &str)]) -> Vec<String> {
        let c = self.client().await;
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
        let tags: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        stream::iter(names.clone())
            .map(|name| {
                let c = c.clone();
                let tags = tags.clone();
                async move { create_job(&c, &name, &tags).await }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        names
    }
}

/// The AWS sample's six tags, opting a job in.
pub const SYNC_TAGS: [(&str, &str); 6] = [
    ("MODEL_DB_SYNC", "true"),
    ("MODEL_DB_PROJECT_NAME", "moto-project"),
    ("MODEL_DB_PROJECT_USER", "tester"),
    ("MODEL_DB_PROJECT_DESC", "jobs from the emulator"),
    ("MODEL_DB_MODEL_NAME", "xgb"),
    ("MODEL_DB_MODEL_TYPE", "XGBoost"),
];

/// CreateTrainingJob of a small XGBoost job with `tags`.
pub async fn create_job(c: &aws_sdk_sagemaker::Client, name: &str, tags: &[(String, String)]) {
    let channel = |n: &str| {
        Channel::builder()
            .channel_name(n)
            .data_source(
                DataSource::builder()
                    .s3_data_source(
                        S3DataSource::builder()
                            .s3_data_type(S3DataType::S3Prefix)
                            .s3_uri(format!("s3://moto-data/{n}/"))
                            .s3_data_distribution_type(S3DataDistribution::FullyReplicated)
                            .build(),
                    )
                    .build(),
            )
            .content_type("text/csv")
            .compression_type(CompressionType::None)
            .record_wrapper_type(RecordWrapper::None)
            .build()
    };
    let mut req = c
        .create_training_job()
        .training_job_name(name)
        .algorithm_specification(
            AlgorithmSpecification::builder()
                .training_image("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
                .training_input_mode(TrainingInputMode::File)
                .build(),
        )
        .role_arn("arn:aws:iam::123456789012:role/sagemaker")
        .input_data_config(channel("train"))
        .input_data_config(channel("validation"))
        .output_data_config(OutputDataConfig::builder().s3_output_path("s3://moto-out/output").build())
        .resource_config(
            ResourceConfig::builder().instance_type(TrainingInstanceType::MlM5Xlarge).instance_count(1).volume_size_in_gb(10).build(),
        )
        .stopping_condition(StoppingCondition::builder().max_runtime_in_seconds(3600).build())
        .hyper_parameters("max_depth", "5")
        .hyper_parameters("eta", "0.2")
        .hyper_parameters("objective", "binary:logistic");
    for (k, v) in tags {
        req = req.tags(Tag::builder().key(k).value(v).build());
    }
    req.send().await.unwrap_or_else(|e| panic!("CreateTrainingJob {name}: {e:?}"));
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
