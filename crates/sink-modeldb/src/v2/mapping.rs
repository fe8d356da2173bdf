//! What the `modeldb_v2` sink wants stored, in ModelDB's JSON shapes, and what it takes to get
//! there from a run as stored: pure, no I/O. [`desired`] maps a record; [`changes`] compares it
//! with a stored run and lists the requests that close the gap, in the order they are sent.

use std::collections::BTreeMap;

use sagesync_core::RunRecord;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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

/// The desired state of one run, in ModelDB's JSON shapes.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// `hyperparameters` key/value pairs.
    pub hyperparameters: Vec<Value>,
    /// `metrics` key/value pairs (one per name).
    pub metrics: Vec<Value>,
    /// `attributes` key/value pairs.
    pub attributes: Vec<Value>,
    /// Dataset artifacts (a channel each).
    pub datasets: Vec<Value>,
    /// Artifacts (the model).
    pub artifacts: Vec<Value>,
    /// Tags.
    pub tags: Vec<String>,
    /// Observations: one per point of each metric's history, `epoch_number` = the point's
    /// step, in series order.
    pub observations: Vec<Value>,
    /// What each history holds, by observation key: `source, resolution, stat` (the run
    /// attribute `history/<key>` before any `;`).
    pub history_kinds: BTreeMap<String, String>,
}

/// Observations per `logObservations` request.
pub const OBSERVATIONS_PER_REQUEST: usize = 500;

/// A ModelDB observation of one history point: the metric's value under its key, the step as
/// `epoch_number`, and the point's time (else the job's end, else its start) in milliseconds.
fn observation(key: &str, p: &sagesync_core::MetricPoint, fallback: Option<String>) -> Value {
    let attribute = match sagesync_core::model::metric_value::non_finite_name(p.value) {
        Some(name) => json!({"key": key, "value": name, "value_type": "STRING"}),
        None => json!({"key": key, "value": p.value, "value_type": "NUMBER"}),
    };
    let mut o = json!({"attribute": attribute, "epoch_number": p.step});
    if let Some(t) = p.timestamp.map(|t| t.timestamp_millis().to_string()).or(fallback) {
        o["timestamp"] = json!(t);
    }
    o
}

/// An observation's identity: its key and epoch.
fn observation_at(o: &Value) -> Option<(String, i64)> {
    let key = o.pointer("/attribute/key")?.as_str()?.to_string();
    // Absent only where a JSON encoder dropped a zero (the server always sets one).
    let epoch = match o.get("epoch_number") {
        None => 0,
        Some(e) => e.as_i64().or_else(|| e.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?,
    };
    Some((key, epoch))
}

/// A ModelDB key/value pair (`KeyValue` with its `value_type`).
pub fn kv(key: &str, value: &Value) -> Value {
    match value {
        Value::Number(_) => json!({"key": key, "value": value, "value_type": "NUMBER"}),
        Value::String(_) => json!({"key": key, "value": value, "value_type": "STRING"}),
        Value::Bool(b) => json!({"key": key, "value": b.to_string(), "value_type": "STRING"}),
        other => json!({"key": key, "value": other.to_string(), "value_type": "STRING"}),
    }
}

/// A time as ModelDB's JSON holds it: milliseconds, as a string.
pub fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    t.map(|t| t.timestamp_millis().to_string())
}

/// Whether two stored values are the same (numbers compared as numbers).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Compares an artifact as stored (defaults omitted) with ours.
pub fn same_artifact(stored: &Value, ours: &Value) -> bool {
    let f = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let flag = |v: &Value| v.get("path_only").and_then(Value::as_bool).unwrap_or(false);
    f(stored, "path") == f(ours, "path")
        && flag(stored) == flag(ours)
        && f(stored, "linked_artifact_id").as_str().unwrap_or("") == f(ours, "linked_artifact_id").as_str().unwrap_or("")
}

pub use crate::description::run_description;

/// The run name used when another job's run holds the plain one (the shared namesake rule,
/// [`sagesync_core::model::namesake_name`]).
pub fn hashed_run_name(record: &RunRecord) -> String {
    record.namesake_name()
}

/// [`hashed_run_name`] of a run name and an ARN.
pub fn hashed_name(run: &str, arn: &str) -> String {
    sagesync_core::model::namesake_name(run, arn)
}

