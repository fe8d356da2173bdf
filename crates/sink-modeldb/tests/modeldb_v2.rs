//! ModelDB v2 sink against the in-process fake, every request checked against the published
//! swagger specs.

use std::time::Duration;

use sagesync_core::builtin::TagsMapper;
use sagesync_core::WriteContext;
use sagesync_core::{ChannelManifest, ManifestObject, Mapper, Metric, RunRecord, Secret, Sink, Split, Tag, TagKeys, WriteKind};
use sagesync_sink_modeldb::v2::{ApiSettings, ModelDbV2Settings, ModelDbV2Sink, OnConflict};
use sagesync_test_support::locate::repo_root;
use sagesync_test_support::modeldb_v2::Fake;
use sagesync_test_support::ports::HeldPort;
use sagesync_test_support::swagger::Spec;
use serde_json::{json, Value};

async fn record(name: &str) -> RunRecord {
    let doc: Value = serde_json::from_slice(&std::fs::read(repo_root().join("examples/jobs").join(name)).unwrap()).unwrap();
    let job = sagesync_source_sagemaker::job_from_document(&doc).unwrap();
    TagsMapper::new(TagKeys::default()).map(&job).await.unwrap()
}

fn settings(fake: &Fake) -> ModelDbV2Settings {
    settings_at(&fake.base_url)
}

fn settings_at(base_url: &str) -> ModelDbV2Settings {
    ModelDbV2Settings {
        api: ApiSettings {
            base_url: base_url.to_string(),
            api_prefix: "/api/v1/modeldb".into(),
            email: None,
            developer_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ca_file: None,
        },
        experiment: None,
        on_conflict: OnConflict::Keep,
        dataset_versions: true,
        registry_workspace: "personal".into(),
        registry_api_prefix: "/api/v1/registry".into(),
        package_link_wait: Duration::from_secs(3600),
    }
}

fn sink(fake: &Fake) -> ModelDbV2Sink {
    ModelDbV2Sink::new(settings(fake)).unwrap()
}

/// Every request the sink made matches the published specs, the dataset and dataset-version
/// services included.
fn assert_conformant(fake: &Fake) {
    let spec = Spec::load();
    let mut problems = Vec::new();
    for r in fake.requests() {
        assert!(spec.covers(&r.path), "request outside the spec: {} {}", r.method, r.path);
        problems.extend(spec.check(&r));
        assert!(r.status != 405 && !(r.status == 404 && r.body.is_none() && r.method != "GET"), "unknown route {} {}", r.method, r.path);
    }
    assert!(problems.is_empty(), "non-conformant requests:\n{}", problems.join("\n"));
}

fn kv<'a>(list: &'a Value, key: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|k| k["key"] == key).unwrap_or_else(|| panic!("no key {key} in {list}"))
}

