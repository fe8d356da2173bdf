//! The Lambda with `[state] type = "dynamodb"` against moto's DynamoDB: concurrent and duplicate
//! deliveries of one job give one write, permanent failures are parked in the shared ledger, and
//! the ledger commands (`Engine::status` / `Engine::retry`, what `sagesync status` and `sagesync
//! retry` call) see and re-drive them from the same table.

mod support;

use sagesync_core::{CancellationToken, Config, Engine, EngineOptions, NoObserver, Outcome as JobOutcome, StateStore};
use sagesync_state_dynamodb::{DynamoSettings, DynamoState};
use sagesync_test_support::dynamodb;
use sagesync_test_support::lambda::{Outcome, Runtime};
use sagesync_test_support::locate::repo_root;
use sagesync_test_support::modeldb_v1::Peer;
use sagesync_test_support::moto::{create_job, Moto, SYNC_TAGS};
use sagesync_test_support::ports::HeldPort;
use serde_json::{json, Value};
use support::start_function;

fn event(name: &str, status: &str) -> Value {
    json!({
        "version": "0", "id": format!("ev-{name}-{status}"),
        "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
        "account": "123456789012", "time": "2026-11-20T10:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}")],
        "detail": {"TrainingJobName": name, "TrainingJobStatus": status}
    })
}

fn config(dir: &std::path::Path, moto: &Moto, peer_port: u16, table: &str) -> std::path::PathBuf {
    config_via(dir, moto, peer_port, table, &moto.url())
}

/// The config with the state's requests sent to `state_url` (a counting proxy in front of moto).
fn config_via(dir: &std::path::Path, moto: &Moto, peer_port: u16, table: &str, state_url: &str) -> std::path::PathBuf {
    let p = dir.join("sagesync.toml");
    std::fs::write(
        &p,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_requests_per_second = 0\ninitial_backoff_ms = 10\nmax_attempts = 2\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v1\"\nhost = \"127.0.0.1\"\nport = {peer_port}\n\n[state]\ntype = \"dynamodb\"\ntable = \"{table}\"\nregion = \"us-east-1\"\nendpoint_url = \"{state_url}\"\n\n[pipeline]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\nlease_ttl_secs = 10\nlease_wait_secs = 10\nmax_job_attempts = 1\n",
            url = moto.url()
        ),
    )
    .unwrap();
    p
}

async fn table(moto: &Moto, name: &str) -> DynamoState {
    let mut s = DynamoSettings::new(name);
    s.endpoint_url = Some(moto.url());
    s.region = Some("us-east-1".into());
    s.create_table = true;
    let st = DynamoState::new(s);
    st.open().await.expect("the table is created");
    st
}