/// The job ARN a stored run belongs to: the one its description names (sagesync writes it at
/// creation and never changes it), else its `training_job_arn` attribute.
pub fn run_owner(run: &Value) -> Option<String> {
    let from_description = run.get("description").and_then(Value::as_str).and_then(crate::description::arn_of);
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

/// A string (or integer, as a string) at a JSON pointer.
pub fn field_str(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(|x| x.as_str().map(str::to_string).or_else(|| x.as_i64().map(|n| n.to_string())))
}

/// The desired keys, tags and artifacts of a record (without dataset version links).
pub fn desired(r: &RunRecord) -> Desired {
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
        d.datasets
            .push(json!({"key": key, "path": ds.map(|x| x.uri.clone()).unwrap_or_default(), "path_only": true, "artifact_type": "DATA"}));
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
    // Histories: observations, keys sanitised like the metrics' (a space of their own).
    let fallback = millis(r.run.end).or_else(|| millis(r.run.start));
    for (key, orig) in unique_keys(r.metric_history.iter().map(|h| h.name.as_str())) {
        if key != orig {
            originals.push((format!("original_key/observations/{key}"), orig.clone()));
        }
        let Some(series) = r.metric_history.iter().find(|h| h.name == orig) else { continue };
        let line = series.provenance();
        if !line.is_empty() {
            if let Some(kind) = line.split(';').next().filter(|k| !k.is_empty()) {
                d.history_kinds.insert(key.clone(), kind.to_string());
            }
            originals.push((format!("history/{key}"), line));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &series.points {
            if seen.insert(p.step) {
                d.observations.push(observation(&key, p, fallback.clone()));
            }
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

/// The body that creates a run holding everything at once.
pub fn create_body(r: &RunRecord, project_id: &str, experiment_id: &str, name: &str, d: &Desired) -> Value {
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
    body
}

/// The body that creates the dataset version of a manifest, tagged with its fingerprint
/// ([`manifest_tag`]) so that one manifest never makes two versions.
pub fn dataset_version_body(dataset_id: &str, ds: &sagesync_core::Dataset, m: &sagesync_core::ChannelManifest) -> Value {
    let base_path = ds.uri.trim_start_matches("s3://").to_string();
    let size: u64 = m.objects.iter().map(|o| o.size).sum();
    let parts: Vec<Value> = m
        .objects
        .iter()
        .map(|o| json!({"path": o.key, "size": o.size.to_string(), "checksum": o.etag, "last_modified_at_source": o.last_modified.map(|t| t.timestamp_millis().max(0).to_string()).unwrap_or_else(|| "0".into())}))
        .collect();
    json!({
        "dataset_id": dataset_id,
        "description": format!("{} objects{}", m.objects.len(), if m.truncated { " (listing truncated)" } else { "" }),
        "tags": [manifest_tag(m)],
        "dataset_type": "PATH",
        "path_dataset_version_info": {"location_type": "S3_FILE_SYSTEM", "size": size.to_string(), "base_path": base_path, "dataset_part_infos": parts},
    })
}

/// The HTTP method of a [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// POST.
    Post,
    /// DELETE (with a body).
    Delete,
}

/// One request that brings a stored run closer to the desired one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Method.
    pub verb: Verb,
    /// The API path (`/experiment-run/logMetrics`...).
    pub op: &'static str,
    /// The body.
    pub body: Value,
}

/// What a stored run lacks: the requests to send, in order, and the values that differ and are
/// kept (`on_conflict = "keep"`: write-once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The requests, in the order they are sent.
    pub requests: Vec<Change>,
    /// Values that differ and are kept.
    pub conflicts: u32,
}

fn by_key(run: &Value, field: &str) -> BTreeMap<String, Value> {
    run.get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| Some((x.get("key")?.as_str()?.to_string(), x.clone()))).collect())
        .unwrap_or_default()
}

