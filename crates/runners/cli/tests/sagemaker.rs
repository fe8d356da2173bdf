//! moto → `sagesync run` / `sagesync sync-job` → file sink, in both source modes.

use std::collections::BTreeMap;
use std::path::Path;

use sagesync_test_support::moto::{Moto, SYNC_TAGS, TEST_ENV};
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
    // With the default resources, a poll also reads one page of tuning jobs (and the running
    // ones) and one page of pipelines: none here.
    assert_eq!(summaries[1]["api_calls"], serde_json::json!({"Search": 1, "ListHyperParameterTuningJobs": 2, "ListPipelines": 1}));
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

/// `metrics = "history"`: moto's CloudWatch points reach the file the sink writes, in order,
/// when the metrics service has nothing for the job (`history_source = "auto"`: asked by
/// iteration number, then by time, then CloudWatch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_histories_reach_the_file_sink() {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use chrono::{Duration, Timelike, Utc};
    let moto = Moto::start();
    let names = moto.create_jobs("hist", 1, &SYNC_TAGS).await;
    let start = (Utc::now() - Duration::hours(1)).with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap();
    moto.edit(
        &names[0],
        serde_json::json!({"TrainingStartTime": start.to_rfc3339(), "TrainingEndTime": (start + Duration::minutes(10)).to_rfc3339()}),
    );
    let sm = moto.client().await;
    let d = sm.describe_training_job().training_job_name(&names[0]).send().await.unwrap();
    let metric = d.final_metric_data_list()[0].metric_name().unwrap().to_string();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest()).endpoint_url(moto.url()).load().await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let data: Vec<MetricDatum> = (0..5)
        .map(|i| {
            MetricDatum::builder()
                .metric_name(&metric)
                .dimensions(Dimension::builder().name("Host").value(format!("{}/algo-1", names[0])).build())
                .timestamp(aws_smithy_types::DateTime::from_millis((start + Duration::minutes(i)).timestamp_millis()))
                .value(1.0 / (1.0 + i as f64))
                .build()
        })
        .collect();
    cw.put_metric_data().namespace("/aws/sagemaker/TrainingJobs").set_metric_data(Some(data)).send().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "list", "out");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "mode = \"list\"\n",
        &format!("mode = \"list\"\nmetrics = \"history\"\ncloudwatch_endpoint_url = \"{0}\"\nmetrics_endpoint_url = \"{0}\"\n", moto.url()),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = sagesync(dir.path()).args(["sync-job", &names[0], "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["api_calls"]["GetMetricData"], 1, "{s}");
    assert_eq!(s["api_calls"]["BatchGetMetrics"], 2, "{s}");
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("out/moto-project/{}.json", names[0]))).unwrap()).unwrap();
    let series = file["record"]["metric_history"].as_array().unwrap_or_else(|| panic!("no metric_history in {file}"));
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["name"], metric.as_str());
    let points = series[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    for (i, p) in points.iter().enumerate() {
        assert_eq!(p["step"], i as i64);
        assert_eq!(p["value"].as_f64(), Some(1.0 / (1.0 + i as f64)));
    }
    assert_eq!((series[0]["source"].as_str(), series[0]["resolution"].as_str()), (Some("cloudwatch"), Some("60")));
}

