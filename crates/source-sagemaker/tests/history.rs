//! Metric histories from CloudWatch (moto's CloudWatch, seeded with PutMetricData).

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Timelike, Utc};
use sagesync_core::source::{ListScope, Source};
use sagesync_core::Cursor;
use sagesync_source_sagemaker::api::client::{CallCounter, RateLimits};
use sagesync_source_sagemaker::api::history::{read_history, Budget, HistoryOptions, NAMESPACE};
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
            assert_eq!(p.timestamp, *t, "{} point {i}", s.name);
            assert!((p.value - v).abs() < 1e-9, "{} point {i}: {} vs {v}", s.name, p.value);
        }
    }
    // The cap keeps the oldest points.
    let capped =
        read(&cw, &calls, "job-a", &names[..1], start, end, &HistoryOptions { max_points_per_metric: 10, ..Default::default() }).await;
    assert_eq!(capped[0].points.len(), 10);
    assert_eq!(capped[0].points[9].timestamp, start + Duration::minutes(9));
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
    assert_eq!(s.points.iter().map(|p| (p.timestamp, p.value)).collect::<Vec<_>>(), inside);
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