/// Compares a stored run (`id` taken from it) with the desired state: the key/value lists
/// (missing keys logged; changed ones deleted and logged again with `Replace`, else counted as
/// conflicts), datasets (logged, or overwritten with `Replace`), artifacts (logged, or deleted
/// and logged again with `Replace`) and tags (added). Nothing is ever removed that the job did
/// not change.
pub fn changes(id: &str, run: &Value, d: &Desired, on_conflict: OnConflict) -> Changes {
    let replace = on_conflict == OnConflict::Replace;
    let mut out = Changes::default();
    let post = |op: &'static str, body: Value| Change { verb: Verb::Post, op, body };
    let delete = |op: &'static str, body: Value| Change { verb: Verb::Delete, op, body };
    for (field, log_op, del_op, del_field, desired) in [
        (
            "hyperparameters",
            "/experiment-run/logHyperparameters",
            "/experiment-run/deleteHyperparameters",
            "hyperparameter_keys",
            &d.hyperparameters,
        ),
        ("metrics", "/experiment-run/logMetrics", "/experiment-run/deleteMetrics", "metric_keys", &d.metrics),
        ("attributes", "/experiment-run/logAttributes", "/experiment-run/deleteExperimentRunAttributes", "attribute_keys", &d.attributes),
    ] {
        let stored: BTreeMap<String, Value> =
            by_key(run, field).into_iter().map(|(k, kv)| (k, kv.get("value").cloned().unwrap_or(Value::Null))).collect();
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
            out.requests.push(delete(del_op, json!({"id": id, del_field: keys})));
            missing.extend(changed);
        } else {
            out.conflicts += changed.len() as u32;
        }
        if !missing.is_empty() {
            out.requests.push(post(log_op, json!({"id": id, field: missing})));
        }
    }
    // Datasets (overwrite replaces by key) and artifacts.
    let stored_ds = by_key(run, "datasets");
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
        out.requests.push(post("/experiment-run/logDatasets", json!({"id": id, "datasets": ds_missing, "overwrite": false})));
    }
    if !ds_changed.is_empty() {
        if replace {
            out.requests.push(post("/experiment-run/logDatasets", json!({"id": id, "datasets": ds_changed, "overwrite": true})));
        } else {
            out.conflicts += ds_changed.len() as u32;
        }
    }
    let stored_art = by_key(run, "artifacts");
    let mut art_missing = Vec::new();
    for x in &d.artifacts {
        let key = x["key"].as_str().unwrap_or_default();
        match stored_art.get(key) {
            None => art_missing.push(x.clone()),
            Some(s) if !same_artifact(s, x) => {
                if replace {
                    out.requests.push(delete("/experiment-run/deleteArtifact", json!({"id": id, "key": key})));
                    art_missing.push(x.clone());
                } else {
                    out.conflicts += 1;
                }
            }
            Some(_) => {}
        }
    }
    if !art_missing.is_empty() {
        out.requests.push(post("/experiment-run/logArtifacts", json!({"id": id, "artifacts": art_missing})));
    }
    let stored_tags: Vec<&str> =
        run.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let tags_missing: Vec<&String> = d.tags.iter().filter(|t| !stored_tags.contains(&t.as_str())).collect();
    if !tags_missing.is_empty() {
        out.requests.push(post("/experiment-run/addExperimentRunTags", json!({"id": id, "tags": tags_missing})));
    }
    // Observations are appended, never overwritten: what the run lacks (by key and epoch) is
    // logged; a value that differs at an epoch is a conflict, or (`Replace`) the key's
    // observations are deleted and logged again.
    let stored: BTreeMap<(String, i64), Value> = run
        .get("observations")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|o| Some((observation_at(o)?, o.pointer("/attribute/value")?.clone()))).collect())
        .unwrap_or_default();
    let mut redo: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    // A key whose run holds another kind of series (CloudWatch's by time, another statistic)
    // is not mixed into: kept (a conflict), or, with `Replace`, deleted and logged again.
    let mut kept: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let stored_attrs = by_key(run, "attributes");
    for (key, kind) in &d.history_kinds {
        let Some(line) = stored_attrs.get(&format!("history/{key}")).and_then(|a| a.get("value")).and_then(Value::as_str) else { continue };
        if line.split(';').next().unwrap_or_default() != kind {
            if replace {
                redo.insert(key.clone());
            } else {
                kept.insert(key.clone());
                out.conflicts += 1;
            }
        }
    }
    for o in &d.observations {
        let Some(at) = observation_at(o) else { continue };
        if kept.contains(&at.0) || redo.contains(&at.0) {
            continue;
        }
        match stored.get(&at) {
            Some(v) if !same_observed(v, &o["attribute"]["value"]) => {
                if replace {
                    redo.insert(at.0);
                } else {
                    out.conflicts += 1;
                }
            }
            _ => {}
        }
    }
    if !redo.is_empty() {
        out.requests.push(delete("/experiment-run/deleteObservations", json!({"id": id, "observation_keys": redo})));
    }
    let missing: Vec<Value> = d
        .observations
        .iter()
        .filter(|o| observation_at(o).is_some_and(|at| !kept.contains(&at.0) && (redo.contains(&at.0) || !stored.contains_key(&at))))
        .cloned()
        .collect();
    out.requests.extend(observation_requests(id, &missing));
    out
}

/// `logObservations` requests for `observations`, [`OBSERVATIONS_PER_REQUEST`] at a time.
pub fn observation_requests(id: &str, observations: &[Value]) -> Vec<Change> {
    observations
        .chunks(OBSERVATIONS_PER_REQUEST)
        .map(|c| Change { verb: Verb::Post, op: "/experiment-run/logObservations", body: json!({"id": id, "observations": c}) })
        .collect()
}

