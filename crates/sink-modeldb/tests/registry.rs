//! Issue 22: SageMaker model packages into ModelDB, through the whole engine from moto. ModelDB
//! v2: the registry service (one registered model per group, one version per package, linked to
//! the run of the training job that made the model), against the fake, every request checked
//! against the published specs, the registry's included. ModelDB v1: a model entry on the
//! job's run, its approval status in the model's metadata, against the Thrift peer.

use std::time::Duration;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, JobRef, NoObserver, Outcome, PassRequest, RefOptions, Sink, TagKeys};
use sagesync_sink_modeldb::v1::{ModelDbV1Settings, ModelDbV1Sink};
use sagesync_sink_modeldb::v2::{ApiSettings, ModelDbV2Settings, ModelDbV2Sink, OnConflict};
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::modeldb_v2::Fake;
use sagesync_test_support::moto::{Moto, SYNC_TAGS};
use sagesync_test_support::swagger::Spec;
use serde_json::Value;

const ACCOUNT: &str = "arn:aws:sagemaker:us-east-1:123456789012";

fn engine(moto: &Moto, sink: impl Sink + 'static) -> Engine {
    let mut s = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), "us-east-1").unlimited();
    s.model_packages = true;
    Engine::builder()
        .source(SageMakerSource::new(s))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("store", sink)
        .build()
        .expect("engine")
}

fn v2(fake: &Fake, wait: Duration) -> ModelDbV2Sink {
    ModelDbV2Sink::new(ModelDbV2Settings {
        api: ApiSettings {
            base_url: fake.base_url.clone(),
            api_prefix: "/api/v1/modeldb".into(),
            email: None,
            developer_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ca_file: None,
        },
        experiment: None,
        on_conflict: OnConflict::Keep,
        dataset_versions: false,
        registry_workspace: "personal".into(),
        registry_api_prefix: "/api/v1/registry".into(),
        package_link_wait: wait,
    })
    .expect("sink")
}

fn v1(peer: &Peer, compat: bool) -> ModelDbV1Sink {
    ModelDbV1Sink::new(ModelDbV1Settings {
        host: "127.0.0.1".into(),
        port: peer.port,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        compat,
        package_link_wait: Duration::from_secs(3600),
    })
}

fn artifact(job: &str) -> String {
    format!("s3://moto-out/output/{job}/output/model.tar.gz")
}

fn by_arn(a: &str) -> JobRef {
    JobRef { name: a.to_string(), arn: Some(a.to_string()), ..Default::default() }
}

fn assert_conformant(fake: &Fake) {
    let spec = Spec::load();
    let mut problems = Vec::new();
    for r in fake.requests() {
        assert!(spec.covers(&r.path), "request outside the spec: {} {}", r.method, r.path);
        problems.extend(spec.check(&r));
    }
    assert!(problems.is_empty(), "non-conformant requests:\n{}", problems.join("\n"));
}

fn versions(fake: &Fake) -> Vec<Value> {
    let mut vs = fake.with(|s| s.model_versions.clone());
    vs.sort_by_key(|v| v["version"].as_str().and_then(|x| x.parse::<u64>().ok()));
    vs
}

