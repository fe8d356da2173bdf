//! recorded jobs → `sagesync run` → modeldb_v1 sink → the ModelDB v1 Thrift peer.

use sagesync_test_support::locate::repo_root;
use sagesync_test_support::modeldb_v1::Peer;
use serde_json::Value;

fn run_once(cfg: &std::path::Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sagesync"))
        .current_dir(repo_root())
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn recorded_jobs_to_modeldb_v1_twice_gives_one_run_per_job() {
    let peer = Peer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v1.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker_json\"\npaths = [\"examples/jobs\"]\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {}\n",
            peer.port
        ),
    )
    .unwrap();
    let first = run_once(&cfg);
    assert_eq!((first["synced"].as_u64(), first["failed"].as_u64()), (Some(4), Some(0)), "{first}");
    for j in first["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        assert_eq!(j["receipts"][0]["sink"], "modeldb_v1");
        assert_eq!(j["receipts"][0]["write"], "created");
    }
    let second = run_once(&cfg);
    for j in second["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        assert_eq!(j["receipts"][0]["write"], "unchanged", "{j}");
        assert_eq!(j["receipts"][0]["writes"], 0);
    }
    let st = peer.state();
    let runs = st["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "one run per synced job: {runs:?}");
    for j in first["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        let arn = j["arn"].as_str().unwrap();
        assert_eq!(runs.iter().filter(|r| r["description"].as_str().unwrap().contains(arn)).count(), 1, "{arn}");
    }
    // Four projects, each with its default experiment.
    assert_eq!(st["projects"].as_array().unwrap().len(), 4);
    assert_eq!(st["fit_events"].as_array().unwrap().len(), 4);
}
