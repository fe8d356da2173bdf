//! The `mlflow` sink against a real MLflow 3.17.2 tracking server (one per test binary, started
//! from the locked test peers), with an in-process proxy in front that counts requests and
//! injects faults.

mod support;

use std::collections::BTreeSet;

use sagesync_core::{HyperParameter, Metric, MetricPoint, MetricSeries, RunRecord, Sink, Split, WriteContext, WriteKind};
use sagesync_sink_mlflow::keys::{is_valid_key, mlflow_key};
use sagesync_sink_mlflow::OnParamChange;
use sagesync_test_support::mlflow::{kv, kv_str, shared, Proxy, Rest};
use sagesync_test_support::stderr::DumpOnPanic;
use serde_json::{json, Value};
use support::records::{fresh, policy, quickstart, sink, sink_with, synthetic, upsert_retrying};

fn guard() -> DumpOnPanic {
    DumpOnPanic(vec![shared().log()])
}

async fn setup() -> (DumpOnPanic, Proxy, Rest) {
    let g = guard();
    let proxy = Proxy::start(&shared().url()).await;
    (g, proxy, Rest::new(&shared().url()))
}

fn ts(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&chrono::Utc)).unwrap_or_default()
}

/// A re-sync of an unchanged record: `Unchanged`, and no write request at the proxy.
async fn assert_resync_writes_nothing(s: &dyn Sink, r: &RunRecord, proxy: &Proxy) {
    proxy.clear();
    let rc = s.upsert(r, &WriteContext::new()).await.expect("re-sync");
    assert_eq!(rc.write, WriteKind::Unchanged, "{:?}", proxy.ops());
    assert!(proxy.writes().is_empty(), "{:?}", proxy.ops());
}

/// Checks a stored run against its record, field by field.
async fn assert_run_matches(rest: &Rest, run_id: &str, r: &RunRecord) -> Value {
    let run = rest.run(run_id).await;
    assert_eq!(run["info"]["run_name"], r.run.name);
    assert_eq!(kv_str(&run, "tags", "sagemaker.training_job_arn"), Some(r.run.external_id.as_str()));
    let status = match r.run.status.as_str() {
        "Completed" => "FINISHED",
        "Failed" => "FAILED",
        "Stopped" => "KILLED",
        _ => "RUNNING",
    };
    assert_eq!(run["info"]["status"], status, "{run}");
    if let Some(start) = r.run.start {
        assert_eq!(run["info"]["start_time"].as_i64(), Some(start.timestamp_millis()));
    }
    if status != "RUNNING" {
        if let Some(end) = r.run.end {
            assert_eq!(run["info"]["end_time"].as_i64(), Some(end.timestamp_millis()));
        }
    }
    for h in &r.hyperparameters {
        let want = match &h.value {
            Value::String(s) => s.clone(),
            _ => h.raw.trim().to_string(),
        };
        let got = kv_str(&run, "params", &mlflow_key(&h.name)).unwrap_or_else(|| panic!("param {} missing", h.name));
        assert_eq!(got, want.chars().take(6000).collect::<String>(), "param {}", h.name);
    }
    for m in &r.metrics {
        let got = kv(&run, "metrics", &mlflow_key(&m.name)).and_then(Value::as_f64).unwrap_or_else(|| panic!("metric {} missing", m.name));
        assert_eq!(got, m.value, "metric {}", m.name);
    }
    for t in r.tags.iter().filter(|t| !t.key.starts_with("mlflow.") && !t.key.starts_with("sagemaker.")) {
        assert_eq!(kv_str(&run, "tags", &mlflow_key(&t.key)), Some(t.value.as_str()), "tag {}", t.key);
    }
    if let Some(uri) = r.model.artifact_uri.as_ref().filter(|u| !u.is_empty()) {
        assert_eq!(kv_str(&run, "tags", "sagemaker.model_artifact"), Some(uri.as_str()));
    }
    let inputs: BTreeSet<(String, String)> = run["inputs"]["dataset_inputs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["dataset"]["name"].as_str().unwrap_or_default().to_string(),
                serde_json::from_str::<Value>(i["dataset"]["source"].as_str().unwrap_or("{}")).unwrap_or_default()["uri"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = r.datasets.iter().map(|d| (d.name.clone(), d.uri.clone())).collect();
    assert_eq!(inputs, want, "dataset inputs");
    run
}

#[tokio::test]
async fn quickstart_jobs_become_runs_and_a_resync_writes_nothing() {
    let (_g, proxy, rest) = setup().await;
    let records: Vec<RunRecord> = quickstart().await.iter().map(|r| fresh(r, "qs")).collect();
    assert!(records.len() >= 4, "the quickstart set maps {} jobs", records.len());
    let s = sink(&proxy.url, "qs-{project}");
    let mut receipts = Vec::new();
    for (i, r) in records.iter().enumerate() {
        proxy.clear();
        let rc = s.upsert(r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}: {}", r.run.name, e.chain()));
        assert_eq!(rc.write, WriteKind::Created, "{}", r.run.name);
        let ops = proxy.ops();
        let writes = proxy.writes();
        assert_eq!(rc.writes as usize, writes.len(), "the receipt counts the writes: {ops:?}");
        let experiment_ops = ops.iter().filter(|o| o.starts_with("experiments/")).count();
        // A new job: search, create, search (race check), log-batch, log-inputs, update, get
        // (the created run still stands).
        assert!(ops.len() - experiment_ops <= 7, "job {i}: {ops:?}");
        let run_writes = writes.iter().filter(|w| !w.op().starts_with("experiments/")).count();
        assert!(run_writes <= 4, "create, log-batch, log-inputs, update at most: job {i}: {ops:?}");
        let run = assert_run_matches(&rest, &rc.ids["run_id"], r).await;
        assert_eq!(run["info"]["experiment_id"].as_str(), Some(rc.ids["experiment_id"].as_str()));
        assert_eq!(rest.experiment_id(&format!("qs-{}", r.project.name)).await.as_deref(), Some(rc.ids["experiment_id"].as_str()));
        receipts.push(rc);
    }

    // Re-sync without the ledger: reads only.
    proxy.clear();
    for (r, first) in records.iter().zip(&receipts) {
        let rc = s.upsert(r, &WriteContext::new()).await.expect("re-sync");
        assert_eq!(rc.write, WriteKind::Unchanged, "{}: {:?}", r.run.name, proxy.ops());
        assert_eq!(rc.writes, 0);
        assert_eq!(rc.ids["run_id"], first.ids["run_id"]);
    }
    assert!(proxy.writes().is_empty(), "writes on an unchanged re-sync: {:?}", proxy.writes());
    assert_eq!(proxy.log().len(), records.len(), "one search per job: {:?}", proxy.ops());

    // Re-sync with the ledger's receipt: no request at all.
    proxy.clear();
    for (r, first) in records.iter().zip(&receipts) {
        let rc = s.upsert(r, &WriteContext::new().with_previous(Some(first.clone()))).await.expect("re-sync");
        assert_eq!(rc.write, WriteKind::Unchanged);
    }
    assert!(proxy.log().is_empty(), "{:?}", proxy.ops());

    // A fresh sink (empty caches) with the receipt but a changed record reads the run by id.
    for r in &records {
        assert_eq!(rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await.len(), 1, "one run per job");
    }
}

#[tokio::test]
async fn three_hundred_hyperparameters_and_a_value_longer_than_mlflow_stores() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("hp300");
    r.hyperparameters = (0..300).map(|i| HyperParameter { name: format!("hp_{i:03}"), raw: format!("{i}"), value: json!(i) }).collect();
    let long = "abc".repeat(2500);
    r.hyperparameters.push(HyperParameter { name: "long_value".into(), raw: long.clone(), value: json!(long) });
    let s = sink(&proxy.url, "hp-{project}");
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    assert_eq!(rc.write, WriteKind::Created);
    let batches: Vec<_> = proxy.writes().into_iter().filter(|w| w.op() == "runs/log-batch").collect();
    assert!(batches.len() >= 4, "301 params need 4 batches");
    for b in &batches {
        assert!(b.body["params"].as_array().map_or(0, Vec::len) <= 100);
        assert_eq!(b.status, 200);
    }
    let run = assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
    assert_eq!(run["data"]["params"].as_array().map(Vec::len), Some(301));
    assert_eq!(kv_str(&run, "params", "long_value").map(|v| v.len()), Some(6000));
    let note = kv_str(&run, "tags", "sagesync.truncated.param.long_value").expect("truncation tag");
    assert!(note.starts_with("7500 characters, sha256 "), "{note}");
    assert!(rc.ids["cut_values"].contains("long_value: 7500"), "{:?}", rc.ids);
    proxy.clear();
    let again = s.upsert(&r, &WriteContext::new()).await.expect("re-sync");
    assert_eq!(again.write, WriteKind::Unchanged, "{:?}", proxy.ops());
    assert!(proxy.writes().is_empty());
}

#[tokio::test]
async fn metric_names_outside_the_key_rules_and_a_unicode_project() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("keys");
    r.project.name = format!("Prüfung 日本語 ✓ {:04x}", fastrand::u16(..));
    let names = ["validation:mAP@0.75", "test:quantile_loss[0.9]", "a@b", "a#b", "train-error(%)", "../up", "ok:name"];
    r.metrics = names
        .iter()
        .enumerate()
        .map(|(i, n)| Metric {
            name: n.to_string(),
            value: i as f64 + 0.5,
            split: Split::from_metric_name(n),
            timestamp: Some(ts("2026-03-01T11:00:00Z")),
            step: None,
        })
        .collect();
    r.tags.insert("team/ünïcode", "välue ✓");
    let s = sink(&proxy.url, "{project}");
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    let exp = rest.experiment_id(&r.project.name).await.expect("the unicode experiment exists by its exact name");
    assert_eq!(exp, rc.ids["experiment_id"]);
    let run = assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
    let keys: BTreeSet<String> = names.iter().map(|n| mlflow_key(n)).collect();
    assert_eq!(keys.len(), names.len(), "distinct keys");
    for n in names {
        let k = mlflow_key(n);
        if k != n {
            assert_eq!(kv_str(&run, "tags", &format!("sagesync.original.metric.{k}")), Some(n), "original name of {k}");
        }
    }
    assert_eq!(kv(&run, "metrics", "ok:name").and_then(Value::as_f64), Some(6.5));
    let tk = mlflow_key("team/ünïcode");
    assert_eq!(kv_str(&run, "tags", &tk), Some("välue ✓"));
    assert_eq!(kv_str(&run, "tags", &format!("sagesync.original.tag.{tk}")), Some("team/ünïcode"));
    assert_resync_writes_nothing(&s, &r, &proxy).await;
}

