//! Metric histories from CloudWatch (moto's CloudWatch, seeded with PutMetricData) and from
//! SageMaker's metrics service (the launcher's fake, seeded with its own BatchPutMetrics).

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Timelike, Utc};
use sagesync_core::source::{ListScope, Source};
use sagesync_core::{Cursor, HistorySource};
use sagesync_source_sagemaker::api::client::{CallCounter, RateLimits};
use sagesync_source_sagemaker::api::history::{read_history, Budget, HistoryOptions, HistorySourceMode, NAMESPACE};
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto::{Moto, SYNC_TAGS};

/// A CloudWatch client on moto.
pub async fn cloudwatch(m: &Moto) -> aws_sdk_cloudwatch::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(m.url()).load().await;
    aws_sdk_cloudwatch::Client::new(&conf)
}

async fn seed(cw: &aws_sdk_cloudwatch::Client, host: &str, name: &str, points: &[(DateTime<Utc>, f64)]) {
    for chunk in points.chunks(500) {
        let data: Vec<MetricDatum> = chunk
            .iter()
            .map(|(t, v)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .dimensions(Dimension::builder().name("Host").value(host).build())
                    .timestamp(aws_smithy_types::DateTime::from_millis(t.timestamp_millis()))
                    .value(*v)
                    .build()
            })
            .collect();
        cw.put_metric_data()
            .namespace(NAMESPACE)
            .set_metric_data(Some(data))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutMetricData: {e:?}"));
    }
}

/// Reads with no budget, counting calls in `calls`.
async fn read(
    cw: &aws_sdk_cloudwatch::Client,
    calls: &CallCounter,
    job: &str,
    names: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    opts: &HistoryOptions,
) -> Vec<sagesync_core::MetricSeries> {
    let limits = RateLimits::new(&Default::default());
    read_history(cw, Budget { limits: &limits, calls }, job, names, start, end, opts).await.unwrap_or_else(|e| panic!("{}", e.chain()))
}

fn minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(t)
}

#[tokio::test]
async fn histories_come_back_in_order_with_steps() {
    let m = Moto::start();
    let cw = cloudwatch(&m).await;
    let start = minute(Utc::now() - Duration::hours(3));
    let loss: Vec<(DateTime<Utc>, f64)> = (0..90).map(|i| (start + Duration::minutes(i), 2.0 / (1.0 + i as f64))).collect();
    let auc: Vec<(DateTime<Utc>, f64)> = (0..45).map(|i| (start + Duration::minutes(2 * i), 0.5 + i as f64 / 100.0)).collect();
    // Seeded out of order, and a second job on the same metric name.
    let mut shuffled = loss.clone();
    shuffled.reverse();
    seed(&cw, "job-a/algo-1", "train:loss", &shuffled).await;
    seed(&cw, "job-a/algo-1", "validation:auc", &auc).await;
    seed(&cw, "job-b/algo-1", "train:loss", &[(start, 99.0)]).await;
    let end = start + Duration::minutes(89);
    let names = vec!["train:loss".to_string(), "validation:auc".to_string(), "never:logged".to_string(), "train:loss".to_string()];
    let calls = CallCounter::default();
    let series = read(&cw, &calls, "job-a", &names, start, end, &HistoryOptions::default()).await;
    assert_eq!(calls.snapshot().get("GetMetricData"), Some(&1), "three metrics, one call");
    assert_eq!(
        series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["train:loss", "validation:auc"],
        "metrics without points are left out"
    );
    for (s, want) in series.iter().zip([&loss, &auc]) {
        assert_eq!(s.points.len(), want.len(), "{}", s.name);
        for (i, (p, (t, v))) in s.points.iter().zip(want.iter()).enumerate() {
            assert_eq!(p.step, i as i64);
            assert_eq!(p.timestamp, Some(*t), "{} point {i}", s.name);
            assert!((p.value - v).abs() < 1e-9, "{} point {i}: {} vs {v}", s.name, p.value);
        }
    }
    // The cap keeps the oldest points.
    let capped =
        read(&cw, &calls, "job-a", &names[..1], start, end, &HistoryOptions { max_points_per_metric: 10, ..Default::default() }).await;
    assert_eq!(capped[0].points.len(), 10);
    assert_eq!(capped[0].points[9].timestamp, Some(start + Duration::minutes(9)));
    assert!(capped[0].truncated, "a capped series says so");
    // Nothing to read: no call errors, no series.
    assert!(read(&cw, &calls, "job-a", &[], start, end, &HistoryOptions::default()).await.is_empty());
    assert!(read(&cw, &calls, "job-zzz", &names, start, end, &HistoryOptions::default()).await.is_empty());
}

