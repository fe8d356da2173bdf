//! Metric histories of training jobs from SageMaker's metrics service (`sagemaker-metrics`,
//! `BatchGetMetrics`).
//!
//! The service keeps each job's series as the job logged them: built-in algorithms, prebuilt
//! images, `MetricDefinitions` and scripts that log through it, with the iteration number of each
//! value. [`read_series`] asks for every job's metrics by iteration number (one query per metric,
//! [`QUERIES_PER_CALL`] queries per call, across jobs), then asks again by time (one-minute
//! points) for the metrics that answered no iteration data. Each query's `Status` stands alone:
//! - `Complete`: the points;
//! - `Truncated`: the points given, and the series is marked truncated;
//! - `InternalError`: asked again, up to [`QUERY_ATTEMPTS`] times in all; still failing, the
//!   job's history is a transient error (the engine tries the job again later);
//! - `ValidationError` (or a status this reader does not know): the series has no points and
//!   says why; the job's other metrics are unaffected.
//!
//! Bounds: at most `max_points` points per metric (the first ones; the series is then marked
//! truncated), so one job's history never grows without limit.

use std::collections::BTreeMap;

use aws_sdk_sagemakermetrics::types::{MetricQuery, MetricQueryResult, MetricQueryResultStatus, MetricStatistic, Period, XAxisType};
use chrono::{DateTime, Utc};
use sagesync_core::{HistorySource, MetricPoint, MetricSeries, SyncError};

use super::client::map_sdk_error;
use super::history::Budget;

/// Queries per `BatchGetMetrics` call (the API's limit).
pub const QUERIES_PER_CALL: usize = 100;
/// Attempts at a query that answers `InternalError`, the first included.
pub const QUERY_ATTEMPTS: u32 = 3;
/// The operation's name in budgets and call counts.
pub const OPERATION: &str = "BatchGetMetrics";
/// X-axis values at or above this are milliseconds since the epoch, below it seconds (the API
/// documents a `Long` without a unit; 10^11 seconds is the year 5138, 10^11 ms is 1973).
pub const MILLIS_FROM: i64 = 100_000_000_000;

/// The statistics of the metrics service.
pub const SERVICE_STATS: [&str; 6] = ["Last", "Avg", "Min", "Max", "Count", "StdDev"];

/// The metrics service's statistic for a `history_stat` value (its own names, or CloudWatch's
/// for the same statistic); `None` for one it does not have (`Sum`).
pub fn service_stat(stat: &str) -> Option<&'static str> {
    Some(match stat {
        "Last" => "Last",
        "Avg" | "Average" => "Avg",
        "Min" | "Minimum" => "Min",
        "Max" | "Maximum" => "Max",
        "Count" | "SampleCount" => "Count",
        "StdDev" => "StdDev",
        _ => return None,
    })
}

/// What to read of one job.
#[derive(Debug, Clone)]
pub struct JobQueries {
    /// The training job's ARN (the query's `ResourceArn`).
    pub arn: String,
    /// The metric names (duplicates and empty names are ignored).
    pub names: Vec<String>,
}

/// How series are read.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The service's statistic (one of [`SERVICE_STATS`]).
    pub stat: String,
    /// Points kept per metric.
    pub max_points: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Iteration,
    Time,
}

/// One metric of one job, and what is known of it so far.
struct Slot {
    job: usize,
    name: String,
    axis: Axis,
    attempts: u32,
    series: Option<MetricSeries>,
    /// Still failing with `InternalError` after every attempt.
    failed: Option<String>,
}

