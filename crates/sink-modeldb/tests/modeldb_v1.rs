//! ModelDB v1 sink against a real Thrift peer (the generated `ModelDBService.Processor` of the
//! PyPI package `modeldb==0.0.1a30`), against the original Python Light API, and against the
//! golden frames captured from it.

use std::path::Path;
use std::time::Duration;

use sagesync_core::builtin::TagsMapper;
use sagesync_core::WriteContext;
use sagesync_core::{Mapper, RunRecord, Sink, TagKeys, WriteKind};
use sagesync_sink_modeldb::v1::{ModelDbV1Settings, ModelDbV1Sink};
use sagesync_test_support::locate::{python, repo_root};
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::ports::HeldPort;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn record(path: &Path) -> RunRecord {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let job = sagesync_source_sagemaker::job_from_document(&doc).unwrap();
    TagsMapper::new(TagKeys::default()).map(&job).await.unwrap()
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn sink(port: u16, compat: bool) -> ModelDbV1Sink {
    ModelDbV1Sink::new(ModelDbV1Settings {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        compat,
        package_link_wait: Duration::from_secs(3600),
    })
}

// ---------------------------------------------------------------------------------------------
// Golden frames: the exact bytes the Python Light API sent for the example job.

struct Golden {
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
}

fn golden() -> Golden {
    let path = repo_root().join("../shared/research/modeldb-v1-golden-frames.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden frames {}: {e}", path.display()));
    let mut g = Golden { requests: vec![], replies: vec![] };
    let mut current: Option<(bool, String)> = None;
    let flush = |cur: &mut Option<(bool, String)>, g: &mut Golden| {
        if let Some((is_req, hex)) = cur.take() {
            let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            if is_req {
                g.requests.push(bytes)
            } else {
                g.replies.push(bytes)
            }
        }
    };
    for line in text.lines() {
        if line.starts_with("request #") || line.starts_with("reply #") {
            flush(&mut current, &mut g);
            current = Some((line.starts_with("request"), String::new()));
        } else if let Some((_, hex)) = current.as_mut() {
            hex.push_str(line.trim());
        }
    }
    flush(&mut current, &mut g);
    assert_eq!((g.requests.len(), g.replies.len()), (7, 7));
    g
}

/// A loopback server that answers the i-th request frame with `replies[i]` and records what it
/// received.
async fn replay_server(replies: Vec<Vec<u8>>) -> (u16, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        for reply in replies {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                break;
            }
            let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).await.unwrap();
            got.push(buf);
            s.write_all(&(reply.len() as u32).to_be_bytes()).await.unwrap();
            s.write_all(&reply).await.unwrap();
        }
        got
    });
    (port, h)
}

#[tokio::test]
async fn compat_mode_is_byte_exact_with_the_golden_frames() {
    let g = golden();
    let (port, server) = replay_server(g.replies.clone()).await;
    let r = record(&fixture("deepar-example.json")).await;
    let receipt = sink(port, true).upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(receipt.write, WriteKind::Created);
    let sent = server.await.unwrap();
    assert_eq!(sent.len(), 7);
    for (i, (got, want)) in sent.iter().zip(&g.requests).enumerate() {
        assert_eq!(hex(got), hex(want), "request #{} differs", i + 1);
    }
    assert_eq!(receipt.ids["run_id"], "1");
    assert_eq!(receipt.ids["model_id"], "1");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn application_exception_and_garbage_replies_are_typed_errors() {
    use sagesync_sink_modeldb::v1::codec::{mtype, ttype, Writer};
    let mut w = Writer::message("storeProjectEvent", mtype::EXCEPTION, 0);
    w.f_str(1, "Invalid method name: 'storeProjectEvent'").f_i32(2, 1).stop();
    let (port, _h) = replay_server(vec![w.into_bytes()]).await;
    let e = sink(port, false).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("TApplicationException (UNKNOWN_METHOD): Invalid method name"), "{m}");
    assert!(m.contains("nothing written"), "{m}");
    assert!(!e.is_retryable());

    let mut w = Writer::message("storeProjectEvent", mtype::REPLY, 0);
    w.field(ttype::LIST, 0).list(ttype::I32, 5);
    let (port, _h) = replay_server(vec![w.into_bytes()]).await;
    let e = sink(port, false).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    assert!(e.to_string().contains("protocol error"), "{e}");

    // An empty result struct: MISSING_RESULT, as the Python client reports it.
    let mut w = Writer::message("storeProjectEvent", mtype::REPLY, 0);
    w.stop();
    let (port, _h) = replay_server(vec![w.into_bytes()]).await;
    let e = sink(port, false).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    assert!(e.to_string().contains("MISSING_RESULT"), "{e}");
}