#[tokio::test]
async fn a_changed_job_sends_only_the_difference() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("diff");
    r.run.status = "InProgress".into();
    let s = sink(&proxy.url, "diff-{project}");
    let first = s.upsert(&r, &WriteContext::new()).await.expect("first");
    assert_eq!(rest.run(&first.ids["run_id"]).await["info"]["status"], "RUNNING");
    r.run.status = "Completed".into();
    r.metrics.push(Metric {
        name: "test:rmse".into(),
        value: 1.25,
        split: Split::Test,
        timestamp: Some(ts("2026-03-01T11:30:00Z")),
        step: None,
    });
    r.tags.insert("stage", "done");
    proxy.clear();
    let rc = s.upsert(&r, &WriteContext::new().with_previous(Some(first.clone()))).await.expect("second");
    assert_eq!(rc.write, WriteKind::Updated);
    assert_eq!(rc.ids["run_id"], first.ids["run_id"]);
    let log = proxy.log();
    assert_eq!(log[0].op(), "runs/get", "the previous receipt's run is read by id: {:?}", proxy.ops());
    let writes = proxy.writes();
    let ops: Vec<&str> = writes.iter().map(|w| w.op()).collect();
    assert_eq!(ops, ["runs/log-batch", "runs/update"], "{:?}", proxy.ops());
    let batch = &writes[0].body;
    assert_eq!(batch["params"].as_array().map(Vec::len), Some(0), "{batch}");
    assert_eq!(
        batch["metrics"],
        json!([{"key": "test:rmse", "value": 1.25, "timestamp": ts("2026-03-01T11:30:00Z").timestamp_millis(), "step": 0}])
    );
    let tags: Vec<&str> = batch["tags"].as_array().into_iter().flatten().filter_map(|t| t["key"].as_str()).collect();
    assert_eq!(tags, ["stage"]);
    assert_eq!(writes[1].body["status"], "FINISHED");
    assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
}

#[tokio::test]
async fn a_changed_param_under_the_tag_policy_is_kept_and_tagged() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("ptag");
    let s = sink_with(&proxy.url, "ptag-{project}", policy(OnParamChange::Tag));
    let first = s.upsert(&r, &WriteContext::new()).await.expect("first");
    r.hyperparameters[0].raw = "0.3".into();
    r.hyperparameters[0].value = json!(0.3);
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("second");
    assert_eq!(rc.write, WriteKind::Updated);
    assert_eq!(rc.ids["param_changes"], "1");
    let run = rest.run(&first.ids["run_id"]).await;
    assert_eq!(kv_str(&run, "params", "eta"), Some("0.2"), "MLflow keeps the logged param");
    assert_eq!(kv_str(&run, "tags", "sagesync.param_changed.eta"), Some("0.3"));
    proxy.clear();
    assert_eq!(s.upsert(&r, &WriteContext::new()).await.expect("third").write, WriteKind::Unchanged);
    assert!(proxy.writes().is_empty(), "the recorded change is not re-sent: {:?}", proxy.ops());
}

