//! An in-process fake of the ModelDB 2.0.8.x REST API (grpc-gateway v1 behind the web app),
//! enforcing the documented behaviour: required fields → 400, duplicates → 409, unknown ids →
//! 404, tags 1..40 characters, defaults omitted and int64 as strings in responses, snake_case
//! or lowerCamelCase requests, and 503 on demand. [`crate::swagger`] checks what it was sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// A request the fake received, and its answer's status.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, `DELETE`...
    pub method: String,
    /// The path, without the API prefix when it has it.
    pub path: String,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, when it is JSON.
    pub body: Option<Value>,
    /// The status answered.
    pub status: u16,
}

/// What the fake stores (snake_case, as the server keeps it), its request log and the faults to
/// inject.
#[derive(Default)]
pub struct FakeState {
    /// The API prefix (`/api/v1/modeldb`).
    pub prefix: String,
    /// The registry service's prefix (`/api/v1/registry` through Verta's web app: `prefix` with
    /// `/modeldb` as `/registry`).
    pub registry_prefix: String,
    /// Projects.
    pub projects: Vec<Value>,
    /// Experiments.
    pub experiments: Vec<Value>,
    /// Experiment runs.
    pub runs: Vec<Value>,
    /// Datasets.
    pub datasets: Vec<Value>,
    /// Dataset versions.
    pub versions: Vec<Value>,
    /// The registry's registered models (with `workspace`, the fake's own field).
    pub registered_models: Vec<Value>,
    /// The registry's model versions.
    pub model_versions: Vec<Value>,
    /// Answer every registry path with a plain-text 404, as the open-source proxy does (it
    /// routes no registry service).
    pub no_registry: bool,
    /// On the next CreateModelVersion, store the version as another writer would, then answer
    /// 409 (a race on the version's name).
    pub race_create_version: bool,
    /// Every request so far.
    pub requests: Vec<Recorded>,
    /// Statuses to answer the next requests with (503 → UNAVAILABLE, ...).
    pub fail_next: VecDeque<u16>,
    /// On the next createExperimentRun, store the run as another writer would, then answer 409.
    pub race_create_run: bool,
    /// When set, the first createProject is held until a second arrives (both are then handled,
    /// one after the other), so that two writers race on the project every time. Used once.
    pub race_create_project: Option<Arc<tokio::sync::Barrier>>,
    next_id: u64,
}

/// The fake, serving on 127.0.0.1 until its runtime ends.
#[derive(Clone)]
pub struct Fake {
    /// Its state.
    pub state: Arc<Mutex<FakeState>>,
    /// `http://127.0.0.1:<port>` (without the API prefix).
    pub base_url: String,
}

const KNOWN: [(&str, &str); 27] = [
    ("GET", "/project/verifyConnection"),
    ("GET", "/project/getProjectByName"),
    ("POST", "/project/createProject"),
    ("GET", "/experiment/getExperimentByName"),
    ("POST", "/experiment/createExperiment"),
    ("GET", "/experiment-run/getExperimentRunByName"),
    ("POST", "/experiment-run/createExperimentRun"),
    ("POST", "/experiment-run/logHyperparameters"),
    ("POST", "/experiment-run/logMetrics"),
    ("POST", "/experiment-run/logAttributes"),
    ("POST", "/experiment-run/logDatasets"),
    ("POST", "/experiment-run/logArtifacts"),
    ("POST", "/experiment-run/addExperimentRunTags"),
    ("DELETE", "/experiment-run/deleteHyperparameters"),
    ("DELETE", "/experiment-run/deleteMetrics"),
    ("DELETE", "/experiment-run/deleteExperimentRunAttributes"),
    ("DELETE", "/experiment-run/deleteArtifact"),
    ("POST", "/experiment-run/logObservations"),
    ("DELETE", "/experiment-run/deleteObservations"),
    ("GET", "/dataset/getDatasetByName"),
    ("POST", "/dataset/createDataset"),
    ("GET", "/dataset-version/getAllDatasetVersionsByDatasetId"),
    ("POST", "/dataset-version/createDatasetVersion"),
    ("GET", "/experiment-run/getExperimentRunById"),
    ("DELETE", "/experiment-run/deleteExperimentRun"),
    ("POST", "/experiment-run/setParentExperimentRunId"),
    ("GET", "/experiment-run/getChildrenExperimentRuns"),
];

fn err(status: StatusCode, code: i64, msg: &str, req: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": msg, "code": code, "message": msg, "details": [{"@type": format!("type.googleapis.com/ai.verta.modeldb.{req}.Response")}]}),
    )
}

