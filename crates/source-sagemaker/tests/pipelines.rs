//! SageMaker Pipelines executions from moto (the launcher serves the steps and paging moto
//! 5.2.5 lacks): an execution is listed after the training jobs with its own cursor, fetched
//! with its steps, and synced as the parent of the training jobs its steps ran; a training
//! job's dataset names the processing job (and step) that wrote it. Into the file sink.

use std::path::Path;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, JobRef, NoObserver, PassRequest, RefOptions, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::{Moto, SYNC_TAGS};
use serde_json::{json, Value};

fn settings(moto: &Moto, mode: Mode) -> SageMakerSettings {
    let mut s = SageMakerSettings::new(mode).endpoint(&moto.url(), "us-east-1").unlimited();
    s.pipeline_executions = true;
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

fn doc(out: &Path, run: &str) -> Value {
    let p = out.join("moto-project").join(format!("{run}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text).expect("json")["record"].clone()
}

/// Every document under `out`, by file, with its bytes.
fn snapshot(out: &Path) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for d in std::fs::read_dir(out).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if !f.file_name().to_string_lossy().starts_with('.') {
                m.insert(f.path().strip_prefix(out).unwrap().display().to_string(), std::fs::read_to_string(f.path()).unwrap());
            }
        }
    }
    m
}

/// A pipeline `pipeline` with one execution: a processing step writing
/// `s3://moto-data/train`, then a training step (`job`) that reads it (and a validation
/// channel no step wrote). Returns the execution's ARN.
async fn seed(moto: &Moto, pipeline: &str, job: &str) -> String {
    let exec = moto.start_execution(pipeline, &SYNC_TAGS).await;
    let prep = moto.create_processing_job(&format!("{job}-prep"), "train", "s3://moto-data/train").await;
    let train = moto.create_step_job(&exec, job, &SYNC_TAGS).await;
    moto.edit_execution(
        &exec,
        json!({"PipelineExecutionStatus": "Succeeded", "Steps": [
            {"StepName": "Train", "StepStatus": "Succeeded", "StartTime": "2026-11-01T10:10:00Z", "EndTime": "2026-11-01T10:40:00Z",
             "Metadata": {"TrainingJob": {"Arn": train}}},
            {"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": "2026-11-01T10:00:00Z", "EndTime": "2026-11-01T10:09:00Z",
             "Metadata": {"ProcessingJob": {"Arn": prep}}},
        ]}),
    );
    exec
}

fn execution_run(exec: &str) -> String {
    let (pipeline, id) = exec.split_once(":pipeline/").unwrap().1.split_once("/execution/").unwrap();
    format!("{pipeline}-{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_is_the_parent_and_a_dataset_names_its_processing_job() {
    let moto = Moto::start();
    let exec = seed(&moto, "prep-train", "pipe-train").await;
    for mode in [Mode::List, Mode::Search] {
        let out = tempfile::tempdir().expect("dir");
        let e = engine(SageMakerSource::new(settings(&moto, mode)), out.path());
        let no = CancellationToken::new();
        let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
        assert!(p.listing_error.is_none(), "{p:#?}");
        assert_eq!(p.synced, 2, "the training job and its execution ({mode:?}): {p:#?}");

        let run = execution_run(&exec);
        let parent = doc(out.path(), &run);
        assert_eq!(parent["kind"], "pipeline_execution");
        assert_eq!(parent["run"]["external_id"], exec.as_str());
        assert_eq!(parent["pipeline"]["pipeline_name"], "prep-train");
        assert_eq!(parent["pipeline"]["status"], "Succeeded");
        let steps: Vec<&str> = parent["pipeline"]["steps"].as_array().expect("steps").iter().filter_map(|s| s["name"].as_str()).collect();
        assert_eq!(steps, ["Prep", "Train"], "oldest first");
        assert_eq!(
            parent["children"].as_array().map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect::<Vec<_>>()),
            Some(vec!["pipe-train"])
        );

        let child = doc(out.path(), "pipe-train");
        assert_eq!(child["parent"], json!({"kind": "pipeline_execution", "arn": exec, "name": run}));
        let ds = child["datasets"].as_array().expect("datasets");
        let train = ds.iter().find(|d| d["name"] == "train").expect("train");
        assert_eq!(train["metadata"]["ProducedBy"], "pipe-train-prep", "{train}");
        assert_eq!(train["metadata"]["PipelineStep"], "Prep");
        assert_eq!(train["metadata"]["ProcessingOutput"], "train");
        let validation = ds.iter().find(|d| d["name"] == "validation").expect("validation");
        assert!(validation["metadata"].get("ProducedBy").is_none(), "no step wrote it: {validation}");

        // Nothing changed: nothing is written again.
        let again = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
        assert_eq!(again.jobs.iter().filter(|j| !j.receipts.is_empty()).count(), 0, "{again:#?}");
    }
}

