//! End-to-end tests of the `sagesync` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

fn sagesync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.env_remove("RUST_LOG").env_remove("SAGESYNC_OUT").env_remove("SAGESYNC_EXPERIMENT");
    c
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().unwrap();
    (status.code().unwrap_or(-1), String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap())
}

fn job<'a>(summary: &'a Value, name_prefix: &str) -> &'a Value {
    summary["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"].as_str().unwrap().starts_with(name_prefix))
        .unwrap_or_else(|| panic!("no job {name_prefix}"))
}

fn doc(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn quickstart_end_to_end() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(sagesync().current_dir(repo_root()).env("SAGESYNC_OUT", out.path()).args([
        "run",
        "--config",
        "examples/quickstart.toml",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (s["synced"].as_u64(), s["skipped"].as_u64(), s["rejected"].as_u64(), s["failed"].as_u64()),
        (Some(4), Some(2), Some(1), Some(0)),
        "{stdout}"
    );
    assert_eq!(s["jobs"].as_array().unwrap().len(), 7);
    for j in s["jobs"].as_array().unwrap() {
        assert!(["synced", "skipped", "rejected", "failed"].contains(&j["outcome"].as_str().unwrap()));
        assert!(j["arn"].as_str().unwrap().starts_with("arn:aws:sagemaker:"));
    }
    assert_eq!(job(&s, "kmeans")["outcome"], "skipped");
    assert_eq!(job(&s, "kmeans")["reason"], "no opt-in tag `MODEL_DB_SYNC`");
    assert_eq!(job(&s, "deepar")["outcome"], "skipped");
    assert!(job(&s, "deepar")["reason"].as_str().unwrap().contains("status Failed"));
    assert_eq!(job(&s, "resnet50")["outcome"], "rejected");
    assert!(job(&s, "resnet50")["reason"].as_str().unwrap().contains("MODEL_DB_MODEL_TYPE"));

    // Every written file, and nothing else.
    let mut files: Vec<String> = walk(out.path()).into_iter().map(|p| p.strip_prefix(out.path()).unwrap().display().to_string()).collect();
    files.sort();
    assert_eq!(
        files,
        [
            "customer-churn/xgboost-churn-2026-11-02-10-15-42-118.json",
            "dynamic-pricing/linear-learner-prices-2026-11-12-06-30-00-250.json",
            "review-sentiment/pytorch-sentiment-2026-11-05-08-02-11-904.json",
            "search-ranking/tf-ranker-fsx-2026-11-10-22-45-31-006.json",
        ]
    );

    let xgb = doc(&out.path().join("customer-churn/xgboost-churn-2026-11-02-10-15-42-118.json"));
    assert_eq!(xgb["schema"], "sagesync.run-record");
    assert_eq!(xgb["schema_version"], 3, "version 3: a history point's timestamp is optional (points by iteration number)");
    let r = &xgb["record"];
    assert_eq!(
        r["project"],
        serde_json::json!({"name": "customer-churn", "user": "ana.silva", "description": "Predict which mobile customers will churn next month"})
    );
    assert_eq!(r["experiment"], "Default_Experiment");
    assert_eq!(r["run"]["name"], "xgboost-churn-2026-11-02-10-15-42-118");
    assert_eq!(r["run"]["external_id"], "arn:aws:sagemaker:us-east-1:111122223333:training-job/xgboost-churn-2026-11-02-10-15-42-118");
    assert_eq!(r["run"]["start"], "2026-11-02T10:17:55.462Z");
    assert_eq!(r["model"]["name"], "churn-xgb");
    assert_eq!(r["model"]["type"], "XGBoost");
    assert!(r["model"]["artifact_uri"].as_str().unwrap().ends_with("/output/model.tar.gz"));
    assert_eq!(r["hyperparameters"].as_array().unwrap().len(), 8);
    assert_eq!(r["hyperparameters"][0], serde_json::json!({"name": "eta", "raw": "0.2", "value": 0.2}));
    assert_eq!(r["hyperparameters"][6]["value"], "binary:logistic");
    let splits: Vec<(&str, &str)> =
        r["metrics"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["split"].as_str().unwrap())).collect();
    assert_eq!(splits, [("train:auc", "train"), ("validation:auc", "validation"), ("validation:logloss", "validation")]);
    assert_eq!(r["datasets"][1]["name"], "validation");
    assert_eq!(r["datasets"][1]["uri"], "s3://acme-ml-data/churn/validation/");
    assert_eq!(r["datasets"][1]["metadata"]["CompressionType"], "None");
    assert_eq!(r["datasets"][1]["metadata"]["RecordWrapperType"], "None");
    assert_eq!(r["attributes"]["instance_type"], "ml.m5.xlarge");
    assert_eq!(r["attributes"]["billable_seconds"], 188);
    assert_eq!(r["tags"].as_array().unwrap().last().unwrap(), &serde_json::json!({"key": "team", "value": "growth-analytics"}));

    let pt = doc(&out.path().join("review-sentiment/pytorch-sentiment-2026-11-05-08-02-11-904.json"));
    let hp: Vec<&Value> = pt["record"]["hyperparameters"].as_array().unwrap().iter().collect();
    let get = |n: &str| hp.iter().find(|h| h["name"] == n).unwrap()["value"].clone();
    assert_eq!(get("sagemaker_program"), "train.py", "JSON-quoted strings are unquoted");
    assert_eq!(get("model-name"), "distilbert-base-uncased");
    assert_eq!(get("lr"), 2e-05);
    assert_eq!(get("fp16"), true);
    let ms: Vec<&str> = pt["record"]["metrics"].as_array().unwrap().iter().map(|m| m["split"].as_str().unwrap()).collect();
    assert_eq!(ms, ["train", "validation", "test"]);
    assert_eq!(pt["record"]["tags"][0]["key"], "MODEL_DB_SYNC", "map-shaped tags keep their order");

    let fsx = doc(&out.path().join("search-ranking/tf-ranker-fsx-2026-11-10-22-45-31-006.json"));
    assert_eq!(fsx["record"]["datasets"][0]["uri"], "fsxlustre://fs-0a1b2c3d4e5f67890/fsx/ranker/clicks-2026-10");
    assert_eq!(fsx["record"]["datasets"][0]["metadata"]["DataSource"], "file_system");
    assert_eq!(fsx["record"]["run"]["end"], "2026-11-11T00:50:10Z", "epoch-second timestamps");

    // A second run writes nothing.
    let before: Vec<_> = walk(out.path())
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap(), std::fs::metadata(p).unwrap().modified().unwrap()))
        .collect();
    let (code, stdout, _) = run(sagesync().current_dir(repo_root()).env("SAGESYNC_OUT", out.path()).args([
        "run",
        "--config",
        "examples/quickstart.toml",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    let s2: Value = serde_json::from_str(&stdout).unwrap();
    for j in s2["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        assert_eq!(j["receipts"][0]["write"], "unchanged", "{j}");
    }
    let after: Vec<_> = walk(out.path())
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap(), std::fs::metadata(p).unwrap().modified().unwrap()))
        .collect();
    assert_eq!(before, after);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn text_summary_counts_match() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, _) =
        run(sagesync().current_dir(repo_root()).env("SAGESYNC_OUT", out.path()).args(["run", "--config", "examples/quickstart.toml"]));
    assert_eq!(code, 0);
    assert!(stdout.trim_end().ends_with("7 jobs: 4 synced, 2 skipped, 1 rejected, 0 failed"), "{stdout}");
}