fn source(m: &Moto, mode: Mode, history: bool) -> SageMakerSource {
    let mut st = SageMakerSettings::new(mode).endpoint(&m.url(), "us-east-1").unlimited();
    st.history = history.then(HistoryOptions::default);
    SageMakerSource::new(st)
}

/// `metrics = "history"` end to end: a job in moto's SageMaker, its metrics in moto's
/// CloudWatch; the source's records carry the histories in both listing modes, one
/// GetMetricData call per job, and a source without the option reads none.
#[tokio::test]
async fn the_source_adds_histories_to_jobs_in_both_modes() {
    let m = Moto::start();
    let names = m.create_jobs("hist", 2, &SYNC_TAGS).await;
    let start = minute(Utc::now() - Duration::hours(2));
    let end = start + Duration::minutes(30);
    for n in &names {
        m.edit(n, serde_json::json!({"TrainingStartTime": start.to_rfc3339(), "TrainingEndTime": end.to_rfc3339()}));
    }
    let plain = source(&m, Mode::List, false).fetch_by_name(&names[0]).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(plain.metric_history.is_empty(), "metrics = final reads no history");
    let metric = plain.final_metrics.first().map(|f| f.name.clone()).expect("moto gives every job a final metric");
    let cw = cloudwatch(&m).await;
    // Points inside the job's time, and one after it ended (not the job's).
    let inside: Vec<(DateTime<Utc>, f64)> = (0..30).map(|i| (start + Duration::minutes(i), i as f64 * 0.5)).collect();
    seed(&cw, &format!("{}/algo-1", names[0]), &metric, &inside).await;
    seed(&cw, &format!("{}/algo-1", names[0]), &metric, &[(end + Duration::minutes(20), -1.0)]).await;
    seed(&cw, &format!("{}/algo-1", names[1]), &metric, &inside[..3]).await;

    let list = source(&m, Mode::List, true);
    let a = list.fetch_by_name(&names[0]).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(a.metric_history.len(), 1);
    let s = &a.metric_history[0];
    assert_eq!(s.name, metric);
    assert_eq!(
        s.points.iter().map(|p| (p.timestamp, p.value)).collect::<Vec<_>>(),
        inside.iter().map(|(t, v)| (Some(*t), *v)).collect::<Vec<_>>()
    );
    // auto: the metrics service had nothing (asked by iteration, then by time), so CloudWatch.
    assert_eq!((s.source, s.resolution.as_deref(), s.stat.as_deref()), (Some(HistorySource::Cloudwatch), Some("60"), Some("Average")));
    assert_eq!(list.api_calls().get("BatchGetMetrics"), Some(&2));
    assert_eq!(s.points.iter().map(|p| p.step).collect::<Vec<_>>(), (0..30).collect::<Vec<i64>>());
    assert_eq!(list.api_calls().get("GetMetricData"), Some(&1));

    // Search mode: the listed records are completed with their histories when worked on.
    let search = source(&m, Mode::Search, true);
    let page = search.list(&ListScope::Range { from: None, until: None }, &Cursor::default()).await.expect("search");
    assert_eq!(page.jobs.len(), 2);
    let mut seen = Vec::new();
    for r in &page.jobs {
        let j = search.fetch(r).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        seen.push((j.name.clone(), j.metric_history.first().map(|s| s.points.len())));
        if j.name == names[0] {
            assert_eq!(j.metric_history, a.metric_history, "both modes give the same history");
        }
    }
    seen.sort();
    assert_eq!(seen, vec![(names[0].clone(), Some(30)), (names[1].clone(), Some(3))]);
    assert_eq!(search.api_calls().get("GetMetricData"), Some(&2));
    assert_ne!(source(&m, Mode::List, true).fingerprint(), source(&m, Mode::List, false).fingerprint(), "turning histories on re-syncs");
}

/// A source on moto whose histories come from `mode` (the metrics service by default).
fn source_from(m: &Moto, mode: Mode, from: HistorySourceMode) -> SageMakerSource {
    let mut st = SageMakerSettings::new(mode).endpoint(&m.url(), "us-east-1").unlimited();
    st.history = Some(HistoryOptions { source: from, ..HistoryOptions::default() });
    SageMakerSource::new(st)
}

/// Gives job `name` the final metrics `names` (what the source asks the service for).
fn final_metrics(m: &Moto, name: &str, names: &[&str]) {
    let list: Vec<serde_json::Value> =
        names.iter().map(|n| serde_json::json!({"MetricName": n, "Value": 0.5, "Timestamp": "2026-12-01T10:00:00Z"})).collect();
    m.edit(name, serde_json::json!({"FinalMetricDataList": list, "TrainingStartTime": "2026-12-01T09:00:00Z", "TrainingEndTime": "2026-12-01T10:00:00Z"}));
}

