//! Issue 23: one deployment over many AWS accounts and regions. moto in server mode emulates
//! accounts: the credentials STS AssumeRole returns for a role in account B make SageMaker calls
//! land in account B's backend. Jobs in two accounts and two regions, some names in both.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
use serde_json::Value;

const OWN: &str = "123456789012";
const B: &str = "111111111111";
const ROLE_B: &str = "arn:aws:iam::111111111111:role/sagesync-reader";
const EXTERNAL_ID: &str = "xid-Zq8w3KpLm2";

fn sagesync(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.current_dir(dir).envs(TEST_ENV).env_remove("AWS_PROFILE").env("SAGESYNC_TEST_EXTERNAL_ID", EXTERNAL_ID);
    c
}

fn config(dir: &Path, name: &str, moto: &Moto, regions: &str, accounts: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let url = moto.url();
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregions = {regions}\nendpoint_url = \"{url}\"\nsts_endpoint_url = \"{url}\"\nmax_requests_per_second = 0\nresources = [\"training_jobs\"]\n{accounts}\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n\n[state]\ntype = \"sqlite\"\npath = \"ledger.db\"\n"
        ),
    )
    .unwrap();
    p
}

fn account_b(role: &str) -> String {
    format!("\n[[source.accounts]]\nrole_arn = \"{role}\"\nexternal_id = \"${{SAGESYNC_TEST_EXTERNAL_ID}}\"\nsession_name = \"sagesync-test\"\n")
}

/// The documents written, by path, with the ARN each holds.
fn documents(out: &Path) -> BTreeMap<String, String> {
    let mut docs = BTreeMap::new();
    for project in std::fs::read_dir(out).into_iter().flatten() {
        let project = project.unwrap().path();
        for f in std::fs::read_dir(&project).unwrap() {
            let f = f.unwrap().path();
            let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            docs.insert(
                f.strip_prefix(out).unwrap().display().to_string(),
                v["record"]["run"]["external_id"].as_str().unwrap().to_string(),
            );
        }
    }
    docs
}