#[test]
fn dry_run_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(sagesync().current_dir(repo_root()).env("SAGESYNC_OUT", out.path()).args([
        "run",
        "--config",
        "examples/quickstart.toml",
        "--dry-run",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["synced"], 4);
    assert!(walk(out.path()).is_empty());
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD_REST: &str = "\n[[sinks]]\ntype = \"file\"\ndir = \"out\"\n";

#[test]
fn malformed_job_is_reported_and_others_still_sync() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::copy(repo_root().join("examples/jobs/xgboost-churn.json"), jobs.join("a.json")).unwrap();
    std::fs::write(jobs.join("b.json"), "{\n  \"TrainingJobName\": \"x\",\n  \"TrainingJobArn\": 12,,\n}").unwrap();
    let cfg = write_config(dir.path(), &format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"jobs\"]\n{GOOD_REST}"));
    let (code, stdout, _) = run(sagesync().current_dir(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]));
    assert_eq!(code, 1, "a failed job gives exit code 1");
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["synced"], 1);
    assert_eq!(s["failed"], 1);
    let bad = s["jobs"].as_array().unwrap().iter().find(|j| j["outcome"] == "failed").unwrap();
    assert!(bad["job"].as_str().unwrap().ends_with("b.json:3:24"), "{bad}");
    assert!(bad["reason"].as_str().unwrap().contains("invalid JSON"), "{bad}");
    assert!(dir.path().join("out/customer-churn/xgboost-churn-2026-11-02-10-15-42-118.json").exists());
}

#[test]
fn stdin_source() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"-\"]\n{GOOD_REST}"));
    let mut child = sagesync()
        .current_dir(dir.path())
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&std::fs::read(repo_root().join("examples/jobs/more.jsonl")).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 1);
    assert!(dir.path().join("out/dynamic-pricing/linear-learner-prices-2026-11-12-06-30-00-250.json").exists());
}

fn validate_err(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), text);
    let (code, stdout, stderr) = run(sagesync().args(["validate", "--config", cfg.to_str().unwrap()]));
    assert_eq!(code, 2, "config errors exit with 2; stdout: {stdout}");
    stderr.replace(&cfg.display().to_string(), "pipeline.toml")
}

