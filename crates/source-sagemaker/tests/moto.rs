//! The `sagemaker` source against moto's server (a real SageMaker/S3 emulator) on 127.0.0.1.

mod support;

use std::collections::BTreeSet;
use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Cursor, JobRef, Pipeline, PipelineSettings, Source, SyncError, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use serde_json::json;
use support::moto::{Moto, SYNC_TAGS};
use support::throttle::Throttler;

fn settings(endpoint: &str, mode: Mode) -> SageMakerSettings {
    let mut s = SageMakerSettings::new(mode).endpoint(endpoint, "us-east-1").unlimited();
    s.client.initial_backoff = std::time::Duration::from_millis(20);
    s
}

async fn list_all(s: &SageMakerSource, cursor: &Cursor) -> Vec<JobRef> {
    s.list(cursor).await.unwrap().jobs
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
    let sorted = refs.windows(2).all(|w| (w[0].last_modified, &w[0].arn) <= (w[1].last_modified, &w[1].arn));
    assert!(sorted, "listed oldest first");

    let mut st = settings(&moto.url(), Mode::Search);
    st.page_size = 100;
    let search = SageMakerSource::new(st);
    let found = list_all(&search, &Cursor::default()).await;
    assert_eq!(found.len(), 250);
    assert!(found.iter().all(|r| r.job.is_some()), "Search returns whole jobs");
    assert_eq!(search.api_calls(), [("Search".to_string(), 3u64)].into());
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
async fn equal_timestamps_across_a_cursor_boundary_are_neither_lost_nor_repeated() {
    let moto = Moto::start();
    let names = moto.create_jobs("same", 8, &SYNC_TAGS).await;
    for (i, n) in names.iter().enumerate() {
        let t = if i < 2 { "2026-03-01T10:00:00.000Z" } else { "2026-03-01T12:00:00.000Z" };
        moto.edit(n, json!({"LastModifiedTime": t}));
    }
    for mode in [Mode::List, Mode::Search] {
        let s = SageMakerSource::new(settings(&moto.url(), mode));
        let all = list_all(&s, &Cursor::default()).await;
        assert_eq!(all.len(), 8);
        // A run committed only the two early jobs and three of the six sharing 12:00.
        let mut cursor = Cursor::default();
        for r in all.iter().take(5) {
            cursor.advance(r.last_modified, r.arn.as_deref().unwrap());
        }
        let rest = list_all(&s, &cursor).await;
        let rest_names: BTreeSet<_> = rest.iter().map(|r| r.name.clone()).collect();
        let expected: BTreeSet<_> = all.iter().skip(5).map(|r| r.name.clone()).collect();
        assert_eq!(rest_names, expected, "{mode:?}");
        // After everything: nothing, until a job changes at that same instant.
        let mut done = cursor.clone();
        for r in &rest {
            done.advance(r.last_modified, r.arn.as_deref().unwrap());
        }
        assert!(list_all(&s, &done).await.is_empty(), "{mode:?}");
    }
    let late = moto.create_jobs("late", 1, &SYNC_TAGS).await;
    moto.edit(&late[0], json!({"LastModifiedTime": "2026-03-01T12:00:00.000Z"}));
    let s = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let all = list_all(&s, &Cursor::default()).await;
    let mut cursor = Cursor::default();
    for r in all.iter().filter(|r| !r.name.starts_with("late")) {
        cursor.advance(r.last_modified, r.arn.as_deref().unwrap());
    }
    let again = list_all(&s, &cursor).await;
    assert_eq!(again.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["late-0000"]);
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
        assert_eq!(failed.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>(), names[..3].iter().cloned().collect::<BTreeSet<_>>(), "{mode:?}");
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
    moto.edit(&names[0], json!({
        "FinalMetricDataList": [
            {"MetricName": "train:auc", "Value": 0.9375, "Timestamp": "2026-03-01T10:00:00Z"},
            {"MetricName": "validation:auc", "Value": 0.875, "Timestamp": "2026-03-01T10:00:01Z"}
        ],
        "BillableTimeInSeconds": 321
    }));
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
    assert_eq!(j.final_metrics.iter().map(|m| (m.name.as_str(), m.value)).collect::<Vec<_>>(), [("train:auc", 0.9375), ("validation:auc", 0.875)]);
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
    // through the pipeline: a failed job with the reason
    let dir = tempfile::tempdir().unwrap();
    let p = Pipeline::builder().source(s).mapper(TagsMapper::new(TagKeys::default())).sink("file", FileSink::new(dir.path())).build().unwrap();
    let r = p.process(JobRef::by_name("no-such-job"), &CancellationToken::new()).await;
    assert_eq!(r.outcome, sagesync_core::Outcome::Failed);
    assert_eq!(r.attempts, 1);
    assert!(r.reason.unwrap().contains("job not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_without_a_time_filter_starts_from_the_oldest_job() {
    let moto = Moto::start();
    let names = moto.create_jobs("old", 3, &SYNC_TAGS).await;
    moto.edit(&names[2], json!({"CreationTime": "2019-05-01T00:00:00Z", "LastModifiedTime": "2019-05-01T00:00:00Z"}));
    let s = SageMakerSource::new(settings(&moto.url(), Mode::List));
    let refs = list_all(&s, &Cursor::default()).await;
    assert_eq!(refs[0].name, names[2], "the 2019 job comes first");
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
        let p = Pipeline::builder()
            .source(source)
            .validator("required_tags", RequiredTags::new(&TagKeys::default()))
            .validator("status", StatusFilter::new(["Completed"]))
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink("file", FileSink::new(&out))
            .settings(PipelineSettings { concurrency: 4, max_attempts: 6, initial_backoff_ms: 10, max_backoff_ms: 200, dry_run: false })
            .build()
            .unwrap();
        let s = p.run(Cursor::default(), &CancellationToken::new()).await;
        assert_eq!((s.synced, s.failed), (40, 0), "{mode:?}: {:?}", s.jobs.iter().filter(|j| j.reason.is_some()).collect::<Vec<_>>());
        let files: BTreeSet<String> = std::fs::read_dir(out.join("moto-project")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
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
    let e = s.list(&Cursor::default()).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("ThrottlingException"), "{e}");
    assert_eq!(proxy.throttled.load(std::sync::atomic::Ordering::SeqCst), 2, "the SDK retried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_manifests_from_s3() {
    let moto = Moto::start();
    let s3 = moto.s3().await;
    s3.create_bucket().bucket("moto-data").send().await.unwrap();
    for (key, body) in [("train/a.csv", "1,2\n"), ("train/b.csv", "3,4,5\n"), ("train/c.csv", "6\n"), ("validation/v.csv", "7,8\n"), ("trainer/x", "no")] {
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
    assert!(train.objects[0].last_modified.is_some());
    let val = j.channel("validation").unwrap().manifest.clone().unwrap();
    assert_eq!(val.objects.len(), 1);
    assert!(!val.truncated);
    assert_eq!(s.api_calls()["ListObjectsV2"], 2);
    // Search mode attaches the same manifests.
    let mut st = settings(&moto.url(), Mode::Search);
    st.dataset_manifests = true;
    st.max_manifest_objects = 2;
    let found = list_all(&SageMakerSource::new(st), &Cursor::default()).await;
    assert_eq!(found[0].job.as_ref().unwrap().as_ref(), &j);
}