/// Reads the series of every job in `jobs`, `QUERIES_PER_CALL` queries per call across jobs.
/// Returns one entry per job, in order: its series with points or with a problem (a metric the
/// service has nothing for is left out), or the transient error that stopped it. A call that
/// fails as a whole fails every job it carried.
pub async fn read_series(
    client: &aws_sdk_sagemakermetrics::Client,
    budget: Budget<'_>,
    jobs: &[JobQueries],
    opts: &ServiceOptions,
) -> Vec<Result<Vec<MetricSeries>, SyncError>> {
    let mut slots: Vec<Slot> = Vec::new();
    for (j, q) in jobs.iter().enumerate() {
        let mut seen: Vec<&str> = Vec::new();
        for n in &q.names {
            if !n.is_empty() && !seen.contains(&n.as_str()) {
                seen.push(n);
                slots.push(Slot { job: j, name: n.clone(), axis: Axis::Iteration, attempts: 0, series: None, failed: None });
            }
        }
    }
    let mut errors: BTreeMap<usize, SyncError> = BTreeMap::new();
    // Rounds: by iteration number first, then by time for what answered nothing, each round
    // also asking again what answered InternalError (after a pause that grows each round).
    let mut round: u64 = 0;
    loop {
        let due: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                let s = &slots[i];
                s.series.is_none() && s.failed.is_none() && s.attempts < QUERY_ATTEMPTS && !errors.contains_key(&s.job)
            })
            .collect();
        if due.is_empty() {
            break;
        }
        // A query asked again (it answered InternalError; a query asked by time afresh starts
        // at 0 attempts) waits a little first.
        if due.iter().any(|&i| slots[i].attempts > 0) {
            round += 1;
            tokio::time::sleep(std::time::Duration::from_millis(200 * round)).await;
        }
        for chunk in due.chunks(QUERIES_PER_CALL) {
            let queries: Vec<MetricQuery> = chunk.iter().map(|&i| query(&jobs[slots[i].job].arn, &slots[i], opts)).collect();
            budget.limits.acquire(OPERATION).await;
            budget.calls.count(OPERATION);
            let subject = match chunk.first().map(|&i| &jobs[slots[i].job].arn) {
                Some(arn) if chunk.iter().all(|&i| &jobs[slots[i].job].arn == arn) => arn.clone(),
                _ => format!(
                    "{} metrics of {} jobs",
                    chunk.len(),
                    chunk.iter().map(|&i| slots[i].job).collect::<std::collections::BTreeSet<_>>().len()
                ),
            };
            let out = match client.batch_get_metrics().set_metric_queries(Some(queries)).send().await {
                Ok(out) => out,
                Err(e) => {
                    // Problems with one query come back as that query's status: a refusal of the
                    // whole call is about the setup (the endpoint, a proxy, the permission),
                    // never a job's content.
                    let err = match map_sdk_error(OPERATION, &subject, e) {
                        e if e.is_retryable() || matches!(e, SyncError::Setup { .. } | SyncError::Cancelled) => e,
                        e => SyncError::setup(format!("{} (the metrics service refused the whole call: check metrics_endpoint_url and sagemaker:BatchGetMetrics; history_source = \"cloudwatch\" does without the service)", e.chain())),
                    };
                    for &i in chunk {
                        errors.entry(slots[i].job).or_insert_with(|| like(&err));
                    }
                    continue;
                }
            };
            let results = out.metric_query_results();
            for (k, &i) in chunk.iter().enumerate() {
                let slot = &mut slots[i];
                slot.attempts += 1;
                let Some(r) = results.get(k) else {
                    // Fewer results than queries: asked again (bounded by the attempts).
                    if slot.attempts >= QUERY_ATTEMPTS {
                        slot.failed = Some(format!("{OPERATION} answered {} results for {} queries", results.len(), chunk.len()));
                    }
                    continue;
                };
                settle(slot, r, opts);
            }
        }
    }
    let mut out: Vec<Result<Vec<MetricSeries>, SyncError>> = (0..jobs.len()).map(|_| Ok(Vec::new())).collect();
    for (j, e) in errors {
        if let Some(o) = out.get_mut(j) {
            *o = Err(e);
        }
    }
    for s in slots {
        let Some(Ok(list)) = out.get_mut(s.job) else { continue };
        if let Some(message) = s.failed {
            out[s.job] = Err(SyncError::transient(format!("{OPERATION} {} metric {}: {message}", jobs[s.job].arn, s.name)));
            continue;
        }
        if let Some(series) = s.series.filter(|x| !x.points.is_empty() || x.problem.is_some()) {
            list.push(series);
        }
    }
    out
}

/// An error of the same kind and message, for each job a failed call carried.
fn like(e: &SyncError) -> SyncError {
    match e {
        SyncError::Setup { .. } => SyncError::setup(e.chain()),
        SyncError::NotFound(m) => SyncError::setup(m.clone()),
        SyncError::Cancelled => SyncError::Cancelled,
        e if e.is_retryable() => SyncError::transient(e.chain()),
        e => SyncError::permanent(e.chain()),
    }
}