fn bad(msg: &str, req: &str) -> (StatusCode, Value) {
    err(StatusCode::BAD_REQUEST, 3, msg, req)
}
fn not_found(msg: &str, req: &str) -> (StatusCode, Value) {
    err(StatusCode::NOT_FOUND, 5, msg, req)
}
fn conflict(msg: &str, req: &str) -> (StatusCode, Value) {
    err(StatusCode::CONFLICT, 6, msg, req)
}

fn snake(k: &str) -> String {
    let mut out = String::new();
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// lowerCamelCase → snake_case keys, enums as numbers → names.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let k = snake(&k);
                    let v = normalize(v);
                    let v = match (k.as_str(), &v) {
                        ("value_type", Value::Number(n)) => {
                            json!(["STRING", "NUMBER", "LIST", "BLOB"].get(n.as_u64().unwrap_or(0) as usize).copied().unwrap_or("STRING"))
                        }
                        ("artifact_type", Value::Number(n)) => {
                            json!(["IMAGE", "MODEL", "TENSORBOARD", "DATA", "BLOB", "STRING", "CODE", "CONTAINER"]
                                .get(n.as_u64().unwrap_or(0) as usize)
                                .copied()
                                .unwrap_or("IMAGE"))
                        }
                        _ => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        o => o,
    }
}

/// Response encoding: drop default values (0, "", false, [], enum value 0), int64 as strings.
fn encode(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = encode(v);
                let default = match (&v, k.as_str()) {
                    (Value::String(s), "value_type") => s == "STRING",
                    (Value::String(s), "artifact_type") => s == "IMAGE",
                    (Value::String(s), _) => s.is_empty(),
                    (Value::Bool(b), _) => !b,
                    (Value::Array(a), _) => a.is_empty(),
                    // google.protobuf.Value fields: set, they are written even when 0.
                    (Value::Number(_), "value" | "epoch_number") => false,
                    (Value::Number(n), _) => n.as_f64() == Some(0.0),
                    (Value::Null, _) => true,
                    _ => false,
                };
                if default {
                    continue;
                }
                let v = match (k.as_str(), v) {
                    (
                        "date_created" | "date_updated" | "start_time" | "end_time" | "time_logged" | "time_updated" | "time_created"
                        | "version" | "size" | "total_records",
                        Value::Number(n),
                    ) => json!(n.to_string()),
                    (_, v) => v,
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(encode).collect()),
        o => o.clone(),
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn sorted(labels: &Value) -> Value {
    let mut l: Vec<String> = labels.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    l.sort();
    l.dedup();
    json!(l)
}

fn check_tags(tags: &Value, req: &str) -> Result<(), (StatusCode, Value)> {
    for t in tags.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let t = t.as_str().unwrap_or("");
        if t.trim().is_empty() || t.chars().count() > 40 {
            return Err(bad(&format!("Invalid tag found, tag length must be between 1 and 40: {t}"), req));
        }
    }
    Ok(())
}

/// A path segment, percent-decoded.
fn segment(s: &str) -> String {
    decode(&s.replace('+', "%2B"))
}

