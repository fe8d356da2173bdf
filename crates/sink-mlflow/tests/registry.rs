//! Issue 22: SageMaker model packages into MLflow's Model Registry, through the whole engine,
//! from moto (the launcher serves ListTags on packages) into a real MLflow server: one
//! registered model per package group, one version per package, its `run_id` the run of the
//! training job that made the model and its `source` the model data URL; an approval changes
//! the version's tag and moves the `approved` alias, never adds a version.

mod support;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, JobRef, NoObserver, Outcome, PassRequest, RefOptions, TagKeys};
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::mlflow::{shared, Proxy, Rest};
use sagesync_test_support::moto::Moto;
use sagesync_test_support::stderr::DumpOnPanic;
use serde_json::Value;
use support::records::sink;

async fn setup() -> (DumpOnPanic, Proxy, Rest) {
    let g = DumpOnPanic(vec![shared().log()]);
    let proxy = Proxy::start(&shared().url()).await;
    (g, proxy, Rest::new(&shared().url()))
}

fn tags(project: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MODEL_DB_SYNC", "true".into()),
        ("MODEL_DB_PROJECT_NAME", project.into()),
        ("MODEL_DB_PROJECT_USER", "tester".into()),
        ("MODEL_DB_PROJECT_DESC", "registry".into()),
        ("MODEL_DB_MODEL_NAME", "xgb".into()),
        ("MODEL_DB_MODEL_TYPE", "XGBoost".into()),
    ]
}

fn engine(moto: &Moto, mlflow: &str) -> Engine {
    let mut s = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), "us-east-1").unlimited();
    s.model_packages = true;
    Engine::builder()
        .source(SageMakerSource::new(s))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("mlflow", sink(mlflow, "registry-{project}"))
        .build()
        .expect("engine")
}

fn artifact(job: &str) -> String {
    format!("s3://moto-out/output/{job}/output/model.tar.gz")
}

async fn jobs(moto: &Moto, prefix: &str, n: usize, project: &str) -> Vec<String> {
    let t = tags(project);
    let t: Vec<(&str, &str)> = t.iter().map(|(k, v)| (*k, v.as_str())).collect();
    moto.create_jobs(prefix, n, &t).await
}

async fn versions(rest: &Rest, model: &str) -> Vec<Value> {
    let (status, v) = rest.get("model-versions/search", &[("filter", &format!("name='{model}'")), ("max_results", "100")]).await;
    assert_eq!(status, 200, "{v}");
    let mut all = v["model_versions"].as_array().cloned().unwrap_or_default();
    all.sort_by_key(|v| v["version"].as_str().and_then(|s| s.parse::<u64>().ok()));
    all
}

fn tag<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