#[tokio::test]
async fn first_sync_is_one_run_write_and_a_resync_writes_nothing() {
    let fake = Fake::start().await;
    let s = sink(&fake);
    let r = record("xgboost-churn.json").await;
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(rc.write, WriteKind::Created);
    let writes = fake.writes();
    let paths: Vec<&str> = writes.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["/project/createProject", "/experiment/createExperiment", "/experiment-run/createExperimentRun"]);
    assert_eq!(rc.writes, 3);
    let run = &fake.runs()[0];
    assert_eq!(run["name"], "xgboost-churn-2026-11-02-10-15-42-118");
    assert!(run["description"].as_str().unwrap().contains(&r.run.external_id));
    assert_eq!(run["start_time"], "1793614675462");
    assert_eq!(kv(&run["hyperparameters"], "max_depth")["value"], json!(5));
    assert_eq!(kv(&run["hyperparameters"], "max_depth")["value_type"], "NUMBER");
    assert_eq!(kv(&run["hyperparameters"], "objective")["value"], "binary:logistic");
    assert_eq!(kv(&run["metrics"], "validation_auc")["value"], json!(0.8977000117301941));
    assert_eq!(kv(&run["attributes"], "original_key/metrics/validation_auc")["value"], "validation:auc");
    assert_eq!(kv(&run["attributes"], "training_job_arn")["value"], r.run.external_id.as_str());
    assert_eq!(kv(&run["attributes"], "instance_count")["value"], json!(1));
    assert_eq!(
        kv(&run["datasets"], "train"),
        &json!({"key": "train", "path": "s3://acme-ml-data/churn/train/", "path_only": true, "artifact_type": "DATA"})
    );
    assert_eq!(kv(&run["artifacts"], "model")["artifact_type"], "MODEL");
    assert!(run["tags"].as_array().unwrap().contains(&json!("team:growth-analytics")));
    assert!(run["tags"].as_array().unwrap().contains(&json!("MODEL_DB_SYNC:true")));

    fake.clear_requests();
    let again = s.upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(again.write, WriteKind::Unchanged);
    assert_eq!(again.writes, 0);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert_eq!(again.ids["run_id"], rc.ids["run_id"]);
    assert_eq!(fake.runs().len(), 1);
    assert_conformant(&fake);
}

#[tokio::test]
async fn resync_with_a_new_metric_logs_only_that_metric() {
    let fake = Fake::start().await;
    let s = sink(&fake);
    let mut r = record("pytorch-sentiment.json").await;
    s.upsert(&r, &WriteContext::new()).await.unwrap();
    r.metrics.push(Metric { name: "test:auc".into(), value: 0.97, split: Split::Test, timestamp: None, step: None });
    fake.clear_requests();
    let rc = s.upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(rc.write, WriteKind::Updated);
    let w = fake.writes();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].path, "/experiment-run/logMetrics");
    assert_eq!(w[0].body.as_ref().unwrap()["metrics"], json!([{"key": "test_auc", "value": 0.97, "value_type": "NUMBER"}]));
    assert_eq!(w[1].path, "/experiment-run/logAttributes", "the original name of the new key");
    assert_eq!(fake.runs()[0]["metrics"].as_array().unwrap().len(), 4);
    assert_conformant(&fake);
}

#[tokio::test]
async fn changed_values_follow_the_conflict_policy() {
    let fake = Fake::start().await;
    let r = record("pytorch-sentiment.json").await;
    sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap();
    let mut changed = r.clone();
    changed.metrics[0].value = 0.05;
    fake.clear_requests();
    let keep = sink(&fake).upsert(&changed, &WriteContext::new()).await.unwrap();
    assert_eq!(keep.write, WriteKind::Unchanged);
    assert_eq!(keep.ids["kept_conflicts"], "1");
    assert!(fake.writes().is_empty());
    let mut st = settings(&fake);
    st.on_conflict = OnConflict::Replace;
    let replace = ModelDbV2Sink::new(st).unwrap().upsert(&changed, &WriteContext::new()).await.unwrap();
    assert_eq!(replace.write, WriteKind::Updated);
    let paths: Vec<String> = fake.writes().iter().map(|w| w.path.clone()).collect();
    assert_eq!(paths, ["/experiment-run/deleteMetrics", "/experiment-run/logMetrics"]);
    assert_eq!(kv(&fake.runs()[0]["metrics"], "train_loss")["value"], json!(0.05));
    assert_conformant(&fake);
}

#[tokio::test]
async fn a_concurrent_409_on_create_is_resolved_without_a_duplicate() {
    let fake = Fake::start().await;
    fake.with(|s| s.race_create_run = true);
    let r = record("xgboost-churn.json").await;
    let rc = sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(rc.write, WriteKind::Unchanged, "the other writer stored the same run");
    assert_eq!(fake.runs().len(), 1);
    assert_conformant(&fake);
}

