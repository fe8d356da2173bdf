//! Tuning jobs from moto (the launcher serves what moto 5.2.5 lacks): a tuner is listed after
//! the training jobs with its own cursor, fetched with its children, and synced as a parent run;
//! each child names its tuner and where it stands against the objective. Into the file sink.

use std::path::Path;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Cursor, Engine, JobRef, ListScope, NoObserver, PassRequest, Source, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::{Moto, SYNC_TAGS};
use serde_json::Value;

fn settings(moto: &Moto, mode: Mode) -> SageMakerSettings {
    let mut s = SageMakerSettings::new(mode).endpoint(&moto.url(), "us-east-1").unlimited();
    s.tuning_jobs = true;
    s
}

fn engine(source: SageMakerSource, out: &Path) -> Engine {
    Engine::builder()
        .source(source)
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("file", FileSink::new(out))
        .build()
        .expect("engine")
}

/// A tuner with `n` children: `n - 2` completed (values rising, the last the best) and two
/// failed; tagged on the tuner when `tag_tuner`, on every child when `tag_children`.
async fn seed(moto: &Moto, name: &str, n: u32, tag_tuner: bool, tag_children: bool) -> String {
    let arn = moto.create_tuner(name, if tag_tuner { &SYNC_TAGS } else { &[] }).await;
    for i in 0..n {
        let value = (i + 2 < n).then(|| 0.5 + f64::from(i) / 100.0);
        let child = if value.is_some() { format!("{name}-c{i}") } else { format!("{name}-f{i}") };
        moto.create_child(&arn, &child, value, i, if tag_children { &SYNC_TAGS } else { &[] }).await;
    }
    arn
}

fn doc(out: &Path, run: &str) -> Value {
    let p = out.join("moto-project").join(format!("{run}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text).expect("json")["record"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuner_and_its_children_sync_as_a_parent_and_linked_children() {
    let moto = Moto::start();
    let arn = seed(&moto, "tuner-f", 5, true, true).await;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), out.path());
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert!(p.listing_error.is_none(), "{p:#?}");
    assert_eq!(
        (p.synced, p.skipped + p.rejected),
        (4, 2),
        "3 children and the parent; the failed ones as the status validator says: {p:#?}"
    );

    let parent = doc(out.path(), "tuner-f");
    assert_eq!(parent["kind"], "tuning_job");
    assert_eq!(parent["run"]["external_id"], arn.as_str());
    assert_eq!(parent["tuning"]["strategy"], "Bayesian");
    assert_eq!(parent["tuning"]["objective"], serde_json::json!({"metric": "validation:auc", "type": "Maximize"}));
    assert_eq!(parent["tuning"]["best"]["name"], "tuner-f-c2");
    assert_eq!(parent["tuning"]["status_counts"]["Completed"], 3);
    assert_eq!(parent["tuning"]["status_counts"]["NonRetryableError"], 2);
    assert_eq!(parent["tuning"]["objective_counts"]["Failed"], 2);
    assert_eq!(parent["hyperparameters"][0]["name"], "objective", "the static hyperparameters");
    assert_eq!(parent["metrics"][0]["name"], "validation:auc", "the best objective value");
    assert!((parent["metrics"][0]["value"].as_f64().unwrap_or(0.0) - 0.52).abs() < 1e-6);
    let children: Vec<&str> = parent["children"].as_array().expect("children").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(children, ["tuner-f-c0", "tuner-f-c1", "tuner-f-c2", "tuner-f-f3", "tuner-f-f4"], "every child, oldest first");
    assert!(parent.get("parent").is_none());

    let child = doc(out.path(), "tuner-f-c1");
    assert_eq!(child["parent"], serde_json::json!({"kind": "tuning_job", "arn": arn, "name": "tuner-f"}));
    assert_eq!(child["objective"]["status"], "Succeeded");
    assert!((child["objective"]["value"].as_f64().unwrap_or(0.0) - 0.51).abs() < 1e-6);
    assert!(child.get("kind").is_none(), "a training job's document keeps its shape");

    // Nothing changed: nothing is written again.
    let again = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(again.jobs.iter().filter(|j| !j.receipts.is_empty()).count(), 0, "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_syncs_through_an_eligible_child_and_not_without_one() {
    let moto = Moto::start();
    let through = seed(&moto, "tuner-k", 3, false, true).await;
    let lone = seed(&moto, "tuner-z", 3, false, false).await;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), out.path());
    let opts = sagesync_core::RefOptions { collect: true, ..Default::default() };
    let r = e
        .sync_refs(
            vec![
                JobRef { name: "tuner-k".into(), arn: Some(through.clone()), ..Default::default() },
                JobRef { name: "tuner-z".into(), arn: Some(lone), ..Default::default() },
            ],
            &opts,
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    let by: std::collections::BTreeMap<&str, &sagesync_core::JobReport> = r.jobs.iter().map(|j| (j.job.as_str(), j)).collect();
    assert_eq!(by["tuner-k"].outcome, sagesync_core::Outcome::Synced, "{r:#?}");
    assert_ne!(by["tuner-z"].outcome, sagesync_core::Outcome::Synced, "no child would sync: {r:#?}");
    let parent = doc(out.path(), "tuner-k");
    assert_eq!(parent["project"]["name"], "moto-project", "the project of its first eligible child");
}