/// Whether a stored observation's value is the one wanted: bit-exact for numbers (a history's
/// values are the job's, not rounded), equal otherwise.
fn same_observed(stored: &Value, ours: &Value) -> bool {
    match (stored.as_f64(), ours.as_f64()) {
        (Some(a), Some(b)) => a.to_bits() == b.to_bits(),
        _ => stored == ours,
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

    #[test]
    fn changes_log_what_is_missing_and_keep_or_replace_what_differs() {
        let run = json!({"id": "r1", "metrics": [{"key": "a", "value": 1}], "tags": ["t1"]});
        let d =
            Desired { metrics: vec![kv("a", &json!(2)), kv("b", &json!(3))], tags: vec!["t1".into(), "t2".into()], ..Default::default() };
        let keep = changes("r1", &run, &d, OnConflict::Keep);
        let ops: Vec<&str> = keep.requests.iter().map(|c| c.op).collect();
        assert_eq!(ops, ["/experiment-run/logMetrics", "/experiment-run/addExperimentRunTags"]);
        assert_eq!(keep.requests[0].body["metrics"].as_array().map(Vec::len), Some(1), "only the missing key");
        assert_eq!(keep.conflicts, 1);
        let replace = changes("r1", &run, &d, OnConflict::Replace);
        let ops: Vec<(Verb, &str)> = replace.requests.iter().map(|c| (c.verb, c.op)).collect();
        assert_eq!(ops[..2], [(Verb::Delete, "/experiment-run/deleteMetrics"), (Verb::Post, "/experiment-run/logMetrics")]);
        assert_eq!(replace.conflicts, 0);
        let same = Desired { metrics: vec![kv("a", &json!(1.0))], tags: vec!["t1".into()], ..Default::default() };
        assert_eq!(changes("r1", &run, &same, OnConflict::Replace), Changes::default(), "nothing to do");
    }

    #[test]
    fn observations_append_only_what_the_run_lacks() {
        let obs = |epoch: i64, v: f64| json!({"attribute": {"key": "loss", "value": v, "value_type": "NUMBER"}, "epoch_number": epoch});
        // As stored: epoch numbers come back as JSON numbers, possibly with a fraction part.
        let run = json!({"id": "r1", "observations": [obs(0, 0.5), {"attribute": {"key": "loss", "value": 0.25}, "epoch_number": 1.0}]});
        let d = Desired { observations: vec![obs(0, 0.5), obs(1, 0.25), obs(2, 0.125)], ..Default::default() };
        let c = changes("r1", &run, &d, OnConflict::Keep);
        assert_eq!(c.requests.len(), 1);
        assert_eq!(c.requests[0].op, "/experiment-run/logObservations");
        assert_eq!(c.requests[0].body["observations"], json!([obs(2, 0.125)]), "only the new point");
        // A value that differs at an epoch: kept (a conflict), or the key logged again.
        let moved = Desired { observations: vec![obs(0, 0.5), obs(1, 0.3)], ..Default::default() };
        let keep = changes("r1", &run, &moved, OnConflict::Keep);
        assert!(keep.requests.is_empty() && keep.conflicts == 1);
        let replace = changes("r1", &run, &moved, OnConflict::Replace);
        assert_eq!(replace.requests[0].op, "/experiment-run/deleteObservations");
        assert_eq!(replace.requests[1].body["observations"].as_array().map(Vec::len), Some(2));
        // A run holding another kind of series under the key: not mixed into (kept, a
        // conflict), or with `Replace` deleted and logged again.
        let cw = json!({"id": "r1", "attributes": [{"key": "history/loss", "value": "cloudwatch, 60 s, Average"}], "observations": [obs(0, 0.5)]});
        let mut by_iteration = Desired { observations: vec![obs(0, 0.7), obs(10, 0.6)], ..Default::default() };
        by_iteration.history_kinds.insert("loss".into(), "sagemaker_metrics, iteration, Last".into());
        let keep = changes("r1", &cw, &by_iteration, OnConflict::Keep);
        assert!(keep.requests.is_empty() && keep.conflicts == 1, "{keep:?}");
        let replace = changes("r1", &cw, &by_iteration, OnConflict::Replace);
        assert_eq!(replace.requests[0].op, "/experiment-run/deleteObservations");
        assert_eq!(replace.requests[1].body["observations"].as_array().map(Vec::len), Some(2));
        // Many points: requests of a bounded size.
        let many = Desired { observations: (0..1200).map(|i| obs(i, 1.0)).collect(), ..Default::default() };
        let c = changes("r1", &json!({"id": "r1"}), &many, OnConflict::Keep);
        assert_eq!(c.requests.len(), 3);
    }
}