#[tokio::test]
async fn two_writers_racing_to_create_a_project_make_one_and_both_succeed() {
    let fake = Fake::start().await;
    fake.with(|s| {
        s.projects.push(json!({"id": "proj-other", "name": "zzz"}));
        // Both writers find no project, and the fake holds the first create until the second
        // arrives: one creates, the other gets 409.
        s.race_create_project = Some(std::sync::Arc::new(tokio::sync::Barrier::new(2)));
    });
    let a = record("xgboost-churn.json").await;
    let mut b = record("pytorch-sentiment.json").await;
    b.project = a.project.clone();
    assert_ne!(a.run.external_id, b.run.external_id, "two different jobs");
    let (sa, sb) = (sink(&fake), sink(&fake));
    let cx = WriteContext::new();
    let (ra, rb) = tokio::join!(sa.upsert(&a, &cx), sb.upsert(&b, &cx));
    let (ra, rb) = (ra.expect("writer a"), rb.expect("writer b"));
    assert_eq!((ra.write, rb.write), (WriteKind::Created, WriteKind::Created));
    assert!(fake.with(|s| s.race_create_project.is_none()), "both creates met at the barrier");
    let creates: Vec<u16> = fake.requests().iter().filter(|q| q.path == "/project/createProject").map(|q| q.status).collect();
    let mut sorted = creates.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 409], "both writers tried to create the project, one lost: {creates:?}");
    let projects: Vec<Value> = fake.with(|s| s.projects.clone());
    assert_eq!(projects.iter().filter(|p| p["name"] == json!(a.project.name)).count(), 1, "one project: {projects:?}");
    let pid = projects.iter().find(|p| p["name"] == json!(a.project.name)).unwrap()["id"].clone();
    let runs = fake.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["project_id"] == pid), "both runs in the one project: {runs:?}");
    assert_conformant(&fake);
}

