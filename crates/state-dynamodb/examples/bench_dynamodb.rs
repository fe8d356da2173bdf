//! DynamoDB state benchmark against moto: the same poll pass over N jobs (SageMaker on moto,
//! file sink, one job at a time) with the ledger in memory and in DynamoDB; prints DynamoDB
//! requests per synced job (counted by a loopback proxy), the added wall time per job, and the
//! requests of a second pass that finds everything done. Run with `scripts/bench-dynamodb.sh [N]`.

use std::time::{Duration, Instant};

use sagesync_core::{CancellationToken, Config, Engine, EngineOptions, NoObserver, PassReport, PassRequest};
use sagesync_sink_file as _;
use sagesync_source_sagemaker as _;
use sagesync_state_dynamodb::{DynamoSettings, DynamoState};
use sagesync_test_support::dynamodb;
use sagesync_test_support::moto;

fn config(moto: &str, out: &std::path::Path, state: &str) -> Config {
    let text = format!(
        "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{moto}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"{}\"\n\n[pipeline]\nconcurrency = 1\n\n{state}\n",
        out.display()
    );
    Config::parse(&text, "bench.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

fn dynamo_state(url: &str, table: &str) -> String {
    format!("[state]\ntype = \"dynamodb\"\ntable = \"{table}\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\ncreate_table = true\n")
}

async fn prepare(url: &str, table: &str) {
    let mut s = DynamoSettings::new(table);
    s.endpoint_url = Some(url.to_string());
    s.region = Some("us-east-1".into());
    s.create_table = true;
    DynamoState::new(s).open().await.unwrap_or_else(|e| panic!("{e}"));
}

async fn pass(cfg: &Config) -> (PassReport, Duration) {
    let engine = Engine::from_config(cfg, &EngineOptions::memory()).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let r = engine.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
    (r, t.elapsed())
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let moto = moto::Moto::start();
    moto.create_jobs("bench", n, &moto::SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();

    // Warm-up (moto's first requests are slow), then the memory baseline.
    let _ = pass(&config(&moto.url(), &dir.path().join("warm"), "")).await;
    let (mem, mem_t) = pass(&config(&moto.url(), &dir.path().join("mem"), "")).await;
    assert_eq!(mem.synced, n, "{mem:?}");

    // DynamoDB, straight to moto: the timing.
    prepare(&moto.url(), "bench-timed").await;
    let (dyn_r, dyn_t) = pass(&config(&moto.url(), &dir.path().join("timed"), &dynamo_state(&moto.url(), "bench-timed"))).await;
    assert_eq!(dyn_r.synced, n, "{dyn_r:?}");

    // DynamoDB through the counting proxy: the requests.
    let p = dynamodb::Proxy::start(moto.port, 0).await;
    prepare(&p.url(), "bench-counted").await;
    p.counters.reset();
    let counted_cfg = config(&moto.url(), &dir.path().join("counted"), &dynamo_state(&p.url(), "bench-counted"));
    let (c, _) = pass(&counted_cfg).await;
    assert_eq!(c.synced, n, "{c:?}");
    let first = p.counters.snapshot();
    p.counters.reset();
    let (again, _) = pass(&counted_cfg).await;
    let second = p.counters.snapshot();

    let per = |m: &std::collections::BTreeMap<String, usize>, jobs: usize| m.values().sum::<usize>() as f64 / jobs.max(1) as f64;
    println!("jobs: {n} (poll pass, concurrency 1, SageMaker and DynamoDB on moto, file sink)");
    println!("first pass, requests by operation: {first:?}");
    println!(
        "DynamoDB requests per synced job: {:.2} (incl. one DescribeTable per process and one BatchGetItem per listing page)",
        per(&first, c.synced)
    );
    let per_job_ops: usize = first.get("UpdateItem").copied().unwrap_or(0);
    println!(
        "  conditional UpdateItem per synced job (acquire, intent before the first write, commit): {:.2}",
        per_job_ops as f64 / c.synced.max(1) as f64
    );
    println!(
        "second pass (nothing to do: {} already done), requests by operation: {second:?} = {:.3} per job",
        again.already_done,
        per(&second, n)
    );
    // Idle polls: what a daemon's poll costs when nothing changed (its listing still returns
    // every job of the watermark overlap, read in one BatchGetItem per page).
    p.counters.reset();
    let polls = 5;
    for _ in 0..polls {
        let (r, _) = pass(&counted_cfg).await;
        assert_eq!(r.synced, 0, "{r:?}");
    }
    let idle = p.counters.snapshot();
    println!(
        "idle poll ({n} jobs listed, all done), requests by operation over {polls} polls: {idle:?} = {:.1} per poll, {} Scan",
        idle.values().sum::<usize>() as f64 / polls as f64,
        idle.get("Scan").copied().unwrap_or(0)
    );
    println!("wall time: memory ledger {:.2} s, DynamoDB ledger {:.2} s", mem_t.as_secs_f64(), dyn_t.as_secs_f64());
    println!("added latency per synced job: {:.2} ms", (dyn_t.as_secs_f64() - mem_t.as_secs_f64()) * 1000.0 / n as f64);
}