/// Issue 24: each result's status stands alone. A truncated series is kept and marked, a
/// refused query is reported for that metric only, an internal error is asked again (in one
/// more call, for that query alone), and a metric logged without iteration numbers is read by
/// time. The service is asked first; CloudWatch is not asked when it answered.
#[tokio::test]
async fn each_metric_of_the_metrics_service_stands_alone() {
    let m = Moto::start();
    let names = m.create_jobs("smx", 1, &SYNC_TAGS).await;
    let job = &names[0];
    final_metrics(&m, job, &["train:loss", "validation:auc", "validation:f1", "train:lr", "timed:only"]);
    let t0 = 1_764_583_200.0; // 2025-12-01T10:00:00Z
    let series = |k: f64| -> Vec<(Option<i32>, f64, f64)> {
        (0..20).map(|i| (Some(i), t0 + 30.0 * f64::from(i), k / (1.0 + f64::from(i)))).collect()
    };
    for (n, k) in [("train:loss", 1.0), ("validation:auc", 2.0), ("validation:f1", 3.0), ("train:lr", 4.0)] {
        m.put_metrics(job, n, &series(k)).await;
    }
    m.put_metrics(job, "timed:only", &[(None, t0, 7.0), (None, t0 + 60.0, 8.0)]).await;
    let arn = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}");
    m.metrics_status(&arn, "validation:auc", "Truncated", Some(5), None);
    m.metrics_status(&arn, "validation:f1", "ValidationError", None, None);
    m.metrics_status(&arn, "train:lr", "InternalError", None, Some(1));
    m.metrics_calls();

    let src = source_from(&m, Mode::List, HistorySourceMode::Auto);
    let j = src.fetch_by_name(job).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let by: std::collections::BTreeMap<&str, &sagesync_core::MetricSeries> =
        j.metric_history.iter().map(|s| (s.name.as_str(), s)).collect();
    let loss = by["train:loss"];
    assert_eq!(loss.points.iter().map(|p| p.step).collect::<Vec<_>>(), (0..20).collect::<Vec<i64>>());
    for (p, (_, _, v)) in loss.points.iter().zip(series(1.0)) {
        assert_eq!(p.value.to_bits(), v.to_bits(), "bit-exact");
        assert_eq!(p.timestamp, None, "by iteration number: no time");
    }
    assert_eq!(
        (loss.source, loss.resolution.as_deref(), loss.stat.as_deref()),
        (Some(HistorySource::SagemakerMetrics), Some("iteration"), Some("Last"))
    );
    assert!(!loss.truncated && loss.problem.is_none());
    let auc = by["validation:auc"];
    assert_eq!(auc.points.len(), 5, "the points the service returned are kept");
    assert!(auc.truncated && auc.problem.as_deref().is_some_and(|p| p.contains("Truncated")), "{auc:?}");
    let f1 = by["validation:f1"];
    assert!(f1.points.is_empty() && f1.problem.as_deref().is_some_and(|p| p.starts_with("ValidationError")), "{f1:?}");
    assert_eq!(by["train:lr"].points.len(), 20, "an internal error is asked again");
    let timed = by["timed:only"];
    assert_eq!(timed.resolution.as_deref(), Some("60"));
    assert_eq!(
        timed.points.iter().map(|p| (p.step, p.timestamp.map(|t| t.timestamp()), p.value)).collect::<Vec<_>>(),
        [(0, Some(t0 as i64), 7.0), (1, Some(t0 as i64 + 60), 8.0)]
    );
    // One call for the six metrics (moto's jobs also define `test:dcg`, never logged); one more
    // for the internal error and the two metrics without iteration numbers, together.
    assert!(!by.contains_key("test:dcg"), "a metric the service has nothing for is left out");
    assert_eq!(m.metrics_calls(), [6, 3]);
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&2));
    assert_eq!(src.api_calls().get("GetMetricData"), None, "CloudWatch is not asked");

    // history_source = "sagemaker": a job the service has nothing for has no history, and
    // CloudWatch is never asked.
    let other = m.create_jobs("empty", 1, &SYNC_TAGS).await;
    let only = source_from(&m, Mode::List, HistorySourceMode::Sagemaker);
    let e = only.fetch_by_name(&other[0]).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(e.metric_history.is_empty());
    assert_eq!(only.api_calls().get("GetMetricData"), None);
}