/// What the engine does with a sink's retryable errors (the client no longer retries on its
/// own): up to `attempts` tries, a little apart.
async fn engine_retrying(
    s: &ModelDbV2Sink,
    r: &sagesync_core::RunRecord,
    attempts: u32,
) -> Result<sagesync_core::SinkReceipt, sagesync_core::SyncError> {
    let mut last = None;
    for _ in 0..attempts {
        match s.upsert(r, &WriteContext::new()).await {
            Err(e) if e.is_retryable() => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

#[tokio::test]
async fn a_503_burst_is_retried_without_duplicates() {
    let fake = Fake::start().await;
    fake.with(|s| s.fail_next.extend([503, 502, 503]));
    let r = record("xgboost-churn.json").await;
    let rc = engine_retrying(&sink(&fake), &r, 5).await.unwrap();
    assert_eq!(rc.write, WriteKind::Created);
    assert_eq!(fake.runs().len(), 1);
    assert_eq!(fake.requests().iter().filter(|q| q.status >= 500).count(), 3);
    // A burst longer than the sink's attempts: a retryable error, then a clean retry later.
    fake.with(|s| s.fail_next.extend([503; 8]));
    let mut r2 = record("pytorch-sentiment.json").await;
    let e = engine_retrying(&sink(&fake), &r2, 5).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    fake.with(|s| s.fail_next.clear());
    r2.metrics.truncate(2);
    assert_eq!(sink(&fake).upsert(&r2, &WriteContext::new()).await.unwrap().write, WriteKind::Created);
    assert_eq!(fake.runs().len(), 2);
    assert_conformant(&fake);
}

#[tokio::test]
async fn long_tags_become_attributes_and_odd_keys_are_sanitised() {
    let fake = Fake::start().await;
    let mut r = record("tf-fsx.json").await;
    r.tags.0.push(Tag { key: "description".into(), value: "a tag value far longer than forty characters allows".into() });
    r.tags.0.push(Tag { key: "short".into(), value: "ok".into() });
    r.metrics.push(Metric { name: "validation_ndcg@10".into(), value: 0.5, split: Split::Validation, timestamp: None, step: None });
    r.hyperparameters.push(sagesync_core::HyperParameter {
        name: "lr schedule (cosine)".into(),
        raw: "\"warm\"".into(),
        value: json!("warm"),
    });
    let rc = sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap();
    assert_eq!(rc.write, WriteKind::Created);
    let run = &fake.runs()[0];
    let tags = run["tags"].as_array().unwrap();
    assert!(tags.iter().all(|t| (1..=40).contains(&t.as_str().unwrap().chars().count())));
    assert!(tags.contains(&json!("short:ok")));
    assert_eq!(kv(&run["attributes"], "tag/description")["value"], "a tag value far longer than forty characters allows");
    // "validation:ndcg@10" and "validation_ndcg@10" both sanitise to validation_ndcg_10.
    assert_eq!(kv(&run["metrics"], "validation_ndcg_10")["value"], json!(0.4821));
    assert_eq!(kv(&run["metrics"], "validation_ndcg_10_2")["value"], json!(0.5));
    assert_eq!(kv(&run["attributes"], "original_key/metrics/validation_ndcg_10_2")["value"], "validation_ndcg@10");
    assert_eq!(kv(&run["hyperparameters"], "lr_schedule__cosine_")["value"], "warm");
    for k in ["hyperparameters", "metrics", "attributes"] {
        for e in run[k].as_array().unwrap() {
            let key = e["key"].as_str().unwrap();
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "_-/".contains(c)), "{key}");
        }
    }
    // Re-sync: still nothing new.
    fake.clear_requests();
    assert_eq!(sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap().writes, 0);
    assert_conformant(&fake);
}

#[tokio::test]
async fn credentials_go_in_headers_and_never_in_debug_output() {
    let fake = Fake::start_with_prefix("/v1").await;
    let mut st = settings(&fake);
    st.api.api_prefix = "/v1".into();
    st.api.email = Some("bot@example.com".into());
    st.api.developer_key = Some(Secret::new("dk-very-secret-123"));
    let s = ModelDbV2Sink::new(st.clone()).unwrap();
    s.upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap();
    for r in fake.requests() {
        let h = |n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(h("grpc-metadata-email").as_deref(), Some("bot@example.com"));
        assert_eq!(h("grpc-metadata-developer_key").as_deref(), Some("dk-very-secret-123"));
        assert_eq!(h("grpc-metadata-developer-key").as_deref(), Some("dk-very-secret-123"));
    }
    assert!(!format!("{s:?} {st:?}").contains("dk-very-secret-123"));
    // Errors never carry it either.
    fake.with(|x| x.fail_next.extend([500]));
    let e = s.upsert(&record("pytorch-sentiment.json").await, &WriteContext::new()).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains("dk-very-secret"), "{e:?}");
    assert_conformant(&fake);
}

fn manifest(etag: &str) -> ChannelManifest {
    ChannelManifest {
        objects: vec![
            ManifestObject {
                key: "churn/train/part-0.csv".into(),
                size: 1000,
                etag: etag.into(),
                last_modified: Some("2026-10-01T00:00:00Z".parse().unwrap()),
            },
            ManifestObject { key: "churn/train/part-1.csv".into(), size: 2000, etag: "e2".into(), last_modified: None },
        ],
        truncated: false,
    }
}

