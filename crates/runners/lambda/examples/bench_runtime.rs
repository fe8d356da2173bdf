//! Lambda benchmark: cold start (process start → first `/invocation/next`), per-invocation time
//! against the local Runtime API emulation (moto for SageMaker, the file sink), and the stripped
//! `bootstrap` size. Run with `scripts/bench-lambda.sh` (builds `bootstrap` in release).
//!
//! Usage: bench_runtime PATH/TO/bootstrap [INVOCATIONS]

use std::time::{Duration, Instant};

use sagesync_test_support::lambda::{Outcome, Runtime};
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::json;

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!("median {:.2} ms, p90 {:.2} ms, min {:.2} ms, max {:.2} ms (n={})", p(0.5), p(0.9), v[0], v[v.len() - 1], v.len())
}

fn spawn(bin: &str, rt: &Runtime, cfg: &std::path::Path) -> std::process::Child {
    std::process::Command::new(bin)
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", rt.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "sagesync")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("SAGESYNC_CONFIG", cfg)
        .env("RUST_LOG", "error")
        .envs(TEST_ENV)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start bootstrap")
}

#[tokio::main]
async fn main() {
    let bin = std::env::args().nth(1).expect("usage: bench_runtime PATH/TO/bootstrap [INVOCATIONS]");
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(50);
    let moto = Moto::start();
    let names = moto.create_jobs("bench", n, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sagesync.toml");
    std::fs::write(&cfg, format!("[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"{}\"\n", moto.url(), dir.path().join("out").display())).unwrap();

    let mut colds = Vec::new();
    for _ in 0..10 {
        let rt = Runtime::start().await;
        let start = Instant::now();
        let mut child = spawn(&bin, &rt, &cfg);
        loop {
            if let Some(t) = rt.state.lock().unwrap().first_next {
                colds.push((t - start).as_secs_f64() * 1000.0);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    println!("cold start (process start -> first /next): {}", stats(colds));

    let rt = Runtime::start().await;
    let mut child = spawn(&bin, &rt, &cfg);
    let ev = |name: &str, status: &str| json!({"version": "0", "id": "b", "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker", "account": "1", "time": "2026-11-20T10:00:00Z", "region": "us-east-1", "resources": [], "detail": {"TrainingJobName": name, "TrainingJobStatus": status, "Tags": SYNC_TAGS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}});
    let mut ignored = Vec::new();
    let mut synced = Vec::new();
    for name in &names {
        let t = Instant::now();
        assert!(matches!(rt.invoke(ev(name, "InProgress")).await, Outcome::Response(_)));
        ignored.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        match rt.invoke(ev(name, "Completed")).await {
            Outcome::Response(v) => assert_eq!(v["outcome"], "synced", "{v}"),
            other => panic!("{other:?}"),
        }
        synced.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("invocation, InProgress event (no API call): {}", stats(ignored));
    println!("invocation, Completed event (DescribeTrainingJob on moto + file write): {}", stats(synced));
    let _ = child.kill();
    let _ = child.wait();

    let stripped = dir.path().join("bootstrap.stripped");
    std::fs::copy(&bin, &stripped).unwrap();
    let ok = std::process::Command::new("strip").arg(&stripped).status().map(|s| s.success()).unwrap_or(false);
    let size = std::fs::metadata(&stripped).unwrap().len();
    println!("bootstrap: {:.1} MiB {} ({})", size as f64 / 1048576.0, if ok { "stripped" } else { "(strip unavailable, unstripped)" }, bin);
}
