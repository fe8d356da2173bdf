//! Benchmark of the `mlflow` sink against a running MLflow server (see scripts/bench-mlflow.sh).
//!
//! `cargo run --release -p sagesync-sink-mlflow --example bench_mlflow -- <tracking_uri> [jobs] [points]`
//!
//! A counting proxy (in this process) sits in front of the server. Prints requests and writes
//! per new job, per unchanged re-sync (with and without the ledger's receipt), jobs/s, and
//! metric-history points/s.

use std::time::Instant;

use sagesync_core::{
    Dataset, HyperParameter, Metric, MetricPoint, MetricSeries, Model, Project, Run, RunRecord, Sink, Split, WriteContext,
};
use sagesync_sink_mlflow::{MlflowSink, MlflowSinkConfig};
use sagesync_test_support::mlflow::Proxy;
use serde_json::json;

fn job(i: usize, tag: &str) -> RunRecord {
    let start = chrono::DateTime::<chrono::Utc>::from_timestamp(1_780_000_000 + i as i64 * 60, 0).unwrap_or_default();
    let name = format!("bench-{tag}-{i:05}");
    RunRecord {
        lineage: Default::default(),
        project: Project { name: "bench".into(), user: "bench".into(), description: "benchmark jobs".into() },
        experiment: "Default_Experiment".into(),
        run: Run {
            name: name.clone(),
            external_id: format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"),
            status: "Completed".into(),
            start: Some(start),
            end: Some(start + chrono::Duration::minutes(30)),
        },
        model: Model {
            name: "xgb".into(),
            model_type: "XGBoost".into(),
            artifact_uri: Some(format!("s3://bench/{name}/output/model.tar.gz")),
        },
        hyperparameters: (0..12).map(|h| HyperParameter { name: format!("hp_{h}"), raw: h.to_string(), value: json!(h) }).collect(),
        datasets: ["train", "validation"]
            .iter()
            .map(|c| Dataset {
                name: c.to_string(),
                uri: format!("s3://bench/data/{c}/"),
                metadata: [("ContentType".to_string(), "text/csv".to_string())].into_iter().collect(),
                manifest: None,
            })
            .collect(),
        metrics: ["train:loss", "validation:auc", "validation:logloss"]
            .iter()
            .enumerate()
            .map(|(k, m)| Metric {
                name: m.to_string(),
                value: 0.1 * k as f64,
                split: Split::from_metric_name(m),
                timestamp: Some(start),
                step: None,
            })
            .collect(),
        metric_history: vec![],
        tags: (0..6).map(|t| (format!("tag_{t}"), format!("value {t}"))).collect(),
        attributes: [("training_job_status".to_string(), json!("Completed")), ("instance_type".to_string(), json!("ml.m5.xlarge"))]
            .into_iter()
            .collect(),
    }
}

fn non_experiment(p: &Proxy) -> (usize, usize) {
    let log = p.log();
    let reqs = log.iter().filter(|l| !l.op().starts_with("experiments/")).count();
    let writes = log.iter().filter(|l| l.is_write() && !l.op().starts_with("experiments/")).count();
    (reqs, writes)
}

/// Re-syncs every job (with its previous receipt, if given); returns the seconds taken.
async fn pass(sink: &MlflowSink, p: &Proxy, jobs: &[RunRecord], previous: &[Option<sagesync_core::SinkReceipt>]) -> f64 {
    p.clear();
    let t = Instant::now();
    for (r, prev) in jobs.iter().zip(previous) {
        if let Err(e) = sink.upsert(r, &WriteContext::new().with_previous(prev.clone())).await {
            eprintln!("{}: {}", r.run.name, e.chain());
            std::process::exit(1);
        }
    }
    t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(uri) = args.get(1) else {
        eprintln!("usage: bench_mlflow <tracking_uri> [jobs] [points]");
        std::process::exit(2);
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let points: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let p = Proxy::start(uri).await;
    let mut cfg = MlflowSinkConfig::with_uri(&p.url);
    cfg.experiment = format!("bench-{}", std::process::id());
    let sink = match cfg.settings().map_err(|e| format!("{e:?}")).and_then(|s| MlflowSink::new(s).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad settings: {e}");
            std::process::exit(2);
        }
    };
    let tag = format!("{:x}", std::process::id());
    let jobs: Vec<RunRecord> = (0..n).map(|i| job(i, &tag)).collect();
    // Warm the experiment cache (the first job of an experiment also gets or creates it).
    let mut receipts = Vec::new();
    let t = Instant::now();
    p.clear();
    // New jobs as the engine sends them with a persistent ledger: first writes.
    for r in &jobs {
        match sink.upsert(r, &WriteContext::new().with_first_write(true)).await {
            Ok(rc) => receipts.push(rc),
            Err(e) => {
                eprintln!("{}: {}", r.run.name, e.chain());
                std::process::exit(1);
            }
        }
    }
    let new_secs = t.elapsed().as_secs_f64();
    let (reqs, writes) = non_experiment(&p);
    println!("new jobs (first writes): {n} in {new_secs:.2} s = {:.1} jobs/s; {:.2} requests/job ({:.2} writes/job), experiment lookups not counted", n as f64 / new_secs, reqs as f64 / n as f64, writes as f64 / n as f64);

    let none = vec![None; n];
    let secs = pass(&sink, &p, &jobs, &none).await;
    let (reqs, writes) = non_experiment(&p);
    println!(
        "unchanged, no ledger:   {n} in {secs:.2} s = {:.1} jobs/s; {:.2} requests/job ({:.2} writes/job)",
        n as f64 / secs,
        reqs as f64 / n as f64,
        writes as f64 / n as f64
    );
    let previous: Vec<Option<sagesync_core::SinkReceipt>> = receipts.into_iter().map(Some).collect();
    let secs = pass(&sink, &p, &jobs, &previous).await;
    let (reqs, writes) = non_experiment(&p);
    println!(
        "unchanged, with ledger: {n} in {secs:.3} s; {:.2} requests/job ({:.2} writes/job)",
        reqs as f64 / n as f64,
        writes as f64 / n as f64
    );

    // Metric histories: one job, 10 series, once by time (CloudWatch's) and once by iteration
    // number (SageMaker's metrics service: no timestamps, stamped with the job's end).
    for (label, by_iteration) in [("by time", false), ("by iteration", true)] {
        let mut r = job(n + 1 + usize::from(by_iteration), &format!("{tag}-hist"));
        let series = 10;
        let per = points.div_ceil(series);
        let start = r.run.start.unwrap_or_default();
        r.metric_history = (0..series)
            .map(|s| {
                MetricSeries::new(
                    format!("series_{s}"),
                    (0..per)
                        .map(|i| MetricPoint {
                            timestamp: (!by_iteration).then(|| start + chrono::Duration::seconds(i as i64)),
                            step: i as i64,
                            value: (i * (s + 1)) as f64 + 0.1,
                        })
                        .collect(),
                )
            })
            .collect();
        p.clear();
        let t = Instant::now();
        if let Err(e) = sink.upsert(&r, &WriteContext::new()).await {
            eprintln!("history job: {}", e.chain());
            std::process::exit(1);
        }
        let secs = t.elapsed().as_secs_f64();
        let total = per * series;
        let batches = p.log().iter().filter(|l| l.op() == "runs/log-batch").count();
        println!("histories ({label}): {total} points in {secs:.2} s = {:.0} points/s ({batches} log-batch requests)", total as f64 / secs);
    }
}