/// The execution first (an event), then its job; and the job first, then the execution: the
/// same documents either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_of_arrival_does_not_matter() {
    let moto = Moto::start();
    let exec = seed(&moto, "order-pipe", "order-train").await;
    let opts = RefOptions { collect: true, ..Default::default() };
    let no = CancellationToken::new();
    let by_ref = |arn: &str| JobRef { name: arn.to_string(), arn: Some(arn.to_string()), ..Default::default() };
    let job_arn = "arn:aws:sagemaker:us-east-1:123456789012:training-job/order-train";

    let first = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), first.path());
    let r = e.sync_refs(vec![by_ref(&exec)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    let r = e.sync_refs(vec![by_ref(job_arn)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");

    let second = tempfile::tempdir().expect("dir");
    let e2 = engine(SageMakerSource::new(settings(&moto, Mode::List)), second.path());
    let r = e2.sync_refs(vec![by_ref(job_arn)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    let r = e2.sync_refs(vec![by_ref(&exec)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");

    let strip = |m: std::collections::BTreeMap<String, String>| -> Vec<(String, Value)> {
        m.into_iter()
            .map(|(k, v)| {
                let mut d: Value = serde_json::from_str(&v).unwrap();
                // When each was written differs; what was written does not.
                if let Some(o) = d.as_object_mut() {
                    o.retain(|k, _| k == "record");
                }
                (k, d)
            })
            .collect()
    };
    assert_eq!(strip(snapshot(first.path())), strip(snapshot(second.path())));
    // Re-syncs write nothing; after one poll has listed the execution with its start time, the
    // next does not read it again.
    let p = e2.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.jobs.iter().filter(|j| !j.receipts.is_empty()).count(), 0, "{p:#?}");
    let p = e2.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.api_calls.get("DescribePipelineExecution").copied().unwrap_or(0), 0, "{:?}", p.api_calls);
}

/// A training job that names an execution but whose source does not sync executions keeps the
/// record it had: no parent, no dataset lineage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pipeline_executions_a_job_is_on_its_own() {
    let moto = Moto::start();
    seed(&moto, "off-pipe", "off-train").await;
    let mut s = settings(&moto, Mode::List);
    s.pipeline_executions = false;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(s), out.path());
    let p = e.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
    assert_eq!(p.synced, 1, "the training job only: {p:#?}");
    let child = doc(out.path(), "off-train");
    assert!(child.get("parent").is_none(), "{child}");
    assert!(child["datasets"][0]["metadata"].get("ProducedBy").is_none());
}

/// What an execution costs in SageMaker requests (printed for the closing notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_pipeline_execution() {
    let moto = Moto::start();
    seed(&moto, "cost-pipe", "cost-train").await;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), out.path());
    let p = e.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
    assert_eq!(p.synced, 2, "{p:#?}");
    let total: u64 = p.api_calls.values().sum();
    println!(
        "FIGURE pipelines: a first sync of an execution with a processing and a training step takes {total} requests {:?}",
        p.api_calls
    );
    let idle = e.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
    let calls = idle.api_calls.clone();
    println!("FIGURE pipelines: an idle poll takes {} requests {calls:?}", calls.values().sum::<u64>());
    for op in ["DescribePipelineExecution", "ListPipelineExecutionSteps", "DescribeProcessingJob"] {
        assert_eq!(calls.get(op).copied().unwrap_or(0), 0, "a finished execution the ledger holds costs no {op}: {calls:?}");
    }
}