#[tokio::test]
async fn manifests_become_dataset_versions_once() {
    let fake = Fake::start().await;
    let mut r = record("xgboost-churn.json").await;
    r.datasets[0].manifest = Some(manifest("e1"));
    sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap();
    let (datasets, versions) = fake.with(|s| (s.datasets.clone(), s.versions.clone()));
    assert_eq!(datasets.len(), 1);
    assert_eq!(datasets[0]["name"], "s3://acme-ml-data/churn/train/");
    assert_eq!(versions.len(), 1);
    let info = &versions[0]["path_dataset_version_info"];
    assert_eq!(info["location_type"], "S3_FILE_SYSTEM");
    assert_eq!(info["size"], "3000");
    assert_eq!(info["base_path"], "acme-ml-data/churn/train/");
    assert_eq!(
        info["dataset_part_infos"][0],
        json!({"path": "churn/train/part-0.csv", "size": "1000", "checksum": "e1", "last_modified_at_source": "1790812800000"})
    );
    let run = &fake.runs()[0];
    assert_eq!(kv(&run["datasets"], "train")["linked_artifact_id"], versions[0]["id"]);
    // The same manifest, again and from another job: no second version.
    sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap();
    let mut other = record("pytorch-sentiment.json").await;
    other.datasets[0].uri = "s3://acme-ml-data/churn/train/".into();
    other.datasets[0].manifest = Some(manifest("e1"));
    sink(&fake).upsert(&other, &WriteContext::new()).await.unwrap();
    assert_eq!(fake.with(|s| s.versions.len()), 1);
    // Changed data: a new version.
    let mut changed = r.clone();
    changed.datasets[0].manifest = Some(manifest("e9"));
    let mut st = settings(&fake);
    st.on_conflict = OnConflict::Replace;
    assert_eq!(ModelDbV2Sink::new(st).unwrap().upsert(&changed, &WriteContext::new()).await.unwrap().write, WriteKind::Updated);
    let versions = fake.with(|s| s.versions.clone());
    assert_eq!(versions.len(), 2);
    assert_eq!(kv(&fake.runs()[0]["datasets"], "train")["linked_artifact_id"], versions[1]["id"]);
    assert_conformant(&fake);
}

#[tokio::test]
async fn server_errors_carry_the_message_and_are_not_retried() {
    let fake = Fake::start().await;
    let mut r = record("xgboost-churn.json").await;
    r.project.name = "p".repeat(300);
    let e = sink(&fake).upsert(&r, &WriteContext::new()).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("HTTP 400") && e.to_string().contains("Project name length exceeded"), "{e}");
    // Held (bound, not listening) for the rest of the test: connections are refused.
    let held = HeldPort::new();
    let refused = held.port;
    let mut st = settings(&fake);
    st.api.base_url = format!("http://127.0.0.1:{refused}");
    let e = ModelDbV2Sink::new(st).unwrap().upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[tokio::test]