impl FakeState {
    /// The registry service (as Verta's platform serves it: the protos of ModelDB's main branch,
    /// paths relative to the registry's prefix): registered models unique by name in a workspace,
    /// model versions unique by name in a registered model (409 ALREADY_EXISTS), absent ids and
    /// names 404 NOT_FOUND (code 5), required fields 400 (code 3), a version's run checked, an
    /// update replacing the whole version, finds paged (page 1 of 10 unless asked). `None`: no
    /// such route (a plain 404).
    fn registry(&mut self, method: &str, path: &str, body: Value) -> Option<Result<Value, (StatusCode, Value)>> {
        let parts: Vec<String> = path.trim_start_matches('/').split('/').map(segment).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let now = 1_700_000_000_000u64 + self.next_id;
        let model_at =
            |st: &FakeState, ws: &str, name: &str| st.registered_models.iter().position(|m| m["workspace"] == ws && m["name"] == name);
        let public = |m: &Value| {
            let mut m = m.clone();
            m.as_object_mut().map(|o| o.remove("workspace"));
            m
        };
        Some(match (method, parts.as_slice()) {
            ("GET", ["workspaces", ws, "registered_models", name]) => match model_at(self, ws, name) {
                Some(i) => Ok(json!({"registered_model": public(&self.registered_models[i])})),
                None => Err(not_found("Registered model not found", "GetRegisteredModelRequest")),
            },
            ("POST", ["workspaces", ws, "registered_models"]) => {
                let name = s(&body, "name");
                if name.is_empty() {
                    return Some(Err(bad("Registered model name is empty", "SetRegisteredModel")));
                }
                if model_at(self, ws, &name).is_some() {
                    return Some(Err(conflict("Registered model already exists", "SetRegisteredModel")));
                }
                let id = self.id_number();
                let m = json!({"id": id.to_string(), "name": name, "workspace": ws, "description": s(&body, "description"), "labels": sorted(&body["labels"]), "time_created": now, "time_updated": now});
                self.registered_models.push(m.clone());
                Ok(json!({"registered_model": public(&m)}))
            }
            ("POST", ["workspaces", ws, "registered_models", name, "model_versions"]) => {
                let Some(i) = model_at(self, ws, name) else {
                    return Some(Err(not_found("Registered model not found", "SetModelVersion")));
                };
                let rm_id = s(&self.registered_models[i], "id");
                self.create_version(&rm_id, body, now)
            }
            ("POST", ["workspaces", ws, "registered_models", name, "model_versions", "find"]) => match model_at(self, ws, name) {
                Some(i) => {
                    let rm_id = s(&self.registered_models[i], "id");
                    self.find_versions(&rm_id, &body)
                }
                None => Err(not_found("Registered model not found", "FindModelVersionRequest")),
            },
            ("POST", ["registered_models", rm_id, "model_versions", "find"]) => {
                if !self.registered_models.iter().any(|m| m["id"] == *rm_id) {
                    return Some(Err(not_found("Registered model not found", "FindModelVersionRequest")));
                }
                self.find_versions(rm_id, &body)
            }
            ("GET", ["model_versions", mv_id]) => match self.model_versions.iter().find(|v| v["id"] == *mv_id) {
                Some(v) => Ok(json!({"model_version": v})),
                None => Err(not_found("Model version not found", "GetModelVersionRequest")),
            },
            ("PUT", ["registered_models", rm_id, "model_versions", mv_id]) => {
                let Some(i) = self.model_versions.iter().position(|v| v["id"] == *mv_id && v["registered_model_id"] == *rm_id) else {
                    return Some(Err(not_found("Model version not found", "SetModelVersion")));
                };
                let name = s(&body, "version");
                if name.is_empty() {
                    return Some(Err(bad("Model version name is empty", "SetModelVersion")));
                }
                if self
                    .model_versions
                    .iter()
                    .any(|v| v["registered_model_id"] == *rm_id && v["version"] == name.as_str() && v["id"] != *mv_id)
                {
                    return Some(Err(conflict("Model version already exists", "SetModelVersion")));
                }
                if let Err(e) = self.check_version_run(&body) {
                    return Some(Err(e));
                }
                let created = self.model_versions[i]["time_created"].clone();
                let mut v = body;
                v["id"] = json!(mv_id);
                v["registered_model_id"] = json!(rm_id);
                v["time_created"] = created;
                v["time_updated"] = json!(now);
                v["labels"] = sorted(&v["labels"]);
                self.model_versions[i] = v.clone();
                Ok(json!({"model_version": v}))
            }
            ("DELETE", ["registered_models", rm_id, "model_versions", mv_id]) => {
                let before = self.model_versions.len();
                self.model_versions.retain(|v| !(v["id"] == *mv_id && v["registered_model_id"] == *rm_id));
                if self.model_versions.len() == before {
                    Err(not_found("Model version not found", "DeleteModelVersionRequest"))
                } else {
                    Ok(json!({}))
                }
            }
            _ => return None,
        })
    }

