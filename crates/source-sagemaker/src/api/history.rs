//! Metric histories of a training job from CloudWatch, and the options of histories from
//! either source (the metrics service's reader is [`super::metrics`]).
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
//! for 455 days: older jobs get coarser histories ([`retained_period`]), and each series says
//! which period its points hold.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use chrono::{DateTime, Utc};
use sagesync_core::{HistorySource, MetricPoint, MetricSeries, SyncError};

use super::client::{map_sdk_error, CallCounter, RateLimits};

/// The CloudWatch namespace of SageMaker training jobs.
pub const NAMESPACE: &str = "/aws/sagemaker/TrainingJobs";
/// Default cap on the points kept per metric.
pub const DEFAULT_MAX_POINTS_PER_METRIC: usize = 10_000;
/// Most pages read for one group of queries.
pub const MAX_PAGES: usize = 200;
/// Queries per `GetMetricData` call (the API's limit).
const QUERIES_PER_CALL: usize = 500;

/// Where histories are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HistorySourceMode {
    /// SageMaker's metrics service first; CloudWatch for a job it has nothing for.
    #[default]
    Auto,
    /// SageMaker's metrics service only (`BatchGetMetrics`).
    Sagemaker,
    /// CloudWatch only (`GetMetricData`).
    Cloudwatch,
}

impl HistorySourceMode {
    /// The config's name.
    pub fn as_str(self) -> &'static str {
        match self {
            HistorySourceMode::Auto => "auto",
            HistorySourceMode::Sagemaker => "sagemaker",
            HistorySourceMode::Cloudwatch => "cloudwatch",
        }
    }
}

/// CloudWatch's statistic for a `history_stat` value (its own names, or the metrics service's
/// for the same statistic); `None` for one it does not have (`Last`, `StdDev`).
pub fn cloudwatch_stat(stat: &str) -> Option<&'static str> {
    Some(match stat {
        "Average" | "Avg" => "Average",
        "Maximum" | "Max" => "Maximum",
        "Minimum" | "Min" => "Minimum",
        "SampleCount" | "Count" => "SampleCount",
        "Sum" => "Sum",
        _ => return None,
    })
}

/// The period CloudWatch still has points for, for a job that started at `start`: the
/// configured one, raised to 300 s after 15 days and to 3600 s after 63 days (and rounded up to
/// a multiple of it).
pub fn retained_period(period_secs: i32, start: DateTime<Utc>, now: DateTime<Utc>) -> i32 {
    let age = now - start;
    let floor = if age > chrono::Duration::days(63) {
        3600
    } else if age > chrono::Duration::days(15) {
        300
    } else {
        60
    };
    let p = period_secs.max(floor);
    let rounded = (p + floor - 1) / floor;
    rounded.saturating_mul(floor)
}

/// How histories are read.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// Where.
    pub source: HistorySourceMode,
    /// CloudWatch's aggregation period, seconds (a multiple of 60; CloudWatch's resolution for
    /// training jobs). Older jobs get [`retained_period`].
    pub period_secs: i32,
    /// CloudWatch's statistic (`Average`, `Maximum`, `Minimum`, `Sum`, `SampleCount`).
    pub stat: String,
    /// The metrics service's statistic (`Last`, `Avg`, `Min`, `Max`, `Count`, `StdDev`).
    pub service_stat: String,
    /// Points kept per metric (the oldest).
    pub max_points_per_metric: usize,
    /// The host dimension's instance suffix (`algo-1` is the first instance).
    pub host: String,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            source: HistorySourceMode::Auto,
            period_secs: 60,
            stat: "Average".into(),
            service_stat: "Last".into(),
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
    let period_secs = retained_period(opts.period_secs, start, Utc::now());
    let period = i64::from(period_secs.max(1));
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
                    .metric_stat(MetricStat::builder().metric(metric).period(period_secs).stat(&opts.stat).build())
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
        let capped = pts.len() >= opts.max_points_per_metric;
        if capped {
            tracing::warn!(job = job_name, metric = *name, cap = opts.max_points_per_metric, "metric history capped");
        }
        pts.sort_by_key(|(t, _)| *t);
        pts.dedup_by_key(|(t, _)| *t);
        let points = pts
            .into_iter()
            .enumerate()
            .filter_map(|(step, (ms, value))| {
                Some(MetricPoint { timestamp: Some(DateTime::<Utc>::from_timestamp_millis(ms)?), step: i64::try_from(step).ok()?, value })
            })
            .collect();
        let mut s = MetricSeries::new(name.to_string(), points);
        s.source = Some(HistorySource::Cloudwatch);
        s.resolution = Some(period_secs.to_string());
        s.stat = Some(opts.stat.clone());
        if capped {
            s.truncated = true;
            s.problem = Some(format!("kept the first {} points (history_max_points)", opts.max_points_per_metric));
        }
        series.push(s);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_jobs_get_the_periods_cloudwatch_still_keeps() {
        let now = Utc::now();
        let days = |d| now - chrono::Duration::days(d);
        assert_eq!(retained_period(60, days(1), now), 60);
        assert_eq!(retained_period(120, days(14), now), 120);
        assert_eq!(retained_period(60, days(16), now), 300);
        assert_eq!(retained_period(420, days(16), now), 600);
        assert_eq!(retained_period(60, days(64), now), 3600);
        assert_eq!(retained_period(7200, days(400), now), 7200);
    }

    #[test]
    fn stats_map_onto_cloudwatch() {
        assert_eq!(cloudwatch_stat("Avg"), Some("Average"));
        assert_eq!(cloudwatch_stat("Sum"), Some("Sum"));
        assert_eq!(cloudwatch_stat("Last"), None);
    }
}