fn labels(v: &Value) -> Vec<&str> {
    v["labels"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_become_registry_versions_linked_to_their_jobs_runs_in_modeldb_v2() {
    let moto = Moto::start();
    let fake = Fake::start().await;
    let jobs = moto.create_jobs("v2reg", 3, &SYNC_TAGS).await;
    let approvals = ["Approved", "PendingManualApproval", "Rejected"];
    let mut arns = Vec::new();
    for (job, approval) in jobs.iter().zip(approvals) {
        arns.push(moto.create_package("churn-v2", &artifact(job), approval).await);
    }
    let e = engine(&moto, v2(&fake, Duration::from_secs(3600)));
    let no = CancellationToken::new();
    // The jobs first, so that the packages' requests are counted alone.
    let job_refs: Vec<JobRef> = jobs.iter().map(|j| by_arn(&format!("{ACCOUNT}:training-job/{j}"))).collect();
    let opts = RefOptions { collect: true, ..Default::default() };
    let r = e.sync_refs(job_refs, &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 3, "{r:#?}");
    fake.clear_requests();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 3, "the 3 packages (the jobs already synced): {p:#?}");
    let reqs = fake.requests();
    let sm: u64 = ["ListModelPackageGroups", "ListModelPackages", "DescribeModelPackage", "ListTags", "DescribeTrainingJob", "Search"]
        .iter()
        .map(|o| p.api_calls.get(*o).copied().unwrap_or(0))
        .sum();
    println!(
        "FIGURE modeldb_v2 registry: 3 new packages of one group: {} ModelDB v2 requests ({} writes), {:.1} per package; SageMaker {:?} ({sm} package-related calls)",
        reqs.len(),
        fake.writes().len(),
        reqs.len() as f64 / 3.0,
        p.api_calls
    );
    let models = fake.with(|s| s.registered_models.clone());
    assert_eq!(models.len(), 1, "{models:#?}");
    assert_eq!(models[0]["name"], "churn-v2");
    let vs = versions(&fake);
    assert_eq!(vs.len(), 3, "{vs:#?}");
    for (i, (job, approval)) in jobs.iter().zip(approvals).enumerate() {
        let v = &vs[i];
        let run = fake.with(|s| s.run_by_name(job).cloned()).expect("the job's run");
        assert_eq!(v["version"], (i + 1).to_string(), "named by the package's version");
        assert_eq!(v["experiment_run_id"], run["id"], "linked to the run of the job that made the model: {v}");
        assert_eq!(v["model"]["path"], artifact(job).as_str());
        assert!(labels(v).contains(&format!("approval:{approval}").as_str()), "{v}");
        assert!(v["description"].as_str().unwrap_or("").contains(arns[i].as_str()), "the package's ARN names it: {v}");
        assert!(v["readme_text"].as_str().unwrap_or("").contains("Metadata team: churn"), "{v}");
    }
    assert_conformant(&fake);

    // A re-run writes nothing (and sends nothing: the packages' listing times are unchanged).
    fake.clear_requests();
    e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    assert!(fake.requests().is_empty(), "{:?}", fake.requests().iter().map(|w| &w.path).collect::<Vec<_>>());

    // The pending package approved in SageMaker: its labels change, no version is added.
    moto.approve_package(&arns[1], "Approved", Some("reviewed")).await;
    fake.clear_requests();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    let vs = versions(&fake);
    assert_eq!(vs.len(), 3, "no version added: {p:#?}");
    assert_eq!(labels(&vs[1]), ["approval:Approved", "sagemaker"]);
    assert!(vs[1]["readme_text"].as_str().unwrap_or("").contains("Approval description: reviewed"));
    let writes: Vec<String> =
        fake.writes().iter().filter(|w| !w.path.ends_with("/find")).map(|w| format!("{} {}", w.method, w.path)).collect();
    assert_eq!(writes.len(), 1, "one update: {writes:?}");
    assert!(writes[0].starts_with("PUT /registered_models/"), "{writes:?}");
    println!("FIGURE modeldb_v2 registry: an approval costs {} requests, writes {writes:?}", fake.requests().len());
    assert_conformant(&fake);

    // The rejected package deleted in SageMaker: its version is deleted (on_ineligible retract).
    moto.delete_package(&arns[2]).await;
    let force = RefOptions { collect: true, force: true, ..Default::default() };
    let r = e.sync_refs(vec![by_arn(&arns[2])], &force, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(arns[2].as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Skipped, "{r:#?}");
    assert!(j.reason.as_deref().unwrap_or("").contains("deleted in the source"), "{j:#?}");
    let vs = versions(&fake);
    assert_eq!(vs.len(), 2, "the deleted package's version is gone: {vs:#?}");
    assert!(vs.iter().all(|v| !v["description"].as_str().unwrap_or("").contains(arns[2].as_str())));
    assert_conformant(&fake);
}

/// A package that syncs before its job waits (retried, never parked), then is linked; two
/// writers at once make one version; a server without the registry service is a setup failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_package_waits_for_its_jobs_run_and_two_writers_make_one_version() {
    let moto = Moto::start();
    let fake = Fake::start().await;
    let jobs = moto.create_jobs("v2wait", 1, &SYNC_TAGS).await;
    let arn = moto.create_package("wait-v2", &artifact(&jobs[0]), "Approved").await;
    let job_arn = format!("{ACCOUNT}:training-job/{}", jobs[0]);
    let no = CancellationToken::new();
    let opts = RefOptions { collect: true, ..Default::default() };
    let (e1, e2) = (engine(&moto, v2(&fake, Duration::from_secs(3600))), engine(&moto, v2(&fake, Duration::from_secs(3600))));

    fake.with(|s| s.no_registry = true);
    let r = e1.sync_refs(vec![by_arn(&job_arn)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    let r = e1.sync_refs(vec![by_arn(&arn)], &opts, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(arn.as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Failed, "{r:#?}");
    assert!(!j.parked && j.reason.as_deref().unwrap_or("").contains("serves no registry service"), "a setup failure: {j:#?}");
    fake.with(|s| s.no_registry = false);

    // A package whose job has no run yet (another group, a job not synced yet) waits.
    let late = moto.create_jobs("v2late", 1, &SYNC_TAGS).await;
    let late_pkg = moto.create_package("wait-v2", &artifact(&late[0]), "Approved").await;
    let r = e1.sync_refs(vec![by_arn(&late_pkg)], &opts, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(late_pkg.as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Failed, "{r:#?}");
    assert!(j.retryable && !j.parked, "waiting is no verdict: {j:#?}");
    assert!(versions(&fake).is_empty(), "no version before the job's run");
    let r = e1.sync_refs(vec![by_arn(&format!("{ACCOUNT}:training-job/{}", late[0]))], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");

    // Two writers (two ledgers: two processes) at once, on both packages; and a race the
    // server loses on the version's name.
    fake.with(|s| s.race_create_version = true);
    let urgent = RefOptions { collect: true, urgent: true, ..Default::default() };
    let (a, b) = tokio::join!(
        e1.sync_refs(vec![by_arn(&arn), by_arn(&late_pkg)], &urgent, &no, &NoObserver),
        e2.sync_refs(vec![by_arn(&arn), by_arn(&late_pkg)], &urgent, &no, &NoObserver)
    );
    assert_eq!((a.synced, b.synced), (2, 2), "{a:#?}\n{b:#?}");
    let vs = versions(&fake);
    assert_eq!(vs.len(), 2, "one version per package: {vs:#?}");
    let late_run = fake.with(|s| s.run_by_name(&late[0]).cloned()).expect("run");
    let v = vs.iter().find(|v| v["description"].as_str().unwrap_or("").contains(late_pkg.as_str())).expect("version");
    assert_eq!(v["experiment_run_id"], late_run["id"], "linked once the job synced");
    assert_eq!(fake.with(|s| s.registered_models.len()), 1);
    assert_conformant(&fake);
}

fn package_models(peer: &Peer) -> Vec<(Value, Value)> {
    let st = peer.state();
    let meta = st["metadata"].as_object().cloned().unwrap_or_default();
    st["fit_events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let doc = meta.get(&f["model"].to_string())?.clone();
            doc.get("sagemaker_model_package_arn").is_some().then_some((f, doc))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_become_model_entries_on_their_jobs_runs_in_modeldb_v1() {
    let moto = Moto::start();
    let peer = Peer::start(&[]);
    let jobs = moto.create_jobs("v1reg", 2, &SYNC_TAGS).await;
    let mut arns = Vec::new();
    for (job, approval) in jobs.iter().zip(["Approved", "PendingManualApproval"]) {
        arns.push(moto.create_package("churn-v1", &artifact(job), approval).await);
    }
    let e = engine(&moto, v1(&peer, false));
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 4, "2 jobs, 2 packages: {p:#?}");
    let st = peer.state();
    let runs = st["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 2, "no run of the packages' own: {runs:#?}");
    let models = package_models(&peer);
    assert_eq!(models.len(), 2, "{models:#?}");
    for (job, (arn, approval)) in jobs.iter().zip(arns.iter().zip(["Approved", "PendingManualApproval"])) {
        let (fit, doc) = models.iter().find(|(_, d)| d["sagemaker_model_package_arn"] == arn.as_str()).expect("the package's model");
        let run = runs.iter().find(|r| r["description"].as_str().unwrap_or("").contains(&format!("training-job/{job})"))).expect("run");
        assert_eq!(fit["experimentRun"], run["id"], "on the run of the job that made the model");
        assert_eq!(doc["approval_status"], approval);
        assert_eq!(doc["model_data_url"], artifact(job).as_str());
    }

    // A re-run writes nothing; an approval sets one field of the same model.
    let calls = peer.methods().len();
    e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    assert!(
        peer.methods()[calls..].iter().all(|m| !m.starts_with("store") && m != "createOrUpdateScalarField"),
        "{:?}",
        &peer.methods()[calls..]
    );
    moto.approve_package(&arns[1], "Approved", None).await;
    let calls = peer.methods().len();
    e.pass(&PassRequest::poll(), &no, &NoObserver).await;
    let sent: Vec<String> = peer.methods()[calls..].to_vec();
    println!("FIGURE modeldb_v1 registry: an approval costs {} Thrift calls: {sent:?}", sent.len());
    assert!(!sent.iter().any(|m| m == "storeFitEvent"), "no second model: {sent:?}");
    // The approval status, and the package's modification time with it.
    assert_eq!(sent.iter().filter(|m| *m == "createOrUpdateScalarField").count(), 2, "{sent:?}");
    let models = package_models(&peer);
    assert_eq!(models.len(), 2);
    assert!(models.iter().all(|(_, d)| d["approval_status"] == "Approved"), "{models:#?}");

    // The job's own model stays the job's: a re-sync of the job writes nothing.
    let calls = peer.methods().len();
    let force = RefOptions { collect: true, force: true, ..Default::default() };
    let r = e.sync_refs(vec![by_arn(&format!("{ACCOUNT}:training-job/{}", jobs[0]))], &force, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");
    assert!(
        peer.methods()[calls..].iter().all(|m| !m.starts_with("store") || m == "storeProjectEvent" || m == "storeExperimentEvent"),
        "{:?}",
        &peer.methods()[calls..]
    );

    // Deleted in SageMaker: the Light API deletes nothing; the model is marked retracted.
    moto.delete_package(&arns[0]).await;
    let r = e.sync_refs(vec![by_arn(&arns[0])], &force, &no, &NoObserver).await;
    assert!(r.jobs.iter().any(|j| j.outcome == Outcome::Skipped), "{r:#?}");
    let models = package_models(&peer);
    let (_, doc) = models.iter().find(|(_, d)| d["sagemaker_model_package_arn"] == arns[0].as_str()).expect("kept");
    assert_eq!(doc["sagemaker_package_state"], "Retracted", "{doc}");

    // Compat mode records no packages: a setup failure, never a verdict.
    let c = engine(&moto, v1(&peer, true));
    let pkg = moto.create_package("churn-v1", &artifact(&jobs[1]), "Approved").await;
    let r = c.sync_refs(vec![by_arn(&pkg)], &RefOptions { collect: true, ..Default::default() }, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(pkg.as_str())).expect("report");
    assert!(j.outcome == Outcome::Failed && !j.parked, "{j:#?}");
}

/// v1: a package that syncs before its job waits (retried, never parked), then is a model on
/// the job's run; two writers with ledgers of their own at once leave one model of the
/// package (the lowest; another is marked a duplicate), and a re-sync adds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_package_waits_for_its_jobs_run_and_two_writers_leave_one_model() {
    let moto = Moto::start();
    let peer = Peer::start(&[]);
    let jobs = moto.create_jobs("v1wait", 1, &SYNC_TAGS).await;
    let pkg = moto.create_package("wait-v1", &artifact(&jobs[0]), "Approved").await;
    let job_arn = format!("{ACCOUNT}:training-job/{}", jobs[0]);
    let no = CancellationToken::new();
    let opts = RefOptions { collect: true, ..Default::default() };
    let (e1, e2) = (engine(&moto, v1(&peer, false)), engine(&moto, v1(&peer, false)));
    let r = e1.sync_refs(vec![by_arn(&pkg)], &opts, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(pkg.as_str())).expect("report");
    assert!(j.outcome == Outcome::Failed && j.retryable && !j.parked, "waiting is no verdict: {j:#?}");
    assert!(package_models(&peer).is_empty(), "no model before the job's run");
    let r = e1.sync_refs(vec![by_arn(&job_arn)], &opts, &no, &NoObserver).await;
    assert_eq!(r.synced, 1, "{r:#?}");

    let urgent = RefOptions { collect: true, urgent: true, ..Default::default() };
    let (a, b) = tokio::join!(
        e1.sync_refs(vec![by_arn(&pkg)], &urgent, &no, &NoObserver),
        e2.sync_refs(vec![by_arn(&pkg)], &urgent, &no, &NoObserver)
    );
    assert_eq!((a.synced, b.synced), (1, 1), "{a:#?}\n{b:#?}");
    let models = package_models(&peer);
    let active: Vec<_> = models.iter().filter(|(_, d)| d["sagemaker_package_state"] == "Active").collect();
    assert_eq!(active.len(), 1, "one model of the package: {models:#?}");
    assert!(models.iter().all(|(_, d)| d["sagemaker_package_state"] == "Active" || d["sagemaker_package_state"] == "Duplicate"));
    let run = peer.state()["runs"][0]["id"].clone();
    assert_eq!(active[0].0["experimentRun"], run, "on the job's run");
    // Both ledgers now name the package's model: a forced re-sync from either adds none.
    let force = RefOptions { collect: true, force: true, ..Default::default() };
    let fits = || peer.methods().iter().filter(|m| *m == "storeFitEvent").count();
    let before = fits();
    e1.sync_refs(vec![by_arn(&pkg)], &force, &no, &NoObserver).await;
    e2.sync_refs(vec![by_arn(&pkg)], &force, &no, &NoObserver).await;
    assert_eq!(fits(), before, "no model added");
}

/// The receipt names the run the version holds after the write (a version relinked by someone
/// else is put back once, not flipped on every sync), and a run that is gone (a 404 on the
/// write) is the store's state, never the package's fault: the link is looked up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_version_keeps_its_jobs_run_and_a_gone_run_is_no_verdict() {
    let moto = Moto::start();
    let fake = Fake::start().await;
    let jobs = moto.create_jobs("v2link", 2, &SYNC_TAGS).await;
    let pkg = moto.create_package("link-v2", &artifact(&jobs[0]), "PendingManualApproval").await;
    let no = CancellationToken::new();
    let force = RefOptions { collect: true, force: true, ..Default::default() };
    let e1 = engine(&moto, v2(&fake, Duration::from_secs(3600)));
    let p = e1.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(p.synced, 3, "{p:#?}");
    let run_of = |job: &str| fake.with(|s| s.run_by_name(job).cloned()).expect("run")["id"].clone();
    let (mine, other) = (run_of(&jobs[0]), run_of(&jobs[1]));
    assert_eq!(versions(&fake)[0]["experiment_run_id"], mine);

    // Relinked in the store by someone else; a writer with a fresh ledger puts the job's run back.
    fake.with(|s| s.model_versions[0]["experiment_run_id"] = other.clone());
    let e2 = engine(&moto, v2(&fake, Duration::from_secs(3600)));
    let r = e2.sync_refs(vec![by_arn(&pkg)], &force, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(pkg.as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Synced, "{r:#?}");
    assert_eq!(versions(&fake)[0]["experiment_run_id"], mine, "the job's run again");
    assert_eq!(j.receipts[0].ids.get("run_id").map(String::as_str), mine.as_str(), "the receipt names the run written");
    fake.clear_requests();
    e2.sync_refs(vec![by_arn(&pkg)], &force, &no, &NoObserver).await;
    assert!(fake.writes().iter().all(|w| w.path.ends_with("/find")), "settled: no flip back");

    // The job's run deleted from the store, then the package approved: the write naming the
    // run is refused (404); the link is looked up again and, the run being gone, dropped.
    fake.with(|s| s.runs.retain(|r| r["name"] != jobs[0].as_str()));
    moto.approve_package(&pkg, "Approved", None).await;
    let r = e2.sync_refs(vec![by_arn(&pkg)], &force, &no, &NoObserver).await;
    let j = r.jobs.iter().find(|j| j.arn.as_deref() == Some(pkg.as_str())).expect("report");
    assert_eq!(j.outcome, Outcome::Synced, "{r:#?}");
    let v = &versions(&fake)[0];
    assert!(v["experiment_run_id"].as_str().unwrap_or("").is_empty(), "the gone run's link dropped: {v}");
    assert_eq!(labels(v), ["approval:Approved", "sagemaker"]);
    assert_conformant(&fake);
}