/// Issue 24: a Search page's jobs are read together, at most 100 queries a call: a page of
/// 100 jobs of two metrics each costs ceil(200 / 100) = 2 calls, not a hundred; the engine's
/// prepare step reads them, and each job's fetch takes its own without another call.
#[tokio::test]
async fn a_page_of_jobs_costs_one_call_per_hundred_metrics() {
    let m = Moto::start();
    let names = m.create_jobs("page", 100, &SYNC_TAGS).await;
    for n in &names {
        // `test:dcg` is also the metric moto's jobs define.
        final_metrics(&m, n, &["test:dcg", "validation:auc"]);
        m.put_metrics(n, "test:dcg", &[(Some(0), 1_764_583_200.0, 1.0), (Some(1), 1_764_583_260.0, 0.5)]).await;
        m.put_metrics(n, "validation:auc", &[(Some(1), 1_764_583_260.0, 0.75)]).await;
    }
    m.metrics_calls();
    let src = source_from(&m, Mode::Search, HistorySourceMode::Sagemaker);
    let page = src.list(&ListScope::Range { from: None, until: None }, &Cursor::default()).await.expect("search");
    assert_eq!(page.jobs.len(), 100);
    let refs: Vec<&sagesync_core::JobRef> = page.jobs.iter().collect();
    src.prepare(&refs).await;
    for r in &page.jobs {
        let j = src.fetch(r).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        let steps: Vec<(&str, Vec<i64>)> =
            j.metric_history.iter().map(|s| (s.name.as_str(), s.points.iter().map(|p| p.step).collect())).collect();
        assert_eq!(steps, [("test:dcg", vec![0, 1]), ("validation:auc", vec![1])], "{}", j.name);
    }
    assert_eq!(m.metrics_calls(), [100, 100]);
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&2));
}

/// Issue 24 (audit): a refusal of the whole BatchGetMetrics call (no permission, an endpoint
/// that is not the service, a request it rejects) is the setup's failure, in `auto` as in
/// `sagemaker` (no silent fallback that would record CloudWatch's series for good); a failure
/// for now stays retryable. Neither is ever about the job.
#[tokio::test]
async fn a_refused_call_is_the_setups_and_a_failure_for_now_is_retried() {
    let m = Moto::start();
    let names = m.create_jobs("refused", 1, &SYNC_TAGS).await;
    for mode in [HistorySourceMode::Auto, HistorySourceMode::Sagemaker] {
        for status in [403u16, 404, 400] {
            m.metrics_fail(status, 1);
            let e = source_from(&m, Mode::List, mode).fetch_by_name(&names[0]).await.expect_err("refused");
            assert!(matches!(e, sagesync_core::SyncError::Setup { .. }), "{mode:?} {status}: {}", e.chain());
            assert!(!e.is_about_the_job() && !e.is_retryable(), "{}", e.chain());
        }
        m.metrics_fail(503, 1);
        let e = source_from(&m, Mode::List, mode).fetch_by_name(&names[0]).await.expect_err("unavailable");
        assert!(e.is_retryable() && !e.is_about_the_job(), "{}", e.chain());
    }
}

/// Issue 24 (audit): what a page's read kept is for that page and that version of each job. A
/// job not fetched on its page (busy, or decided done under its lease) reads afresh later; so
/// does a job whose `LastModifiedTime` moved since it was listed.
#[tokio::test]
async fn a_pages_histories_never_outlive_the_page() {
    let m = Moto::start();
    let names = m.create_jobs("stale", 2, &SYNC_TAGS).await;
    for n in &names {
        final_metrics(&m, n, &["test:dcg"]);
        m.put_metrics(n, "test:dcg", &[(Some(0), 1_764_583_200.0, 1.0)]).await;
    }
    let src = source_from(&m, Mode::Search, HistorySourceMode::Sagemaker);
    let page = src.list(&ListScope::Range { from: None, until: None }, &Cursor::default()).await.expect("search");
    let refs: Vec<&sagesync_core::JobRef> = page.jobs.iter().collect();
    src.prepare(&refs).await;
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&1));
    // The first job is fetched on its page: no call of its own.
    src.fetch(&page.jobs[0]).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&1));
    // The page ends without the second; more points arrive; it is fetched later: read afresh.
    src.prepare(&[]).await;
    m.put_metrics(&page.jobs[1].name, "test:dcg", &[(Some(1), 1_764_583_260.0, 2.0)]).await;
    let j = src.fetch(&page.jobs[1]).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&2));
    assert_eq!(j.metric_history[0].points.iter().map(|p| p.step).collect::<Vec<_>>(), [0, 1]);
    // Kept for one version of a job, the series are not another version's.
    src.prepare(&refs).await;
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&3));
    let mut moved = page.jobs[0].clone();
    if let Some(job) = moved.job.as_mut() {
        let mut newer = (**job).clone();
        newer.last_modified_time = newer.last_modified_time.map(|t| t + Duration::seconds(1));
        if let Some(o) = newer.original.as_object_mut() {
            o.insert("LastModifiedTime".into(), serde_json::json!(newer.last_modified_time.map(|t| t.to_rfc3339())));
        }
        *job = std::sync::Arc::new(newer);
    }
    src.fetch(&moved).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&4), "another version of the job reads afresh");
}