async fn the_fake_enforces_the_documented_rules() {
    // The fake itself: duplicates 409, required fields 400, unknown ids 404, defaults omitted.
    let fake = Fake::start().await;
    let http = sagesync_test_support::http().build().unwrap();
    let u = |p: &str| format!("{}/api/v1/modeldb{p}", fake.base_url);
    let post = |p: &'static str, b: Value| {
        let http = http.clone();
        let url = u(p);
        async move {
            let r = http.post(url).json(&b).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(post("/project/createProject", json!({})).await.0, 400);
    let (st, p) = post("/project/createProject", json!({"name": "x"})).await;
    assert_eq!(st, 200);
    assert!(p["project"].get("description").is_none(), "defaults omitted: {p}");
    assert!(p["project"]["date_created"].is_string(), "int64 as a string: {p}");
    assert_eq!(post("/project/createProject", json!({"name": "x"})).await.0, 409);
    assert_eq!(post("/experiment/createExperiment", json!({"projectId": "nope", "name": "e"})).await.0, 404);
    let pid = p["project"]["id"].as_str().unwrap().to_string();
    let (_, e) = post("/experiment/createExperiment", json!({"projectId": pid, "name": "e"})).await;
    assert_eq!(
        post(
            "/experiment-run/createExperimentRun",
            json!({"project_id": pid, "experiment_id": e["experiment"]["id"], "name": "r", "tags": ["x".repeat(41)]})
        )
        .await
        .0,
        400
    );
    assert_eq!(post("/experiment-run/logMetrics", json!({"id": "nope", "metrics": [{"key": "a", "value": 1}]})).await.0, 404);
    assert_eq!(http.get(u("/project/nope")).send().await.unwrap().status().as_u16(), 404);
    assert_eq!(http.get(u("/project/createProject")).send().await.unwrap().status().as_u16(), 405);
}

fn runs_of(fake: &Fake, arn: &str) -> Vec<Value> {
    fake.runs().into_iter().filter(|r| r["description"].as_str().is_some_and(|d| d.ends_with(&format!("({arn})")))).collect()
}

#[tokio::test]
async fn one_name_two_arns_two_runs_that_never_flip() {
    let fake = Fake::start().await;
    let s = sink(&fake);
    let a = record("xgboost-churn.json").await;
    let mut b = a.clone();
    b.run.external_id = a.run.external_id.replace("us-east-1", "eu-west-1");
    b.attributes.insert("training_job_arn".into(), json!(b.run.external_id));
    let ra = s.upsert(&a, &WriteContext::new()).await.unwrap();
    let rb = s.upsert(&b, &WriteContext::new()).await.unwrap();
    assert_eq!((ra.write, rb.write), (WriteKind::Created, WriteKind::Created));
    assert_ne!(ra.ids["run_id"], rb.ids["run_id"]);
    for _ in 0..2 {
        for (r, rc) in [(&a, &ra), (&b, &rb)] {
            let again = s.upsert(r, &WriteContext::new().with_previous(Some(rc.clone()))).await.unwrap();
            assert_eq!((again.write, &again.ids["run_id"]), (WriteKind::Unchanged, &rc.ids["run_id"]));
        }
    }
    assert_eq!(fake.runs().len(), 2);
    let names: Vec<String> = fake.runs().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names[0], a.run.name);
    assert_eq!(names[1], sagesync_sink_modeldb::v2::hashed_run_name(&b));
    // The first holder leaves: the namesake keeps its run and name (no flip, no second run).
    s.retract(&a.run.external_id, &WriteContext::new().with_previous(Some(ra))).await.unwrap();
    let mut b2 = b.clone();
    b2.metrics.push(Metric { name: "extra".into(), value: 1.0, split: Split::Test, timestamp: None, step: None });
    let again = s.upsert(&b2, &WriteContext::new()).await.unwrap();
    assert_eq!((again.write, &again.ids["run_id"]), (WriteKind::Updated, &rb.ids["run_id"]));
    assert_eq!(fake.runs().len(), 1);
    assert_conformant(&fake);
}

#[tokio::test]
async fn a_project_change_moves_the_run_and_retract_deletes_it() {
    let fake = Fake::start().await;
    let s = sink(&fake);
    let r = record("xgboost-churn.json").await;
    let arn = r.run.external_id.clone();
    let first = s.upsert(&r, &WriteContext::new()).await.unwrap();
    let mut moved = r.clone();
    moved.project.name = "another-project".into();
    let second = s.upsert(&moved, &WriteContext::new().with_previous(Some(first.clone()))).await.unwrap();
    assert_eq!(second.write, WriteKind::Created);
    assert_ne!(second.ids["project_id"], first.ids["project_id"]);
    let held = runs_of(&fake, &arn);
    assert_eq!(held.len(), 1, "one run per ARN after a move: {held:?}");
    assert_eq!(held[0]["id"].as_str(), Some(second.ids["run_id"].as_str()));
    // Retract: the run goes. A receipt naming another job's run deletes nothing.
    let other = record("pytorch-sentiment.json").await;
    let orc = s.upsert(&other, &WriteContext::new()).await.unwrap();
    let mut wrong = second.clone();
    wrong.ids.insert("run_id".into(), orc.ids["run_id"].clone());
    let none = s.retract(&arn, &WriteContext::new().with_previous(Some(wrong))).await.unwrap().unwrap();
    assert_eq!((none.write, none.writes), (WriteKind::Removed, 0));
    let gone = s.retract(&arn, &WriteContext::new().with_previous(Some(second))).await.unwrap().unwrap();
    assert_eq!((gone.write, gone.writes), (WriteKind::Removed, 1));
    assert!(runs_of(&fake, &arn).is_empty());
    assert_eq!(runs_of(&fake, &other.run.external_id).len(), 1);
    // Retracting again finds nothing and fails nothing.
    let again = s.retract(&arn, &WriteContext::new().with_previous(Some(gone))).await.unwrap().unwrap();
    assert_eq!(again.writes, 0);
    assert_conformant(&fake);
}

