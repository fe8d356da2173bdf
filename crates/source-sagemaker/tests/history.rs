//! Metric histories from CloudWatch (moto's CloudWatch, seeded with PutMetricData).

mod support;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use chrono::{DateTime, Duration, Timelike, Utc};
use sagesync_source_sagemaker::api::history::{read_history, HistoryOptions, NAMESPACE};
use support::moto::Moto;

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
    let series = read_history(&cw, "job-a", &names, start, end, &HistoryOptions::default()).await.expect("read");
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
    let capped = read_history(&cw, "job-a", &names[..1], start, end, &HistoryOptions { max_points_per_metric: 10, ..Default::default() })
        .await
        .expect("read");
    assert_eq!(capped[0].points.len(), 10);
    assert_eq!(capped[0].points[9].timestamp, start + Duration::minutes(9));
    // Nothing to read: no call errors, no series.
    assert!(read_history(&cw, "job-a", &[], start, end, &HistoryOptions::default()).await.expect("read").is_empty());
    assert!(read_history(&cw, "job-zzz", &names, start, end, &HistoryOptions::default()).await.expect("read").is_empty());
}
