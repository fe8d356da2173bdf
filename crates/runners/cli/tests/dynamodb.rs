//! `sagesync` with `[state] type = "dynamodb"` (moto, server mode): `run` shares the ledger
//! across processes, `status` shows a failure another runner (the Lambda) parked in the table,
//! and `retry` re-drives it.

use std::path::Path;
use std::time::Duration;

use sagesync_core::state::conformance;
use sagesync_core::{Acquired, Outcome, StateStore};
use sagesync_state_dynamodb::{DynamoSettings, DynamoState};
use sagesync_test_support::bin::private_bin;
use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::Value;

fn sagesync(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(private_bin(env!("CARGO_BIN_EXE_sagesync")));
    c.current_dir(dir).envs(TEST_ENV).env_remove("AWS_PROFILE");
    c
}

fn run(c: &mut std::process::Command) -> (Option<i32>, String, String) {
    let o = c.output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_retry_see_and_redrive_the_shared_ledger() {
    let moto = Moto::start();
    let names = moto.create_jobs("cli", 3, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sagesync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n[state]\ntype = \"dynamodb\"\ntable = \"cli-ledger\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\ncreate_table = true\n",
            url = moto.url()
        ),
    )
    .unwrap();
    let (code, _, err) = run(sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    // A second process finds everything in the table: nothing written again.
    let (code, out, err) = run(sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((r["synced"].as_u64(), r["already_done"].as_u64()), (Some(0), Some(3)), "{r}");

    // What the Lambda leaves for a job whose write failed for good: a parked failure.
    let mut s = DynamoSettings::new("cli-ledger");
    s.endpoint_url = Some(moto.url());
    s.region = Some("us-east-1".into());
    let st = DynamoState::new(s);
    let arn = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", names[1]);
    let Acquired::Granted { lease, .. } = st.acquire(&arn, "lambda:1:x", Duration::from_secs(30)).await.unwrap() else { panic!("granted") };
    let mut e = conformance::entry(&arn, Outcome::Failed);
    e.reason = Some("ModelDB rejected the record: project name too long".into());
    e.parked = true;
    e.attempts = 5;
    assert!(st.commit(&lease, &e).await.unwrap());
    std::fs::remove_file(dir.path().join(format!("out/moto-project/{}.json", names[1]))).unwrap();

    let (code, out, err) = run(sagesync(dir.path()).args(["status", "--config", cfg.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert!(s["state"].as_str().unwrap().contains("dynamodb table cli-ledger"), "{s}");
    assert_eq!(
        (s["counts"]["synced"].as_u64(), s["counts"]["failed"].as_u64(), s["counts"]["parked"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["failed_jobs"][0]["arn"], arn.as_str());
    assert!(s["failed_jobs"][0]["error"].as_str().unwrap().contains("project name too long"), "{s}");

    let (code, _, err) = run(sagesync(dir.path()).args(["retry", "--config", cfg.to_str().unwrap(), &names[1]]));
    assert_eq!(code, Some(0), "{err}");
    assert!(dir.path().join(format!("out/moto-project/{}.json", names[1])).exists(), "re-driven into the sink");
    let c = st.counts().await.unwrap();
    assert_eq!((c.synced, c.failed, c.parked), (3, 0, 0));
}
