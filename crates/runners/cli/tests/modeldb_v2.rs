//! recorded jobs → `sagesync run` → modeldb_v2 sink → the in-process ModelDB v2 fake.

#[path = "../../../sink-modeldb/tests/support/peer.rs"]
mod peer;
#[path = "../../../sink-modeldb/tests/support/v2fake.rs"]
mod v2fake;

use serde_json::Value;

async fn run_once(cfg: std::path::PathBuf) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagesync"))
        .current_dir(peer::repo_root())
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_jobs_to_modeldb_v2_twice() {
    let fake = v2fake::Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v2.toml");
    std::fs::write(
        &cfg,
        format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"examples/jobs\"]\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"{}\"\nexperiment = \"sagemaker\"\n", fake.base_url),
    )
    .unwrap();
    let first = run_once(cfg.clone()).await;
    assert_eq!(first["synced"], 4, "{first}");
    assert_eq!(fake.runs().len(), 4);
    let run_writes = fake.writes().iter().filter(|w| w.path.starts_with("/experiment-run/")).count();
    assert_eq!(run_writes, 4, "one write per new run");
    fake.clear_requests();
    let second = run_once(cfg).await;
    assert_eq!(second["synced"], 4);
    for j in second["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        assert_eq!(j["receipts"][0]["write"], "unchanged", "{j}");
    }
    assert!(fake.writes().is_empty(), "a re-sync writes nothing: {:?}", fake.writes());
    assert_eq!(fake.runs().len(), 4);
    let exps = fake.with(|s| s.experiments.clone());
    assert!(exps.iter().all(|e| e["name"] == "sagemaker"));
}