/// Audit: a kind the role may not list (ListPipelines refused for good) is reported on every
/// poll, and the other kinds are listed as always: a training job created later still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_that_cannot_be_listed_does_not_hold_the_others_back() {
    let moto = Moto::start();
    moto.create_jobs("first", 1, &SYNC_TAGS).await;
    moto.fail_operation("ListPipelines", Some("AccessDeniedException"));
    let out = tempfile::tempdir().expect("dir");
    let mut s = settings(&moto, Mode::List);
    s.tuning_jobs = true;
    let e = engine(SageMakerSource::new(s), out.path());
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 1, "{p:#?}");
    assert!(p.jobs.iter().any(|j| j.reason.as_deref().is_some_and(|r| r.contains("AccessDenied"))), "the refusal is reported: {p:#?}");
    moto.create_jobs("second", 1, &SYNC_TAGS).await;
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 1, "the training job created after the refusal: {p:#?}");
    assert!(out.path().join("moto-project/second-0000.json").exists());
    // Once allowed, the executions come.
    moto.fail_operation("ListPipelines", None);
    seed(&moto, "late-pipe", "late-train").await;
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 2, "the execution and its job: {p:#?}");
}

/// Audit: a pipeline with more executions than one ListPipelineExecutions page (100) has every
/// one listed, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_execution_of_a_busy_pipeline_is_listed() {
    use sagesync_core::{Cursor, ListScope, Source};
    let moto = Moto::start();
    let c = moto.client().await;
    moto.start_execution("busy-pipe", &SYNC_TAGS).await;
    for _ in 1..230 {
        c.start_pipeline_execution().pipeline_name("busy-pipe").send().await.expect("start");
    }
    let s = SageMakerSource::new(settings(&moto, Mode::List));
    let mut cursor = Cursor::default();
    let mut arns = std::collections::BTreeSet::new();
    let mut listed = 0;
    for _ in 0..50 {
        let p = s.list(&ListScope::Incremental, &cursor).await.expect("list");
        listed += p.jobs.iter().filter(|j| j.arn.as_deref().is_some_and(|a| a.contains("/execution/"))).count();
        arns.extend(p.jobs.iter().filter_map(|j| j.arn.clone()).filter(|a| a.contains("/execution/")));
        if p.done {
            break;
        }
        cursor = p.next;
    }
    assert_eq!((arns.len(), listed), (230, 230), "every execution, once");
    assert_eq!(s.api_calls().get("ListPipelineExecutions").copied(), Some(3), "{:?}", s.api_calls());
}

/// Audit: a failed execution retried to success (its start time unchanged) is read again and
/// its record follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_retried_to_success_is_synced() {
    let moto = Moto::start();
    let exec = seed(&moto, "retry-pipe", "retry-train").await;
    // (SageMaker moves an execution's LastModifiedTime with its status; moto does not.)
    let failed_at = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
    moto.edit_execution(
        &exec,
        json!({"PipelineExecutionStatus": "Failed", "PipelineExecutionFailureReason": "Step Train failed", "LastModifiedTime": failed_at}),
    );
    let out = tempfile::tempdir().expect("dir");
    let e = engine(SageMakerSource::new(settings(&moto, Mode::List)), out.path());
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    // Its training step completed: it syncs through it, as it stood.
    assert_eq!(doc(out.path(), &execution_run(&exec))["pipeline"]["status"], "Failed", "{p:#?}");
    let later = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    moto.edit_execution(
        &exec,
        json!({"PipelineExecutionStatus": "Succeeded", "PipelineExecutionFailureReason": null, "LastModifiedTime": later}),
    );
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(doc(out.path(), &execution_run(&exec))["pipeline"]["status"], "Succeeded", "{p:#?}");
}

/// Audit: an execution synced while it ran (its LastModifiedTime still its start) and then
/// succeeding is worked on again when it is listed finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_seen_running_is_synced_again_when_it_ends() {
    let moto = Moto::start();
    let exec = seed(&moto, "run-pipe", "run-train").await;
    moto.edit_execution(&exec, json!({"PipelineExecutionStatus": "Executing"}));
    let out = tempfile::tempdir().expect("dir");
    let mut s = settings(&moto, Mode::List);
    s.tuning_jobs = false;
    let e = engine(SageMakerSource::new(s), out.path());
    let no = CancellationToken::new();
    e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    assert_eq!(doc(out.path(), &execution_run(&exec))["pipeline"]["status"], "Executing");
    moto.edit_execution(&exec, json!({"PipelineExecutionStatus": "Succeeded"}));
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(doc(out.path(), &execution_run(&exec))["pipeline"]["status"], "Succeeded", "{p:#?}");
    let p = e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    assert_eq!(p.api_calls.get("DescribePipelineExecution").copied().unwrap_or(0), 0, "then known: {:?}", p.api_calls);
}
