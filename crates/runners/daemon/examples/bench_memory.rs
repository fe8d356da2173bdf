//! Memory benchmark: a backfill of N jobs through the whole engine (Search pages of 100,
//! validators, mapper, leases and commits in a SQLite ledger) and peak RSS for each N, each N in
//! a fresh process. The SageMaker side is a fast local stand-in for `Search` (synthetic jobs,
//! keyset filters and page tokens like the real API), so that 100,000 jobs take seconds, not
//! hours; the sink counts records and keeps nothing, so the figures are the engine's own.
//!
//! Usage: `cargo run --release -p sagesync-daemon --example bench_memory -- [N ...]`
//! (default 1000 10000 100000; `scripts/bench-memory.sh` runs it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::HeaderMap;
use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{
    async_trait, CancellationToken, Engine, NoObserver, PassRequest, PipelineSettings, RunRecord, Sink, SinkReceipt, SyncError, TagKeys,
    WriteContext, WriteKind,
};
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use serde_json::{json, Value};

const BASE: f64 = 1_780_000_000.0;

fn job(i: usize) -> Value {
    let t = BASE + i as f64;
    json!({
        "TrainingJobName": format!("bench-{i:06}"),
        "TrainingJobArn": format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/bench-{i:06}"),
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "HyperParameters": {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic", "num_round": "100"},
        "AlgorithmSpecification": {"TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", "TrainingInputMode": "File"},
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench-data/train/", "S3DataDistributionType": "FullyReplicated"}}, "ContentType": "text/csv", "CompressionType": "None"},
            {"ChannelName": "validation", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench-data/validation/", "S3DataDistributionType": "FullyReplicated"}}, "ContentType": "text/csv", "CompressionType": "None"}
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bench-out/"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "CreationTime": t - 3600.0, "TrainingStartTime": t - 3000.0, "TrainingEndTime": t - 10.0, "LastModifiedTime": t,
        "FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.9234567880630493, "Timestamp": t - 20.0}, {"MetricName": "train:auc", "Value": 0.95, "Timestamp": t - 20.0}],
        "ModelArtifacts": {"S3ModelArtifacts": format!("s3://bench-out/bench-{i:06}/output/model.tar.gz")},
        "Tags": [
            {"Key": "MODEL_DB_SYNC", "Value": "true"}, {"Key": "MODEL_DB_PROJECT_NAME", "Value": "bench"}, {"Key": "MODEL_DB_PROJECT_USER", "Value": "b"},
            {"Key": "MODEL_DB_PROJECT_DESC", "Value": "d"}, {"Key": "MODEL_DB_MODEL_NAME", "Value": "m"}, {"Key": "MODEL_DB_MODEL_TYPE", "Value": "XGBoost"}
        ]
    })
}

fn epoch(s: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// `SageMaker.Search` over `n` synthetic jobs (one per second from BASE), ascending by time.
async fn search(n: usize, headers: HeaderMap, body: Bytes) -> ([(&'static str, &'static str); 1], String) {
    let ct = [("content-type", "application/x-amz-json-1.1")];
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if target != "SageMaker.Search" {
        return (ct, json!({"__type": "UnknownOperationException"}).to_string());
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut lo = 0usize;
    let mut hi = n;
    for f in req.pointer("/SearchExpression/Filters").and_then(Value::as_array).cloned().unwrap_or_default() {
        if f["Name"] != "LastModifiedTime" {
            continue;
        }
        let Some(t) = f["Value"].as_str().and_then(epoch) else { continue };
        let idx = (t - BASE).max(0.0);
        match f["Operator"].as_str() {
            Some("GreaterThanOrEqualTo") => lo = lo.max(idx.ceil() as usize),
            Some("GreaterThan") => lo = lo.max(idx.floor() as usize + 1),
            Some("LessThan") => hi = hi.min(idx.ceil() as usize),
            _ => {}
        }
    }
    let size = req["MaxResults"].as_u64().unwrap_or(10).min(100) as usize;
    let start = lo + req["NextToken"].as_str().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let end = (start + size).min(hi.min(n));
    let results: Vec<Value> = (start..end.max(start)).map(|i| json!({"TrainingJob": job(i)})).collect();
    let mut out = json!({"Results": results});
    if end < hi.min(n) {
        out["NextToken"] = json!((end - lo).to_string());
    }
    (ct, out.to_string())
}

/// Counts records, keeps nothing.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl Sink for Counting {
    async fn upsert(&self, _r: &RunRecord, _cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(SinkReceipt::new(WriteKind::Created))
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn one(n: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route("/", axum::routing::post(move |h: HeaderMap, b: Bytes| search(n, h, b)));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    for (k, v) in [("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_EC2_METADATA_DISABLED", "true")] {
        std::env::set_var(k, v);
    }
    let dir = std::env::var("SAGESYNC_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let db = std::path::PathBuf::from(dir).join(format!("sagesync-bench-{}-{n}.db", std::process::id()));
    let sink = Arc::new(Counting::default());
    let settings = SageMakerSettings::new(Mode::Search).endpoint(&format!("http://127.0.0.1:{port}"), "us-east-1").unlimited();
    let engine = Engine::builder()
        .source(SageMakerSource::new(settings))
        .validator("required_tags", RequiredTags::new(&TagKeys::default()))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(TagKeys::default()))
        .sink_arc("count", sink.clone())
        .settings(PipelineSettings { concurrency: 8, ..Default::default() })
        .state(Arc::new(sagesync_state_sqlite::SqliteState::new(&db, 10_000)))
        .build()
        .expect("engine");
    let t = Instant::now();
    let r = engine
        .pass(
            &PassRequest::backfill(chrono::DateTime::from_timestamp(BASE as i64 - 1, 0).expect("time"), None),
            &CancellationToken::new(),
            &NoObserver,
        )
        .await;
    let wall = t.elapsed().as_secs_f64();
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    assert_eq!((r.synced, sink.0.load(Ordering::Relaxed)), (n, n), "{:?} {:?}", r.listing_error, r.state_error);
    println!(
        "{n:>7} jobs  {wall:>8.2} s  {:>8.0} jobs/s  peak RSS {:>6.1} MiB  Search calls {}",
        n as f64 / wall,
        peak_rss_kib() as f64 / 1024.0,
        r.api_calls.get("Search").copied().unwrap_or(0)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.first().and_then(|a| a.strip_prefix("--one=")).and_then(|n| n.parse().ok()) {
        one(n).await;
        return;
    }
    let ns: Vec<usize> = if args.is_empty() { vec![1000, 10_000, 100_000] } else { args.iter().filter_map(|a| a.parse().ok()).collect() };
    let exe = std::env::current_exe().expect("exe");
    for n in ns {
        let status = std::process::Command::new(&exe).arg(format!("--one={n}")).status().expect("run");
        assert!(status.success(), "N = {n} failed");
    }
}