#[tokio::test]
async fn a_changed_param_under_the_fail_policy_fails_without_writing() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("pfail");
    let s = sink_with(&proxy.url, "pfail-{project}", policy(OnParamChange::Fail));
    let first = s.upsert(&r, &WriteContext::new()).await.expect("first");
    r.hyperparameters[1].raw = "7".into();
    r.hyperparameters[1].value = json!(7);
    r.tags.insert("extra", "x");
    proxy.clear();
    let err = s.upsert(&r, &WriteContext::new()).await.expect_err("a changed param fails");
    assert!(!err.is_retryable());
    let msg = err.chain();
    assert!(msg.contains("max_depth") && msg.contains("on_param_change"), "{msg}");
    assert!(proxy.writes().is_empty(), "nothing written: {:?}", proxy.ops());
    let run = rest.run(&first.ids["run_id"]).await;
    assert_eq!(kv_str(&run, "params", "max_depth"), Some("6"));
    assert_eq!(kv_str(&run, "tags", "extra"), None);
}

#[tokio::test]
async fn two_concurrent_syncs_of_one_job_give_one_run() {
    let (_g, proxy, rest) = setup().await;
    for round in 0..3 {
        let r = synthetic(&format!("race{round}"));
        let (a, b) = (sink(&proxy.url, "race-{project}"), sink(&proxy.url, "race-{project}"));
        // Both writers search, find nothing and create: the proxy holds each create until both
        // have arrived, so the race happens every time.
        proxy.barrier("runs/create", 2);
        let cx = WriteContext::new();
        let (ra, rb) = tokio::join!(upsert_retrying(&a, &r, &cx, 5), upsert_retrying(&b, &r, &cx, 5));
        let (ra, rb) = (ra.0.expect("writer a"), rb.0.expect("writer b"));
        assert_eq!(proxy.ops().iter().filter(|o| *o == "runs/create").count(), 2 * (round + 1), "both created a run");
        assert_eq!(ra.ids["run_id"], rb.ids["run_id"], "both settled on one run");
        let active = rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await;
        assert_eq!(active.len(), 1, "{active:?}");
        let all = rest.runs_of(&r.run.external_id, "ALL").await;
        assert_eq!(all.len(), 2, "the loser is deleted, not left behind");
        assert_run_matches(&rest, &ra.ids["run_id"], &r).await;
        let kinds = [ra.write, rb.write];
        assert!(kinds.contains(&WriteKind::Created), "{kinds:?}");
    }
}

/// With a persistent ledger that has never written the job (`first_write`), a new job costs at
/// most 6 requests (create, search, log-batch, log-inputs, update, get). The search after the create
/// still finds a run made earlier (a ledger lost, a crash before the ledger row): the finished
/// run wins and the new one is deleted. Two such writers at once also end with one run.
#[tokio::test]
async fn first_writes_create_first_and_still_settle_on_one_run() {
    let (_g, proxy, rest) = setup().await;
    let first = WriteContext::new().with_first_write(true);
    let records: Vec<RunRecord> = quickstart().await.iter().map(|r| fresh(r, "fw")).collect();
    let s = sink(&proxy.url, "fw-{project}");
    let mut receipts = Vec::new();
    for r in &records {
        proxy.clear();
        let rc = s.upsert(r, &first).await.unwrap_or_else(|e| panic!("{}: {}", r.run.name, e.chain()));
        assert_eq!(rc.write, WriteKind::Created, "{}", r.run.name);
        let ops: Vec<String> = proxy.ops().into_iter().filter(|o| !o.starts_with("experiments/")).collect();
        assert!(ops.len() <= 6, "{}: {ops:?}", r.run.name);
        assert_eq!(ops.first().map(String::as_str), Some("runs/create"), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| *o == "runs/search").count(), 1, "{ops:?}");
        assert_run_matches(&rest, &rc.ids["run_id"], r).await;
        receipts.push(rc);
    }
    // The ledger is lost: every job is a "first write" again. One run per job stays.
    for (r, earlier) in records.iter().zip(&receipts) {
        let rc = s.upsert(r, &first).await.unwrap_or_else(|e| panic!("{}: {}", r.run.name, e.chain()));
        let active = rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await;
        assert_eq!(active.len(), 1, "{}: {active:?}", r.run.name);
        assert_eq!(active[0]["info"]["run_id"].as_str(), Some(rc.ids["run_id"].as_str()));
        if r.run.status != "InProgress" {
            assert_eq!(rc.ids["run_id"], earlier.ids["run_id"], "{}: the finished run wins over the new one", r.run.name);
        }
        assert_run_matches(&rest, &rc.ids["run_id"], r).await;
    }
    // Two first writes of one new job at once.
    let r = synthetic("fwrace");
    let (a, b) = (sink(&proxy.url, "fw-{project}"), sink(&proxy.url, "fw-{project}"));
    proxy.clear();
    proxy.barrier("runs/create", 2);
    let (ra, rb) = tokio::join!(upsert_retrying(&a, &r, &first, 5), upsert_retrying(&b, &r, &first, 5));
    let (ra, rb) = (ra.0.expect("writer a"), rb.0.expect("writer b"));
    assert_eq!(proxy.ops().iter().filter(|o| *o == "runs/create").count(), 2, "both created a run");
    assert_eq!(ra.ids["run_id"], rb.ids["run_id"], "both settled on one run");
    assert_eq!(rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await.len(), 1);
    assert_run_matches(&rest, &ra.ids["run_id"], &r).await;
}

#[tokio::test]
async fn a_5xx_burst_is_retried() {
    let (_g, proxy, rest) = setup().await;
    let r = synthetic("burst");
    let s = sink(&proxy.url, "burst-{project}");
    proxy.fail_next(3);
    let (rc, transient) = upsert_retrying(&s, &r, &WriteContext::new(), 6).await;
    let rc = rc.expect("succeeds once the burst is over");
    assert_eq!(transient.len(), 3, "{transient:?}");
    assert!(transient.iter().all(|e| e.contains("503")), "{transient:?}");
    assert_eq!(rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await.len(), 1);
    assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
    // A burst in the middle of a sync (after the create) loses nothing either.
    let r2 = synthetic("burst2");
    let (arrived, release) = proxy.hold("runs/log-batch");
    let s2 = sink(&proxy.url, "burst-{project}");
    let task = tokio::spawn({
        let r2 = r2.clone();
        async move { upsert_retrying(&s2, &r2, &WriteContext::new(), 6).await }
    });
    arrived.notified().await;
    proxy.fail_next(2);
    release.notify_one();
    let (rc2, transient2) = task.await.expect("task");
    let rc2 = rc2.expect("second job");
    assert!(!transient2.is_empty());
    assert_eq!(rest.runs_of(&r2.run.external_id, "ACTIVE_ONLY").await.len(), 1);
    assert_run_matches(&rest, &rc2.ids["run_id"], &r2).await;
}