/// Issue 24, through the engine: `sagesync run` in search mode reads the page's histories from
/// the metrics service in one call (the engine's prepare step), and the file and ModelDB v2
/// sinks carry the iteration numbers: the file's points as steps without a time, ModelDB's
/// observations with `epoch_number` (every request checked against the published spec). A
/// second run writes nothing to ModelDB; a longer series appends only its new points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_numbers_reach_the_file_and_modeldb_v2() {
    let moto = Moto::start();
    let fake = sagesync_test_support::modeldb_v2::Fake::start().await;
    let names = moto.create_jobs("steps", 3, &SYNC_TAGS).await;
    let t0 = 1_764_583_200.0;
    let loss = |n: i32| -> Vec<(Option<i32>, f64, f64)> {
        (0..n).map(|i| (Some(i), t0 + 30.0 * f64::from(i), 0.1 + 1.0 / (3.0 + f64::from(i)))).collect()
    };
    for n in &names {
        let list = serde_json::json!([{"MetricName": "train:loss", "Value": 0.2, "Timestamp": "2026-12-01T10:00:00Z"}, {"MetricName": "validation:auc", "Value": 0.9, "Timestamp": "2026-12-01T10:00:00Z"}]);
        moto.edit(n, serde_json::json!({"FinalMetricDataList": list}));
        moto.put_metrics(n, "train:loss", &loss(12)).await;
        moto.put_metrics(n, "validation:auc", &[(Some(3), t0, 0.7), (Some(7), t0 + 60.0, 0.8)]).await;
        // The metric moto's jobs define.
        moto.put_metrics(n, "test:dcg", &[(Some(1), t0, 0.5)]).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "search", "out");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "mode = \"search\"\n",
        &format!("mode = \"search\"\nmetrics = \"history\"\nmetrics_endpoint_url = \"{}\"\nresources = [\"training_jobs\"]\n", moto.url()),
    ) + &format!("\n[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"{}\"\nexperiment = \"sagemaker\"\n", fake.base_url);
    std::fs::write(&cfg, text).unwrap();
    moto.metrics_calls();
    let run = || sagesync(dir.path()).args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]).output().unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["synced"], 3, "{s}");
    assert_eq!(s["api_calls"]["BatchGetMetrics"], 1, "three jobs, nine metrics, one call: {s}");
    assert_eq!(moto.metrics_calls(), [9]);
    assert!(s["api_calls"].get("GetMetricData").is_none(), "{s}");
    for n in &names {
        let file: Value = serde_json::from_slice(&std::fs::read(dir.path().join(format!("out/moto-project/{n}.json"))).unwrap()).unwrap();
        assert_eq!(file["schema_version"], 3);
        let series = file["record"]["metric_history"].as_array().unwrap();
        let steps: Vec<(String, Vec<i64>)> = series
            .iter()
            .map(|x| {
                (
                    x["name"].as_str().unwrap().to_string(),
                    x["points"].as_array().unwrap().iter().map(|p| p["step"].as_i64().unwrap()).collect(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("test:dcg".to_string(), vec![1]),
                ("train:loss".to_string(), (0..12).collect::<Vec<i64>>()),
                ("validation:auc".to_string(), vec![3, 7])
            ]
        );
        assert!(series[1]["points"][0].get("timestamp").is_none(), "points by iteration number carry no time");
        assert_eq!(
            (series[1]["source"].as_str(), series[1]["resolution"].as_str(), series[1]["stat"].as_str()),
            (Some("sagemaker_metrics"), Some("iteration"), Some("Last"))
        );
        for (p, (_, _, v)) in series[1]["points"].as_array().unwrap().iter().zip(loss(12)) {
            assert_eq!(p["value"].as_f64().map(f64::to_bits), Some(v.to_bits()), "bit-exact");
        }
        let run = fake.runs().into_iter().find(|r| r["name"] == n.as_str()).unwrap_or_else(|| panic!("no v2 run {n}"));
        let mut obs: Vec<(String, i64, f64)> = run["observations"]
            .as_array()
            .unwrap()
            .iter()
            // Keys sanitised as the metrics' are (`train:loss` → `train_loss`).
            .map(|o| {
                (
                    o["attribute"]["key"].as_str().unwrap().replace('_', ":"),
                    o["epoch_number"].as_i64().unwrap(),
                    o["attribute"]["value"].as_f64().unwrap(),
                )
            })
            .collect();
        obs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut want: Vec<(String, i64, f64)> =
            loss(12).iter().map(|(st, _, v)| ("train:loss".to_string(), i64::from(st.unwrap()), *v)).collect();
        want.insert(0, ("test:dcg".to_string(), 1, 0.5));
        want.extend([("validation:auc".to_string(), 3, 0.7), ("validation:auc".to_string(), 7, 0.8)]);
        assert_eq!(obs, want, "{n}");
    }
    // Again, nothing new: no write reaches ModelDB, the files stay.
    fake.clear_requests();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fake.writes().is_empty(), "a re-sync writes nothing: {:?}", fake.writes());
    // A longer series: only its new points are logged.
    for n in &names {
        let more: Vec<(Option<i32>, f64, f64)> = (12..15).map(|i| (Some(i), t0 + 30.0 * f64::from(i), 0.01 * f64::from(i))).collect();
        moto.put_metrics(n, "train:loss", &more).await;
        // The job changed (as SageMaker moves LastModifiedTime when a job's metrics arrive).
        moto.edit(n, serde_json::json!({"LastModifiedTime": (chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339()}));
    }
    fake.clear_requests();
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let logged: Vec<Value> =
        fake.writes().into_iter().filter(|w| w.path == "/experiment-run/logObservations").filter_map(|w| w.body).collect();
    assert_eq!(logged.len(), 3, "one request per job");
    for b in &logged {
        let epochs: Vec<i64> = b["observations"].as_array().unwrap().iter().map(|o| o["epoch_number"].as_i64().unwrap()).collect();
        assert_eq!(epochs, [12, 13, 14], "only the new points");
    }
}

/// Issue 25: `SECRET[...]` from moto's Secrets Manager (a JSON secret, by key) and SSM (a
/// SecureString, whole) become the ModelDB v2 sinks' developer keys: each reaches the store's
/// request header, and neither shows in the logs (at `RUST_LOG=trace`), the summary, the
/// ledger or the files. A secret that cannot be read is a located error at start, exit 2;
/// `validate` checks references offline and reads them with `--resolve-secrets`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_store_and_nothing_else() {
    let moto = Moto::start();
    let fake = sagesync_test_support::modeldb_v2::Fake::start().await;
    moto.create_jobs("secret", 2, &SYNC_TAGS).await;
    let (from_sm, from_ssm) = ("dk-sm-7f3a9c1e5b2d4f60", "dk-ssm-0b1c2d3e4f5a6b7c");
    moto.put_secret("prod/modeldb", &serde_json::json!({"developer_key": from_sm, "note": "rotated monthly"}).to_string());
    moto.put_parameter("/sagesync/modeldb-key", from_ssm);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "c.toml", &moto.url(), "list", "out");
    let sink = |id: &str, key: &str| {
        format!("\n[[sinks]]\ntype = \"modeldb_v2\"\nid = \"{id}\"\nbase_url = \"{}\"\nexperiment = \"{id}\"\nemail = \"ops@example.com\"\ndeveloper_key = \"{key}\"\n", fake.base_url)
    };
    let secrets = |id: &str| {
        format!(
            "\n[state]\ntype = \"sqlite\"\npath = \"ledger.db\"\n\n[secret.modeldb]\ntype = \"aws_secrets_manager\"\nsecret_id = \"{id}\"\nendpoint_url = \"{0}\"\n\n[secret.key]\ntype = \"aws_ssm_parameter\"\nname = \"/sagesync/modeldb-key\"\nendpoint_url = \"{0}\"\n",
            moto.url()
        )
    };
    let base = std::fs::read_to_string(&cfg).unwrap() + &sink("sm", "SECRET[modeldb.developer_key]") + &sink("ssm", "SECRET[key]");
    std::fs::write(&cfg, base.clone() + &secrets("prod/modeldb")).unwrap();
    let out = sagesync(dir.path())
        .env("RUST_LOG", "trace")
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", &stderr[stderr.len().saturating_sub(4000)..]);
    let s: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["synced"], 2, "{s}");
    // Each key reached the store, in its header.
    let sent: Vec<String> = fake
        .requests()
        .iter()
        .flat_map(|r| {
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("grpc-metadata-developer_key"))
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(sent.iter().any(|v| v == from_sm) && sent.iter().any(|v| v == from_ssm), "{sent:?}");
    // And nowhere else.
    assert!(stderr.len() > 10_000, "trace logs were written");
    let ledger = std::fs::read(dir.path().join("ledger.db")).unwrap();
    let mut files = Vec::new();
    for (_, bytes) in files_of(&dir.path().join("out")) {
        files.extend(bytes);
    }
    for secret in [from_sm, from_ssm] {
        for (what, text) in [("logs", stderr.as_bytes()), ("summary", stdout.as_bytes()), ("ledger", &ledger[..]), ("files", &files[..])] {
            assert!(!text.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in the {what}");
        }
    }
    // Offline validation reads nothing (moto unreachable would not matter); online, it reads.
    let v = sagesync(dir.path()).args(["validate", "--config", cfg.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&v.stderr));
    assert!(text.contains("secrets referenced (not read") && text.contains("`modeldb` (1 value(s))"), "{text}");
    let v = sagesync(dir.path()).args(["validate", "--resolve-secrets", "--config", cfg.to_str().unwrap()]).output().unwrap();
    assert_eq!(v.status.code(), Some(0), "{}", String::from_utf8_lossy(&v.stderr));
    // A secret that is not there: located, exit 2, before anything is read from SageMaker.
    std::fs::write(&cfg, base + &secrets("prod/missing")).unwrap();
    for args in [vec!["run", "--config"], vec!["validate", "--resolve-secrets", "--config"]] {
        let out = sagesync(dir.path()).args(&args).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("c.toml:") && err.contains("key `secret.modeldb`") && err.contains("ResourceNotFoundException"), "{err}");
    }
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    if dir.exists() {
        files(dir)
    } else {
        BTreeMap::new()
    }
}

