//! moto → `sagesync run` / `sagesync sync-job` → file sink, in both source modes.

use std::collections::BTreeMap;
use std::path::Path;

use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::Value;

fn sagesync(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.current_dir(dir).envs(TEST_ENV).env_remove("AWS_PROFILE");
    c
}

fn config(dir: &Path, name: &str, endpoint: &str, mode: &str, out: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmode = \"{mode}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"{out}\"\n"
        ),
    )
    .unwrap();
    p
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for p in std::fs::read_dir(dir).unwrap() {
        let p = p.unwrap().path();
        for f in std::fs::read_dir(&p).unwrap() {
            let f = f.unwrap().path();
            out.insert(f.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&f).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_to_files_in_both_modes_gives_identical_files() {
    let moto = Moto::start();
    let synced = moto.create_jobs("cli", 12, &SYNC_TAGS).await;
    moto.create_jobs("untagged", 3, &[("team", "x")]).await;
    moto.edit(&synced[0], serde_json::json!({"TrainingJobStatus": "Failed", "FailureReason": "boom"}));
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for mode in ["list", "search"] {
        let cfg = config(dir.path(), &format!("{mode}.toml"), &moto.url(), mode, &format!("out-{mode}"));
        let out = sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((s["synced"].as_u64(), s["skipped"].as_u64(), s["failed"].as_u64()), (Some(11), Some(4), Some(0)), "{mode}: {s}");
        summaries.push(s);
    }
    let list = &summaries[0]["api_calls"];
    assert_eq!(list["ListTrainingJobs"], 1);
    assert_eq!(list["DescribeTrainingJob"], 15);
    assert_eq!(list["ListTags"], 15);
    // With the default resources, a poll also reads one page of tuning jobs (and the running
    // ones) and one page of pipelines: none here.
    assert_eq!(summaries[1]["api_calls"], serde_json::json!({"Search": 1, "ListHyperParameterTuningJobs": 2, "ListPipelines": 1}));
    let a = files(&dir.path().join("out-list"));
    let b = files(&dir.path().join("out-search"));
    assert_eq!(a.len(), 11);
    assert_eq!(a, b, "both modes write identical files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_job_by_name() {
    let moto = Moto::start();
    let names = moto.create_jobs("one", 2, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "list", "out");
    let out = sagesync(dir.path()).args(["sync-job", &names[1], "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 1);
    assert_eq!(s["jobs"][0]["job"], names[1].as_str());
    assert_eq!(s["api_calls"], serde_json::json!({"DescribeTrainingJob": 1, "ListTags": 1}));
    assert!(dir.path().join(format!("out/moto-project/{}.json", names[1])).exists());
    assert!(!dir.path().join(format!("out/moto-project/{}.json", names[0])).exists());
    let out = sagesync(dir.path()).args(["sync-job", "missing-job", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed") && text.contains("job not found"), "{text}");
}

/// `metrics = "history"`: moto's CloudWatch points reach the file the sink writes, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_histories_reach_the_file_sink() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use chrono::{Duration, Timelike, Utc};
    let moto = Moto::start();
    let names = moto.create_jobs("hist", 1, &SYNC_TAGS).await;
    let start = (Utc::now() - Duration::hours(1)).with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap();
    moto.edit(
        &names[0],
        serde_json::json!({"TrainingStartTime": start.to_rfc3339(), "TrainingEndTime": (start + Duration::minutes(10)).to_rfc3339()}),
    );
    let sm = moto.client().await;
    let d = sm.describe_training_job().training_job_name(&names[0]).send().await.unwrap();
    let metric = d.final_metric_data_list()[0].metric_name().unwrap().to_string();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(moto.url()).load().await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let data: Vec<MetricDatum> = (0..5)
        .map(|i| {
            MetricDatum::builder()
                .metric_name(&metric)
                .dimensions(Dimension::builder().name("Host").value(format!("{}/algo-1", names[0])).build())
                .timestamp(aws_smithy_types::DateTime::from_millis((start + Duration::minutes(i)).timestamp_millis()))
                .value(1.0 / (1.0 + i as f64))
                .build()
        })
        .collect();
    cw.put_metric_data().namespace("/aws/sagemaker/TrainingJobs").set_metric_data(Some(data)).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "list", "out");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("mode = \"list\"\n", &format!("mode = \"list\"\nmetrics = \"history\"\ncloudwatch_endpoint_url = \"{}\"\n", moto.url()));
    std::fs::write(&cfg, text).unwrap();
    let out = sagesync(dir.path()).args(["sync-job", &names[0], "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["api_calls"]["GetMetricData"], 1, "{s}");
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("out/moto-project/{}.json", names[0]))).unwrap()).unwrap();
    let series = file["record"]["metric_history"].as_array().unwrap_or_else(|| panic!("no metric_history in {file}"));
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["name"], metric.as_str());
    let points = series[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p["step"], i as i64);
        assert_eq!(p["value"].as_f64(), Some(1.0 / (1.0 + i as f64)));
    }
}