fn query(arn: &str, slot: &Slot, opts: &ServiceOptions) -> MetricQuery {
    let (period, axis) = match slot.axis {
        Axis::Iteration => (Period::IterationNumber, XAxisType::IterationNumber),
        Axis::Time => (Period::OneMinute, XAxisType::Timestamp),
    };
    MetricQuery::builder()
        .metric_name(&slot.name)
        .resource_arn(arn)
        .metric_stat(MetricStatistic::from(opts.stat.as_str()))
        .period(period)
        .x_axis_type(axis)
        .build()
}

/// Takes one query's result into its slot: a series, a second round by time, an attempt more.
fn settle(slot: &mut Slot, r: &MetricQueryResult, opts: &ServiceOptions) {
    let message = r.message().filter(|m| !m.is_empty()).map(|m| {
        let mut m = m.to_string();
        sagesync_core::limits::cut_text(&mut m, 500);
        m
    });
    let status = r.status().cloned();
    match status {
        Some(MetricQueryResultStatus::InternalError) => {
            tracing::debug!(metric = %slot.name, attempt = slot.attempts, "BatchGetMetrics answered InternalError for one metric; asking again");
            if slot.attempts >= QUERY_ATTEMPTS {
                slot.failed = Some(format!("InternalError{}", message.map(|m| format!(": {m}")).unwrap_or_default()));
            }
        }
        Some(MetricQueryResultStatus::Complete) | Some(MetricQueryResultStatus::Truncated) => {
            let truncated = status == Some(MetricQueryResultStatus::Truncated);
            let mut series = points_of(slot, r, opts);
            if truncated {
                series.truncated = true;
                let said =
                    format!("the service returned part of the series (Truncated{})", message.map(|m| format!(": {m}")).unwrap_or_default());
                // A cap of ours applied too: both are said.
                series.problem = Some(match series.problem.take() {
                    Some(capped) => format!("{said}; {capped}"),
                    None => said,
                });
                tracing::warn!(metric = %slot.name, points = series.points.len(), "BatchGetMetrics returned a truncated series");
            }
            if series.points.is_empty() && !truncated && slot.axis == Axis::Iteration {
                // No iteration numbers: ask again by time.
                slot.axis = Axis::Time;
                slot.attempts = 0;
                return;
            }
            slot.series = Some(series);
        }
        other => {
            let what = other.as_ref().map(|s| s.as_str().to_string()).unwrap_or_else(|| "no status".into());
            let problem = format!("{what}{}", message.map(|m| format!(": {m}")).unwrap_or_default());
            tracing::warn!(metric = %slot.name, problem = %problem, "BatchGetMetrics refused one metric's query");
            let mut series = empty(slot, opts);
            series.problem = Some(problem);
            slot.series = Some(series);
        }
    }
}

fn empty(slot: &Slot, opts: &ServiceOptions) -> MetricSeries {
    let mut s = MetricSeries::new(slot.name.clone(), Vec::new());
    s.source = Some(HistorySource::SagemakerMetrics);
    s.resolution = Some(match slot.axis {
        Axis::Iteration => "iteration".into(),
        Axis::Time => "60".into(),
    });
    s.stat = Some(opts.stat.clone());
    s
}

/// The points of one result: by iteration number (step = the number, no time), or by time
/// (step = position, time = the x value).
fn points_of(slot: &Slot, r: &MetricQueryResult, opts: &ServiceOptions) -> MetricSeries {
    let mut s = empty(slot, opts);
    let mut pts: Vec<(i64, f64)> = r.x_axis_values().iter().copied().zip(r.metric_values().iter().copied()).collect();
    pts.sort_by_key(|(x, _)| *x);
    pts.dedup_by_key(|(x, _)| *x);
    if pts.len() > opts.max_points {
        pts.truncate(opts.max_points);
        s.truncated = true;
        s.problem = Some(format!("kept the first {} points (history_max_points)", opts.max_points));
        tracing::warn!(metric = %slot.name, cap = opts.max_points, "metric history capped");
    }
    s.points = match slot.axis {
        Axis::Iteration => pts.into_iter().map(|(step, value)| MetricPoint { timestamp: None, step, value }).collect(),
        Axis::Time => pts
            .into_iter()
            .enumerate()
            .filter_map(|(i, (x, value))| Some(MetricPoint { timestamp: Some(time_of(x)?), step: i64::try_from(i).ok()?, value }))
            .collect(),
    };
    s
}

