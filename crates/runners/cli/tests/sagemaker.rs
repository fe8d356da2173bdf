//! moto → `sagesync run` / `sagesync sync-job` → file sink, in both source modes.

#[path = "../../../source-sagemaker/tests/support/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::Path;

use moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::Value;

fn sagesync(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.current_dir(dir).envs(TEST_ENV).env_remove("AWS_PROFILE");
    c
}

fn config(dir: &Path, name: &str, endpoint: &str, mode: &str, out: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nmode = \"{mode}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"{out}\"\n"
        ),
    )
    .unwrap();
    p
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for p in std::fs::read_dir(dir).unwrap() {
        let p = p.unwrap().path();
        for f in std::fs::read_dir(&p).unwrap() {
            let f = f.unwrap().path();
            out.insert(f.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&f).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_to_files_in_both_modes_gives_identical_files() {
    let moto = Moto::start();
    let synced = moto.create_jobs("cli", 12, &SYNC_TAGS).await;
    moto.create_jobs("untagged", 3, &[("team", "x")]).await;
    moto.edit(&synced[0], serde_json::json!({"TrainingJobStatus": "Failed", "FailureReason": "boom"}));
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for mode in ["list", "search"] {
        let cfg = config(dir.path(), &format!("{mode}.toml"), &moto.url(), mode, &format!("out-{mode}"));
        let out = sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((s["synced"].as_u64(), s["skipped"].as_u64(), s["failed"].as_u64()), (Some(11), Some(4), Some(0)), "{mode}: {s}");
        summaries.push(s);
    }
    let list = &summaries[0]["api_calls"];
    assert_eq!(list["ListTrainingJobs"], 1);
    assert_eq!(list["DescribeTrainingJob"], 15);
    assert_eq!(list["ListTags"], 15);
    assert_eq!(summaries[1]["api_calls"], serde_json::json!({"Search": 1}));
    let a = files(&dir.path().join("out-list"));
    let b = files(&dir.path().join("out-search"));
    assert_eq!(a.len(), 11);
    assert_eq!(a, b, "both modes write identical files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_job_by_name() {
    let moto = Moto::start();
    let names = moto.create_jobs("one", 2, &SYNC_TAGS).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "list", "out");
    let out = sagesync(dir.path()).args(["sync-job", &names[1], "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 1);
    assert_eq!(s["jobs"][0]["job"], names[1].as_str());
    assert_eq!(s["api_calls"], serde_json::json!({"DescribeTrainingJob": 1, "ListTags": 1}));
    assert!(dir.path().join(format!("out/moto-project/{}.json", names[1])).exists());
    assert!(!dir.path().join(format!("out/moto-project/{}.json", names[0])).exists());
    let out = sagesync(dir.path()).args(["sync-job", "missing-job", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed") && text.contains("job not found"), "{text}");
}
