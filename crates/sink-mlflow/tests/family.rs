//! Issue 21: a tuning job is a parent run in its children's experiment (tagged with its ARN
//! under `sagemaker.tuning_job_arn`, never `sagemaker.training_job_arn`; its params the static
//! hyperparameters and the ranges; its metric the best objective value), and each child's run is
//! nested under it (`mlflow.parentRunId`), whichever syncs first. Through the whole engine, from
//! moto (the launcher serves what moto lacks of tuning jobs), into a real MLflow server. A test
//! binary of its own: its moto start and engine passes stay out of the timing of the sink's race
//! tests.

mod support;

use std::collections::BTreeSet;

use sagesync_test_support::mlflow::{kv, kv_str, shared, Proxy, Rest};
use sagesync_test_support::stderr::DumpOnPanic;
use serde_json::{json, Value};
use support::records::sink;

async fn setup() -> (DumpOnPanic, Proxy, Rest) {
    let g = DumpOnPanic(vec![shared().log()]);
    let proxy = Proxy::start(&shared().url()).await;
    (g, proxy, Rest::new(&shared().url()))
}

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, JobRef, NoObserver, PassRequest, RefOptions, TagKeys};
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::Moto;

fn tags(project: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MODEL_DB_SYNC", "true".into()),
        ("MODEL_DB_PROJECT_NAME", project.into()),
        ("MODEL_DB_PROJECT_USER", "tester".into()),
        ("MODEL_DB_PROJECT_DESC", "tuning".into()),
        ("MODEL_DB_MODEL_NAME", "xgb".into()),
        ("MODEL_DB_MODEL_TYPE", "XGBoost".into()),
    ]
}

fn engine(moto: &Moto, mlflow: &str) -> Engine {
    let mut s = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), "us-east-1").unlimited();
    s.tuning_jobs = true;
    Engine::builder()
        .source(SageMakerSource::new(s))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("mlflow", sink(mlflow, "tuning-{project}"))
        .build()
        .expect("engine")
}

/// A tuner `name` with children `{name}-c1..c3` (completed; c2 best) and `-f1`, `-f2`
/// (failed); the tuner tagged only when `tag_tuner`. Returns its ARN.
async fn seed(moto: &Moto, name: &str, project: &str, tag_tuner: bool) -> String {
    let t = tags(project);
    let t: Vec<(&str, &str)> = t.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let arn = moto.create_tuner(name, if tag_tuner { &t } else { &[] }).await;
    for (i, (child, v)) in [("c1", Some(0.81)), ("c2", Some(0.93)), ("c3", Some(0.77)), ("f1", None), ("f2", None)].into_iter().enumerate()
    {
        moto.create_child(&arn, &format!("{name}-{child}"), v, i as u32, &t).await;
    }
    arn
}

async fn by_tag(rest: &Rest, tag: &str, value: &str) -> Vec<Value> {
    let (_, exps) = rest.post("experiments/search", &json!({"max_results": 1000})).await;
    let ids: Vec<Value> = exps["experiments"].as_array().cloned().unwrap_or_default().iter().map(|e| e["experiment_id"].clone()).collect();
    let (s, v) = rest
        .post("runs/search", &json!({"experiment_ids": ids, "filter": format!("tags.`{tag}` = '{value}'"), "run_view_type": "ACTIVE_ONLY", "max_results": 1000}))
        .await;
    assert_eq!(s, 200, "{v}");
    v["runs"].as_array().cloned().unwrap_or_default()
}

