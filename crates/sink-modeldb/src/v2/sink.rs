//! The `modeldb_v2` sink.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sagesync_core::{RunRecord, Sink, SinkReceipt, SyncError, WriteContext, WriteKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::client::{error_from, is_absent, Api, ApiSettings, Call, Reply, V2Error};
use super::keys::{unique_keys, MAX_TAG};

/// What to do when a stored value differs from the job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Leave the stored value (write-once); the receipt counts the conflicts.
    #[default]
    Keep,
    /// Delete the stored key and log the job's value.
    Replace,
}

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct ModelDbV2Settings {
    /// HTTP settings.
    pub api: ApiSettings,
    /// Experiment name override (else the record's).
    pub experiment: Option<String>,
    /// Changed-value policy.
    pub on_conflict: OnConflict,
    /// Create datasets and dataset versions for channels with S3 manifests.
    pub dataset_versions: bool,
}

/// The sink.
#[derive(Debug, Clone)]
pub struct ModelDbV2Sink {
    settings: ModelDbV2Settings,
    api: Api,
}

/// The desired state of one run, in ModelDB's JSON shapes.
#[derive(Debug, Clone, Default)]
struct Desired {
    hyperparameters: Vec<Value>,
    metrics: Vec<Value>,
    attributes: Vec<Value>,
    datasets: Vec<Value>,
    artifacts: Vec<Value>,
    tags: Vec<String>,
}

fn kv(key: &str, value: &Value) -> Value {
    match value {
        Value::Number(_) => json!({"key": key, "value": value, "value_type": "NUMBER"}),
        Value::String(_) => json!({"key": key, "value": value, "value_type": "STRING"}),
        Value::Bool(b) => json!({"key": key, "value": b.to_string(), "value_type": "STRING"}),
        other => json!({"key": key, "value": other.to_string(), "value_type": "STRING"}),
    }
}

fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.timestamp_millis().to_string())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Compares an artifact as stored (defaults omitted) with ours.
fn same_artifact(stored: &Value, ours: &Value) -> bool {
    let f = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let flag = |v: &Value| v.get("path_only").and_then(Value::as_bool).unwrap_or(false);
    f(stored, "path") == f(ours, "path")
        && flag(stored) == flag(ours)
        && f(stored, "linked_artifact_id").as_str().unwrap_or("") == f(ours, "linked_artifact_id").as_str().unwrap_or("")
}

/// The run description: names the job and carries its full ARN.
pub fn run_description(record: &RunRecord) -> String {
    format!("SageMaker training job {} ({})", record.run.name, record.run.external_id)
}

/// The run name used when another job's run holds the plain one: the name, `--` and 12 hex
/// digits of the SHA-256 of the ARN.
pub fn hashed_run_name(record: &RunRecord) -> String {
    hashed_name(&record.run.name, &record.run.external_id)
}