/// A server on 127.0.0.1 that answers every request with `reply` and counts the requests.
async fn hostile(reply: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, hits)
}

#[tokio::test]
async fn a_redirect_is_never_followed_with_credentials() {
    let (target, target_hits) = hostile(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}/api/v1/modeldb/project/getProjectByName\r\ncontent-length: 0\r\n\r\n"
    );
    let (url, _) = hostile(redirect.into_bytes()).await;
    let mut st = settings_at(&url);
    st.api.email = Some("bot@example.com".into());
    st.api.developer_key = Some(Secret::new("dk-very-secret-123"));
    let e = ModelDbV2Sink::new(st).unwrap().upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap_err();
    assert_eq!(target_hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect target was contacted");
    assert!(e.to_string().contains("307"), "{e}");
    assert!(!format!("{e} {e:?}").contains("dk-very-secret-123"));
}

#[tokio::test]
async fn an_oversized_reply_body_fails_the_write_clearly() {
    // 17 MiB of JSON string, announced and not announced.
    let big = 17 * 1024 * 1024;
    let mut announced = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n\"", big + 2).into_bytes();
    announced.extend(std::iter::repeat_n(b'a', big));
    announced.push(b'"');
    let mut chunked = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n\"".to_vec();
    chunked.extend(std::iter::repeat_n(b'a', big));
    chunked.push(b'"');
    for reply in [announced, chunked] {
        let (url, _) = hostile(reply).await;
        let st = settings_at(&url);
        let e = ModelDbV2Sink::new(st).unwrap().upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap_err();
        assert!(e.to_string().contains("reply larger than 16777216 bytes"), "{e}");
        assert!(!e.is_retryable(), "a reply that large will not shrink: {e}");
    }
}

#[tokio::test]
async fn a_write_the_ledger_never_learned_of_is_retracted_from_its_names() {
    let fake = Fake::start().await;
    let s = sink(&fake);
    let r = record("xgboost-churn.json").await;
    s.upsert(&r, &WriteContext::new()).await.unwrap();
    // What the engine records before a first write: the names, no ids of the store's.
    let pending = sagesync_core::PendingNames::of(&r);
    let gone = s.retract(&r.run.external_id, &WriteContext::new().with_pending(Some(pending.clone()))).await.unwrap().unwrap();
    assert_eq!(gone.writes, 1);
    assert!(runs_of(&fake, &r.run.external_id).is_empty());
    // Nothing there: nothing deleted, nothing created.
    let projects = fake.with(|st| st.projects.len());
    let again = s.retract(&r.run.external_id, &WriteContext::new().with_pending(Some(pending))).await.unwrap().unwrap();
    assert_eq!(again.writes, 0);
    assert_eq!(fake.with(|st| st.projects.len()), projects);
    assert_conformant(&fake);
}