    fn id_number(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A version's `experiment_run_id`, when given, names a stored run.
    fn check_version_run(&self, body: &Value) -> Result<(), (StatusCode, Value)> {
        let run = s(body, "experiment_run_id");
        if !run.is_empty() && !self.runs.iter().any(|r| r["id"] == run.as_str()) {
            return Err(not_found("ExperimentRun not found for given ID", "SetModelVersion"));
        }
        Ok(())
    }

    fn create_version(&mut self, rm_id: &str, body: Value, now: u64) -> Result<Value, (StatusCode, Value)> {
        let name = s(&body, "version");
        if name.is_empty() {
            return Err(bad("Model version name is empty", "SetModelVersion"));
        }
        self.check_version_run(&body)?;
        if std::mem::take(&mut self.race_create_version) {
            let id = self.id_number();
            let mut v = body.clone();
            v["id"] = json!(id.to_string());
            v["registered_model_id"] = json!(rm_id);
            v["time_created"] = json!(now);
            v["labels"] = sorted(&v["labels"]);
            self.model_versions.push(v);
        }
        if self.model_versions.iter().any(|v| v["registered_model_id"] == rm_id && v["version"] == name.as_str()) {
            return Err(conflict("Model version already exists", "SetModelVersion"));
        }
        let id = self.id_number();
        let mut v = body;
        v["id"] = json!(id.to_string());
        v["registered_model_id"] = json!(rm_id);
        v["time_created"] = json!(now);
        v["time_updated"] = json!(now);
        v["labels"] = sorted(&v["labels"]);
        self.model_versions.push(v.clone());
        Ok(json!({"model_version": v}))
    }

    /// FindModelVersion: predicates on `version`, `labels`, `experiment_run_id` and
    /// `description` (EQ; CONTAIN on description), page 1 of 10 unless `pagination` says.
    fn find_versions(&self, rm_id: &str, body: &Value) -> Result<Value, (StatusCode, Value)> {
        let mut hits: Vec<&Value> = self.model_versions.iter().filter(|v| v["registered_model_id"] == rm_id).collect();
        for p in body["predicates"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let (key, op) = (s(p, "key"), p.get("operator").and_then(Value::as_str).unwrap_or("EQ").to_string());
            let want = match &p["value"] {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            hits.retain(|v| match (key.as_str(), op.as_str()) {
                ("version" | "experiment_run_id", "EQ") => s(v, &key) == want,
                ("labels", "EQ") => v["labels"].as_array().is_some_and(|l| l.iter().any(|x| x == want.as_str())),
                ("description", "CONTAIN") => s(v, "description").contains(&want),
                _ => false,
            });
            if !matches!((key.as_str(), op.as_str()), ("version" | "experiment_run_id" | "labels", "EQ") | ("description", "CONTAIN")) {
                return Err(bad(&format!("unsupported predicate {key} {op}"), "FindModelVersionRequest"));
            }
        }
        let page = body.pointer("/pagination/page_number").and_then(Value::as_u64).unwrap_or(1).max(1) as usize;
        let limit = body.pointer("/pagination/page_limit").and_then(Value::as_u64).unwrap_or(10).max(1) as usize;
        let total = hits.len();
        let page: Vec<Value> = hits.into_iter().skip((page - 1) * limit).take(limit).cloned().collect();
        Ok(json!({"model_versions": page, "total_records": total}))
    }

    fn id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{:08x}-0000-4000-8000-{:012x}", self.next_id, self.next_id)
    }
    fn run_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.runs.iter_mut().find(|r| r["id"] == id)
    }
    /// The stored run called `name`.
    pub fn run_by_name(&self, name: &str) -> Option<&Value> {
        self.runs.iter().find(|r| r["name"] == name)
    }