fn runs_of(peer: &Peer, job: &str) -> Vec<Value> {
    peer.state()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["description"].as_str().unwrap_or("").contains(&format!("/{job})")))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_invocations_of_one_event_write_one_run_with_its_metrics_once() {
    let moto = Moto::start();
    let names = moto.create_jobs("conc", 1, &SYNC_TAGS).await;
    moto.edit(
        &names[0],
        json!({"FinalMetricDataList": [{"MetricName": "validation:auc", "Value": 0.875, "Timestamp": "2026-11-20T09:59:00Z"}]}),
    );
    let peer = Peer::start(&[]);
    let state = table(&moto, "lambda-conc").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &moto, peer.port, "lambda-conc");
    // Eight sandboxes: eight processes, each polling its own runtime emulator.
    let mut rts = Vec::new();
    let mut fns = Vec::new();
    for _ in 0..8 {
        let rt = Runtime::start().await;
        fns.push(start_function(&rt, &[("SAGESYNC_CONFIG", cfg.display().to_string())]));
        rts.push(rt);
    }
    let ev = event(&names[0], "Completed");
    let outcomes = futures::future::join_all(rts.iter().map(|rt| rt.invoke(ev.clone()))).await;
    let mut pending: Vec<usize> = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::Response(v) => assert!(v["outcome"] == "synced" || v["outcome"] == "already_synced", "{v}"),
            // Found the job leased for longer than lease_wait: delivered again by Lambda.
            Outcome::Error { body, .. } => {
                assert_eq!(body["errorType"], "RetryableError", "{body}");
                pending.push(i);
            }
        }
    }
    for i in pending {
        match rts[i].invoke(ev.clone()).await {
            Outcome::Response(v) => assert!(v["outcome"] == "synced" || v["outcome"] == "already_synced", "{v}"),
            other => panic!("redelivery: {other:?}"),
        }
    }
    let written: usize =
        outcomes.iter().filter(|o| matches!(o, Outcome::Response(v) if v["receipts"].as_array().is_some_and(|r| !r.is_empty()))).count();
    assert_eq!(written, 1, "exactly one invocation wrote: {outcomes:?}");
    let runs = runs_of(&peer, &names[0]);
    assert_eq!(runs.len(), 1, "eight deliveries, one run");
    let st = peer.state();
    let aucs: Vec<&Value> = st["metric_events"].as_array().unwrap().iter().filter(|m| m["metricType"] == "validation:auc").collect();
    assert_eq!(aucs.len(), 1, "the metric once: {aucs:?}");
    let e = state
        .jobs(&[format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", names[0])])
        .await
        .unwrap()
        .remove(0)
        .expect("in the shared ledger");
    assert_eq!(e.outcome, JobOutcome::Synced);
    assert_eq!(e.deliveries.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_with_one_job_twice_writes_once_and_failures_are_parked_for_status_and_retry() {
    let moto = Moto::start();
    let names = moto.create_jobs("batch", 1, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let state = table(&moto, "lambda-batch").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = dynamodb::Proxy::start(moto.port, 0).await;
    let cfg = config_via(dir.path(), &moto, peer.port, "lambda-batch", &proxy.url());
    let rt = Runtime::start().await;
    let f = start_function(&rt, &[("SAGESYNC_CONFIG", cfg.display().to_string())]);
    let rec = |id: &str, body: String| json!({"messageId": id, "receiptHandle": "h", "body": body, "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"});
    let batch = json!({"Records": [
        rec("m-1", event(&names[0], "Completed").to_string()),
        rec("m-2", event(&names[0], "Completed").to_string()),
        rec("m-3", event("ghost-job", "Completed").to_string()),
    ]});
    let r = match rt.invoke(batch).await {
        Outcome::Response(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(r["batchItemFailures"], json!([]), "the permanent failure is parked in the ledger, not redelivered: {r}");
    assert_eq!(runs_of(&peer, &names[0]).len(), 1, "the same job twice in a batch: one write");
    // Issue 25: one Embedded Metric Format line for the invocation, as CloudWatch reads it: a
    // synced job, a duplicate delivery (already synced) and a failed, parked one.
    let lines = support::emf(&f.stdout_lines());
    assert_eq!(lines.len(), 1, "one line per invocation: {lines:?}");
    let (ns, dims, m) = &lines[0];
    assert_eq!((ns.as_str(), dims.as_slice()), ("sagesync", &[("FunctionName".to_string(), "sagesync".to_string())][..]));
    assert_eq!(m.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), sagesync_lambda::EMF_METRICS.into_iter().collect());
    assert_eq!(
        (m["JobsSynced"], m["JobsFailed"], m["JobsParked"], m["JobsAlreadySynced"], m["EventsRetried"]),
        (1.0, 1.0, 1.0, 1.0, 0.0),
        "{m:?}"
    );
    assert!(m["SageMakerRequests"] >= 2.0 && m["StoreWrites"] >= 1.0 && m["RedrivesRun"] == 0.0, "{m:?}");
    // The function needs only the DynamoDB actions the SAM template grants it.
    let template = std::fs::read_to_string(repo_root().join("deploy/lambda/template.yaml")).unwrap();
    let granted: Vec<&str> = template.lines().filter_map(|l| l.trim().strip_prefix("- dynamodb:")).collect();
    let used = proxy.counters.snapshot();
    eprintln!("DynamoDB requests of the invocation (2 jobs, one twice): {used:?}");
    assert!(!used.is_empty());
    for op in used.keys() {
        assert!(granted.contains(&op.as_str()), "the function calls {op}, which the template does not grant ({granted:?})");
    }
    // The ghost job is in the shared ledger with its reason, parked (max_job_attempts = 1).
    let failed = state.failed(None, 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].arn.ends_with("/ghost-job") && failed[0].parked, "{failed:?}");
    assert!(failed[0].reason.as_deref().unwrap_or("").contains("not found"), "{failed:?}");

    // What `sagesync status` and `sagesync retry` do, from another process's engine on the table.
    assert!(!sagesync_lambda::registered().is_empty(), "links the plugin crates");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let c = Config::parse(&text, "sagesync.toml", &|_| None).unwrap();
    let engine = Engine::from_config(&c, &EngineOptions::sqlite()).unwrap();
    let st = engine.status(100).await.unwrap();
    let shown = serde_json::to_value(&st).unwrap().to_string();
    assert!(shown.contains("ghost-job") && shown.contains("not found"), "status shows the Lambda's parked job: {shown}");
    // The job appears in SageMaker; retry re-drives it from the ledger.
    let tags: Vec<(String, String)> = SYNC_TAGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    create_job(&moto.client().await, "ghost-job", &tags).await;
    let report = engine.retry(&["ghost-job".to_string()], &CancellationToken::new(), &NoObserver).await.unwrap();
    assert_eq!(report.synced, 1, "{report:?}");
    let after =
        state.jobs(&["arn:aws:sagemaker:us-east-1:123456789012:training-job/ghost-job".to_string()]).await.unwrap().remove(0).unwrap();
    assert!(!after.parked && after.outcome == JobOutcome::Synced, "re-driven by retry: {after:?}");
    assert_eq!(runs_of(&peer, "ghost-job").len(), 1);
    assert_eq!(state.failed(None, 10).await.unwrap().len(), 0);
}

fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "sched-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-20T10:15:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/sagesync-RetryDue"], "detail": {}
    })
}