#[tokio::test]
async fn refused_connections_and_timeouts_are_retryable() {
    // Held (bound, not listening) for the whole test: connections are refused.
    let held = HeldPort::new();
    let port = held.port;
    let e = sink(port, false).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");

    // Accepts, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _h = tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let s = ModelDbV1Sink::new(ModelDbV1Settings {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        compat: false,
        package_link_wait: Duration::from_secs(3600),
    });
    let e = s.upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Cross-check: the original Python Light API and compat mode give the same RPC log.

fn run_light_api(port: u16, job: &Path) -> std::process::Output {
    std::process::Command::new(python())
        .arg(repo_root().join("tests/peers/light_api_driver.py"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(job)
        .output()
        .unwrap()
}

#[tokio::test]
async fn compat_mode_matches_the_python_light_api_on_every_example_job() {
    let root = repo_root();
    let mut jobs: Vec<std::path::PathBuf> =
        vec![fixture("deepar-example.json"), fixture("validation-only.json"), fixture("train-only-unicode.json")];
    for e in std::fs::read_dir(root.join("examples/jobs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("json") {
            jobs.push(p);
        }
    }
    // JSON Lines examples: one file per line.
    let tmp = tempfile::tempdir().unwrap();
    let lines = std::fs::read_to_string(root.join("examples/jobs/more.jsonl")).unwrap();
    for (i, l) in lines.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let p = tmp.path().join(format!("line-{i}.json"));
        std::fs::write(&p, l).unwrap();
        jobs.push(p);
    }
    jobs.sort();
    let mut compared = 0;
    let mut original_crashes = 0;
    let validator = sagesync_core::builtin::RequiredTags::new(&TagKeys::default());
    for job in jobs {
        // The sample only syncs jobs that pass its tag validation.
        let doc: Value = serde_json::from_slice(&std::fs::read(&job).unwrap()).unwrap();
        let j = sagesync_source_sagemaker::job_from_document(&doc).unwrap();
        if sagesync_core::Validator::validate(&validator, &j).await != sagesync_core::Verdict::Sync {
            continue;
        }
        let python_peer = Peer::start(&[]);
        let out = run_light_api(python_peer.port, &job);
        let rust_peer = Peer::start(&[]);
        let r = record(&job).await;
        let receipt = sink(rust_peer.port, true).upsert(&r, &WriteContext::new()).await;
        match out.status.code() {
            Some(0) => {
                receipt.unwrap_or_else(|e| panic!("{}: {e}", job.display()));
                assert_eq!(rust_peer.rpc_log(), python_peer.rpc_log(), "RPC logs differ for {}", job.display());
                compared += 1;
            }
            Some(3) => {
                // The original crashes on this job (missing field); compat mode must not.
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.contains("KeyError"), "{stderr}");
                let receipt = receipt.unwrap_or_else(|e| panic!("{}: {e}", job.display()));
                assert_eq!(receipt.write, WriteKind::Created);
                original_crashes += 1;
                let methods = rust_peer.methods();
                assert_eq!(
                    &methods[..4],
                    ["storeProjectEvent", "storeExperimentEvent", "storeExperimentRunEvent", "storeFitEvent"],
                    "{}",
                    job.display()
                );
            }
            other => panic!("light API driver failed ({other:?}) on {}: {}", job.display(), String::from_utf8_lossy(&out.stderr)),
        }
    }
    assert_eq!((compared, original_crashes), (6, 2), "jobs compared / jobs the original crashes on");
}

#[tokio::test]
async fn compat_mode_shares_the_default_data_frame_like_the_original() {
    let peer = Peer::start(&[]);
    sink(peer.port, true).upsert(&record(&fixture("validation-only.json")).await, &WriteContext::new()).await.unwrap();
    let log = peer.rpc_log();
    let fit_df = &log[3]["args"][0]["df"];
    assert_eq!(fit_df, &serde_json::json!({"id": -1, "schema": [], "numRows": -1, "tag": "", "filepath": "", "metadata": []}));
    let fit_df_id = log[3]["reply"]["dfId"].clone();
    for m in &log[4..] {
        assert_eq!(m["args"][0]["df"]["id"], fit_df_id, "metrics reuse the default data frame by id");
    }
}