/// A time x-axis value: seconds since the epoch, or milliseconds (see [`MILLIS_FROM`]).
pub fn time_of(x: i64) -> Option<DateTime<Utc>> {
    if x.unsigned_abs() >= MILLIS_FROM.unsigned_abs() {
        DateTime::<Utc>::from_timestamp_millis(x)
    } else {
        DateTime::<Utc>::from_timestamp(x, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_map_onto_the_service() {
        assert_eq!(service_stat("Average"), Some("Avg"));
        assert_eq!(service_stat("Last"), Some("Last"));
        assert_eq!(service_stat("SampleCount"), Some("Count"));
        assert_eq!(service_stat("Sum"), None);
        for s in SERVICE_STATS {
            assert_eq!(service_stat(s), Some(s));
        }
    }

    #[test]
    fn time_values_in_seconds_or_milliseconds() {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0);
        assert_eq!(time_of(1_700_000_000), t);
        assert_eq!(time_of(1_700_000_000_000), t);
        // A hostile value is no point, never a panic.
        assert_eq!(time_of(i64::MIN), None);
        assert_eq!(time_of(i64::MAX), None);
    }

    fn slot(axis: Axis) -> Slot {
        Slot { job: 0, name: "loss".into(), axis, attempts: 1, series: None, failed: None }
    }

    fn result(status: &str, xs: Vec<i64>, vs: Vec<f64>) -> MetricQueryResult {
        MetricQueryResult::builder()
            .status(MetricQueryResultStatus::from(status))
            .set_x_axis_values(Some(xs))
            .set_metric_values(Some(vs))
            .message("m")
            .build()
    }

    #[test]
    fn each_status_stands_alone() {
        let opts = ServiceOptions { stat: "Last".into(), max_points: 3 };
        let mut s = slot(Axis::Iteration);
        settle(&mut s, &result("Complete", vec![2, 0, 1, 3], vec![0.2, 0.0, 0.1, 0.3]), &opts);
        let got = s.series.expect("a series");
        assert_eq!(got.points.iter().map(|p| p.step).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(got.truncated && got.problem.as_deref().is_some_and(|p| p.contains("history_max_points")));
        assert!(got.points.iter().all(|p| p.timestamp.is_none()));

        let mut s = slot(Axis::Iteration);
        settle(&mut s, &result("Complete", vec![], vec![]), &opts);
        assert!(s.series.is_none() && s.axis == Axis::Time && s.attempts == 0, "no iteration data: asked again by time");

        let mut s = slot(Axis::Time);
        settle(&mut s, &result("Truncated", vec![1_700_000_060, 1_700_000_000], vec![2.0, 1.0]), &opts);
        let got = s.series.expect("a series");
        assert!(got.truncated && got.problem.as_deref().is_some_and(|p| p.contains("Truncated: m")));
        assert_eq!(got.points[0].timestamp, DateTime::<Utc>::from_timestamp(1_700_000_000, 0));
        assert_eq!((got.points[1].step, got.points[1].value), (1, 2.0));
        assert_eq!(got.resolution.as_deref(), Some("60"));

        let mut s = slot(Axis::Iteration);
        settle(&mut s, &result("ValidationError", vec![], vec![]), &opts);
        let got = s.series.expect("a series");
        assert_eq!(got.problem.as_deref(), Some("ValidationError: m"));
        assert!(got.points.is_empty());

        let mut s = slot(Axis::Iteration);
        settle(&mut s, &result("InternalError", vec![], vec![]), &opts);
        assert!(s.series.is_none() && s.failed.is_none(), "asked again");
        s.attempts = QUERY_ATTEMPTS;
        settle(&mut s, &result("InternalError", vec![], vec![]), &opts);
        assert!(s.failed.is_some(), "given up after {QUERY_ATTEMPTS} attempts");
    }
}