/// The end state: one parent run, the completed children nested under it, the failed ones
/// absent. Returns the parent's run id.
async fn assert_nested(rest: &Rest, tuner_arn: &str, name: &str, best: f64, children: &[&str]) -> String {
    let family = by_tag(rest, "sagemaker.tuning_job_arn", tuner_arn).await;
    let parents: Vec<&Value> = family.iter().filter(|r| kv_str(r, "tags", "sagemaker.training_job_arn").is_none()).collect();
    assert_eq!(parents.len(), 1, "one parent run: {family:#?}");
    let parent = parents[0];
    let pid = parent["info"]["run_id"].as_str().expect("run id").to_string();
    assert_eq!(kv_str(parent, "params", "objective"), Some("binary:logistic"), "static hyperparameters");
    assert!(kv_str(parent, "params", "range.max_depth").is_some_and(|r| r.contains("\"MaxValue\":\"9\"")), "{parent:#}");
    let metric = kv(parent, "metrics", "validation:auc").and_then(Value::as_f64).expect("the best objective value");
    assert!((metric - best).abs() < 1e-6, "{metric}");
    let kids: Vec<&Value> = family.iter().filter(|r| kv_str(r, "tags", "sagemaker.training_job_arn").is_some()).collect();
    let mut names: Vec<String> = kids.iter().map(|r| r["info"]["run_name"].as_str().unwrap_or_default().to_string()).collect();
    names.sort();
    let mut want: Vec<String> = children.iter().map(|c| format!("{name}-{c}")).collect();
    want.sort();
    assert_eq!(names, want, "the completed children, once each");
    for k in kids {
        assert_eq!(kv_str(k, "tags", "mlflow.parentRunId"), Some(pid.as_str()), "nested: {k:#}");
    }
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_first_or_parent_first_end_nested_alike_and_a_rerun_writes_nothing() {
    let (_g, proxy, rest) = setup().await;
    let moto = Moto::start();
    let e = engine(&moto, &proxy.url);
    let opts = RefOptions { collect: true, ..Default::default() };
    let no = CancellationToken::new();
    let kids = |n: &str| ["c1", "c2", "c3", "f1", "f2"].iter().map(|c| JobRef::by_name(format!("{n}-{c}"))).collect::<Vec<_>>();
    // Children before their parent.
    let a = seed(&moto, "tuner-a", "tuning-order-a", true).await;
    let r = e.sync_refs(kids("tuner-a"), &opts, &no, &NoObserver).await;
    assert_eq!((r.synced, r.skipped + r.rejected), (3, 2), "{r:#?}");
    let r = e.sync_refs(vec![JobRef { name: "tuner-a".into(), arn: Some(a.clone()), ..Default::default() }], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    assert_nested(&rest, &a, "tuner-a", 0.93, &["c1", "c2", "c3"]).await;
    // The parent before its children (tagged only through them: it takes their project).
    let b = seed(&moto, "tuner-b", "tuning-order-b", false).await;
    // Still running: its children finish without moving its LastModifiedTime.
    moto.edit_tuner("tuner-b", json!({"HyperParameterTuningJobStatus": "InProgress", "HyperParameterTuningEndTime": null}));
    let r = e.sync_refs(vec![JobRef { name: "tuner-b".into(), arn: Some(b.clone()), ..Default::default() }], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "a parent syncs when a child would: {r:#?}");
    let r = e.sync_refs(kids("tuner-b"), &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 3, "{r:#?}");
    let pid_b = assert_nested(&rest, &b, "tuner-b", 0.93, &["c1", "c2", "c3"]).await;
    // A poll of everything afterwards writes nothing.
    proxy.clear();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert!(p.listing_error.is_none(), "{p:#?}");
    assert_eq!(proxy.writes().len(), 0, "a re-run writes nothing: {:?}", proxy.ops());
    // A sixth child of the running tuner, better than all: linked, the parent's metric
    // follows (the poll lists running tuners again), nothing else is written.
    moto.create_child(&b, "tuner-b-c6", Some(0.97), 10, &tags("tuning-order-b").iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
        .await;
    proxy.clear();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    let worked: BTreeSet<String> = p.jobs.iter().filter(|j| !j.receipts.is_empty()).map(|j| j.job.clone()).collect();
    assert_eq!(worked, ["tuner-b", "tuner-b-c6"].into_iter().map(String::from).collect(), "{p:#?}");
    assert_eq!(assert_nested(&rest, &b, "tuner-b", 0.97, &["c1", "c2", "c3", "c6"]).await, pid_b, "the same parent run");
}