    fn handle(&mut self, _method: &str, path: &str, q: &[(String, String)], body: Value) -> Result<Value, (StatusCode, Value)> {
        let qp = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let now = 1_700_000_000_000u64 + self.next_id;
        match path {
            "/project/verifyConnection" => Ok(json!({"status": true})),
            "/project/getProjectByName" => {
                let name = qp("name");
                if name.is_empty() {
                    return Err(bad("Project name is not found in GetProjectByName request", "GetProjectByName"));
                }
                match self.projects.iter().find(|p| p["name"] == name) {
                    Some(p) => Ok(json!({"project_by_user": p})),
                    None => Err(not_found("Project not found", "GetProjectByName")),
                }
            }
            "/project/createProject" => {
                let name = s(&body, "name");
                if name.is_empty() {
                    return Err(bad("Project name not found in CreateProject request", "CreateProject"));
                }
                if name.chars().count() > 256 {
                    return Err(bad("Project name length exceeded", "CreateProject"));
                }
                check_tags(&body["tags"], "CreateProject")?;
                if self.projects.iter().any(|p| p["name"] == name) {
                    return Err(conflict("Project already exists in database", "CreateProject"));
                }
                let p = json!({"id": self.id("proj"), "name": name, "short_name": name, "description": s(&body, "description"), "attributes": body.get("attributes").cloned().unwrap_or(json!([])), "tags": body.get("tags").cloned().unwrap_or(json!([])), "date_created": now, "date_updated": now});
                self.projects.push(p.clone());
                Ok(json!({"project": p}))
            }
            "/experiment/getExperimentByName" => {
                let (pid, name) = (qp("project_id"), qp("name"));
                if pid.is_empty() || name.is_empty() {
                    return Err(bad("Experiment name or project id not found in GetExperimentByName request", "GetExperimentByName"));
                }
                if !self.projects.iter().any(|p| p["id"] == pid) {
                    return Err(not_found("Project not found for given ID", "GetExperimentByName"));
                }
                match self.experiments.iter().find(|e| e["project_id"] == pid && e["name"] == name) {
                    Some(e) => Ok(json!({"experiment": e})),
                    None => Err(not_found("Experiment not found in database", "GetExperimentByName")),
                }
            }
            "/experiment/createExperiment" => {
                let (pid, name) = (s(&body, "project_id"), s(&body, "name"));
                if pid.is_empty() || name.is_empty() {
                    return Err(bad("Experiment name or project id not found in CreateExperiment request", "CreateExperiment"));
                }
                if !self.projects.iter().any(|p| p["id"] == pid) {
                    return Err(not_found("Project not found for given ID", "CreateExperiment"));
                }
                check_tags(&body["tags"], "CreateExperiment")?;
                if self.experiments.iter().any(|e| e["project_id"] == pid && e["name"] == name) {
                    return Err(conflict("Experiment already exists in database", "CreateExperiment"));
                }
                let e = json!({"id": self.id("exp"), "project_id": pid, "name": name, "description": s(&body, "description"), "date_created": now, "date_updated": now});
                self.experiments.push(e.clone());
                Ok(json!({"experiment": e}))
            }
            "/experiment-run/getExperimentRunByName" => {
                let (eid, name) = (qp("experiment_id"), qp("name"));
                if eid.is_empty() || name.is_empty() {
                    return Err(bad("ExperimentRun name or experiment id not found", "GetExperimentRunByName"));
                }
                match self.runs.iter().find(|r| r["experiment_id"] == eid && r["name"] == name) {
                    Some(r) => Ok(json!({"experiment_run": r})),
                    None => Err(not_found("ExperimentRun not found in database", "GetExperimentRunByName")),
                }
            }
            "/experiment-run/setParentExperimentRunId" => {
                // As ModelDB does: both runs must exist; the child's parent is replaced.
                let (child, parent) = (s(&body, "experiment_run_id"), s(&body, "parent_id"));
                if child.is_empty() || parent.is_empty() {
                    return Err(bad(
                        "ExperimentRun ID or parent ID not found in SetParentExperimentRunId request",
                        "SetParentExperimentRunId",
                    ));
                }
                if !self.runs.iter().any(|r| r["id"] == parent) {
                    return Err(not_found("Parent ExperimentRun not found for given ID", "SetParentExperimentRunId"));
                }
                match self.run_mut(&child) {
                    Some(r) => {
                        r["parent_id"] = json!(parent);
                        Ok(json!({}))
                    }
                    None => Err(not_found("ExperimentRun not found for given ID", "SetParentExperimentRunId")),
                }
            }
            "/experiment-run/getChildrenExperimentRuns" => {
                let id = qp("experiment_run_id");
                if id.is_empty() {
                    return Err(bad("ExperimentRun ID not found in GetChildrenExperimentRuns request", "GetChildrenExperimentRuns"));
                }
                let children: Vec<&Value> = self.runs.iter().filter(|r| r["parent_id"] == id).collect();
                Ok(json!({"experiment_runs": children, "total_records": children.len().to_string()}))
            }
            "/experiment-run/getExperimentRunById" => match self.runs.iter().find(|r| r["id"] == qp("id")) {
                Some(r) => Ok(json!({"experiment_run": r})),
                None => Err(not_found("ExperimentRun not found for given ID", "GetExperimentRunById")),
            },
            "/experiment-run/createExperimentRun" => {
                let (pid, eid, name) = (s(&body, "project_id"), s(&body, "experiment_id"), s(&body, "name"));
                if pid.is_empty() || eid.is_empty() || name.is_empty() {
                    return Err(bad("Project ID, experiment ID or name not found in CreateExperimentRun request", "CreateExperimentRun"));
                }
                if !self.projects.iter().any(|p| p["id"] == pid) {
                    return Err(not_found("Project not found for given ID", "CreateExperimentRun"));
                }
                if !self.experiments.iter().any(|e| e["id"] == eid) {
                    return Err(not_found("Experiment not found for given ID", "CreateExperimentRun"));
                }
                check_tags(&body["tags"], "CreateExperimentRun")?;
                for o in body.get("observations").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
                    if !o.get("epoch_number").is_some_and(Value::is_number) {
                        return Err(bad("Observation epoch_number must be a number", "CreateExperimentRun"));
                    }
                }
                if self.runs.iter().any(|r| r["project_id"] == pid && r["experiment_id"] == eid && r["name"] == name) {
                    return Err(conflict("ExperimentRun already exists in database", "CreateExperimentRun"));
                }
                let mut r = json!({"id": self.id("run"), "project_id": pid, "experiment_id": eid, "name": name, "description": s(&body, "description"), "date_created": now, "date_updated": now});
                for f in ["tags", "attributes", "hyperparameters", "metrics", "datasets", "artifacts", "observations"] {
                    r[f] = body.get(f).cloned().unwrap_or(json!([]));
                }
                for f in ["start_time", "end_time"] {
                    if let Some(v) = body.get(f) {
                        r[f] = json!(v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
                    }
                }
                if let Some(parent) = body.get("parent_id").and_then(Value::as_str).filter(|p| !p.is_empty()) {
                    r["parent_id"] = json!(parent);
                }
                if self.race_create_run {
                    // Another writer got there first.
                    self.race_create_run = false;
                    self.runs.push(r);
                    return Err(conflict("ExperimentRun already exists in database", "CreateExperimentRun"));
                }
                self.runs.push(r.clone());
                Ok(json!({"experiment_run": r}))
            }
            "/experiment-run/logHyperparameters"
            | "/experiment-run/logMetrics"
            | "/experiment-run/logAttributes"
            | "/experiment-run/logArtifacts"
            | "/experiment-run/logDatasets" => {
                let field = match path {
                    "/experiment-run/logHyperparameters" => "hyperparameters",
                    "/experiment-run/logMetrics" => "metrics",
                    "/experiment-run/logAttributes" => "attributes",
                    "/experiment-run/logArtifacts" => "artifacts",
                    _ => "datasets",
                };
                let req = path.trim_start_matches("/experiment-run/");
                let id = s(&body, "id");
                let items = body.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
                if id.is_empty() || items.is_empty() {
                    return Err(bad(&format!("New {field} not found in {req} request"), req));
                }
                let overwrite = body.get("overwrite").and_then(Value::as_bool).unwrap_or(false);
                let Some(run) = self.run_mut(&id) else {
                    return Err(not_found(&format!("ExperimentRun not found for given ID : {id}"), req));
                };
                let stored = run[field].as_array_mut().expect("list");
                for it in &items {
                    let key = it["key"].as_str().unwrap_or("");
                    if stored.iter().any(|x| x["key"] == key) && !(field == "datasets" && overwrite) {
                        return Err(conflict(&format!("{field} being logged already exists. existing key : {key}"), req));
                    }
                }
                for it in items {
                    stored.retain(|x| x["key"] != it["key"]);
                    stored.push(it);
                }
                Ok(json!({}))
            }
            "/experiment-run/logObservations" => {
                // As ModelDB 2.0.8 does: appended (never overwritten), each with an attribute and
                // a numeric epoch (one is given when missing: the key's last epoch + 1), and a
                // time (now when missing).
                let id = s(&body, "id");
                let items = body.get("observations").and_then(Value::as_array).cloned().unwrap_or_default();
                if id.is_empty() || items.is_empty() {
                    return Err(bad("New observations not found in LogObservations request", "LogObservations"));
                }
                for o in &items {
                    if o.pointer("/attribute/key").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(bad("Observation attribute key not found", "LogObservations"));
                    }
                    if o.get("epoch_number").is_some_and(|e| !e.is_number()) {
                        return Err(bad("Observations can only have numeric epoch_number", "LogObservations"));
                    }
                }
                let Some(run) = self.run_mut(&id) else {
                    return Err(not_found(&format!("ExperimentRun not found for given ID : {id}"), "LogObservations"));
                };
                if !run["observations"].is_array() {
                    run["observations"] = json!([]);
                }
                let stored = run["observations"].as_array_mut().expect("list");
                for mut o in items {
                    let key = o["attribute"]["key"].clone();
                    if o.get("epoch_number").is_none() {
                        let last = stored.iter().filter(|x| x["attribute"]["key"] == key).filter_map(|x| x["epoch_number"].as_i64()).max();
                        o["epoch_number"] = json!(last.map_or(0, |e| e + 1));
                    }
                    if o.get("timestamp").is_none() {
                        o["timestamp"] = json!(now.to_string());
                    }
                    stored.push(o);
                }
                Ok(json!({}))
            }
            "/experiment-run/deleteObservations" => {
                let id = s(&body, "id");
                let all = body.get("delete_all").and_then(Value::as_bool).unwrap_or(false);
                let keys: Vec<Value> = body.get("observation_keys").and_then(Value::as_array).cloned().unwrap_or_default();
                if id.is_empty() || (keys.is_empty() && !all) {
                    return Err(bad("Observation keys not found in DeleteObservations request", "DeleteObservations"));
                }
                let Some(run) = self.run_mut(&id) else {
                    return Err(not_found("ExperimentRun not found for given ID", "DeleteObservations"));
                };
                if let Some(stored) = run["observations"].as_array_mut() {
                    stored.retain(|x| !all && !keys.contains(&x["attribute"]["key"]));
                }
                Ok(json!({}))
            }
            "/experiment-run/addExperimentRunTags" => {
                let id = s(&body, "id");
                let tags = body.get("tags").and_then(Value::as_array).cloned().unwrap_or_default();
                if id.is_empty() || tags.is_empty() {
                    return Err(bad("Tags not found in AddExperimentRunTags request", "AddExperimentRunTags"));
                }
                check_tags(&json!(tags), "AddExperimentRunTags")?;
                let Some(run) = self.run_mut(&id) else {
                    return Err(not_found("ExperimentRun not found for given ID", "AddExperimentRunTags"));
                };
                let stored = run["tags"].as_array_mut().expect("list");
                for t in tags {
                    if !stored.contains(&t) {
                        stored.push(t);
                    }
                }
                Ok(json!({"experiment_run": run.clone()}))
            }
            "/experiment-run/deleteHyperparameters"
            | "/experiment-run/deleteMetrics"
            | "/experiment-run/deleteExperimentRunAttributes"
            | "/experiment-run/deleteArtifact" => {
                let (field, keys_field) = match path {
                    "/experiment-run/deleteHyperparameters" => ("hyperparameters", "hyperparameter_keys"),
                    "/experiment-run/deleteMetrics" => ("metrics", "metric_keys"),
                    "/experiment-run/deleteExperimentRunAttributes" => ("attributes", "attribute_keys"),
                    _ => ("artifacts", "key"),
                };
                let id = s(&body, "id");
                let keys: Vec<Value> = match body.get(keys_field) {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v @ Value::String(_)) => vec![v.clone()],
                    _ => vec![],
                };
                if id.is_empty() || keys.is_empty() {
                    return Err(bad("keys not found in delete request", "Delete"));
                }
                let Some(run) = self.run_mut(&id) else { return Err(not_found("ExperimentRun not found for given ID", "Delete")) };
                run[field].as_array_mut().expect("list").retain(|x| !keys.contains(&x["key"]));
                Ok(json!({}))
            }
            "/experiment-run/deleteExperimentRun" => {
                let id = s(&body, "id");
                if id.is_empty() {
                    return Err(bad("ExperimentRun ID not found in DeleteExperimentRun request", "DeleteExperimentRun"));
                }
                let before = self.runs.len();
                self.runs.retain(|r| r["id"] != id.as_str());
                if self.runs.len() == before {
                    return Err(not_found("ExperimentRun not found for given ID", "DeleteExperimentRun"));
                }
                Ok(json!({"status": true}))
            }
            "/dataset/getDatasetByName" => match self.datasets.iter().find(|d| d["name"] == qp("name")) {
                Some(d) => Ok(json!({"dataset_by_user": d})),
                None => Err(not_found("Dataset not found", "GetDatasetByName")),
            },
            "/dataset/createDataset" => {
                let name = s(&body, "name");
                if name.is_empty() {
                    return Err(bad("Dataset name not found", "CreateDataset"));
                }
                if self.datasets.iter().any(|d| d["name"] == name) {
                    return Err(conflict("Dataset already exists", "CreateDataset"));
                }
                let d = json!({"id": self.id("ds"), "name": name, "dataset_type": s(&body, "dataset_type"), "description": s(&body, "description"), "time_created": now});
                self.datasets.push(d.clone());
                Ok(json!({"dataset": d}))
            }
            "/dataset-version/getAllDatasetVersionsByDatasetId" => {
                let vs: Vec<Value> = self.versions.iter().filter(|v| v["dataset_id"] == qp("dataset_id")).cloned().collect();
                Ok(json!({"dataset_versions": vs, "total_records": vs.len()}))
            }
            "/dataset-version/createDatasetVersion" => {
                let did = s(&body, "dataset_id");
                let Some(ds) = self.datasets.iter().find(|d| d["id"] == did) else {
                    return Err(not_found("Dataset not found", "CreateDatasetVersion"));
                };
                if body.get("dataset_type").is_some_and(|t| t != &ds["dataset_type"]) {
                    return Err(bad("Dataset type does not match", "CreateDatasetVersion"));
                }
                let n = self.versions.iter().filter(|v| v["dataset_id"] == did).count() as u64 + 1;
                let v = json!({"id": self.id("dsv"), "dataset_id": did, "version": n, "tags": body.get("tags").cloned().unwrap_or(json!([])), "description": s(&body, "description"), "path_dataset_version_info": body.get("path_dataset_version_info").cloned().unwrap_or(json!({})), "time_logged": now});
                self.versions.push(v.clone());
                Ok(json!({"dataset_version": v}))
            }
            _ => Err((StatusCode::NOT_FOUND, Value::Null)),
        }
    }
}