// ---------------------------------------------------------------------------------------------
// Default mode: every channel, split metrics, idempotent.

#[tokio::test]
async fn default_mode_records_every_channel_and_split_metrics() {
    let peer = Peer::start(&[]);
    let r = record(&repo_root().join("examples/jobs/more.jsonl").with_file_name("xgboost-churn.json")).await;
    let receipt = sink(peer.port, false).upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(receipt.write, WriteKind::Created);
    let st = peer.state();
    let runs = st["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let desc = runs[0]["description"].as_str().unwrap();
    assert!(desc.contains("xgboost-churn-2026-11-02-10-15-42-118") && desc.contains(&r.run.external_id), "{desc}");
    let dfs = st["dataframes"].as_array().unwrap();
    let by_tag = |tag: &str| dfs.iter().find(|d| d["tag"] == tag).unwrap_or_else(|| panic!("no data frame {tag}: {dfs:?}"));
    assert_eq!(by_tag("train")["filepath"], "s3://acme-ml-data/churn/train/");
    assert_eq!(by_tag("validation")["filepath"], "s3://acme-ml-data/churn/validation/");
    assert_eq!(dfs.len(), 2);
    let metrics = st["metric_events"].as_array().unwrap();
    let df_of = |name: &str| metrics.iter().find(|m| m["metricType"] == name).unwrap()["df"].clone();
    assert_eq!(df_of("train:auc"), by_tag("train")["id"]);
    assert_eq!(df_of("validation:auc"), by_tag("validation")["id"]);
    assert_eq!(df_of("validation:logloss"), by_tag("validation")["id"]);
    let tr = &st["transformers"][0];
    assert_eq!(tr["tag"], "churn-xgb", "the model name is kept as the transformer tag");
    assert_eq!(tr["transformerType"], "XGBoost");
    let spec = &st["specs"][0];
    let hp = spec["hyperparameters"].as_array().unwrap();
    assert_eq!(hp.len(), 8);
    assert_eq!(hp[0]["type"], "float");
    assert_eq!(hp[1]["value"], "auc");

    // Three channels, one metric-less: every channel is stored.
    let peer = Peer::start(&[]);
    let doc = std::fs::read_to_string(repo_root().join("examples/jobs/more.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ll.json"), doc.trim()).unwrap();
    let mut r = record(&dir.path().join("ll.json")).await;
    r.metrics.retain(|m| !m.name.starts_with("validation:"));
    sink(peer.port, false).upsert(&r, &WriteContext::new()).await.unwrap();
    let st = peer.state();
    let tags: Vec<&str> = st["dataframes"].as_array().unwrap().iter().map(|d| d["tag"].as_str().unwrap()).collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    for t in ["train", "validation", "test"] {
        assert!(tags.contains(&t), "{tags:?}");
    }
}

#[tokio::test]
async fn default_mode_never_duplicates_a_run() {
    let peer = Peer::start(&[]);
    let s = sink(peer.port, false);
    let r = record(&fixture("deepar-example.json")).await;
    let first = s.upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(first.write, WriteKind::Created);
    let writes_before = peer.state()["metric_events"].as_array().unwrap().len();
    for _ in 0..3 {
        let again = s.upsert(&r, &WriteContext::new()).await.unwrap();
        assert_eq!(again.write, WriteKind::Unchanged);
        assert_eq!(again.writes, 0);
        assert_eq!(again.ids["run_id"], first.ids["run_id"]);
    }
    let st = peer.state();
    assert_eq!(st["runs"].as_array().unwrap().len(), 1);
    assert_eq!(st["fit_events"].as_array().unwrap().len(), 1);
    assert_eq!(st["metric_events"].as_array().unwrap().len(), writes_before);
    // A re-sync that finds a new final metric writes only that one.
    let mut r2 = r.clone();
    r2.metrics.push(sagesync_core::Metric {
        name: "test:p90".into(),
        value: 1.5,
        split: sagesync_core::Split::Test,
        timestamp: None,
        step: None,
    });
    let upd = s.upsert(&r2, &WriteContext::new()).await.unwrap();
    assert_eq!(upd.write, WriteKind::Updated);
    assert_eq!(upd.writes, 1);
    let st = peer.state();
    assert_eq!(st["metric_events"].as_array().unwrap().len(), writes_before + 1);
    let test_df = st["metric_events"].as_array().unwrap().iter().find(|m| m["metricType"] == "test:RMSE").unwrap()["df"].clone();
    assert_eq!(st["metric_events"].as_array().unwrap().last().unwrap()["df"], test_df, "the new metric reuses the test data frame");
    assert_eq!(st["dataframes"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failure_part_way_says_what_was_written_and_a_retry_completes_without_duplicates() {
    let peer = Peer::start(&["--fail", "storeMetricEvent", "--fail-times", "2"]);
    let s = sink(peer.port, false);
    let r = record(&fixture("deepar-example.json")).await;
    let e = s.upsert(&r, &WriteContext::new()).await.unwrap_err();
    let m = e.to_string();
    assert!(m.contains("storeMetricEvent: ServerLogicException: injected failure in storeMetricEvent"), "{m}");
    assert!(m.contains("already written: run 1, fit event 1 (model 1)"), "{m}");
    assert!(!e.is_retryable());
    let e = s.upsert(&r, &WriteContext::new()).await.unwrap_err();
    assert!(e.to_string().contains("injected failure"), "{e}");
    let ok = s.upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(ok.write, WriteKind::Updated);
    assert_eq!(ok.writes, 3);
    let st = peer.state();
    assert_eq!(st["runs"].as_array().unwrap().len(), 1);
    assert_eq!(st["fit_events"].as_array().unwrap().len(), 1);
    assert_eq!(st["metric_events"].as_array().unwrap().len(), 3);
    assert_eq!(s.upsert(&r, &WriteContext::new()).await.unwrap().write, WriteKind::Unchanged);
}

#[tokio::test]
async fn server_exceptions_on_each_stage_are_clear() {
    for (method, written) in [
        ("storeProjectEvent", "nothing written"),
        ("storeExperimentRunEvent", "nothing written"),
        ("storeFitEvent", "already written: run 1"),
    ] {
        let peer = Peer::start(&["--fail", method]);
        let e = sink(peer.port, false).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
        let m = e.to_string();
        assert!(m.contains(&format!("{method}: ServerLogicException: injected failure in {method}")), "{m}");
        assert!(m.contains(written), "{m}");
        assert!(m.contains(&format!("127.0.0.1:{}", peer.port)), "{m}");
    }
    // Compat mode: failing after the run was created is not retried (a retry would add a run).
    let peer = Peer::start(&["--fail", "storeFitEvent"]);
    let e = sink(peer.port, true).upsert(&record(&fixture("deepar-example.json")).await, &WriteContext::new()).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(
        peer.methods(),
        ["storeProjectEvent", "storeExperimentEvent", "storeExperimentRunEvent", "storeFitEvent"],
        "the first failure stops the rest"
    );
}

#[tokio::test]
async fn named_experiments_and_unicode() {
    let peer = Peer::start(&[]);
    let mut r = record(&fixture("train-only-unicode.json")).await;
    r.experiment = "forecasting-2026".into();
    sink(peer.port, false).upsert(&r, &WriteContext::new()).await.unwrap();
    let st = peer.state();
    assert_eq!(st["projects"][0]["name"], "Projekt Äß ☃");
    let exps: Vec<&str> = st["experiments"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(exps, ["Default_Experiment", "forecasting-2026"]);
    assert_eq!(st["runs"][0]["experiment"], 2);
    // duplicate metric names collapse to one (last value), as in the Light API's dict
    let metric = st["metric_events"].as_array().unwrap().iter().find(|m| m["metricType"] == "test:RMSE").unwrap();
    assert_eq!(metric["metricValue"], 11.0);
    let dfs = st["dataframes"].as_array().unwrap();
    assert_eq!(dfs.len(), 2, "train plus the empty default for test metrics: {dfs:?}");
}

#[tokio::test]
async fn test_connection_answers() {
    let peer = Peer::start(&[]);
    assert_eq!(sink(peer.port, false).test_connection().await.unwrap(), 200);
}

#[tokio::test]
async fn a_job_whose_project_changed_keeps_its_one_run() {
    let peer = Peer::start(&[]);
    let s = sink(peer.port, false);
    let r = record(&fixture("deepar-example.json")).await;
    let first = s.upsert(&r, &WriteContext::new()).await.unwrap();
    let mut moved = r.clone();
    moved.project.name = "a-new-project".into();
    let again = s.upsert(&moved, &WriteContext::new().with_previous(Some(first.clone()))).await.unwrap();
    assert_eq!(again.write, WriteKind::Unchanged, "{again:?}");
    assert_eq!(again.ids["run_id"], first.ids["run_id"]);
    assert_eq!(again.ids["project_id"], first.ids["project_id"], "the run stays where it was first written");
    let st = peer.state();
    let of_arn = st["runs"].as_array().unwrap().iter().filter(|x| x["description"].as_str().unwrap().contains(&r.run.external_id)).count();
    assert_eq!(of_arn, 1, "one run per ARN: {st}");
    // The Light API cannot delete: a retract keeps the run and says so.
    assert!(s.retract(&r.run.external_id, &WriteContext::new().with_previous(Some(again))).await.unwrap().is_none());
}

/// Issue 19, item 5: every call of the sink is bounded by the job's deadline. A server that
/// accepts and never answers, a 60 s request timeout, a deadline 1 s away: the write stops at
/// the deadline, as an interruption (the engine records nothing), not after 60 s. A lease that
/// no longer holds stops the write before its first call.
#[tokio::test]
async fn a_write_ends_at_the_jobs_deadline_and_not_at_all_without_its_lease() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    let _h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    let s = ModelDbV1Sink::new(ModelDbV1Settings {
        host: "127.0.0.1".into(),
        port,
        connect_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(60),
        compat: false,
        package_link_wait: Duration::from_secs(3600),
    });
    let r = record(&fixture("deepar-example.json")).await;
    let started = std::time::Instant::now();
    let cx = WriteContext::new().with_deadline(Some(started + Duration::from_secs(1)));
    let e = s.upsert(&r, &cx).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the deadline bounds the call: {took:?}");
    assert!(e.is_cancelled(), "out of time is an interruption: {e:?}");
    // A lost lease: nothing is sent at all.
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let guard = sagesync_core::LeaseGuard::new(std::time::Instant::now() + Duration::from_secs(60));
    guard.lose();
    let e = s.upsert(&r, &WriteContext::new().with_guard(guard)).await.unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) <= before + 1, "no call went out");
}

/// Issue 21: the Light API has no parent run: a tuning job is a non-default experiment of its
/// project named after it (described with its ARN), and its children's runs are created in it,
/// whichever comes first, in both modes; writing the tuner again finds its experiment.
#[tokio::test]
async fn a_tuner_is_an_experiment_and_its_children_run_in_it() {
    use sagesync_core::{ParentRef, ResourceKind};
    let tuner_arn = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/tuner-v1";
    for compat in [false, true] {
        let peer = Peer::start(&[]);
        let base = record(&fixture("train-only-unicode.json")).await;
        let mut child = base.clone();
        child.run.name = "tuner-v1-c1".into();
        child.run.external_id = "arn:aws:sagemaker:us-east-1:123456789012:training-job/tuner-v1-c1".into();
        child.lineage.parent = Some(ParentRef { kind: ResourceKind::TuningJob, arn: tuner_arn.into(), name: "tuner-v1".into() });
        let mut parent = base.clone();
        parent.run.name = "tuner-v1".into();
        parent.run.external_id = tuner_arn.into();
        parent.lineage.kind = ResourceKind::TuningJob;
        let s = sink(peer.port, compat);
        s.upsert(&child, &WriteContext::new()).await.unwrap();
        let p = s.upsert(&parent, &WriteContext::new()).await.unwrap();
        let again = s.upsert(&parent, &WriteContext::new()).await.unwrap();
        assert_eq!(p.ids["experiment_id"], again.ids["experiment_id"], "compat={compat}: found again");
        let st = peer.state();
        let exps: Vec<(&str, &str)> = st["experiments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["description"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(exps.len(), 2, "compat={compat}: {exps:?}");
        assert_eq!(exps[1].0, "tuner-v1");
        assert!(exps[1].1.contains(tuner_arn), "compat={compat}: {exps:?}");
        let runs = st["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "the tuner is no run: {runs:?}");
        assert_eq!(runs[0]["experiment"].to_string(), p.ids["experiment_id"], "compat={compat}: the child runs in its tuner's experiment");
    }
}