#[tokio::test]
async fn histories_are_logged_with_their_steps_and_only_once() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("hist");
    let start = ts("2026-03-01T10:00:00Z");
    r.metric_history = vec![MetricSeries::new(
        "train:loss",
        (0..2500)
            .map(|i| MetricPoint { timestamp: Some(start + chrono::Duration::seconds(i)), step: i, value: 1.0 / (1.0 + i as f64) })
            .collect(),
    )];
    let s = sink(&proxy.url, "hist-{project}");
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    let h = rest.history(&rc.ids["run_id"], "train:loss").await;
    assert_eq!(h.len(), 2500);
    let mut steps: Vec<i64> = h.iter().filter_map(|p| p["step"].as_i64()).collect();
    steps.sort();
    assert_eq!(steps, (0..2500).collect::<Vec<_>>());
    assert!(h.iter().all(|p| p["timestamp"].as_i64() == Some(start.timestamp_millis() + p["step"].as_i64().unwrap_or(-1) * 1000)));
    for b in proxy.writes().iter().filter(|w| w.op() == "runs/log-batch") {
        assert!(b.body["metrics"].as_array().map_or(0, Vec::len) <= 1000);
    }
    // A longer history later: only the new points go out.
    r.metric_history[0].points.push(MetricPoint { timestamp: Some(start + chrono::Duration::seconds(2500)), step: 2500, value: 0.0001 });
    proxy.clear();
    let rc2 = s.upsert(&r, &WriteContext::new()).await.expect("re-sync");
    assert_eq!(rc2.write, WriteKind::Updated);
    let sent: usize = proxy.writes().iter().map(|w| w.body["metrics"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(sent, 1, "{:?}", proxy.ops());
    assert_eq!(rest.history(&rc.ids["run_id"], "train:loss").await.len(), 2501);
    assert_resync_writes_nothing(&s, &r, &proxy).await;
}

/// Issue 24: a job's two metrics of 50 iterations each, read from SageMaker's metrics service
/// (the launcher's fake, seeded with its BatchPutMetrics) by the `sagemaker` source in one
/// BatchGetMetrics call, become MLflow histories with steps 0–49, values bit-exact, stamped
/// with the job's end (the service gives iteration numbers, not times). A re-sync writes
/// nothing; a longer series appends only its new points. Prints the points per second logged.
#[tokio::test]
async fn iteration_numbers_from_the_metrics_service_become_mlflow_steps() {
    use sagesync_core::Source;
    use sagesync_source_sagemaker::api::history::{HistoryOptions, HistorySourceMode};
    use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
    let (_g, proxy, rest) = setup().await;
    let moto = sagesync_test_support::moto::Moto::start();
    let names = moto.create_jobs("mlsteps", 1, &sagesync_test_support::moto::SYNC_TAGS).await;
    let job = &names[0];
    let finals = json!([{"MetricName": "train:loss", "Value": 0.2, "Timestamp": "2026-12-01T10:00:00Z"}, {"MetricName": "validation:auc", "Value": 0.9, "Timestamp": "2026-12-01T10:00:00Z"}]);
    moto.edit(
        job,
        json!({"FinalMetricDataList": finals, "TrainingStartTime": "2026-12-01T09:00:00Z", "TrainingEndTime": "2026-12-01T10:00:00Z"}),
    );
    let t0 = 1_764_579_600.0;
    // Values with all 52 bits of mantissa in use: a decimal round trip would show.
    let value = |k: f64, i: i32| k / 3.0 + (f64::from(i) * 0.1).sin() / 7.0;
    let points = |k: f64, from: i32, to: i32| -> Vec<(Option<i32>, f64, f64)> {
        (from..to).map(|i| (Some(i), t0 + 60.0 * f64::from(i), value(k, i))).collect()
    };
    moto.put_metrics(job, "train:loss", &points(1.0, 0, 50)).await;
    moto.put_metrics(job, "validation:auc", &points(2.0, 0, 50)).await;
    // The metric moto's jobs define (else asked again by time: a second call).
    moto.put_metrics(job, "test:dcg", &points(3.0, 0, 2)).await;
    let mut st = SageMakerSettings::new(Mode::List).endpoint(&moto.url(), "us-east-1").unlimited();
    st.history = Some(HistoryOptions { source: HistorySourceMode::Auto, ..HistoryOptions::default() });
    let src = SageMakerSource::new(st);
    let fetched = src.fetch_by_name(job).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(src.api_calls().get("BatchGetMetrics"), Some(&1), "three metrics, one call");
    assert_eq!(src.api_calls().get("GetMetricData"), None);
    // Its final `validation:auc` is not logged again at a step of its own: the series by
    // iteration ends with the job's last value (a step of its own would collide with the next
    // iteration when the series grows).
    let mut r = synthetic("mlsteps");
    r.metric_history = fetched.metric_history.clone();
    let end_ms = r.run.end.map(|t| t.timestamp_millis()).expect("the record has an end");
    let s = sink(&proxy.url, "steps-{project}");
    let began = std::time::Instant::now();
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let took = began.elapsed();
    println!(
        "FIGURE mlflow_history_points_per_second {:.0} (102 points, one new run, {} requests)",
        102.0 / took.as_secs_f64(),
        proxy.ops().len()
    );
    for (key, k) in [("train:loss", 1.0), ("validation:auc", 2.0)] {
        let mut h = rest.history(&rc.ids["run_id"], key).await;
        h.sort_by_key(|p| p["step"].as_i64());
        assert_eq!(h.iter().filter_map(|p| p["step"].as_i64()).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>(), "{key}");
        for (i, p) in h.iter().enumerate() {
            assert_eq!(p["value"].as_f64().map(f64::to_bits), Some(value(k, i as i32).to_bits()), "{key} step {i}: bit-exact");
            assert_eq!(p["timestamp"].as_i64(), Some(end_ms), "{key} step {i}: the job's end");
        }
    }
    let run = rest.run(&rc.ids["run_id"]).await;
    assert_eq!(kv_str(&run, "tags", "sagesync.history.train:loss"), Some("sagemaker_metrics, iteration, Last"), "{run}");
    assert_resync_writes_nothing(&s, &r, &proxy).await;
    // Ten more iterations of one metric: only they are sent.
    moto.put_metrics(job, "train:loss", &points(1.0, 50, 60)).await;
    let longer = src.fetch_by_name(job).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    r.metric_history = longer.metric_history;
    proxy.clear();
    let rc2 = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(rc2.write, WriteKind::Updated);
    let sent: Vec<i64> = proxy
        .writes()
        .iter()
        .filter(|w| w.op() == "runs/log-batch")
        .flat_map(|w| w.body["metrics"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["step"].as_i64())
        .collect();
    assert_eq!(sent, (50..60).collect::<Vec<_>>(), "{:?}", proxy.ops());
    assert_eq!(rest.history(&rc.ids["run_id"], "train:loss").await.len(), 60);
    // The job's end moves (a job synced while running, then ended): a point by iteration number
    // is the same point whatever time it was stamped with, so nothing is logged again.
    r.run.end = r.run.end.map(|t| t + chrono::Duration::hours(1));
    proxy.clear();
    s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let points: usize =
        proxy.writes().iter().filter(|w| w.op() == "runs/log-batch").map(|w| w.body["metrics"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(points, 0, "{:?}", proxy.ops());
    assert_eq!(rest.history(&rc.ids["run_id"], "train:loss").await.len(), 60);
}

/// Issue 24 (audit): a run that holds a key's series of one kind (CloudWatch's by time, written
/// before series said their kind, or another statistic) keeps it: the metrics service's series
/// is not mixed into the same curve (MLflow cannot delete points). The receipt says how many
/// were kept; a new run gets the new kind.
#[tokio::test]
async fn a_run_keeps_the_kind_of_series_it_holds() {
    use sagesync_core::HistorySource;
    let (_g, proxy, rest) = setup().await;
    let start = ts("2026-03-01T10:00:00Z");
    let by_time = |source: Option<HistorySource>| {
        let mut s = MetricSeries::new(
            "train:loss",
            (0..5).map(|i| MetricPoint { timestamp: Some(start + chrono::Duration::minutes(i)), step: i, value: i as f64 }).collect(),
        );
        s.source = source;
        s.resolution = source.map(|_| "60".to_string());
        s.stat = source.map(|_| "Average".to_string());
        s
    };
    let mut by_iteration = MetricSeries::new(
        "train:loss",
        (0..8).map(|i| MetricPoint { timestamp: None, step: i * 10, value: 1.0 / (1.0 + i as f64) }).collect(),
    );
    by_iteration.source = Some(HistorySource::SagemakerMetrics);
    by_iteration.resolution = Some("iteration".into());
    by_iteration.stat = Some("Last".into());
    let s = sink(&proxy.url, "kinds-{project}");
    // A run written before series said their kind, and one written with CloudWatch's.
    let final_value = |v: f64| Metric {
        name: "train:loss".into(),
        value: v,
        split: Split::Train,
        timestamp: Some(start + chrono::Duration::hours(1)),
        step: None,
    };
    for (name, first) in [("kinds-legacy", by_time(None)), ("kinds-cw", by_time(Some(HistorySource::Cloudwatch)))] {
        let mut r = synthetic(name);
        r.metrics = vec![final_value(0.25)];
        r.metric_history = vec![first];
        let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        let tag_before = kv_str(&rest.run(&rc.ids["run_id"]).await, "tags", "sagesync.history.train:loss").map(str::to_string);
        r.metric_history = vec![by_iteration.clone()];
        // The job's final value changed meanwhile: it goes after the run's own series.
        r.metrics = vec![final_value(0.9)];
        proxy.clear();
        let rc2 = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        assert_eq!(rc2.ids.get("kept_series").map(String::as_str), Some("1"), "{name}: {rc2:?}");
        let mut h = rest.history(&rc.ids["run_id"], "train:loss").await;
        h.sort_by_key(|p| p["step"].as_i64());
        let steps: Vec<(i64, f64)> = h.iter().map(|p| (p["step"].as_i64().unwrap(), p["value"].as_f64().unwrap())).collect();
        assert_eq!(
            steps,
            [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 0.25), (6, 0.9)],
            "{name}: nothing mixed in, the final value after"
        );
        let run = rest.run(&rc.ids["run_id"]).await;
        assert_eq!(
            kv_str(&run, "tags", "sagesync.history.train:loss").map(str::to_string),
            tag_before,
            "{name}: the run's kind stays said"
        );
        assert_resync_writes_nothing(&s, &r, &proxy).await;
    }
    // A run written before series said their kind, then CloudWatch's one-minute averages (what
    // it held): the series goes on growing.
    let mut r = synthetic("kinds-legacy-cw");
    r.metrics.clear();
    r.metric_history = vec![by_time(None)];
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let mut longer = by_time(Some(HistorySource::Cloudwatch));
    longer.points.push(MetricPoint { timestamp: Some(start + chrono::Duration::minutes(5)), step: 5, value: 5.0 });
    r.metric_history = vec![longer];
    let rc2 = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert!(!rc2.ids.contains_key("kept_series"), "{rc2:?}");
    assert_eq!(rest.history(&rc.ids["run_id"], "train:loss").await.len(), 6);
    // A new run gets the series by iteration.
    let mut r = synthetic("kinds-new");
    r.metrics.clear();
    r.metric_history = vec![by_iteration];
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let mut steps: Vec<i64> = rest.history(&rc.ids["run_id"], "train:loss").await.iter().filter_map(|p| p["step"].as_i64()).collect();
    steps.sort();
    assert_eq!(steps, (0..8).map(|i| i * 10).collect::<Vec<_>>());
}

#[tokio::test]
async fn retract_deletes_the_run_of_the_arn() {
    let (_g, proxy, rest) = setup().await;
    let r = synthetic("retract");
    let s = sink(&proxy.url, "retract-{project}");
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    let gone =
        s.retract(&r.run.external_id, &WriteContext::new().with_previous(Some(rc.clone()))).await.expect("retract").expect("a receipt");
    assert_eq!(gone.write, WriteKind::Removed);
    assert_eq!(gone.ids["run_id"], rc.ids["run_id"]);
    assert_eq!(rest.run(&rc.ids["run_id"]).await["info"]["lifecycle_stage"], "deleted");
    let again = s.retract(&r.run.external_id, &WriteContext::new()).await.expect("retract").expect("a receipt");
    assert_eq!(again.write, WriteKind::Unchanged);
    // Without a receipt the run is found in any experiment.
    let r2 = synthetic("retract2");
    let rc2 = s.upsert(&r2, &WriteContext::new()).await.expect("upsert");
    let gone2 = s.retract(&r2.run.external_id, &WriteContext::new()).await.expect("retract").expect("a receipt");
    assert_eq!(gone2.write, WriteKind::Removed);
    assert_eq!(rest.run(&rc2.ids["run_id"]).await["info"]["lifecycle_stage"], "deleted");
}

#[tokio::test]
async fn a_job_whose_project_moved_gets_a_run_in_the_new_experiment_and_the_old_one_goes() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("move");
    let s = sink(&proxy.url, "move-{project}");
    let first = s.upsert(&r, &WriteContext::new()).await.expect("first");
    r.project.name = format!("{}-renamed", r.project.name);
    let second = s.upsert(&r, &WriteContext::new().with_previous(Some(first.clone()))).await.expect("second");
    assert_eq!(second.write, WriteKind::Created);
    assert_ne!(second.ids["experiment_id"], first.ids["experiment_id"]);
    assert_eq!(second.ids["deleted_runs"], first.ids["run_id"]);
    assert_eq!(rest.run(&first.ids["run_id"]).await["info"]["lifecycle_stage"], "deleted");
    let active = rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["info"]["experiment_id"].as_str(), Some(second.ids["experiment_id"].as_str()));
}

#[tokio::test]
async fn a_native_run_is_adopted() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("native");
    let (_, e) = rest.post("experiments/create", &json!({"name": format!("native-sm-{:08x}", fastrand::u32(..))})).await;
    let exp = e["experiment_id"].as_str().expect("experiment").to_string();
    let (_, created) = rest.post("runs/create", &json!({"experiment_id": exp, "run_name": "logged-by-sagemaker", "start_time": 1})).await;
    let native = created["run"]["info"]["run_id"].as_str().expect("run").to_string();
    r.attributes.insert("mlflow_run_id".into(), json!(native));
    let s = sink_with(&proxy.url, "native-{project}", |s| s.adopt_native_runs = true);
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    assert_eq!(rc.ids["run_id"], native);
    assert_eq!(rc.ids["adopted"], "true");
    let run = rest.run(&native).await;
    assert_eq!(run["info"]["run_name"], "logged-by-sagemaker", "an adopted run keeps its name");
    assert_eq!(kv_str(&run, "params", "eta"), Some("0.2"));
    assert_eq!(kv_str(&run, "tags", "sagemaker.training_job_arn"), Some(r.run.external_id.as_str()));
    assert!(proxy.ops().iter().all(|o| o != "runs/create"), "{:?}", proxy.ops());
    // Without adoption the same record gets a run of its own.
    let plain = sink(&proxy.url, "native-{project}").upsert(&r, &WriteContext::new()).await.expect("upsert");
    assert_ne!(plain.ids["run_id"], native);
}