/// What a tuner costs in SageMaker requests, by number of children, in both modes (printed for
/// the closing notes; the assertions hold what is fixed by design).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_tuning_job() {
    for n in [5u32, 50] {
        for mode in [Mode::List, Mode::Search] {
            let moto = Moto::start();
            let arn = seed(&moto, "tuner-n", n, true, true).await;
            let s = SageMakerSource::new(settings(&moto, mode));
            // The listing: every training job, then the tuners.
            let mut c = Cursor::default();
            let mut tuners = Vec::new();
            loop {
                let p = s.list(&ListScope::Incremental, &c).await.expect("list");
                tuners.extend(p.jobs.into_iter().filter(|j| j.arn.as_deref() == Some(arn.as_str())));
                if p.done {
                    break;
                }
                c = p.next;
            }
            assert_eq!(tuners.len(), 1, "the tuner is listed once");
            let listed = s.api_calls();
            let before: u64 = listed.values().sum();
            let job = s.fetch(&tuners[0]).await.expect("fetch");
            assert_eq!(job.lineage.children.len(), n as usize);
            let calls = s.api_calls();
            let per_tuner: u64 = calls.values().sum::<u64>() - before;
            let child = s.fetch(&JobRef::by_name("tuner-n-c0")).await.expect("child");
            assert_eq!(child.lineage.objective.as_ref().map(|o| o.status.as_str()), Some("Succeeded"));
            assert_eq!(per_tuner, 2 + u64::from(n.div_ceil(100)), "Describe, ListTags and a page of children per 100");
            // The whole first sync of the tuner and its children, through the engine.
            let out = tempfile::tempdir().expect("dir");
            let e = engine(SageMakerSource::new(settings(&moto, mode)), out.path());
            let p = e.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
            assert_eq!(p.synced, n as usize - 1, "{p:#?}");
            let total: u64 = p.api_calls.values().sum();
            println!("FIGURE tuning n={n} mode={mode:?}: a first sync of the tuner and its children takes {total} requests {:?}; fetching the tuner alone {per_tuner}", p.api_calls);
        }
    }
}

/// A running tuner is decided again on every poll, its children's tags included: tagging a child
/// later brings the tuner in (through that child), and untagging its last eligible child
/// retracts it, though neither moves the tuner's own time or content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tuner_follows_its_childrens_tags() {
    use aws_sdk_sagemaker::types::Tag;
    let moto = Moto::start();
    let arn = seed(&moto, "tuner-r", 3, false, false).await;
    moto.edit_tuner("tuner-r", serde_json::json!({"HyperParameterTuningJobStatus": "InProgress", "HyperParameterTuningEndTime": null}));
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), out.path());
    let no = CancellationToken::new();
    let req = PassRequest::poll().collecting();
    let poll = || e.pass(&req, &no, &NoObserver);
    let p = poll().await;
    assert_eq!(p.synced, 0, "nothing is tagged: {p:#?}");
    let parent_doc = out.path().join("moto-project/tuner-r.json");
    let c = moto.client().await;
    let child_arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/tuner-r-c0";
    let mut add = c.add_tags().resource_arn(child_arn);
    for (k, v) in SYNC_TAGS {
        add = add.tags(Tag::builder().key(k).value(v).build());
    }
    add.send().await.expect("AddTags");
    // (The child's own listing needs its time to move; the tuner's does not.)
    let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).timestamp();
    moto.edit("tuner-r-c0", serde_json::json!({"LastModifiedTime": later}));
    let p = poll().await;
    assert_eq!(p.synced, 2, "the child, and its tuner through it: {p:#?}");
    assert_eq!(doc(out.path(), "tuner-r")["run"]["external_id"], arn.as_str());
    c.delete_tags().resource_arn(child_arn).tag_keys("MODEL_DB_SYNC").send().await.expect("DeleteTags");
    moto.edit("tuner-r-c0", serde_json::json!({"LastModifiedTime": later + 30}));
    let p = poll().await;
    assert!(!parent_doc.exists(), "no eligible child left: the tuner is retracted: {p:#?}");
    assert!(!out.path().join("moto-project/tuner-r-c0.json").exists());
}
