//! Checks requests against the published ModelDB v2 swagger specs (read from
//! `../shared/modeldb-v2-swagger/v2.0.8.2/`, the registry's from `main-1833ba88/`; never copied
//! into the project): what
//! [`crate::modeldb_v2::Fake`] recorded.

use serde_json::Value;

use crate::modeldb_v2::Recorded;

/// The published specs of the services the ModelDB v2 sink calls.
pub struct Spec {
    docs: Vec<Value>,
}

impl Spec {
    /// Reads the specs; panics when they are missing.
    pub fn load() -> Spec {
        let dir = crate::locate::repo_root().join("../shared/modeldb-v2-swagger/v2.0.8.2");
        let docs = [
            "modeldb_ProjectService",
            "modeldb_ExperimentService",
            "modeldb_ExperimentRunService",
            "modeldb_DatasetService",
            "modeldb_DatasetVersionService",
        ]
        .iter()
        .map(|f| dir.join(format!("{f}.swagger.json")))
        // The registry as Verta's platform serves it (ModelDB's main branch; the open-source
        // 2.0.8.x server routes none), its paths relative to the registry's own prefix.
        .chain([crate::locate::repo_root().join("../shared/modeldb-v2-swagger/main-1833ba88/registry_RegistryService.swagger.json")])
        .map(|p| serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("swagger spec {}: {e}", p.display()))).unwrap())
        .collect();
        Spec { docs }
    }

    /// The spec paths a request path matches (relative to the API prefix): the literal one, or
    /// templates whose `{param}` segments stand for any non-empty segment (the registry's).
    fn paths(&self, path: &str) -> Vec<(&Value, &Value)> {
        let mut out = Vec::new();
        for d in &self.docs {
            for (t, p) in d["paths"].as_object().into_iter().flatten() {
                if template_matches(t, path) {
                    out.push((p, d));
                }
            }
        }
        out
    }

    /// The spec operation for a path (relative to the API prefix) and method.
    fn operation(&self, path: &str, method: &str) -> Option<(&Value, &Value)> {
        let m = method.to_ascii_lowercase();
        self.paths(path).into_iter().find_map(|(p, d)| p.get(&m).map(|op| (op, d)))
    }

    /// Whether some spec has `path` (relative to the API prefix).
    pub fn covers(&self, path: &str) -> bool {
        !self.paths(path).is_empty()
    }

    /// Problems with one request; empty when it conforms.
    pub fn check(&self, r: &Recorded) -> Vec<String> {
        let mut errs = Vec::new();
        let Some((op, doc)) = self.operation(&r.path, &r.method) else {
            return vec![format!("{} {}: no such operation in the spec", r.method, r.path)];
        };
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for (k, _) in &r.query {
            if !params.iter().any(|p| p["in"] == "query" && p["name"] == k.as_str()) {
                errs.push(format!("{} {}: undeclared query parameter `{k}`", r.method, r.path));
            }
        }
        match (params.iter().find(|p| p["in"] == "body"), &r.body) {
            (Some(b), Some(body)) => check_schema(&b["schema"], doc, body, &format!("{} {}", r.method, r.path), &mut errs),
            (Some(_), None) => errs.push(format!("{} {}: missing body", r.method, r.path)),
            (None, Some(_)) => errs.push(format!("{} {}: body on an operation without one", r.method, r.path)),
            (None, None) => {}
        }
        errs
    }
}

/// Whether a spec path (`/registry/{id.registered_model_id}/versions/find`) matches a request
/// path: segment by segment, a `{param}` segment matching any non-empty one.
fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| if t.starts_with('{') && t.ends_with('}') { !p.is_empty() } else { t == p })
}

fn resolve<'a>(schema: &'a Value, doc: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["definitions"][r.trim_start_matches("#/definitions/")],
        None => schema,
    }
}

fn check_schema(schema: &Value, doc: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let s = resolve(schema, doc);
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errs.push(format!("{at}: {v} is not one of {allowed:?}"));
        }
        return;
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") | None => {
            let Some(props) = s.get("properties").and_then(Value::as_object) else { return };
            let Some(obj) = v.as_object() else {
                errs.push(format!("{at}: expected an object, got {v}"));
                return;
            };
            for (k, val) in obj {
                match props.get(k) {
                    Some(ps) => check_schema(ps, doc, val, &format!("{at}.{k}"), errs),
                    None => errs.push(format!("{at}: unknown field `{k}`")),
                }
            }
        }
        Some("array") => match v.as_array() {
            Some(items) => {
                for (i, it) in items.iter().enumerate() {
                    check_schema(&s["items"], doc, it, &format!("{at}[{i}]"), errs);
                }
            }
            None => errs.push(format!("{at}: expected an array, got {v}")),
        },
        Some("string") => {
            if !v.is_string() {
                errs.push(format!("{at}: expected a string ({}), got {v}", s.get("format").and_then(Value::as_str).unwrap_or("string")));
            }
        }
        Some("integer") => {
            if !(v.is_i64() || v.is_u64()) {
                errs.push(format!("{at}: expected an integer, got {v}"));
            }
        }
        Some("number") => {
            if !v.is_number() {
                errs.push(format!("{at}: expected a number, got {v}"));
            }
        }
        Some("boolean") => {
            if !v.is_boolean() {
                errs.push(format!("{at}: expected a boolean, got {v}"));
            }
        }
        Some(other) => errs.push(format!("{at}: unsupported schema type {other}")),
    }
}