async fn seed(moto: &Moto) -> Vec<String> {
    let mut arns = Vec::new();
    for (role, account, region, prefix) in [
        (None, OWN, "us-east-1", "shared"),
        (None, OWN, "us-east-1", "own-east"),
        (None, OWN, "eu-west-1", "own-west"),
        (Some(ROLE_B), B, "us-east-1", "shared"),
        (Some(ROLE_B), B, "eu-west-1", "b-west"),
    ] {
        for name in moto.create_jobs_in(role, region, prefix, 2, &SYNC_TAGS).await {
            arns.push(format!("arn:aws:sagemaker:{region}:{account}:training-job/{name}"));
        }
    }
    arns.sort();
    arns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_of_every_account_and_region_syncs_once_with_namesakes_apart() {
    let moto = Moto::start();
    // Jobs older than every pass below, in a region the first configuration does not read.
    let south = moto.create_jobs_in(None, "ap-south-1", "south", 2, &SYNC_TAGS).await;
    let arns = seed(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto, r#"["us-east-1", "eu-west-1"]"#, &account_b(ROLE_B));
    let started = Instant::now();
    let out = sagesync(dir.path())
        .env("RUST_LOG", "debug")
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let all_pairs = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 10, "2 accounts x 2 regions, every job once: {s}");
    let docs = documents(&dir.path().join("out"));
    let mut held: Vec<String> = docs.values().cloned().collect();
    held.sort();
    assert_eq!(held, arns, "one document per ARN: {docs:#?}");
    assert!(docs.keys().any(|k| k.contains("shared-0000--")), "the namesake in account B is kept apart: {docs:#?}");
    // The external id never leaves its Secret: not in debug logs, the summary, or the ledger.
    assert!(!stderr.contains(EXTERNAL_ID), "external id in the logs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(EXTERNAL_ID), "external id in the summary");
    assert!(!String::from_utf8_lossy(&std::fs::read(dir.path().join("ledger.db")).unwrap()).contains(EXTERNAL_ID));
    println!("FIGURE accounts: a first pass over 2 accounts x 2 regions: SageMaker {} in {all_pairs:?}", s["api_calls"]);

    // A re-run writes nothing.
    let started = Instant::now();
    let out = sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let idle = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 0, "{s}");
    println!("FIGURE accounts: an idle pass over 2 accounts x 2 regions: SageMaker {} in {idle:?}", s["api_calls"]);

    // `status` counts per account and region, and shows each pair's cursor.
    let out = sagesync(dir.path()).args(["status", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pairs = &st["counts"]["by_account_region"];
    for (pair, n) in
        [("123456789012/us-east-1", 4), ("123456789012/eu-west-1", 2), ("111111111111/us-east-1", 2), ("111111111111/eu-west-1", 2)]
    {
        assert_eq!(pairs[pair]["synced"], n, "{pair}: {st}");
    }
    let cursor_pairs: Vec<&str> = st["cursors"][0]["pairs"].as_array().unwrap().iter().filter_map(|p| p["pair"].as_str()).collect();
    assert_eq!(cursor_pairs, ["111111111111/eu-west-1", "111111111111/us-east-1", "own/eu-west-1", "own/us-east-1"], "{st}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(EXTERNAL_ID));

    // The same ledger now reads one region it never read: a pair never inherits another's
    // progress, so its older jobs sync (one pair reads its own part of the cursor).
    let cfg_south = config(dir.path(), "south.toml", &moto, r#"["ap-south-1"]"#, "");
    let out = sagesync(dir.path()).args(["run", "--config", cfg_south.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], south.len(), "the new region's older jobs: {s}");
    // And back to the four pairs: nothing to do, nothing skipped.
    let out = sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((out.status.code(), s["synced"].as_u64()), (Some(0), Some(0)), "{s}");

    // One pair alone, for the wall time a pass over four should not be four times of.
    let one = tempfile::tempdir().unwrap();
    let cfg1 = config(one.path(), "c.toml", &moto, r#"["us-east-1"]"#, "own_account = true\n");
    let started = Instant::now();
    let out = sagesync(one.path()).args(["run", "--config", cfg1.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let one_pair = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    let out = sagesync(one.path()).args(["run", "--config", cfg1.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let one_idle = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "FIGURE accounts: a first pass over 1 pair (4 jobs) took {one_pair:?}, over 4 pairs (10 jobs, debug logs) {all_pairs:?}; an idle pass over 1 pair {one_idle:?}, over 4 pairs {idle:?}"
    );

    // sync-job: an ARN of account B in eu-west-1 goes to its pair; a bare name in both accounts
    // is ambiguous; one in one pair only is found.
    let b_west = arns.iter().find(|a| a.contains(B) && a.contains("eu-west-1")).unwrap();
    let out = sagesync(dir.path()).args(["sync-job", b_west, "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        sagesync(dir.path()).args(["sync-job", "shared-0000", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("several accounts and regions"), "{text}");
    let out =
        sagesync(dir.path()).args(["sync-job", "b-west-0001", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_be_assumed_fails_its_pair_alone() {
    let moto = Moto::start();
    seed(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let accounts = format!("{}{}", account_b(ROLE_B), account_b("arn:aws:iam::222222222222:role/sagesync-denied"));
    let cfg = config(dir.path(), "c.toml", &moto, r#"["us-east-1", "eu-west-1"]"#, &accounts);
    let out = sagesync(dir.path())
        .env("RUST_LOG", "trace")
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 10, "the other pairs sync: {s}");
    let text = s.to_string();
    assert!(
        text.contains("account 222222222222, region us-east-1") && text.contains("account 222222222222, region eu-west-1"),
        "the failure names each pair: {s}"
    );
    assert!(!stderr.contains(EXTERNAL_ID) && !text.contains(EXTERNAL_ID), "external id leaked");
}

#[test]
fn validate_checks_accounts_and_regions_offline() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[source]\ntype = \"sagemaker\"\nregions = [\"us-east-1\", \"mars-1\", \"us-east-1\"]\n\n[[source.accounts]]\nrole_arn = \"arn:aws:iam::111111111111:user/bob\"\n\n[[source.accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/r\"\nexternal_id = \"ok-secret-value\"\nregions = [\"eu-west-9x\"]\n\n[[source.accounts]]\nrole_arn = \"arn:aws:iam::222222222222:role/other\"\n\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n",
    )
    .unwrap();
    let out = sagesync(dir.path()).args(["validate", "--config", p.to_str().unwrap()]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{text}");
    for needle in [
        "source.regions[1]",
        "`mars-1` is not a region name",
        "source.regions[2]",
        "named twice",
        "source.accounts[0].role_arn",
        "not an IAM role ARN",
        "source.accounts[1].regions[0]",
        "source.accounts[2].role_arn",
        "account 222222222222 is named twice",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    assert!(!text.contains("ok-secret-value"), "{text}");
}
