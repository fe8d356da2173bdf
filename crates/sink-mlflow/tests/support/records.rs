//! Records for the tests: the quickstart set through the recorded source and the `tags` mapper,
//! and synthetic ones.
#![allow(dead_code)]

use std::time::Duration;

use sagesync_core::builtin::TagsMapper;
use sagesync_core::{
    Cursor, HyperParameter, Mapper, Metric, RunRecord, Sink, SinkReceipt, Source, Split, SyncError, TagKeys, WriteContext,
};
use sagesync_sink_mlflow::{MlflowSettings, MlflowSink, MlflowSinkConfig, OnParamChange};
use serde_json::json;

use sagesync_test_support::locate::repo_root;

/// Every job of `examples/jobs` that the `tags` mapper maps (the others are rejected by design:
/// no project tag), through the recorded source.
pub async fn quickstart() -> Vec<RunRecord> {
    let source = sagesync_source_sagemaker::RecordedSource::new(vec![repo_root().join("examples/jobs")], false);
    let mapper = TagsMapper::new(TagKeys::default());
    let mut cursor = Cursor::default();
    let mut out = Vec::new();
    loop {
        let page = source.list(&sagesync_core::ListScope::Incremental, &cursor).await.expect("list examples/jobs");
        assert!(page.problems.is_empty(), "{:?}", page.problems);
        for j in page.jobs {
            let job = match &j.job {
                Some(job) => (**job).clone(),
                None => source.fetch(&j).await.expect("fetch"),
            };
            if let Ok(r) = mapper.map(&job).await {
                out.push(r);
            }
        }
        cursor = page.next;
        if page.done {
            break;
        }
    }
    out
}

/// A copy of `r` with a fresh job ARN and name (tests share one server).
pub fn fresh(r: &RunRecord, tag: &str) -> RunRecord {
    let mut r = r.clone();
    let suffix = format!("{tag}-{:08x}", fastrand::u32(..));
    r.run.name = format!("{}-{suffix}", r.run.name);
    r.run.external_id = format!("{}-{suffix}", r.run.external_id);
    for (k, v) in [("training_job_arn", &r.run.external_id), ("training_job_name", &r.run.name)] {
        if r.attributes.contains_key(k) {
            r.attributes.insert(k.into(), json!(v));
        }
    }
    r
}

/// A small synthetic record.
pub fn synthetic(tag: &str) -> RunRecord {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&chrono::Utc));
    let name = format!("synthetic-{tag}-{:08x}", fastrand::u32(..));
    RunRecord {
        lineage: Default::default(),
        project: sagesync_core::Project { name: format!("proj-{tag}"), user: "tester".into(), description: "synthetic".into() },
        experiment: "Default_Experiment".into(),
        run: sagesync_core::Run {
            name: name.clone(),
            external_id: format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"),
            status: "Completed".into(),
            start: t("2026-03-01T10:00:00Z"),
            end: t("2026-03-01T11:30:00Z"),
        },
        model: sagesync_core::Model {
            name: "m".into(),
            model_type: "XGBoost".into(),
            artifact_uri: Some(format!("s3://bucket/{name}/output/model.tar.gz")),
        },
        hyperparameters: vec![
            HyperParameter { name: "eta".into(), raw: "0.2".into(), value: json!(0.2) },
            HyperParameter { name: "max_depth".into(), raw: "6".into(), value: json!(6) },
        ],
        datasets: vec![sagesync_core::Dataset {
            name: "train".into(),
            uri: "s3://bucket/train/".into(),
            metadata: [("ContentType".to_string(), "text/csv".to_string())].into_iter().collect(),
            manifest: None,
        }],
        metrics: vec![Metric {
            name: "validation:auc".into(),
            value: 0.91,
            split: Split::Validation,
            timestamp: t("2026-03-01T11:29:00Z"),
            step: None,
        }],
        metric_history: vec![],
        tags: [("team", "ml")].into_iter().collect(),
        attributes: Default::default(),
    }
}

pub fn settings(url: &str, experiment: &str) -> MlflowSettings {
    let mut c = MlflowSinkConfig::with_uri(url);
    c.experiment = experiment.to_string();
    c.request_timeout_secs = 30;
    c.settings().expect("settings")
}

pub fn sink(url: &str, experiment: &str) -> MlflowSink {
    MlflowSink::new(settings(url, experiment)).expect("sink")
}

pub fn sink_with(url: &str, experiment: &str, f: impl FnOnce(&mut MlflowSettings)) -> MlflowSink {
    let mut s = settings(url, experiment);
    f(&mut s);
    MlflowSink::new(s).expect("sink")
}

pub fn policy(p: OnParamChange) -> impl FnOnce(&mut MlflowSettings) {
    move |s| s.on_param_change = p
}

/// What the engine does with a sink: retries transient errors with backoff (here up to
/// `attempts` times, 100 ms apart), returns permanent ones. Returns the receipt and the
/// transient errors seen.
pub async fn upsert_retrying(
    sink: &dyn Sink,
    r: &RunRecord,
    cx: &WriteContext,
    attempts: u32,
) -> (Result<SinkReceipt, SyncError>, Vec<String>) {
    let mut seen = Vec::new();
    for i in 0..attempts {
        match sink.upsert(r, cx).await {
            Err(e) if e.is_retryable() && i + 1 < attempts => {
                seen.push(e.chain());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return (other, seen),
        }
    }
    unreachable!("the loop returns on its last attempt")
}