fn hashed_name(run: &str, arn: &str) -> String {
    let hex: String = Sha256::digest(arn.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{run}--{hex}")
}

/// The job ARN a stored run belongs to: the one its description names (sagesync writes it at
/// creation and never changes it), else its `training_job_arn` attribute.
fn run_owner(run: &Value) -> Option<String> {
    let from_description = run.get("description").and_then(Value::as_str).and_then(|d| {
        let d = d.strip_prefix("SageMaker training job ")?.strip_suffix(')')?;
        let open = d.rfind(" (")?;
        Some(d[open + 2..].to_string())
    });
    from_description.or_else(|| {
        run.get("attributes")?
            .as_array()?
            .iter()
            .find(|kv| kv.get("key").and_then(Value::as_str) == Some("training_job_arn"))?
            .get("value")?
            .as_str()
            .map(str::to_string)
    })
}

/// The tag that marks a dataset version made from one manifest.
pub fn manifest_tag(m: &sagesync_core::ChannelManifest) -> String {
    let mut h = Sha256::new();
    for o in &m.objects {
        h.update(o.key.as_bytes());
        h.update([0]);
        h.update(o.size.to_le_bytes());
        h.update(o.etag.as_bytes());
        h.update([0]);
    }
    h.update([u8::from(m.truncated)]);
    let hex: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("manifest:{hex}")
}

fn field_str(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(|x| x.as_str().map(str::to_string).or_else(|| x.as_i64().map(|n| n.to_string())))
}

impl ModelDbV2Sink {
    /// A sink with these settings.
    pub fn new(settings: ModelDbV2Settings) -> Result<Self, String> {
        let api = Api::new(&settings.api)?;
        Ok(ModelDbV2Sink { settings, api })
    }

    fn sync_error(&self, e: V2Error) -> SyncError {
        let message = format!("ModelDB v2 at {}: {e}", self.settings.api.base_url);
        if e.is_stop() {
            tracing::debug!(error = %e, "ModelDB v2 request not sent");
            SyncError::Cancelled
        } else if e.is_retryable() {
            SyncError::transient_with(message, e)
        } else if e.is_setup() {
            SyncError::setup_with(message, e)
        } else {
            SyncError::permanent_with(message, e)
        }
    }

    fn experiment<'a>(&'a self, r: &'a RunRecord) -> &'a str {
        self.settings.experiment.as_deref().unwrap_or(&r.experiment)
    }

    /// Builds the desired keys, tags and artifacts of a record (without dataset version links).
    fn desired(&self, r: &RunRecord) -> Desired {
        let mut d = Desired::default();
        let mut originals: Vec<(String, String)> = Vec::new();
        for (key, orig) in unique_keys(r.hyperparameters.iter().map(|h| h.name.as_str())) {
            let h = r.hyperparameters.iter().find(|h| h.name == orig).map(|h| &h.value).cloned().unwrap_or(Value::Null);
            if key != orig {
                originals.push((format!("original_key/hyperparameters/{key}"), orig.clone()));
            }
            d.hyperparameters.push(kv(&key, &h));
        }
        // Metrics: one per name (the last value wins), keys sanitised.
        let mut metrics: Vec<(String, f64)> = Vec::new();
        for m in &r.metrics {
            match metrics.iter_mut().find(|(n, _)| n == &m.name) {
                Some(e) => e.1 = m.value,
                None => metrics.push((m.name.clone(), m.value)),
            }
        }
        for (key, orig) in unique_keys(metrics.iter().map(|(n, _)| n.as_str())) {
            let v = metrics.iter().find(|(n, _)| n == &orig).map(|(_, v)| *v).unwrap_or(f64::NAN);
            if key != orig {
                originals.push((format!("original_key/metrics/{key}"), orig.clone()));
            }
            // A JSON number cannot be NaN or infinite: ModelDB's `Value` then holds the name
            // as a string (what protobuf's JSON mapping does with a non-finite double).
            d.metrics.push(match sagesync_core::model::metric_value::non_finite_name(v) {
                Some(name) => json!({"key": key, "value": name, "value_type": "STRING"}),
                None => json!({"key": key, "value": v, "value_type": "NUMBER"}),
            });
        }
        for (key, orig) in unique_keys(r.datasets.iter().map(|x| x.name.as_str())) {
            let ds = r.datasets.iter().find(|x| x.name == orig);
            if key != orig {
                originals.push((format!("original_key/datasets/{key}"), orig.clone()));
            }
            d.datasets.push(
                json!({"key": key, "path": ds.map(|x| x.uri.clone()).unwrap_or_default(), "path_only": true, "artifact_type": "DATA"}),
            );
        }
        if let Some(uri) = &r.model.artifact_uri {
            if !uri.is_empty() {
                let mut a = json!({"key": "model", "path": uri, "path_only": true, "artifact_type": "MODEL"});
                if uri.ends_with(".tar.gz") {
                    a["filename_extension"] = json!("tar.gz");
                }
                d.artifacts.push(a);
            }
        }
        let mut attrs: Vec<(String, Value)> = r.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if !r.project.user.is_empty() {
            attrs.push(("project_user".into(), json!(r.project.user)));
        }
        if !r.model.name.is_empty() {
            attrs.push(("model_name".into(), json!(r.model.name)));
        }
        if !r.model.model_type.is_empty() {
            attrs.push(("model_type".into(), json!(r.model.model_type)));
        }
        for t in r.tags.iter() {
            let tag = if t.value.is_empty() { t.key.clone() } else { format!("{}:{}", t.key, t.value) };
            if !tag.trim().is_empty() && tag.chars().count() <= MAX_TAG {
                if !d.tags.contains(&tag) {
                    d.tags.push(tag);
                }
            } else {
                attrs.push((format!("tag/{}", t.key), json!(t.value)));
            }
        }
        for (k, v) in originals {
            attrs.push((k, json!(v)));
        }
        for (key, orig) in unique_keys(attrs.iter().map(|(k, _)| k.as_str())) {
            let v = attrs.iter().find(|(k, _)| k == &orig).map(|(_, v)| v.clone()).unwrap_or(Value::Null);
            d.attributes.push(kv(&key, &v));
        }
        d
    }

    fn fail(&self, op: &str, r: &Reply) -> V2Error {
        error_from(op, r.status, &r.body)
    }

    /// Get-or-create by name: GET; absent → create; 409 → GET again.
    async fn get_or_create(
        &self,
        c: &Call<'_>,
        get: (&str, &[(&str, &str)]),
        create: (&str, Value),
        pick: &(dyn Fn(&Value) -> Option<String> + Send + Sync),
    ) -> Result<(String, bool), V2Error> {
        for round in 0..2 {
            let r = c.get(get.0, get.1).await?;
            if r.status == 200 {
                if let Some(id) = pick(&r.body) {
                    return Ok((id, false));
                }
                return Err(V2Error::Decode { op: get.0.into(), message: "no id in the response".into() });
            }
            if !is_absent(&r) {
                return Err(self.fail(get.0, &r));
            }
            if round == 1 {
                break;
            }
            let made = c.post(create.0, &create.1).await?;
            if made.status == 200 {
                if let Some(id) = pick(&made.body) {
                    return Ok((id, true));
                }
                return Err(V2Error::Decode { op: create.0.into(), message: "no id in the response".into() });
            }
            if made.status != 409 {
                return Err(self.fail(create.0, &made));
            }
            // Someone else created it meanwhile: fetch again.
        }
        Err(V2Error::Decode { op: get.0.into(), message: "still absent after a 409 on create".into() })
    }

    async fn project(&self, c: &Call<'_>, r: &RunRecord) -> Result<String, V2Error> {
        let name = r.project.name.as_str();
        let mut body = json!({"name": name, "description": r.project.description});
        if !r.project.user.is_empty() {
            body["attributes"] = json!([kv("owner", &json!(r.project.user))]);
        }
        let pick = |b: &Value| {
            field_str(b, "/project_by_user/id").or_else(|| field_str(b, "/shared_projects/0/id")).or_else(|| field_str(b, "/project/id"))
        };
        Ok(self.get_or_create(c, ("/project/getProjectByName", &[("name", name)]), ("/project/createProject", body), &pick).await?.0)
    }

    async fn experiment_id(&self, c: &Call<'_>, project_id: &str, name: &str) -> Result<String, V2Error> {
        let pick = |b: &Value| field_str(b, "/experiment/id");
        Ok(self
            .get_or_create(
                c,
                ("/experiment/getExperimentByName", &[("project_id", project_id), ("name", name)]),
                ("/experiment/createExperiment", json!({"project_id": project_id, "name": name})),
                &pick,
            )
            .await?
            .0)
    }

    /// Dataset + version for a manifest channel; returns the version id. The version is tagged
    /// with the manifest's fingerprint, so one manifest never makes two versions.
    async fn dataset_version(
        &self,
        c: &Call<'_>,
        ds: &sagesync_core::Dataset,
        m: &sagesync_core::ChannelManifest,
    ) -> Result<String, V2Error> {
        let name = ds.uri.clone();
        let pick = |b: &Value| {
            field_str(b, "/dataset_by_user/id").or_else(|| field_str(b, "/shared_datasets/0/id")).or_else(|| field_str(b, "/dataset/id"))
        };
        let (dataset_id, _) = self
            .get_or_create(
                c,
                ("/dataset/getDatasetByName", &[("name", name.as_str())]),
                (
                    "/dataset/createDataset",
                    json!({"name": name, "dataset_type": "PATH", "description": format!("S3 data of channel {}", ds.name)}),
                ),
                &pick,
            )
            .await?;
        let tag = manifest_tag(m);
        let op = "/dataset-version/getAllDatasetVersionsByDatasetId";
        let r = c.get(op, &[("dataset_id", dataset_id.as_str())]).await?;
        if r.status != 200 {
            return Err(self.fail(op, &r));
        }
        if let Some(v) = r.body.get("dataset_versions").and_then(Value::as_array).and_then(|vs| {
            vs.iter().find(|v| v.get("tags").and_then(Value::as_array).is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag.as_str()))))
        }) {
            if let Some(id) = field_str(v, "/id") {
                return Ok(id);
            }
        }
        let base_path = ds.uri.trim_start_matches("s3://").to_string();
        let size: u64 = m.objects.iter().map(|o| o.size).sum();
        let parts: Vec<Value> = m
            .objects
            .iter()
            .map(|o| json!({"path": o.key, "size": o.size.to_string(), "checksum": o.etag, "last_modified_at_source": o.last_modified.map(|t| t.timestamp_millis().max(0).to_string()).unwrap_or_else(|| "0".into())}))
            .collect();
        let body = json!({
            "dataset_id": dataset_id,
            "description": format!("{} objects{}", m.objects.len(), if m.truncated { " (listing truncated)" } else { "" }),
            "tags": [tag],
            "dataset_type": "PATH",
            "path_dataset_version_info": {"location_type": "S3_FILE_SYSTEM", "size": size.to_string(), "base_path": base_path, "dataset_part_infos": parts},
        });
        let op = "/dataset-version/createDatasetVersion";
        let made = c.post(op, &body).await?;
        if made.status != 200 {
            return Err(self.fail(op, &made));
        }
        field_str(&made.body, "/dataset_version/id")
            .ok_or_else(|| V2Error::Decode { op: op.into(), message: "no dataset_version.id".into() })
    }

    async fn get_run(&self, c: &Call<'_>, experiment_id: &str, name: &str) -> Result<Option<Value>, V2Error> {
        let op = "/experiment-run/getExperimentRunByName";
        let r = c.get(op, &[("experiment_id", experiment_id), ("name", name)]).await?;
        if r.status == 200 {
            return Ok(r.body.get("experiment_run").cloned());
        }
        if is_absent(&r) {
            return Ok(None);
        }
        Err(self.fail(op, &r))
    }

    /// Writes what the stored run lacks; returns (writes, kept conflicts).
    async fn reconcile(&self, c: &Call<'_>, run: &Value, d: &Desired) -> Result<(u32, u32), V2Error> {
        let id = field_str(run, "/id")
            .ok_or_else(|| V2Error::Decode { op: "getExperimentRunByName".into(), message: "run without id".into() })?;
        let mut writes = 0;
        let mut conflicts = 0;
        let replace = self.settings.on_conflict == OnConflict::Replace;
        // Key/value lists.
        for (field, log_op, del_op, del_field, desired) in [
            (
                "hyperparameters",
                "/experiment-run/logHyperparameters",
                "/experiment-run/deleteHyperparameters",
                "hyperparameter_keys",
                &d.hyperparameters,
            ),
            ("metrics", "/experiment-run/logMetrics", "/experiment-run/deleteMetrics", "metric_keys", &d.metrics),
            (
                "attributes",
                "/experiment-run/logAttributes",
                "/experiment-run/deleteExperimentRunAttributes",
                "attribute_keys",
                &d.attributes,
            ),
        ] {
            let stored: BTreeMap<String, Value> = run
                .get(field)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|kv| Some((kv.get("key")?.as_str()?.to_string(), kv.get("value").cloned().unwrap_or(Value::Null))))
                        .collect()
                })
                .unwrap_or_default();
            let mut missing = Vec::new();
            let mut changed = Vec::new();
            for kv in desired {
                let k = kv["key"].as_str().unwrap_or_default().to_string();
                match stored.get(&k) {
                    None => missing.push(kv.clone()),
                    Some(v) if !same_value(v, &kv["value"]) => changed.push(kv.clone()),
                    Some(_) => {}
                }
            }
            if replace && !changed.is_empty() {
                let keys: Vec<Value> = changed.iter().map(|kv| kv["key"].clone()).collect();
                let r = c.delete(del_op, &json!({"id": id, del_field: keys})).await?;
                if r.status != 200 {
                    return Err(self.fail(del_op, &r));
                }
                writes += 1;
                missing.extend(changed);
            } else {
                conflicts += changed.len() as u32;
            }
            if !missing.is_empty() {
                let r = c.post(log_op, &json!({"id": id, field: missing})).await?;
                if r.status != 200 {
                    return Err(self.fail(log_op, &r));
                }
                writes += 1;
            }
        }
        // Datasets (overwrite replaces by key) and artifacts.
        let stored_ds: BTreeMap<String, Value> = run
            .get("datasets")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| Some((x.get("key")?.as_str()?.to_string(), x.clone()))).collect())
            .unwrap_or_default();
        let mut ds_missing = Vec::new();
        let mut ds_changed = Vec::new();
        for x in &d.datasets {
            match stored_ds.get(x["key"].as_str().unwrap_or_default()) {
                None => ds_missing.push(x.clone()),
                Some(s) if !same_artifact(s, x) => ds_changed.push(x.clone()),
                Some(_) => {}
            }
        }
        if !ds_missing.is_empty() {
            let op = "/experiment-run/logDatasets";
            let r = c.post(op, &json!({"id": id, "datasets": ds_missing, "overwrite": false})).await?;
            if r.status != 200 {
                return Err(self.fail(op, &r));
            }
            writes += 1;
        }
        if !ds_changed.is_empty() {
            if replace {
                let op = "/experiment-run/logDatasets";
                let r = c.post(op, &json!({"id": id, "datasets": ds_changed, "overwrite": true})).await?;
                if r.status != 200 {
                    return Err(self.fail(op, &r));
                }
                writes += 1;
            } else {
                conflicts += ds_changed.len() as u32;
            }
        }
        let stored_art: BTreeMap<String, Value> = run
            .get("artifacts")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| Some((x.get("key")?.as_str()?.to_string(), x.clone()))).collect())
            .unwrap_or_default();
        let mut art_missing = Vec::new();
        for x in &d.artifacts {
            let key = x["key"].as_str().unwrap_or_default();
            match stored_art.get(key) {
                None => art_missing.push(x.clone()),
                Some(s) if !same_artifact(s, x) => {
                    if replace {
                        let op = "/experiment-run/deleteArtifact";
                        let r = c.delete(op, &json!({"id": id, "key": key})).await?;
                        if r.status != 200 {
                            return Err(self.fail(op, &r));
                        }
                        writes += 1;
                        art_missing.push(x.clone());
                    } else {
                        conflicts += 1;
                    }
                }
                Some(_) => {}
            }
        }
        if !art_missing.is_empty() {
            let op = "/experiment-run/logArtifacts";
            let r = c.post(op, &json!({"id": id, "artifacts": art_missing})).await?;
            if r.status != 200 {
                return Err(self.fail(op, &r));
            }
            writes += 1;
        }
        let stored_tags: Vec<&str> =
            run.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let tags_missing: Vec<&String> = d.tags.iter().filter(|t| !stored_tags.contains(&t.as_str())).collect();
        if !tags_missing.is_empty() {
            let op = "/experiment-run/addExperimentRunTags";
            let r = c.post(op, &json!({"id": id, "tags": tags_missing})).await?;
            if r.status != 200 {
                return Err(self.fail(op, &r));
            }
            writes += 1;
        }
        Ok((writes, conflicts))
    }

    /// Deletes the run with `run_id` if it is a run of `arn`; `false` when there was none.
    async fn delete_run_of(&self, c: &Call<'_>, run_id: &str, arn: &str) -> Result<bool, V2Error> {
        let op = "/experiment-run/getExperimentRunById";
        let r = c.get(op, &[("id", run_id)]).await?;
        if is_absent(&r) {
            return Ok(false);
        }
        if r.status != 200 {
            return Err(self.fail(op, &r));
        }
        let run = r.body.get("experiment_run").cloned().unwrap_or(Value::Null);
        if run_owner(&run).as_deref() != Some(arn) {
            tracing::warn!(run_id, "ModelDB v2: the run the ledger names now holds another job; left alone");
            return Ok(false);
        }
        let op = "/experiment-run/deleteExperimentRun";
        let d = c.delete(op, &json!({"id": run_id})).await?;
        if is_absent(&d) {
            return Ok(false);
        }
        if d.status != 200 {
            return Err(self.fail(op, &d));
        }
        Ok(true)
    }

    /// The ids of the runs a pending receipt's names (project, experiment, run) lead to, read
    /// only: nothing is created.
    async fn runs_by_pending_names(&self, c: &Call<'_>, previous: &SinkReceipt, arn: &str) -> Result<Vec<String>, V2Error> {
        let (Some(project), Some(run)) = (previous.ids.get("pending_project"), previous.ids.get("pending_run")) else {
            return Ok(Vec::new());
        };
        let experiment = self.settings.experiment.clone().or_else(|| previous.ids.get("pending_experiment").cloned()).unwrap_or_default();
        let op = "/project/getProjectByName";
        let r = c.get(op, &[("name", project.as_str())]).await?;
        if is_absent(&r) {
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(self.fail(op, &r));
        }
        let Some(project_id) = field_str(&r.body, "/project_by_user/id")
            .or_else(|| field_str(&r.body, "/shared_projects/0/id"))
            .or_else(|| field_str(&r.body, "/project/id"))
        else {
            return Ok(Vec::new());
        };
        let op = "/experiment/getExperimentByName";
        let r = c.get(op, &[("project_id", project_id.as_str()), ("name", experiment.as_str())]).await?;
        if is_absent(&r) {
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(self.fail(op, &r));
        }
        let Some(experiment_id) = field_str(&r.body, "/experiment/id") else { return Ok(Vec::new()) };
        let mut ids = Vec::new();
        for name in [run.clone(), hashed_name(run, arn)] {
            if let Some(found) = self.get_run(c, &experiment_id, &name).await? {
                if run_owner(&found).as_deref() == Some(arn) {
                    ids.extend(field_str(&found, "/id"));
                }
            }
        }
        Ok(ids)
    }

    /// After a move (the job's project, experiment or run name changed), deletes the run the
    /// previous write made, so that the ARN keeps one run.
    async fn remove_previous(&self, c: &Call<'_>, cx: &WriteContext, current_run_id: &str, arn: &str) -> Result<(), V2Error> {
        let Some(old) = cx.previous.as_ref().and_then(|p| p.ids.get("run_id")) else { return Ok(()) };
        if old.is_empty() || old == current_run_id {
            return Ok(());
        }
        if self.delete_run_of(c, old, arn).await? {
            tracing::info!(old_run_id = %old, run_id = current_run_id, "ModelDB v2: the job moved; its previous run was deleted");
        }
        Ok(())
    }

    async fn upsert_inner(&self, c: &Call<'_>, r: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, V2Error> {
        let project_id = self.project(c, r).await?;
        let experiment_id = self.experiment_id(c, &project_id, self.experiment(r)).await?;
        let mut d = self.desired(r);
        if self.settings.dataset_versions {
            for (i, ds) in r.datasets.iter().enumerate() {
                if let (Some(m), Some(entry)) = (&ds.manifest, d.datasets.get_mut(i)) {
                    let version = self.dataset_version(c, ds, m).await?;
                    entry["linked_artifact_id"] = json!(version);
                }
            }
        }
        let receipt = |run_id: String, kind: WriteKind| {
            SinkReceipt::new(kind).id("project_id", &project_id).id("experiment_id", &experiment_id).id("run_id", run_id)
        };
        // One run per ARN: the plain name unless another job's run holds it (a namesake from
        // another account or region), then the hashed name.
        let arn = r.run.external_id.as_str();
        let names = [r.run.name.clone(), hashed_run_name(r)];
        let mut found: Option<(String, Value)> = None;
        // The job's run under either name first: a run under the hashed name stays there even
        // after the plain name is freed (no flip, no second run).
        for name in &names {
            if let Some(run) = self.get_run(c, &experiment_id, name).await? {
                if run_owner(&run).as_deref() == Some(arn) {
                    found = Some((name.clone(), run));
                    break;
                }
            }
        }
        for name in names.iter().filter(|_| found.is_none()) {
            match self.get_run(c, &experiment_id, name).await? {
                Some(run) if run_owner(&run).as_deref() == Some(arn) => {
                    found = Some((name.clone(), run));
                    break;
                }
                Some(_) => continue,
                None => {}
            }
            let mut body = json!({
                "project_id": project_id,
                "experiment_id": experiment_id,
                "name": name,
                "description": run_description(r),
                "tags": d.tags,
                "attributes": d.attributes,
                "hyperparameters": d.hyperparameters,
                "metrics": d.metrics,
                "datasets": d.datasets,
                "artifacts": d.artifacts,
            });
            if let Some(t) = millis(r.run.start) {
                body["start_time"] = json!(t);
            }
            if let Some(t) = millis(r.run.end) {
                body["end_time"] = json!(t);
            }
            let op = "/experiment-run/createExperimentRun";
            let made = c.post(op, &body).await?;
            match made.status {
                200 => {
                    let id = field_str(&made.body, "/experiment_run/id")
                        .ok_or_else(|| V2Error::Decode { op: op.into(), message: "no experiment_run.id".into() })?;
                    self.remove_previous(c, cx, &id, arn).await?;
                    return Ok(receipt(id, WriteKind::Created));
                }
                409 => {
                    // Another writer created it meanwhile: ours to reconcile, or a namesake's.
                    match self.get_run(c, &experiment_id, name).await? {
                        Some(run) if run_owner(&run).as_deref() == Some(arn) => {
                            found = Some((name.clone(), run));
                            break;
                        }
                        Some(_) => continue,
                        None => return Err(self.fail(op, &made)),
                    }
                }
                _ => return Err(self.fail(op, &made)),
            }
        }
        let Some((run_name, run)) = found else {
            return Err(V2Error::Decode {
                op: "getExperimentRunByName".into(),
                message: format!("both run names of this job ({}) hold other jobs' runs", names.join(", ")),
            });
        };
        let run_id = field_str(&run, "/id").unwrap_or_default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = if attempt == 1 { run.clone() } else { self.get_run(c, &experiment_id, &run_name).await?.unwrap_or(Value::Null) };
            match self.reconcile(c, &current, &d).await {
                Ok((writes, conflicts)) => {
                    self.remove_previous(c, cx, &run_id, arn).await?;
                    let mut rc = receipt(run_id.clone(), if writes == 0 { WriteKind::Unchanged } else { WriteKind::Updated });
                    if conflicts > 0 {
                        rc = rc.id("kept_conflicts", conflicts);
                    }
                    return Ok(rc);
                }
                // A concurrent writer logged the same key: diff again against the fresh run.
                Err(e) if e.status() == Some(409) && attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Sink for ModelDbV2Sink {
    async fn upsert(&self, record: &RunRecord, cx: &WriteContext) -> Result<SinkReceipt, SyncError> {
        let c = self.api.call(cx);
        match self.upsert_inner(&c, record, cx).await {
            Ok(mut rc) => {
                rc.writes = c.writes();
                Ok(rc)
            }
            Err(e) => Err(self.sync_error(e)),
        }
    }

    async fn retract(&self, external_id: &str, cx: &WriteContext) -> Result<Option<SinkReceipt>, SyncError> {
        let c = &self.api.call(cx);
        let Some(previous) = cx.previous.as_ref() else { return Ok(Some(SinkReceipt::new(WriteKind::Removed))) };
        let mut rc = SinkReceipt::new(WriteKind::Removed);
        for (k, v) in &previous.ids {
            if k == "project_id" || k == "experiment_id" || k == "run_id" {
                rc = rc.id(k, v);
            }
        }
        let run_ids = match previous.ids.get("run_id") {
            Some(id) => vec![id.clone()],
            // A write whose outcome the ledger never learned (the process stopped before its
            // commit): the names it was written under lead to the run, if it exists.
            None => self.runs_by_pending_names(c, previous, external_id).await.map_err(|e| self.sync_error(e))?,
        };
        for id in run_ids {
            rc.writes += u32::from(self.delete_run_of(c, &id, external_id).await.map_err(|e| self.sync_error(e))?);
        }
        Ok(Some(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_numerically() {
        assert!(same_value(&json!(1), &json!(1.0)));
        assert!(!same_value(&json!("1"), &json!(1)));
        assert!(same_value(&json!("a"), &json!("a")));
    }
}