#[test]
fn config_error_bad_toml() {
    let e = validate_err("[source]\ntype = \"sagemaker_json\"\npaths = [\"a\"\n");
    assert!(e.contains("pipeline.toml:4:1: invalid TOML"), "{e}");
}

#[test]
fn config_error_unknown_key() {
    let e = validate_err(&format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"a\"]\npahts = [\"b\"]\n{GOOD_REST}"));
    assert!(e.contains("pipeline.toml:4:1: key `source.pahts`: unknown field `pahts`, expected `paths` or `recursive`"), "{e}");
}

#[test]
fn config_error_unknown_type_lists_available() {
    let e = validate_err("[source]\ntype = \"sagemaker_json\"\npaths = [\"a\"]\n\n[[sinks]]\ntype = \"fiel\"\n");
    assert!(
        e.contains("pipeline.toml:6:8: key `sinks[0].type`: unknown sink type `fiel`; available: file, mlflow, modeldb_v1, modeldb_v2"),
        "{e}"
    );
}

#[test]
fn config_error_missing_env_var() {
    let e = validate_err(&format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"${{SAGESYNC_TEST_SURELY_UNSET}}/jobs\"]\n{GOOD_REST}"));
    assert!(e.contains("pipeline.toml:3:10: key `source.paths[0]`: environment variable `SAGESYNC_TEST_SURELY_UNSET` is not set"), "{e}");
}

#[test]
fn config_errors_are_all_reported_at_once_and_values_never_echoed() {
    let e = validate_err(
        "[source]\ntype = \"nope\"\n\n[[validators]]\ntype = \"status\"\nstatuses = [\"Done\"]\n\n[mapper]\ntype = \"tags\"\nexperimnt = \"x\"\n\n[[sinks]]\ntype = \"file\"\ndir = 7\n\n[pipeline]\nconcurrency = \"hunter2-secret\"\n\n[colour]\n",
    );
    for want in [
        "6 configuration errors",
        "pipeline.toml:2:8: key `source.type`: unknown source type `nope`; available: sagemaker, sagemaker_json",
        "pipeline.toml:6:13: key `validators[0].statuses[0]`: unknown status `Done`",
        "pipeline.toml:10:1: key `mapper.experimnt`: unknown field `experimnt`",
        "pipeline.toml:14:1: key `sinks[0].dir`: invalid type: integer `7`, expected a string",
        "pipeline.toml:17:1: key `pipeline.concurrency`: invalid type: string, expected usize",
        "pipeline.toml:19:2: key `colour`: unknown section `colour`",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(!e.contains("hunter2"), "a value was echoed:\n{e}");
}

#[test]
fn validate_ok() {
    let (code, stdout, _) = run(sagesync().current_dir(repo_root()).args(["validate", "--config", "examples/quickstart.toml"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn registered_plugin_set() {
    let (code, stdout, _) = run(sagesync().args(["plugins", "--format", "json"]));
    assert_eq!(code, 0);
    let v: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let mut got: Vec<(String, String)> =
        v.iter().map(|d| (d["kind"].as_str().unwrap().to_string(), d["type"].as_str().unwrap().to_string())).collect();
    got.sort();
    let mut want: Vec<(String, String)> = [
        ("source", "sagemaker"),
        ("source", "sagemaker_json"),
        ("validator", "required_tags"),
        ("validator", "status"),
        ("mapper", "tags"),
        ("sink", "file"),
        ("sink", "mlflow"),
        ("sink", "modeldb_v1"),
        ("sink", "modeldb_v2"),
        ("state", "dynamodb"),
        ("state", "memory"),
        ("state", "sqlite"),
        ("secret", "aws_secrets_manager"),
        ("secret", "aws_ssm_parameter"),
        ("secret", "exec"),
        ("secret", "file"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);
    let (_, text, _) = run(sagesync().arg("plugins"));
    for name in ["sagemaker", "sagemaker_json", "required_tags", "status", "tags", "file", "modeldb_v1", "modeldb_v2"] {
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn every_example_is_a_valid_config_table() {
    let (_, stdout, _) = run(sagesync().args(["plugins", "--format", "json"]));
    let v: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    for d in v {
        let t = d["type"].as_str().unwrap();
        let (code, example, _) = run(sagesync().args(["example", t]));
        assert_eq!(code, 0);
        let parsed: toml::Table = toml::from_str(&example).unwrap_or_else(|e| panic!("example of {t} is not TOML: {e}"));
        assert!(!parsed.is_empty());
        assert!(example.contains(&format!("type = \"{t}\"")));
    }
    let (code, _, err) = run(sagesync().args(["example", "nope"]));
    assert_eq!(code, 2);
    assert!(err.contains("available: "), "{err}");
}

#[test]
fn every_example_builds_through_its_plugin_config() {
    // Linking the runner library links every plugin crate it names.
    assert!(sagesync_cli::registered().len() >= 10);
    for d in sagesync_core::registry::all() {
        sagesync_core::config::check_example(d).unwrap_or_else(|e| panic!("{e}"));
    }
}