async fn handler(State(state): State<Arc<Mutex<FakeState>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().ends_with("/project/createProject") {
        let barrier = state.lock().unwrap().race_create_project.clone();
        if let Some(b) = barrier {
            match tokio::time::timeout(Duration::from_secs(10), b.wait()).await {
                Ok(w) => {
                    if w.is_leader() {
                        state.lock().unwrap().race_create_project = None;
                    }
                }
                Err(_) => {
                    let msg = "race_create_project: no second createProject within 10 s";
                    return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": msg, "code": 13, "message": msg})))
                        .into_response();
                }
            }
        }
    }
    let mut st = state.lock().unwrap();
    let full = uri.path().to_string();
    let query: Vec<(String, String)> = uri.query().map(url_pairs).unwrap_or_default();
    let hdrs: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let parsed: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    let bad_json = !body.is_empty() && parsed.is_none();
    let mut rec =
        Recorded { method: method.to_string(), path: full.clone(), query: query.clone(), headers: hdrs, body: parsed.clone(), status: 0 };
    let finish = |st: &mut FakeState, mut rec: Recorded, status: StatusCode, resp: Response| {
        rec.status = status.as_u16();
        st.requests.push(rec);
        resp
    };
    let registry_path = full.strip_prefix(st.registry_prefix.as_str()).filter(|p| p.starts_with('/') && p.len() > 1).map(str::to_string);
    if let Some(p) = registry_path.as_deref().or_else(|| full.strip_prefix(st.prefix.as_str())) {
        rec.path = p.to_string();
    }
    if let Some(code) = st.fail_next.pop_front() {
        let (status, grpc) = match code {
            503 => (StatusCode::SERVICE_UNAVAILABLE, 14),
            502 => (StatusCode::BAD_GATEWAY, 14),
            504 => (StatusCode::GATEWAY_TIMEOUT, 4),
            500 => (StatusCode::INTERNAL_SERVER_ERROR, 13),
            403 => (StatusCode::FORBIDDEN, 7),
            _ => (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), 2),
        };
        let resp = (status, axum::Json(json!({"error": "injected", "code": grpc, "message": "injected", "details": []}))).into_response();
        return finish(&mut st, rec, status, resp);
    }
    if let Some(path) = registry_path {
        if st.no_registry {
            return finish(&mut st, rec, StatusCode::NOT_FOUND, (StatusCode::NOT_FOUND, "Not Found\n").into_response());
        }
        if bad_json {
            let (s, b) = bad("invalid character in JSON body", "Request");
            return finish(&mut st, rec, s, (s, axum::Json(b)).into_response());
        }
        let body = normalize(parsed.unwrap_or(json!({})));
        let (status, out) = match st.registry(method.as_str(), &path, body) {
            Some(Ok(v)) => (StatusCode::OK, encode(&v)),
            Some(Err((s, v))) => (s, v),
            None => return finish(&mut st, rec, StatusCode::NOT_FOUND, (StatusCode::NOT_FOUND, "Not Found\n").into_response()),
        };
        let resp = (status, axum::Json(out)).into_response();
        return finish(&mut st, rec, status, resp);
    }
    let Some(path) = full.strip_prefix(st.prefix.as_str()).map(str::to_string) else {
        return finish(&mut st, rec, StatusCode::NOT_FOUND, (StatusCode::NOT_FOUND, "Not Found\n").into_response());
    };
    rec.path = path.clone();
    if !KNOWN.iter().any(|(_, p)| *p == path) {
        return finish(&mut st, rec, StatusCode::NOT_FOUND, (StatusCode::NOT_FOUND, "Not Found\n").into_response());
    }
    if !KNOWN.iter().any(|(m, p)| *p == path && *m == method.as_str()) {
        return finish(
            &mut st,
            rec,
            StatusCode::METHOD_NOT_ALLOWED,
            (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n").into_response(),
        );
    }
    if bad_json {
        let (s, b) = bad("invalid character in JSON body", "Request");
        return finish(&mut st, rec, s, (s, axum::Json(b)).into_response());
    }
    let body = normalize(parsed.unwrap_or(json!({})));
    let (status, out) = match st.handle(method.as_str(), &path, &query, body) {
        Ok(v) => (StatusCode::OK, encode(&v)),
        Err((s, v)) => (s, v),
    };
    let resp = (status, axum::Json(out)).into_response();
    finish(&mut st, rec, status, resp)
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|x| u8::from_str_radix(x, 16).ok());
                match h {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Fake {
    /// Starts on 127.0.0.1 with the web app's prefix `/api/v1/modeldb`.
    pub async fn start() -> Fake {
        Self::start_with_prefix("/api/v1/modeldb").await
    }
    /// Starts on 127.0.0.1 with the API under `prefix`.
    pub async fn start_with_prefix(prefix: &str) -> Fake {
        let registry_prefix = format!("{}/registry", prefix.strip_suffix("/modeldb").unwrap_or(prefix));
        let state = Arc::new(Mutex::new(FakeState { prefix: prefix.to_string(), registry_prefix, ..Default::default() }));
        let app = axum::Router::new().fallback(handler).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { state, base_url: format!("http://127.0.0.1:{port}") }
    }
    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }
    /// State-changing requests that succeeded.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method != "GET" && r.status == 200).collect()
    }
    /// The stored runs.
    pub fn runs(&self) -> Vec<Value> {
        self.state.lock().unwrap().runs.clone()
    }
    /// Runs `f` on the state (to inspect it, or to inject faults).
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}