/// Issue 25 (audit): `validate` offline accepts a secret in a field a plugin checks (a URL), and
/// what a validator says of a value read from a secret is redacted in the summary.
#[test]
fn secrets_in_checked_fields_and_in_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let root = sagesync_test_support::locate::repo_root();
    std::fs::write(dir.path().join("url"), "http://127.0.0.1:9\n").unwrap();
    std::fs::write(dir.path().join("tag.json"), r#"{"key": "NeededTagXYZ", "unused": "readable"}"#).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker_json\"\npaths = [\"{}\"]\n\n[[validators]]\ntype = \"required_tags\"\nextra = [\"SECRET[tag.key]\"]\n\n[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"SECRET[url]\"\nexperiment = \"x\"\n\n[secret.url]\ntype = \"file\"\npath = \"{}\"\n\n[secret.tag]\ntype = \"file\"\npath = \"{}\"\n",
            root.join("examples/jobs").display(),
            dir.path().join("url").display(),
            dir.path().join("tag.json").display()
        ),
    )
    .unwrap();
    for args in [vec!["validate", "--config"], vec!["validate", "--resolve-secrets", "--config"]] {
        let out = sagesync(dir.path()).args(&args).arg(&cfg).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // What was found when the file was read is never set aside offline: a misspelt secret name,
    // an unknown key that holds a reference, a reference in [pipeline] or [daemon].
    for (from, to) in [
        ("SECRET[url]", "SECRET[urll]"),
        ("base_url = ", "based_url = \"http://h\"\nbase_url = "),
        ("[secret.url]", "[pipeline]\non_ineligible = \"SECRET[url]\"\n\n[secret.url]"),
        ("[secret.url]", "[daemon]\nlisten = \"SECRET[url]\"\n\n[secret.url]"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, std::fs::read_to_string(&cfg).unwrap().replacen(from, to, 1)).unwrap();
        let out = sagesync(dir.path()).args(["validate", "--config"]).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{to}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let out = sagesync(dir.path()).args(["run", "--format", "json", "--config"]).arg(&cfg).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("missing required tag `***`"), "{stdout}");
    assert!(!stdout.contains("NeededTagXYZ") && !stderr.contains("NeededTagXYZ"), "{stdout}{stderr}");
}
