//! The `sagemaker` source against moto's server (a real SageMaker/S3 emulator) on 127.0.0.1.

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{
    CancellationToken, Cursor, Engine, JobRef, ListScope, NoObserver, PassRequest, PipelineSettings, RefOptions, Source, SyncError, TagKeys,
};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::{Moto, SYNC_TAGS};
use sagesync_test_support::throttle::Throttler;
use serde_json::json;
use std::collections::BTreeSet;

fn settings(endpoint: &str, mode: Mode) -> SageMakerSettings {
    let mut s = SageMakerSettings::new(mode).endpoint(endpoint, "us-east-1").unlimited();
    s.client.initial_backoff = std::time::Duration::from_millis(20);
    s
}

async fn list_scope(s: &SageMakerSource, scope: &ListScope, cursor: &Cursor) -> Vec<JobRef> {
    let mut out = Vec::new();
    let mut c = cursor.clone();
    for _ in 0..1000 {
        let p = s.list(scope, &c).await.unwrap();
        out.extend(p.jobs);
        if p.done {
            return out;
        }
        c = p.next;
    }
    panic!("the listing never ended");
}

async fn list_all(s: &SageMakerSource, cursor: &Cursor) -> Vec<JobRef> {
    list_scope(s, &ListScope::Incremental, cursor).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_jobs_over_many_pages_in_both_modes() {
    let moto = Moto::start();
    let names: BTreeSet<String> = moto.create_jobs("page", 250, &SYNC_TAGS).await.into_iter().collect();
    let mut st = settings(&moto.url(), Mode::List);
    st.page_size = 20;
    let list = SageMakerSource::new(st);
    let refs = list_all(&list, &Cursor::default()).await;
    assert_eq!(refs.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>(), names);
    assert_eq!(refs.len(), 250, "no duplicates");
    assert_eq!(list.api_calls()["ListTrainingJobs"], 13, "250 jobs in pages of 20");

    let mut st = settings(&moto.url(), Mode::Search);
    st.page_size = 100;
    let search = SageMakerSource::new(st);
    let found = list_all(&search, &Cursor::default()).await;
    assert_eq!(found.len(), 250);
    assert_eq!(found.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>(), names, "no duplicates, none missing");
    assert!(found.iter().all(|r| r.job.is_some() && r.tags.is_some()), "Search returns whole jobs with tags");
    let calls = search.api_calls()["Search"];
    assert!((3..=5).contains(&calls), "pages of 100 by keyset: {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_emptied_by_filters_are_followed_to_the_end() {
    let moto = Moto::start();
    moto.create_jobs("flt", 60, &SYNC_TAGS).await;
    let mut st = settings(&moto.url(), Mode::List);
    st.page_size = 5;
    st.filters.name_contains = Some("flt-005".into());
    let s = SageMakerSource::new(st);
    let refs = list_all(&s, &Cursor::default()).await;
    let names: Vec<_> = refs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("flt-005")));
    // moto filters after slicing the page: most of the 12 pages come back empty with a token.
    assert_eq!(s.api_calls()["ListTrainingJobs"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pages_over_equal_timestamps_list_every_job_exactly_once() {
    let moto = Moto::start();
    let names = moto.create_jobs("same", 8, &SYNC_TAGS).await;
    for (i, n) in names.iter().enumerate() {
        let t = if i < 2 { "2026-03-01T10:00:00.000Z" } else { "2026-03-01T12:00:00.000Z" };
        moto.edit(n, json!({"LastModifiedTime": t}));
    }
    let mut st = settings(&moto.url(), Mode::Search);
    st.page_size = 3;
    let s = SageMakerSource::new(st);
    let range = ListScope::Range { from: Some("2026-01-01T00:00:00Z".parse().unwrap()), until: None };
    let all = list_scope(&s, &range, &Cursor::default()).await;
    let got: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    assert_eq!(got.len(), 8, "{got:?}");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), names.iter().cloned().collect::<BTreeSet<_>>());
    // A listing resumed from a mid-way cursor continues after it, never before.
    let p1 = s.list(&range, &Cursor::default()).await.unwrap();
    let rest = list_scope(&s, &range, &p1.next).await;
    assert_eq!(p1.jobs.len() + rest.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_poll_starts_before_the_previous_one_began() {
    let moto = Moto::start();
    moto.create_jobs("wm", 3, &SYNC_TAGS).await;
    for mode in [Mode::List, Mode::Search] {
        let s = SageMakerSource::new(settings(&moto.url(), mode));
        let before = chrono::Utc::now();
        let mut c = Cursor::default();
        let final_cursor = loop {
            let p = s.list(&ListScope::Incremental, &c).await.unwrap();
            if p.done {
                break p.next;
            }
            c = p.next;
        };
        let w = final_cursor.watermark.expect("a watermark");
        assert!(
            w <= before - chrono::Duration::seconds(299),
            "{mode:?}: the watermark {w} is not before the listing's start minus the overlap"
        );
        // Everything modified since is listed again by the next poll.
        assert_eq!(list_all(&s, &final_cursor).await.len(), 3, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_filters() {
    let moto = Moto::start();
    let names = moto.create_jobs("st", 9, &SYNC_TAGS).await;
    for n in &names[..3] {
        moto.edit(n, json!({"TrainingJobStatus": "Failed", "SecondaryStatus": "Failed", "FailureReason": "AlgorithmError: boom"}));
    }
    for n in &names[3..5] {
        moto.edit(n, json!({"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training", "TrainingEndTime": null}));
    }
    for mode in [Mode::List, Mode::Search] {
        let mut st = settings(&moto.url(), mode);
        st.filters.statuses = vec!["Failed".into()];
        let failed = list_all(&SageMakerSource::new(st), &Cursor::default()).await;
        assert_eq!(
            failed.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>(),
            names[..3].iter().cloned().collect::<BTreeSet<_>>(),
            "{mode:?}"
        );
        let mut st = settings(&moto.url(), mode);
        st.filters.statuses = vec!["Failed".into(), "InProgress".into()];
        assert_eq!(list_all(&SageMakerSource::new(st), &Cursor::default()).await.len(), 5, "{mode:?}");
    }
    let s = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let j = s.fetch_by_name(&names[0]).await.unwrap();
    assert_eq!(j.status, "Failed");
    assert_eq!(j.failure_reason.as_deref(), Some("AlgorithmError: boom"));
    let j = s.fetch_by_name(&names[3]).await.unwrap();
    assert_eq!(j.status, "InProgress");
    assert_eq!(j.end_time, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_via_list_tags_and_via_search_give_the_same_job() {
    let moto = Moto::start();
    let mut tags: Vec<(&str, &str)> = SYNC_TAGS.to_vec();
    tags.push(("team", "growth"));
    let names = moto.create_jobs("tg", 3, &tags).await;
    moto.edit(
        &names[0],
        json!({
            "FinalMetricDataList": [
                {"MetricName": "train:auc", "Value": 0.9375, "Timestamp": "2026-03-01T10:00:00Z"},
                {"MetricName": "validation:auc", "Value": 0.875, "Timestamp": "2026-03-01T10:00:01Z"}
            ],
            "BillableTimeInSeconds": 321
        }),
    );
    let list = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let search = SageMakerSource::new(settings(&moto.url(), Mode::Search));
    let found = list_all(&search, &Cursor::default()).await;
    for r in list_all(&list, &Cursor::default()).await {
        let via_describe = list.fetch(&r).await.unwrap();
        let via_search = found.iter().find(|f| f.name == r.name).and_then(|f| f.job.clone()).unwrap();
        assert_eq!(&via_describe, via_search.as_ref(), "{}", r.name);
        assert_eq!(via_describe.tags.get("team"), Some("growth"));
        assert_eq!(via_describe.tags.len(), 7);
    }
    let j = list.fetch_by_name(&names[0]).await.unwrap();
    assert_eq!(
        j.final_metrics.iter().map(|m| (m.name.as_str(), m.value)).collect::<Vec<_>>(),
        [("train:auc", 0.9375), ("validation:auc", 0.875)]
    );
    assert_eq!(j.billable_seconds, Some(321));
    assert_eq!(j.channels.len(), 2);
    assert_eq!(j.channels[1].source.uri(), "s3://moto-data/validation/");
    assert_eq!(j.model_artifact.as_deref(), Some("s3://moto-out/output/tg-0000/output/model.tar.gz"));
    assert_eq!(j.instance_type.as_deref(), Some("ml.m5.xlarge"));
    let calls = list.api_calls();
    assert_eq!(calls["DescribeTrainingJob"], 4);
    assert_eq!(calls["ListTags"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_job_is_a_clear_non_retryable_error() {
    let moto = Moto::start();
    let s = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let e = s.fetch_by_name("no-such-job").await.unwrap_err();
    assert!(matches!(e, SyncError::NotFound(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("no-such-job"), "{e}");
    // through the engine: a failed job with the reason
    let dir = tempfile::tempdir().unwrap();
    let p =
        Engine::builder().source(s).mapper(TagsMapper::new(TagKeys::default())).sink("file", FileSink::new(dir.path())).build().unwrap();
    let rep = p
        .sync_refs(
            vec![JobRef::by_name("no-such-job")],
            &RefOptions { collect: true, ..Default::default() },
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    let r = &rep.jobs[0];
    assert_eq!(r.outcome, sagesync_core::Outcome::Failed);
    assert!(r.reason.as_deref().unwrap().contains("job not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_without_a_time_filter_starts_from_the_oldest_job() {
    let moto = Moto::start();
    let names = moto.create_jobs("old", 3, &SYNC_TAGS).await;
    moto.edit(&names[2], json!({"CreationTime": "2019-05-01T00:00:00Z", "LastModifiedTime": "2019-05-01T00:00:00Z"}));
    let s = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let refs = list_all(&s, &Cursor::default()).await;
    assert!(refs.iter().any(|r| r.name == names[2]), "the 2019 job is listed too");
    let mut st = settings(&moto.url(), Mode::List);
    st.filters.modified_after = Some("2020-01-01T00:00:00Z".parse().unwrap());
    assert_eq!(list_all(&SageMakerSource::new(st), &Cursor::default()).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_loses_nothing_and_syncs_every_job_exactly_once() {
    let moto = Moto::start();
    let names = moto.create_jobs("thr", 40, &SYNC_TAGS).await;
    let proxy = Throttler::start(moto.port, 3).await;
    let dir = tempfile::tempdir().unwrap();
    for mode in [Mode::List, Mode::Search] {
        let mut st = settings(&format!("http://127.0.0.1:{}", proxy.port), mode);
        st.page_size = 10;
        st.client.max_attempts = 3;
        let source = SageMakerSource::new(st);
        let out = dir.path().join(format!("{mode:?}"));
        let p = Engine::builder()
            .source(source)
            .validator("required_tags", RequiredTags::new(&TagKeys::default()))
            .validator("status", StatusFilter::new(["Completed"]))
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink("file", FileSink::new(&out))
            .settings(PipelineSettings {
                concurrency: 4,
                max_attempts: 6,
                initial_backoff_ms: 10,
                max_backoff_ms: 200,
                ..Default::default()
            })
            .build()
            .unwrap();
        let s = p.pass(&PassRequest::poll().collecting(), &CancellationToken::new(), &NoObserver).await;
        assert_eq!((s.synced, s.failed), (40, 0), "{mode:?}: {:?}", s.jobs.iter().filter(|j| j.reason.is_some()).collect::<Vec<_>>());
        let files: BTreeSet<String> =
            std::fs::read_dir(out.join("moto-project")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        let want: BTreeSet<String> = names.iter().map(|n| format!("{n}.json")).collect();
        assert_eq!(files, want, "{mode:?}: every job exactly once");
        let created = s.jobs.iter().filter(|j| j.receipts[0].write == sagesync_core::WriteKind::Created).count();
        assert_eq!(created, 40);
    }
    assert!(proxy.throttled.load(std::sync::atomic::Ordering::SeqCst) >= 10, "the proxy did throttle");
    // Both modes wrote identical documents.
    for n in &names {
        let a = std::fs::read(dir.path().join(format!("List/moto-project/{n}.json"))).unwrap();
        let b = std::fs::read(dir.path().join(format!("Search/moto-project/{n}.json"))).unwrap();
        assert_eq!(a, b, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_throttling_surfaces_as_a_retryable_error() {
    let moto = Moto::start();
    moto.create_jobs("hot", 1, &SYNC_TAGS).await;
    let proxy = Throttler::start(moto.port, 1).await;
    let mut st = settings(&format!("http://127.0.0.1:{}", proxy.port), Mode::List);
    st.client.max_attempts = 2;
    let s = SageMakerSource::new(st);
    let e = s.list(&ListScope::Incremental, &Cursor::default()).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("ThrottlingException"), "{e}");
    assert_eq!(proxy.throttled.load(std::sync::atomic::Ordering::SeqCst), 2, "the SDK retried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_manifests_from_s3() {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    s3.create_bucket().bucket("moto-data").send().await.unwrap();
    for (key, body) in
        [("train/a.csv", "1,2\n"), ("train/b.csv", "3,4,5\n"), ("train/c.csv", "6\n"), ("validation/v.csv", "7,8\n"), ("trainer/x", "no")]
    {
        s3.put_object().bucket("moto-data").key(key).body(body.as_bytes().to_vec().into()).send().await.unwrap();
    }
    let names = moto.create_jobs("man", 1, &SYNC_TAGS).await;
    let mut st = settings(&moto.url(), Mode::List);
    st.dataset_manifests = true;
    st.max_manifest_objects = 2;
    let s = SageMakerSource::new(st);
    let j = s.fetch_by_name(&names[0]).await.unwrap();
    let train = j.channel("train").unwrap().manifest.clone().unwrap();
    assert_eq!(train.objects.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), ["train/a.csv", "train/b.csv"]);
    assert!(train.truncated);
    assert_eq!(train.objects[1].size, 6);
    assert_eq!(train.objects[0].etag.len(), 32, "MD5 ETag without quotes: {}", train.objects[0].etag);
    let uploaded = train.objects[0].last_modified.expect("S3's LastModified");
    let age = chrono::Utc::now() - uploaded;
    assert!(age >= chrono::Duration::seconds(-5) && age < chrono::Duration::minutes(10), "uploaded by this test, not {uploaded}");
    let val = j.channel("validation").unwrap().manifest.clone().unwrap();
    assert_eq!(val.objects.len(), 1);
    assert!(!val.truncated);
    assert_eq!(s.api_calls()["ListObjectsV2"], 2);
    // Search mode attaches the same manifests.
    let mut st = settings(&moto.url(), Mode::Search);
    st.dataset_manifests = true;
    st.max_manifest_objects = 2;
    let search = SageMakerSource::new(st);
    let found = list_all(&search, &Cursor::default()).await;
    assert!(
        found[0].job.as_ref().unwrap().channels[0].manifest.is_none(),
        "manifests are read when the job is worked on, not while listing"
    );
    assert_eq!(search.fetch(&found[0]).await.unwrap(), j);
}

/// Issue 21: what the launcher adds for tuning jobs (moto 5.2.5 keeps a fixed fake tuner, gives
/// training jobs no `TuningJobArn` and has no ListTrainingJobsForHyperParameterTuningJob) is
/// checked against botocore's service model: every answer's members, types and enums, and what
/// the answers mean (children linked, counters and best job from them, paging).
#[test]
fn the_launchers_tuning_answers_follow_botocores_model() {
    let moto = Moto::start();
    let out = std::process::Command::new(sagesync_test_support::locate::python())
        .arg(sagesync_test_support::locate::repo_root().join("tests/peers/check_launcher.py"))
        .arg(moto.url())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .output()
        .expect("cannot run the checker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("OK "), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