#[tokio::test]
async fn a_reply_over_max_response_bytes_fails_clearly() {
    let (_g, proxy, _rest) = setup().await;
    let mut r = synthetic("cap");
    r.hyperparameters =
        (0..60).map(|i| HyperParameter { name: format!("big_{i}"), raw: "z".repeat(2000), value: json!("z".repeat(2000)) }).collect();
    let s = sink(&proxy.url, "cap-{project}");
    s.upsert(&r, &WriteContext::new()).await.expect("upsert");
    let small = sink_with(&proxy.url, "cap-{project}", |s| s.max_response_bytes = 64 << 10);
    let err = small.upsert(&r, &WriteContext::new()).await.expect_err("the search reply is about 120 KB");
    assert!(err.chain().contains("max_response_bytes"), "{}", err.chain());
    assert!(!err.is_retryable());
}

/// Names for the key rules: what SageMaker allows in hyperparameter and metric names, and what
/// MLflow's `path_not_unique` refuses (`..lr`, `...`, `a/./b`, a trailing `/`...).
fn generated_names() -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(19);
    let mut names: Vec<String> = [
        "..lr",
        "...",
        "..",
        ".",
        "./a",
        "a/./b",
        "a/../b",
        "a//b",
        "/a",
        "a/",
        ".lr",
        "a..b",
        "a/..b",
        "a/.b",
        "..a/b",
        "a/b..",
        "lr",
        "train:loss",
        "validation:mAP@0.75",
        "a b",
        " a",
        "a ",
        "-",
        "_",
        "a.b.c",
        "ünï",
        "é/..x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let alphabet: Vec<char> = "ab./:-_ @#%".chars().collect();
    while names.len() < 160 {
        let len = rng.usize(1..12);
        names.push((0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect());
    }
    names.sort();
    names.dedup();
    names
}

/// Issue 19, item 9: the key rule matches MLflow's own, checked against the real server. For
/// every generated name: its key is accepted; an ASCII name the rule calls valid is accepted as
/// it is, and one it calls invalid is refused by the server too (so the sanitiser never lets a
/// name through that the server refuses, as `..lr` was).
#[tokio::test]
async fn the_key_rule_is_mlflows_own() {
    let (_g, _proxy, rest) = setup().await;
    let (s, exp) = rest.post("experiments/create", &json!({"name": format!("keys-{:08x}", fastrand::u32(..))})).await;
    assert_eq!(s, 200, "{exp}");
    let (s, run) = rest.post("runs/create", &json!({"experiment_id": exp["experiment_id"], "run_name": "keys"})).await;
    assert_eq!(s, 200, "{run}");
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let mut disagree = Vec::new();
    for (i, name) in generated_names().into_iter().enumerate() {
        let key = mlflow_key(&name);
        let (s, body) = rest.post("runs/log-parameter", &json!({"run_id": run_id, "key": key, "value": i.to_string()})).await;
        assert_eq!(s, 200, "the key {key:?} of {name:?} is refused: {body}");
        if name.is_ascii() && key != name {
            let (s, _) =
                rest.post("runs/log-metric", &json!({"run_id": run_id, "key": name, "value": 1.0, "timestamp": 1, "step": 0})).await;
            if s == 200 {
                disagree.push(format!("{name:?} is accepted by the server, rewritten by the sanitiser"));
            }
        }
        if is_valid_key(&name) {
            let (s, body) =
                rest.post("runs/log-metric", &json!({"run_id": run_id, "key": name, "value": 2.0, "timestamp": 1, "step": 1})).await;
            if s != 200 {
                disagree.push(format!("{name:?} is valid by the rule, refused by the server: {body}"));
            }
        }
    }
    // The sanitiser may be stricter than the server only where other MLflow-compatible
    // servers are (no Unicode): for ASCII names, it agrees with the server both ways.
    assert!(disagree.is_empty(), "{disagree:#?}");
}

/// Issue 19, item 12: NaN, Infinity and -Infinity final values are logged to MLflow (it keeps
/// NaN as NaN and ±Infinity as the largest double), with the finite one; a re-sync writes
/// nothing.
#[tokio::test]
async fn non_finite_metric_values_are_logged_and_a_resync_writes_nothing() {
    let (_g, proxy, rest) = setup().await;
    let mut r = synthetic("nan");
    r.metrics = [("train:loss", f64::NAN), ("train:grad", f64::INFINITY), ("train:min", f64::NEG_INFINITY), ("validation:auc", 0.5)]
        .into_iter()
        .map(|(n, v)| Metric {
            name: n.into(),
            value: v,
            split: Split::from_metric_name(n),
            timestamp: Some(ts("2026-03-01T11:00:00Z")),
            step: None,
        })
        .collect();
    let s = sink(&proxy.url, "nan-{project}");
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let run = rest.run(&rc.ids["run_id"]).await;
    let value = |k: &str| kv(&run, "metrics", k).cloned().unwrap_or(Value::Null);
    assert_eq!(value("train:loss"), json!("NaN"), "{run}");
    assert_eq!(value("train:grad").as_f64(), Some(f64::MAX), "{run}");
    assert_eq!(value("train:min").as_f64(), Some(f64::MIN), "{run}");
    assert_eq!(value("validation:auc").as_f64(), Some(0.5));
    assert_resync_writes_nothing(&s, &r, &proxy).await;
}

/// Issue 19, item 8: a deleted experiment is the store's state, not the job's: the write fails
/// with a setup error (never counted toward parking, not retried at once), and once the
/// experiment is restored the same job is written.
#[tokio::test]
async fn a_deleted_experiment_is_the_stores_state() {
    let (_g, proxy, rest) = setup().await;
    let r = synthetic("deleted");
    let s = sink(&proxy.url, "deleted-{project}");
    s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let exp = rest.experiment_id(&format!("deleted-{}", r.project.name)).await.expect("the experiment");
    let (st, body) = rest.post("experiments/delete", &json!({"experiment_id": exp})).await;
    assert_eq!(st, 200, "{body}");
    // A fresh sink (no cached id) and a new job of the project.
    let r2 = synthetic("deleted-2");
    let s2 = sink(&proxy.url, "deleted-{project}");
    let mut r2b = r2.clone();
    r2b.project = r.project.clone();
    let e = s2.upsert(&r2b, &WriteContext::new()).await.expect_err("the experiment is deleted");
    assert!(matches!(e, sagesync_core::SyncError::Setup { .. }), "{e:?}");
    assert!(!e.is_retryable() && !e.is_about_the_job(), "{e:?}");
    assert!(e.chain().contains("deleted") && e.chain().contains("restore"), "{}", e.chain());
    let (st, body) = rest.post("experiments/restore", &json!({"experiment_id": exp})).await;
    assert_eq!(st, 200, "{body}");
    let rc = s2.upsert(&r2b, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(rc.ids["experiment_id"], exp);
}

/// Issue 19, item 4: MLflow behind a private CA: with `ca_file` the sink writes through an
/// HTTPS front whose certificate a test CA signed; without it, the write fails at once with a
/// TLS setup error naming `ca_file`.
#[tokio::test]
async fn https_through_a_private_ca() {
    use sagesync_test_support::tls::TestCa;
    let (_g, _proxy, rest) = setup().await;
    let port: u16 = shared().url().rsplit(':').next().unwrap().parse().unwrap();
    let ca = TestCa::new("mlflow test CA");
    let front = sagesync_test_support::proxy::Proxy::start_tls(port, &ca.server()).await;
    let r = synthetic("tls");
    let trusted = sink_with(&front.url(), "tls-{project}", |s| s.ca_file = Some(ca.ca_file()));
    let rc = trusted.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
    let started = std::time::Instant::now();
    let e = sink(&front.url(), "tls-{project}").upsert(&synthetic("tls-2"), &WriteContext::new()).await.expect_err("untrusted");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(matches!(e, sagesync_core::SyncError::Setup { .. }), "{e:?}");
    assert!(e.chain().contains("not trusted") && e.chain().contains("ca_file"), "{}", e.chain());
}

#[tokio::test]
async fn the_example_config_builds_and_syncs() {
    let (_g, _proxy, rest) = setup().await;
    let d = sagesync_core::registry::find(sagesync_core::PluginKind::Sink, "mlflow").expect("registered");
    let text = d.example_toml.replace("http://127.0.0.1:5000", &shared().url());
    let doc: toml::Table = toml::from_str(&text).expect("the example is TOML");
    let mut table = doc["sinks"].as_array().and_then(|a| a.first()).and_then(|t| t.as_table()).cloned().expect("[[sinks]]");
    assert_eq!(table.remove("type").and_then(|t| t.as_str().map(str::to_string)).as_deref(), Some("mlflow"));
    let sagesync_core::registry::Factory::Sink(build) = d.factory else { panic!("not a sink") };
    let s = build(table, &sagesync_core::BuildContext::default()).expect("builds");
    let r = synthetic("example");
    let rc = s.upsert(&r, &WriteContext::new()).await.expect("syncs");
    assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
}

mod auth {
    use super::*;
    use std::sync::Once;

    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;
    use sagesync_sink_mlflow::sigv4::Signer;
    use sagesync_sink_mlflow::{MlflowSink, MlflowSinkConfig};
    use sagesync_test_support::peer::Peer;

    const KEY_ID: &str = "AKIDSAGESYNCTEST0001";
    const SECRET: &str = "sagesync/test/secret/0123456789abcdefghij";
    const SESSION: &str = "sagesync-test-session-token";
    const ARN: &str = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/sagesync-test";

    /// The standard credential chain, pointed at a profile file written for the test.
    fn profile_env() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let dir = std::env::temp_dir().join(format!("sagesync-mlflow-aws-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::write(
                dir.join("credentials"),
                format!("[sagesync-test]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\naws_session_token = {SESSION}\n"),
            )
            .expect("credentials");
            std::fs::write(dir.join("config"), "[profile sagesync-test]\nregion = us-east-1\n").expect("config");
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"));
            std::env::set_var("AWS_CONFIG_FILE", dir.join("config"));
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        });
    }

    fn verifying_proxy(args: &[&str]) -> Peer {
        let mut a: Vec<String> = vec!["--upstream".into(), shared().url()];
        a.extend(args.iter().map(|s| s.to_string()));
        Peer::start("verifying proxy", "verifying_proxy.py", &a, &[], std::time::Duration::from_secs(60))
    }

    async fn stats(p: &Peer) -> Value {
        sagesync_test_support::http()
            .build()
            .expect("client")
            .get(format!("{}/_proxy/stats", p.url()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }

    #[tokio::test]
    async fn sigv4_through_a_proxy_that_checks_every_signature_with_botocore() {
        let (_g, _proxy, rest) = setup().await;
        profile_env();
        let vp = verifying_proxy(&[
            "--mode",
            "sigv4",
            "--access-key",
            KEY_ID,
            "--secret-key",
            SECRET,
            "--session-token",
            SESSION,
            "--require-header",
            "x-mlflow-sm-tracking-server-arn",
        ]);
        let _g2 = DumpOnPanic(vec![("verifying proxy".into(), vp.log.clone())]);
        let mut c: MlflowSinkConfig = serde_json::from_value(
            json!({"tracking_uri": ARN, "experiment": "sigv4 ✓ {project}", "auth": {"type": "sigv4", "profile": "sagesync-test"}}),
        )
        .expect("config");
        c.request_timeout_secs = 30;
        let mut settings = c.settings().expect("settings");
        assert_eq!(settings.endpoint.base, "https://us-east-1.experiments.sagemaker.aws");
        settings.endpoint.base = vp.url();
        let s = MlflowSink::new(settings.clone()).expect("sink");
        let mut r = synthetic("sigv4");
        r.metric_history = vec![MetricSeries::new(
            "train:loss",
            (0..5)
                .map(|i| MetricPoint {
                    timestamp: Some(ts("2026-03-01T10:00:00Z") + chrono::Duration::minutes(i)),
                    step: i,
                    value: i as f64,
                })
                .collect(),
        )];
        let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        assert_eq!(rc.write, WriteKind::Created);
        assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
        assert_eq!(rest.history(&rc.ids["run_id"], "train:loss").await.len(), 5);
        assert_eq!(s.upsert(&r, &WriteContext::new()).await.expect("re-sync").write, WriteKind::Unchanged);
        let gone = s.retract(&r.run.external_id, &WriteContext::new()).await.expect("retract").expect("receipt");
        assert_eq!(gone.write, WriteKind::Removed);
        let st = stats(&vp).await;
        assert_eq!(st["rejected"], 0, "{st}");
        assert!(st["accepted"].as_u64().unwrap_or(0) >= 8, "{st}");

        // The same requests signed with the wrong secret are refused, and nothing leaks.
        let mut bad = MlflowSink::new(settings).expect("sink");
        let wrong = Credentials::new(KEY_ID, "not-the-secret", Some(SESSION.into()), None, "test");
        bad.client_mut().set_signer(Signer::with_provider(
            "us-east-1".into(),
            "sagemaker-mlflow".into(),
            SharedCredentialsProvider::new(wrong),
        ));
        let err = bad.upsert(&synthetic("sigv4-bad"), &WriteContext::new()).await.expect_err("refused");
        assert!(!err.is_retryable());
        assert!(err.chain().contains("403") && err.chain().contains("signature mismatch"), "{}", err.chain());
        assert!(!err.chain().contains("not-the-secret") && !err.chain().contains(SESSION), "{}", err.chain());
        assert!(stats(&vp).await["rejected"].as_u64().unwrap_or(0) >= 1);
    }

    #[tokio::test]
    async fn bearer_token_through_a_proxy_that_checks_it() {
        let (_g, _proxy, rest) = setup().await;
        let token = format!("tok-{:016x}", fastrand::u64(..));
        let vp = verifying_proxy(&["--mode", "token", "--token", &token]);
        let _g2 = DumpOnPanic(vec![("verifying proxy".into(), vp.log.clone())]);
        let good: MlflowSinkConfig = serde_json::from_value(
            json!({"tracking_uri": vp.url(), "experiment": "token-{project}", "auth": {"type": "token", "token": token}}),
        )
        .expect("config");
        let s = MlflowSink::new(good.settings().expect("settings")).expect("sink");
        let r = synthetic("token");
        let rc = s.upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        assert_run_matches(&rest, &rc.ids["run_id"], &r).await;
        let st = stats(&vp).await;
        assert_eq!(st["rejected"], 0, "{st}");
        assert!(st["accepted"].as_u64().unwrap_or(0) >= 5, "{st}");
        let wrong = format!("{token}-wrong");
        let bad: MlflowSinkConfig = serde_json::from_value(
            json!({"tracking_uri": vp.url(), "experiment": "token-{project}", "auth": {"type": "token", "token": wrong}}),
        )
        .expect("config");
        let err = MlflowSink::new(bad.settings().expect("settings"))
            .expect("sink")
            .upsert(&synthetic("token-bad"), &WriteContext::new())
            .await
            .expect_err("refused");
        assert!(err.chain().contains("403"), "{}", err.chain());
        assert!(!err.chain().contains(&token), "the token never shows: {}", err.chain());
        assert!(!err.is_retryable());
    }
}

mod cloudwatch {
    use super::*;
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    use sagesync_source_sagemaker::api::client::{CallCounter, RateLimits};
    use sagesync_source_sagemaker::api::history::{metric_names, read_history, Budget, HistoryOptions, NAMESPACE};
    use sagesync_test_support::peer::Peer;

    #[tokio::test]
    async fn histories_from_cloudwatch_end_up_in_mlflow_metric_history() {
        let (_g, proxy, rest) = setup().await;
        let moto = Peer::start("moto", "moto_launcher.py", &[], &[], std::time::Duration::from_secs(90)).killed_on_stop();
        let _g2 = DumpOnPanic(vec![("moto".into(), moto.log.clone())]);
        let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "test");
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(moto.url())
            .load()
            .await;
        let cw = aws_sdk_cloudwatch::Client::new(&conf);
        let mut r = synthetic("cw");
        let now = chrono::Utc::now().timestamp() - 4 * 3600;
        let start = chrono::DateTime::<chrono::Utc>::from_timestamp(now - now.rem_euclid(60), 0).expect("time");
        let loss: Vec<(chrono::DateTime<chrono::Utc>, f64)> =
            (0..120).map(|i| (start + chrono::Duration::minutes(i), 3.0 - i as f64 / 60.0)).collect();
        let data: Vec<MetricDatum> = loss
            .iter()
            .map(|(t, v)| {
                MetricDatum::builder()
                    .metric_name("train:loss")
                    .dimensions(Dimension::builder().name("Host").value(format!("{}/algo-1", r.run.name)).build())
                    .timestamp(aws_smithy_types::DateTime::from_millis(t.timestamp_millis()))
                    .value(*v)
                    .build()
            })
            .collect();
        cw.put_metric_data().namespace(NAMESPACE).set_metric_data(Some(data)).send().await.expect("PutMetricData");
        let mut job = sagesync_core::TrainingJob::new(r.run.name.clone(), r.run.external_id.clone(), "Completed");
        job.metric_definitions = vec![sagesync_core::MetricDefinition { name: "train:loss".into(), regex: "loss=(\\S+)".into() }];
        job.final_metrics = vec![sagesync_core::FinalMetric { name: "validation:auc".into(), value: 0.91, timestamp: None }];
        let (limits, calls) = (RateLimits::new(&Default::default()), CallCounter::default());
        let budget = Budget { limits: &limits, calls: &calls };
        let end = start + chrono::Duration::minutes(119);
        let series =
            read_history(&cw, budget, &job.name, &metric_names(&job), start, end, &HistoryOptions::default()).await.expect("history");
        assert_eq!(series.len(), 1);
        r.metric_history = series;
        let rc = sink(&proxy.url, "cw-{project}").upsert(&r, &WriteContext::new()).await.unwrap_or_else(|e| panic!("{}", e.chain()));
        let mut h = rest.history(&rc.ids["run_id"], "train:loss").await;
        h.sort_by_key(|p| p["step"].as_i64());
        assert_eq!(h.len(), 120);
        for (i, (p, (t, v))) in h.iter().zip(&loss).enumerate() {
            assert_eq!(p["step"].as_i64(), Some(i as i64));
            assert_eq!(p["timestamp"].as_i64(), Some(t.timestamp_millis()));
            assert!((p["value"].as_f64().unwrap_or(f64::NAN) - v).abs() < 1e-9);
        }
    }
}
