//! Metric histories of a training job from CloudWatch.
//!
//! SageMaker publishes the metrics a job's `MetricDefinitions` extract from its logs (and the
//! built-in algorithms' metrics) to CloudWatch, namespace `/aws/sagemaker/TrainingJobs`,
//! dimension `Host` = `<job name>/algo-1`. [`read_history`] reads them with `GetMetricData`
//! (one query per metric, up to 500 per call, following `NextToken`) between the job's start
//! and end, and returns one [`MetricSeries`] per metric that has points: timestamps as
//! CloudWatch reports them, oldest first, steps 0, 1, 2... in that order.
//!
//! Bounds: at most [`HistoryOptions::max_points_per_metric`] points per metric (default
//! [`DEFAULT_MAX_POINTS_PER_METRIC`], the oldest ones; a capped series is logged as a warning)
//! and at most [`MAX_PAGES`] pages per call, so a job's history never grows without limit.
//! CloudWatch keeps 1-minute points for 15 days, 5-minute points for 63 days and 1-hour points
//! for 455 days: older jobs get coarser histories.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use chrono::{DateTime, Utc};
use sagesync_core::{MetricPoint, MetricSeries, SyncError};

use super::client::{map_sdk_error, CallCounter, RateLimits};

/// The CloudWatch namespace of SageMaker training jobs.
pub const NAMESPACE: &str = "/aws/sagemaker/TrainingJobs";
/// Default cap on the points kept per metric.
pub const DEFAULT_MAX_POINTS_PER_METRIC: usize = 10_000;
/// Most pages read for one group of queries.
pub const MAX_PAGES: usize = 200;
/// Queries per `GetMetricData` call (the API's limit).
const QUERIES_PER_CALL: usize = 500;

/// How histories are read.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Aggregation period, seconds (a multiple of 60; CloudWatch's resolution for training jobs).
    pub period_secs: i32,
    /// Statistic (`Average`, `Maximum`, `Minimum`, `Sum`, `SampleCount`).
    pub stat: String,
    /// Points kept per metric (the oldest).
    pub max_points_per_metric: usize,
    /// The host dimension's instance suffix (`algo-1` is the first instance).
    pub host: String,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            period_secs: 60,
            stat: "Average".into(),
            max_points_per_metric: DEFAULT_MAX_POINTS_PER_METRIC,
            host: "algo-1".into(),
        }
    }
}

fn aws_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(t.timestamp_millis())
}

/// The budget and the call counter that `GetMetricData` calls go through.
#[derive(Clone, Copy)]
pub struct Budget<'a> {
    /// Per-operation budgets (`GetMetricData`).
    pub limits: &'a RateLimits,
    /// Per-operation call counts.
    pub calls: &'a CallCounter,
}

/// Reads the histories of `metric_names` (duplicates and empty names are ignored) for the job
/// `job_name` between `start` and `end`. Each `GetMetricData` call waits for its slot in
/// `budget` and is counted there.
pub async fn read_history(
    client: &aws_sdk_cloudwatch::Client,
    budget: Budget<'_>,
    job_name: &str,
    metric_names: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    opts: &HistoryOptions,
) -> Result<Vec<MetricSeries>, SyncError> {
    let mut names: Vec<&str> = Vec::new();
    for n in metric_names {
        if !n.is_empty() && !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    if names.is_empty() || end <= start {
        return Ok(Vec::new());
    }
    // CloudWatch aligns points to the period; widen the window so the first and last count.
    let period = i64::from(opts.period_secs.max(1));
    let from = DateTime::<Utc>::from_timestamp(start.timestamp() - start.timestamp().rem_euclid(period), 0).unwrap_or(start);
    let to = end + chrono::Duration::seconds(period);
    let host = format!("{job_name}/{}", opts.host);
    let mut points: BTreeMap<usize, Vec<(i64, f64)>> = BTreeMap::new();
    for (chunk_no, chunk) in names.chunks(QUERIES_PER_CALL).enumerate() {
        let queries: Vec<MetricDataQuery> = chunk
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let metric = Metric::builder()
                    .namespace(NAMESPACE)
                    .metric_name(*name)
                    .dimensions(Dimension::builder().name("Host").value(&host).build())
                    .build();
                MetricDataQuery::builder()
                    .id(format!("m{}", chunk_no * QUERIES_PER_CALL + i))
                    .metric_stat(MetricStat::builder().metric(metric).period(opts.period_secs).stat(&opts.stat).build())
                    .return_data(true)
                    .build()
            })
            .collect();
        let mut token: Option<String> = None;
        for page in 0.. {
            if page >= MAX_PAGES {
                tracing::warn!(job = job_name, "CloudWatch history stopped after {MAX_PAGES} pages");
                break;
            }
            budget.limits.acquire("GetMetricData").await;
            budget.calls.count("GetMetricData");
            let out = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(aws_time(from))
                .end_time(aws_time(to))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("GetMetricData", job_name, e))?;
            for r in out.metric_data_results() {
                let Some(idx) = r.id().and_then(|id| id.strip_prefix('m')).and_then(|n| n.parse::<usize>().ok()) else { continue };
                let entry = points.entry(idx).or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    if entry.len() < opts.max_points_per_metric {
                        if let Ok(ms) = t.to_millis() {
                            entry.push((ms, *v));
                        }
                    }
                }
            }
            token = out.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            let all_full = chunk
                .iter()
                .enumerate()
                .all(|(i, _)| points.get(&(chunk_no * QUERIES_PER_CALL + i)).is_some_and(|p| p.len() >= opts.max_points_per_metric));
            if token.is_none() || all_full {
                break;
            }
        }
    }
    let mut series = Vec::new();
    for (idx, mut pts) in points {
        let Some(name) = names.get(idx) else { continue };
        if pts.is_empty() {
            continue;
        }
        if pts.len() >= opts.max_points_per_metric {
            tracing::warn!(job = job_name, metric = *name, cap = opts.max_points_per_metric, "metric history capped");
        }
        pts.sort_by_key(|(t, _)| *t);
        pts.dedup_by_key(|(t, _)| *t);
        let points = pts
            .into_iter()
            .enumerate()
            .filter_map(|(step, (ms, value))| {
                Some(MetricPoint { timestamp: DateTime::<Utc>::from_timestamp_millis(ms)?, step: i64::try_from(step).ok()?, value })
            })
            .collect();
        series.push(MetricSeries { name: name.to_string(), points });
    }
    Ok(series)
}

/// The metric names worth reading for a job: its metric definitions, then its final metrics.
pub fn metric_names(job: &sagesync_core::TrainingJob) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in job.metric_definitions.iter().map(|d| &d.name).chain(job.final_metrics.iter().map(|m| &m.name)) {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}
