//! Model Registry packages from moto (the launcher serves ListTags on a package, which moto
//! 5.2.5 answers with a 500): each versioned package is listed after the other kinds, linked to
//! the training job whose artifact is its model, and written to the file sink's registry.

use std::path::Path;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, NoObserver, PassRequest, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::{Moto, SYNC_TAGS};
use serde_json::Value;

fn engine(moto: &Moto, out: &Path) -> Engine {
    let mut s = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), "us-east-1").unlimited();
    s.model_packages = true;
    Engine::builder()
        .source(SageMakerSource::new(s))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink("file", FileSink::new(out))
        .build()
        .expect("engine")
}

fn package_doc(out: &Path, group: &str, version: u64) -> Value {
    let p = out.join("_registry").join(group).join(format!("{version}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str::<Value>(&text).expect("json")["record"].clone()
}

fn artifact(job: &str) -> String {
    format!("s3://moto-out/output/{job}/output/model.tar.gz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_are_registry_entries_linked_to_their_training_jobs() {
    let moto = Moto::start();
    let jobs = moto.create_jobs("reg", 3, &SYNC_TAGS).await;
    let mut arns = Vec::new();
    for (job, approval) in jobs.iter().zip(["Approved", "PendingManualApproval", "Rejected"]) {
        arns.push(moto.create_package("churn-models", &artifact(job), approval).await);
    }
    // A package whose model no synced job made, in an untagged group: nothing makes it eligible.
    moto.create_package("stray-models", "s3://elsewhere/model.tar.gz", "Approved").await;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(&moto, out.path());
    let no = CancellationToken::new();
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert!(p.listing_error.is_none(), "{p:#?}");
    assert_eq!(p.synced, 6, "3 jobs and their 3 packages: {p:#?}");
    assert!(!out.path().join("_registry/stray-models").exists(), "an unlinked, untagged package stays out");

    for (i, (job, approval)) in jobs.iter().zip(["Approved", "PendingManualApproval", "Rejected"]).enumerate() {
        let d = package_doc(out.path(), "churn-models", i as u64 + 1);
        assert_eq!(d["kind"], "model_package", "{d}");
        assert_eq!(d["run"]["external_id"], arns[i].as_str());
        assert_eq!(d["package"]["approval_status"], approval);
        assert_eq!(d["package"]["model_data_urls"][0], artifact(job).as_str());
        assert_eq!(d["package"]["training_job_arn"], format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"));
        assert_eq!(d["package"]["linked_by"], "artifact");
        assert_eq!(d["package"]["customer_metadata"]["team"], "churn");
        assert_eq!(d["project"]["name"], "moto-project", "the project of the job it follows");
    }

    // Nothing changed: nothing is written, and no package is read again.
    let again = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    assert_eq!(again.jobs.iter().filter(|j| !j.receipts.is_empty()).count(), 0, "{again:#?}");
    assert_eq!(again.api_calls.get("DescribeModelPackage").copied().unwrap_or(0), 0, "{:?}", again.api_calls);

    // The pending version is approved in SageMaker: its document follows, nothing else moves.
    let before = std::fs::read(out.path().join("_registry/churn-models/1.json")).expect("doc 1");
    let c = moto.client().await;
    c.update_model_package()
        .model_package_arn(&arns[1])
        .model_approval_status(aws_sdk_sagemaker::types::ModelApprovalStatus::Approved)
        .approval_description("reviewed")
        .send()
        .await
        .expect("approve");
    let p = e.pass(&PassRequest::poll().collecting(), &no, &NoObserver).await;
    let d = package_doc(out.path(), "churn-models", 2);
    assert_eq!(
        (d["package"]["approval_status"].as_str(), d["package"]["approval_description"].as_str()),
        (Some("Approved"), Some("reviewed")),
        "{p:#?}"
    );
    assert_eq!(std::fs::read(out.path().join("_registry/churn-models/1.json")).expect("doc 1"), before, "the other versions are untouched");
    assert_eq!(p.api_calls.get("DescribeModelPackage").copied(), Some(1), "{:?}", p.api_calls);
}

/// A package whose training job is not eligible follows it: it is skipped with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_follows_its_training_job() {
    let moto = Moto::start();
    let jobs = moto.create_jobs("plain", 1, &[("team", "x")]).await;
    moto.create_package("plain-models", &artifact(&jobs[0]), "Approved").await;
    let out = tempfile::tempdir().expect("dir");
    let e = engine(&moto, out.path());
    let p = e.pass(&PassRequest::poll().collecting(), &CancellationToken::new(), &NoObserver).await;
    assert_eq!(p.synced, 0, "{p:#?}");
    assert!(!out.path().join("_registry").exists());
}

/// A package DescribeModelPackage does not find is deleted only where this source reads: in
/// its own region (with its group found, or gone too); an ARN of another region is a not-found
/// failure, never a deletion that would retract a live package's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_not_found_is_deleted_only_in_the_sources_own_region() {
    use sagesync_core::{JobRef, Source, SyncError};
    let moto = Moto::start();
    let jobs = moto.create_jobs("gone", 1, &SYNC_TAGS).await;
    let arn = moto.create_package("gone-models", &artifact(&jobs[0]), "Approved").await;
    let source = |region: &str| {
        let mut s = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), region).unlimited();
        s.model_packages = true;
        SageMakerSource::new(s)
    };
    let by_arn = JobRef { name: arn.clone(), arn: Some(arn.clone()), ..Default::default() };
    let live = source("us-east-1").fetch(&by_arn).await.expect("the package");
    assert!(!live.is_deleted());
    // Read from another region, the live package is not found: no deletion.
    let elsewhere = source("us-west-2").fetch(&by_arn).await;
    assert!(matches!(elsewhere, Err(SyncError::NotFound(_))), "{elsewhere:?}");
    moto.delete_package(&arn).await;
    let gone = source("us-east-1").fetch(&by_arn).await.expect("a deleted package");
    assert!(gone.is_deleted() && gone.arn == arn, "{gone:?}");
    assert!(gone.failure_reason.as_deref().unwrap_or("").contains("DescribeModelPackage"), "{gone:?}");
    let elsewhere = source("us-west-2").fetch(&by_arn).await;
    assert!(matches!(elsewhere, Err(SyncError::NotFound(_))), "{elsewhere:?}");
}