/// Issue 19, item 5: the v2 client no longer retries on its own (the engine's policy is the
/// only one): a 503 is one request and a retryable error; a reply that breaks off too. Every
/// request is bounded by the job's deadline, and none goes out once the lease is lost.
#[tokio::test]
async fn the_client_classifies_and_returns_within_the_deadline() {
    let (url, hits) = hostile(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}".to_vec()).await;
    let e =
        ModelDbV2Sink::new(settings_at(&url)).unwrap().upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "one request: the engine retries, not the client");
    let (url, hits) = hostile(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"project\"".to_vec()).await;
    let e =
        ModelDbV2Sink::new(settings_at(&url)).unwrap().upsert(&record("xgboost-churn.json").await, &WriteContext::new()).await.unwrap_err();
    assert!(e.is_retryable() && e.to_string().contains("broke off"), "{e}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "a broken reply is not retried here either");
    // A server that never answers, a 10 s request timeout, a deadline 1 s away.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let _h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let cx = WriteContext::new().with_deadline(Some(started + Duration::from_secs(1)));
    let e = ModelDbV2Sink::new(settings_at(&silent)).unwrap().upsert(&record("xgboost-churn.json").await, &cx).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(e.is_retryable() || e.is_cancelled(), "{e:?}");
    // A lost lease: nothing sent.
    let (url, hits) = hostile(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()).await;
    let guard = sagesync_core::LeaseGuard::new(std::time::Instant::now() + Duration::from_secs(60));
    guard.lose();
    let e = ModelDbV2Sink::new(settings_at(&url))
        .unwrap()
        .upsert(&record("xgboost-churn.json").await, &WriteContext::new().with_guard(guard))
        .await
        .unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Issue 21: a tuning job's run is the parent of its children's runs (`parent_id`, set with
/// `setParentExperimentRunId`), whichever is written first; writing the parent again nests the
/// children that came meanwhile and changes nothing else; every request matches the specs.
#[tokio::test]
async fn a_tuner_and_its_children_nest_whichever_is_written_first() {
    use sagesync_core::{ChildSummary, ParentRef, ResourceKind};
    let fake = Fake::start().await;
    let base = record("xgboost-churn.json").await;
    let tuner_arn = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/tuner-v2";
    let arn = |n: &str| format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{n}");
    let child = |n: &str| {
        let mut r = base.clone();
        r.run.name = n.to_string();
        r.run.external_id = arn(n);
        r.lineage.parent = Some(ParentRef { kind: ResourceKind::TuningJob, arn: tuner_arn.into(), name: "tuner-v2".into() });
        r
    };
    let mut parent = base.clone();
    parent.run.name = "tuner-v2".into();
    parent.run.external_id = tuner_arn.into();
    parent.lineage.kind = ResourceKind::TuningJob;
    parent.lineage.children = ["c1", "c2", "c3"]
        .iter()
        .map(|n| ChildSummary { arn: arn(n), name: n.to_string(), status: "Completed".into(), objective: None })
        .collect();
    let s = sink(&fake);
    let cx = WriteContext::new();
    // A child before its parent, the parent, then the other children.
    s.upsert(&child("c1"), &cx).await.unwrap();
    let p = s.upsert(&parent, &cx).await.unwrap();
    s.upsert(&child("c2"), &cx).await.unwrap();
    s.upsert(&child("c3"), &cx).await.unwrap();
    let pid = p.ids["run_id"].clone();
    {
        let st = fake.state.lock().unwrap();
        assert!(st.run_by_name("tuner-v2").unwrap()["description"].as_str().unwrap().starts_with("SageMaker tuning job tuner-v2 ("));
        for n in ["c1", "c2", "c3"] {
            assert_eq!(st.run_by_name(n).unwrap()["parent_id"], json!(pid), "{n} nested");
        }
        assert!(st.run_by_name("tuner-v2").unwrap().get("parent_id").is_none());
    }
    // The parent written again (its summary changed): every child is nested already, so only
    // reads; the children are not written.
    let before = fake.requests().len();
    let again = s.upsert(&parent, &WriteContext::new().with_previous(Some(p.clone()))).await.unwrap();
    let writes: Vec<String> = fake.requests()[before..].iter().filter(|r| r.method != "GET").map(|r| r.path.clone()).collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(again.ids["run_id"], pid);
    assert_conformant(&fake);
}