/// Issue 19, item 2: a Lambda-only deployment re-drives a failed job. A Completed event arrives
/// while the ModelDB v1 peer refuses connections: the job fails, retryably, into the table. The
/// peer starts; the schedule's invocation syncs the job (one run), from the failed-jobs index,
/// with only the DynamoDB actions the template grants. `status` and `retry` see the same table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_redriven_by_the_scheduled_invocation() {
    let moto = Moto::start();
    let name = moto.create_jobs("redrive", 1, &SYNC_TAGS).await.remove(0);
    let held = HeldPort::new();
    let state = table(&moto, "lambda-redrive").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = dynamodb::Proxy::start(moto.port, 0).await;
    let cfg = config_via(dir.path(), &moto, held.port, "lambda-redrive", &proxy.url());
    let text = std::fs::read_to_string(&cfg).unwrap().replace("max_job_attempts = 1\n", "max_job_attempts = 5\nretry_backoff_secs = 1\n");
    std::fs::write(&cfg, text).unwrap();
    let rt = Runtime::start().await;
    let f = start_function(&rt, &[("SAGESYNC_CONFIG", cfg.display().to_string())]);
    match rt.invoke(event(&name, "Completed")).await {
        Outcome::Error { body, .. } => {
            assert_eq!(body["errorType"], "RetryableError", "{body}");
            assert!(body["errorMessage"].as_str().unwrap_or("").contains("connect"), "{body}");
        }
        other => panic!("the sink is down: {other:?}"),
    }
    let failed = state.failed(None, 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(!failed[0].parked && failed[0].next_attempt_at.is_some(), "{failed:?}");
    // Nothing re-drives it until the schedule fires; the store comes back meanwhile.
    let peer = Peer::start_on(&held, &[]);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    proxy.counters.reset();
    let r = match rt.invoke(scheduled_event()).await {
        Outcome::Response(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(r["outcome"], "redriven", "{r}");
    assert_eq!(r["synced"], 1, "{r}");
    assert_eq!(runs_of(&peer, &name).len(), 1, "one run");
    assert!(state.failed(None, 10).await.unwrap().is_empty());
    let used = proxy.counters.snapshot();
    assert!(!used.contains_key("Scan"), "the re-drive reads the failed-jobs index, never scans: {used:?}");
    let template = std::fs::read_to_string(repo_root().join("deploy/lambda/template.yaml")).unwrap();
    let granted: Vec<&str> = template.lines().filter_map(|l| l.trim().strip_prefix("- dynamodb:")).collect();
    for op in used.keys() {
        assert!(granted.contains(&op.as_str()), "the re-drive calls {op}, which the template does not grant ({granted:?})");
    }
    // An idle schedule: nothing due, nothing written.
    let r = match rt.invoke(scheduled_event()).await {
        Outcome::Response(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!((r["outcome"].as_str(), r["synced"].as_u64()), (Some("redriven"), Some(0)), "{r}");
    assert_eq!(runs_of(&peer, &name).len(), 1);
    // Issue 25: each invocation's metrics. The failing event: one retried delivery; each
    // scheduled one: a re-drive run (what the template's re-drive alarm watches).
    let lines = support::emf(&f.stdout_lines());
    let got: Vec<(f64, f64, f64)> = lines.iter().map(|(_, _, m)| (m["EventsRetried"], m["RedrivesRun"], m["JobsSynced"])).collect();
    assert_eq!(got, [(1.0, 0.0, 0.0), (0.0, 1.0, 1.0), (0.0, 1.0, 0.0)], "{lines:?}");
    assert!(lines[1].2["StoreWrites"] >= 1.0, "the re-drive's writes count, though it keeps no report of synced jobs: {lines:?}");
    // `status` sees the same table.
    let c = Config::parse(&std::fs::read_to_string(&cfg).unwrap(), "sagesync.toml", &|_| None).unwrap();
    let engine = Engine::from_config(&c, &EngineOptions::sqlite()).unwrap();
    let st = engine.status(10).await.unwrap();
    assert_eq!((st.counts.synced, st.counts.failed), (1, 0), "{st:?}");
}

/// Issue 19, item 8: a job parked for its content is not worked on again by a new event whose
/// job content did not change (another event time, same job): the sink sees nothing. Its
/// content changing brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_job_is_not_redriven_by_an_event_of_unchanged_content() {
    use sagesync_test_support::proxy::Proxy;
    let moto = Moto::start();
    let name = moto.create_jobs("parked", 1, &SYNC_TAGS).await.remove(0);
    let mlflow = sagesync_test_support::peer::Peer::mlflow();
    let mlflow_proxy = Proxy::start(mlflow.port).await;
    let _state = table(&moto, "lambda-parked").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sagesync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\ntype = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nmax_requests_per_second = 0\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"mlflow\"\ntracking_uri = \"{mlflow}\"\non_param_change = \"fail\"\n\n[state]\ntype = \"dynamodb\"\ntable = \"lambda-parked\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\n\n[pipeline]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\nmax_job_attempts = 1\n",
            url = moto.url(),
            mlflow = mlflow_proxy.url()
        ),
    )
    .unwrap();
    let rt = Runtime::start().await;
    let _f = start_function(&rt, &[("SAGESYNC_CONFIG", cfg.display().to_string())]);
    let at = |ms: u64| {
        let mut e = event(&name, "Completed");
        e["detail"]["LastModifiedTime"] = json!(ms);
        e
    };
    let ok = |o: Outcome| match o {
        Outcome::Response(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(ok(rt.invoke(at(1_795_650_000_000)).await)["outcome"], "synced");
    // The job's hyperparameter changes: MLflow cannot change a logged param, and this sink
    // fails such a job (on_param_change = "fail"): parked at once (max_job_attempts = 1).
    moto.edit(&name, json!({"HyperParameters": {"max_depth": "9", "eta": "0.2", "objective": "binary:logistic"}, "LastModifiedTime": chrono::Utc::now().to_rfc3339()}));
    let r = ok(rt.invoke(at(1_795_650_100_000)).await);
    assert_eq!(r["outcome"], "failed", "{r}");
    assert_eq!(r["parked"], true, "{r}");
    // Another event of the same job state (a different event time): read, known, left parked.
    mlflow_proxy.clear();
    let r = ok(rt.invoke(at(1_795_650_200_000)).await);
    assert_eq!(r["outcome"], "already_synced", "{r}");
    assert!(mlflow_proxy.log().is_empty(), "the sink saw the parked job again: {:?}", mlflow_proxy.by_operation());
    // Its content changes back: worked on again, and synced.
    moto.edit(&name, json!({"HyperParameters": {"max_depth": "5", "eta": "0.2", "objective": "binary:logistic"}, "LastModifiedTime": chrono::Utc::now().to_rfc3339()}));
    assert_eq!(ok(rt.invoke(at(1_795_650_300_000)).await)["outcome"], "synced");
}

/// Audit of issue 19, finding 1: a ledger that is throttled (or unreachable) when the event
/// arrives never turns the event into `already_synced`: a direct event fails with
/// `RetryableError`, an SQS record is reported in `batchItemFailures`; once the store answers,
/// the same event syncs the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_ledger_gives_a_retryable_answer_never_already_synced() {
    use sagesync_test_support::proxy::{Action, Proxy, Response};
    let moto = Moto::start();
    let names = moto.create_jobs("throttled", 1, &SYNC_TAGS).await;
    let peer = Peer::start(&[]);
    let _state = table(&moto, "lambda-throttled").await;
    let dynamo = Proxy::start(moto.port).await;
    dynamo.set_rule(|r| {
        if r.operation() == "BatchGetItem" {
            Action::Respond(Response::aws_error(
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            ))
        } else {
            Action::Forward
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_via(dir.path(), &moto, peer.port, "lambda-throttled", &dynamo.url());
    let rt = Runtime::start().await;
    let _f = start_function(&rt, &[("SAGESYNC_CONFIG", cfg.display().to_string())]);
    match rt.invoke(event(&names[0], "Completed")).await {
        Outcome::Error { body, .. } => {
            assert_eq!(body["errorType"], "RetryableError", "{body}");
            assert!(body.to_string().contains("state store"), "{body}");
        }
        other => panic!("a throttled ledger must not answer: {other:?}"),
    }
    let rec = |id: &str, body: String| json!({"messageId": id, "receiptHandle": "h", "body": body, "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"});
    let batch = json!({"Records": [rec("m-1", event(&names[0], "Completed").to_string())]});
    match rt.invoke(batch.clone()).await {
        Outcome::Response(v) => assert_eq!(v["batchItemFailures"], json!([{"itemIdentifier": "m-1"}]), "{v}"),
        other => panic!("{other:?}"),
    }
    assert!(runs_of(&peer, &names[0]).is_empty(), "nothing written while the ledger was unreadable");
    dynamo.forward_all();
    match rt.invoke(event(&names[0], "Completed")).await {
        Outcome::Response(v) => assert_eq!(v["outcome"], "synced", "{v}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(runs_of(&peer, &names[0]).len(), 1);
}