async fn alias(rest: &Rest, model: &str) -> Option<String> {
    let (_, v) = rest.get("registered-models/get", &[("name", model)]).await;
    v["registered_model"]["aliases"].as_array()?.iter().find(|a| a["alias"] == "approved")?["version"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_become_versions_of_their_groups_model_linked_to_the_jobs_runs() {
    let (_g, proxy, rest) = setup().await;
    let moto = Moto::start();
    let jobs = jobs(&moto, "regj", 3, "regp").await;
    let group = "churn-registry";
    let mut arns = Vec::new();
    for (job, approval) in jobs.iter().zip(["Approved", "PendingManualApproval", "Rejected"]) {
        arns.push(moto.create_package(group, &artifact(job), approval).await);
    }
    let e = engine(&moto, &proxy.url);
    let no = CancellationToken::new();
    proxy.clear();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 6, "3 jobs, 3 packages: {p:#?}");
    let registry_ops = proxy.ops().into_iter().filter(|o| o.starts_with("registered-models/") || o.starts_with("model-versions/")).count();
    let sm: u64 = ["ListModelPackageGroups", "ListModelPackages", "DescribeModelPackage"]
        .iter()
        .map(|o| p.api_calls.get(*o).copied().unwrap_or(0))
        .sum();
    println!(
        "FIGURE registry: 3 packages of one group took {sm} package reads {:?} (plus a ListTags each for group and package, and a DescribeTrainingJob for the link) and {registry_ops} MLflow registry requests",
        p.api_calls
    );
    let vs = versions(&rest, group).await;
    assert_eq!(vs.len(), 3, "{vs:#?}");
    // MLflow numbers versions as they were written; each is found by its package's ARN.
    let of = |vs: &[Value], arn: &str| vs.iter().find(|v| tag(v, "sagemaker.model_package_arn") == Some(arn)).cloned().expect("version");
    for (job, (arn, approval)) in jobs.iter().zip(arns.iter().zip(["Approved", "PendingManualApproval", "Rejected"])) {
        let v = &of(&vs, arn);
        let runs = rest.runs_of(&format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"), "ACTIVE_ONLY").await;
        assert_eq!(runs.len(), 1);
        assert_eq!(v["run_id"], runs[0]["info"]["run_id"], "the run of the job that made the model: {v}");
        assert_eq!(v["source"], artifact(job).as_str());
        assert_eq!(tag(v, "sagemaker.model_package_arn"), Some(arn.as_str()));
        assert_eq!(tag(v, "sagemaker.approval_status"), Some(approval));
    }
    let mlflow_version = |v: Value| v["version"].as_str().map(str::to_string);
    assert_eq!(alias(&rest, group).await, mlflow_version(of(&vs, &arns[0])), "the approved alias on the approved version");

    // A re-run writes nothing.
    proxy.clear();
    e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    assert!(proxy.writes().is_empty(), "{:?}", proxy.ops());

    // The pending version approved in SageMaker: its tag changes, the alias moves to it (the
    // newest approved), and no version is added.
    let c = moto.client().await;
    c.update_model_package()
        .model_package_arn(&arns[1])
        .model_approval_status(aws_sdk_sagemaker::types::ModelApprovalStatus::Approved)
        .send()
        .await
        .expect("approve");
    proxy.clear();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    let vs = versions(&rest, group).await;
    assert_eq!(vs.len(), 3, "no version added: {vs:#?}");
    assert_eq!(tag(&of(&vs, &arns[1]), "sagemaker.approval_status"), Some("Approved"), "{p:#?}");
    assert_eq!(alias(&rest, group).await, mlflow_version(of(&vs, &arns[1])), "the alias follows the newest approved package");
    assert!(!proxy.ops().iter().any(|o| o == "model-versions/create"), "{:?}", proxy.ops());
    let writes: Vec<String> = proxy.writes().iter().map(|w| w.op().to_string()).collect();
    println!("FIGURE registry: an approval costs MLflow writes {writes:?}");

    // The approved package's job loses its opt-in tag: the package, which follows it, is
    // retracted (its version deleted), and the alias settles on the newest approved one left.
    let job0 = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", jobs[1]);
    c.delete_tags().resource_arn(&job0).tag_keys("MODEL_DB_SYNC").send().await.expect("DeleteTags");
    let force = RefOptions { collect: true, force: true, ..Default::default() };
    let by_arn = |a: &str| JobRef { name: a.to_string(), arn: Some(a.to_string()), ..Default::default() };
    let r = e.sync_refs(vec![by_arn(&arns[1])], &force, &no, &NoObserver).await;
    let vs = versions(&rest, group).await;
    assert!(vs.iter().all(|v| tag(v, "sagemaker.model_package_arn") != Some(arns[1].as_str())), "retracted: {r:#?}\n{vs:#?}");
    assert_eq!(alias(&rest, group).await, mlflow_version(of(&vs, &arns[0])), "back on the approved package left");
}

/// A package that syncs before its training job waits for the job's run (retried, never
/// parked), and is linked when the job has synced; two processes at once make one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_waits_for_its_jobs_run_and_two_writers_make_one_version() {
    let (_g, proxy, rest) = setup().await;
    let moto = Moto::start();
    let jobs = jobs(&moto, "waitj", 1, "waitp").await;
    let group = "wait-registry";
    let arn = moto.create_package(group, &artifact(&jobs[0]), "Approved").await;
    let job_arn = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", jobs[0]);
    let opts = RefOptions { collect: true, ..Default::default() };
    let no = CancellationToken::new();
    let by_arn = |a: &str| JobRef { name: a.to_string(), arn: Some(a.to_string()), ..Default::default() };
    let (e1, e2) = (engine(&moto, &proxy.url), engine(&moto, &proxy.url));
    let r = e1.sync_refs(vec![by_arn(&arn)], &opts, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(arn.as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Failed, "{r:#?}");
    assert!(j.retryable && !j.parked, "waiting is no verdict: {j:#?}");
    assert!(versions(&rest, group).await.is_empty(), "no version before the job's run");
    let r = e1.sync_refs(vec![by_arn(&job_arn)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    // Two writers (two ledgers: two processes) at once.
    let urgent = RefOptions { collect: true, urgent: true, ..Default::default() };
    let (a, b) = tokio::join!(
        e1.sync_refs(vec![by_arn(&arn)], &urgent, &no, &NoObserver),
        e2.sync_refs(vec![by_arn(&arn)], &urgent, &no, &NoObserver)
    );
    assert_eq!((a.synced, b.synced), (1, 1), "{a:#?}\n{b:#?}");
    let vs = versions(&rest, group).await;
    assert_eq!(vs.len(), 1, "one version per package: {vs:#?}");
    let runs = rest.runs_of(&job_arn, "ACTIVE_ONLY").await;
    assert_eq!(vs[0]["run_id"], runs[0]["info"]["run_id"], "linked once the job synced");
}

/// Issue 23: two accounts (the second through an assumed role on moto's STS) with jobs of the
/// same names, into MLflow: one run per ARN, the namesakes apart; a re-run writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_two_accounts_with_the_same_names_are_two_runs() {
    let (_g, proxy, rest) = setup().await;
    let moto = Moto::start();
    let role = "arn:aws:iam::111111111111:role/sagesync-reader";
    let t = tags("accounts-p");
    let t: Vec<(&str, &str)> = t.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let own = moto.create_jobs_in(None, "us-east-1", "acct-same", 2, &t).await;
    let member = moto.create_jobs_in(Some(role), "us-east-1", "acct-same", 2, &t).await;
    assert_eq!(own, member, "the same names in both accounts");
    let config: sagesync_source_sagemaker::api::SageMakerSourceConfig = toml::from_str(&format!(
        "region = \"us-east-1\"\nendpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\nmax_requests_per_second = 0\nresources = [\"training_jobs\"]\n[[accounts]]\nrole_arn = \"{role}\"\n",
        url = moto.url()
    ))
    .expect("config");
    let source = sagesync_source_sagemaker::api::PairedSource::new(config.pairs().expect("pairs"), 4);
    let e = Engine::builder()
        .source(source)
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("mlflow", sink(&proxy.url, "accounts-{project}"))
        .build()
        .expect("engine");
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 4, "{p:#?}");
    for (account, name) in
        [("123456789012", &own[0]), ("123456789012", &own[1]), ("111111111111", &member[0]), ("111111111111", &member[1])]
    {
        let arn = format!("arn:aws:sagemaker:us-east-1:{account}:training-job/{name}");
        let runs = rest.runs_of(&arn, "ACTIVE_ONLY").await;
        assert_eq!(runs.len(), 1, "one run for {arn}: {runs:#?}");
    }
    proxy.clear();
    let again = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(again.synced, 0, "{again:#?}");
    assert!(proxy.writes().is_empty(), "{:?}", proxy.ops());
}
