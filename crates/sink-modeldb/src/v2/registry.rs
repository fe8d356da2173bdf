//! A SageMaker model package as a ModelDB v2 registry entry: one registered model per package
//! group (in the configured workspace), one model version per package, named by the package's
//! version number and linked (`experiment_run_id`) to the run this sink wrote for the training
//! job that made the model. Pure: what the version should hold ([`DesiredVersion`]) and how a
//! stored version compares with it.
//!
//! The paths and shapes are the registry service's as Verta's platform serves it (the protos of
//! ModelDB's main branch; the open-source 2.0.8.x server routes no registry). The package's
//! fields are the version's `attributes` (and, for reading, its `readme_text`), its approval
//! status also the label `approval:<status>`. See `docs/mapping.md`, section "Model packages".

use sagesync_core::{PackageSummary, RunRecord};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The label every version this sink writes carries.
pub const SAGEMAKER_LABEL: &str = "sagemaker";
/// The prefix of the label holding the approval status.
pub const APPROVAL_LABEL: &str = "approval:";

/// What a model version should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVersion {
    /// The registered model's name (the package group's).
    pub model: String,
    /// The version's name: the package's version number.
    pub version: String,
    /// The package's ARN (named by the description: how a version is known as the package's).
    pub arn: String,
    /// `description`: `SageMaker model package <group>-<version> (<ARN>)`.
    pub description: String,
    /// `labels`, sorted.
    pub labels: Vec<String>,
    /// `model`: the first container's model data URL, when there is one.
    pub model_artifact: Option<Value>,
    /// `artifacts`: the further containers' model data URLs.
    pub artifacts: Vec<Value>,
    /// `readme_text`: every field of the package.
    pub readme: String,
    /// `attributes`: every field of the package, as strings, by key.
    pub attributes: Vec<(String, String)>,
    /// The training job that made the model, when known.
    pub training_job_arn: Option<String>,
}

fn artifact(key: &str, url: &str) -> Value {
    let mut a = json!({"key": key, "path": url, "path_only": true, "artifact_type": "MODEL"});
    if url.ends_with(".tar.gz") {
        a["filename_extension"] = json!("tar.gz");
    }
    a
}

/// What the record of a package asks of the registry.
pub fn desired_version(r: &RunRecord, p: &PackageSummary) -> DesiredVersion {
    let arn = r.run.external_id.clone();
    let mut labels = vec![SAGEMAKER_LABEL.to_string(), format!("{APPROVAL_LABEL}{}", p.approval_status)];
    labels.sort();
    labels.dedup();
    let mut urls = p.model_data_urls.iter().filter(|u| !u.is_empty());
    let model_artifact = urls.next().map(|u| artifact("model", u));
    let artifacts = urls.enumerate().map(|(i, u)| artifact(&format!("model_{}", i + 2), u)).collect();
    DesiredVersion {
        model: p.group.clone(),
        version: p.version.map(|v| v.to_string()).unwrap_or_else(|| r.run.name.clone()),
        description: crate::description::run_description(r),
        labels,
        model_artifact,
        artifacts,
        readme: readme(r, p),
        attributes: attributes(r, p),
        training_job_arn: p.training_job_arn.clone(),
        arn,
    }
}

/// The package's fields as attributes (string values; empty ones left out).
fn attributes(r: &RunRecord, p: &PackageSummary) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("model_package_arn".into(), r.run.external_id.clone()),
        ("model_package_group".into(), p.group.clone()),
        ("model_package_version".into(), p.version.map(|v| v.to_string()).unwrap_or_default()),
        ("approval_status".into(), p.approval_status.clone()),
        ("approval_description".into(), p.approval_description.clone().unwrap_or_default()),
        ("model_data_url".into(), p.model_data_urls.join(", ")),
        ("image".into(), p.images.join(", ")),
        ("framework".into(), p.framework.clone().unwrap_or_default()),
        ("task".into(), p.task.clone().unwrap_or_default()),
        ("training_job_arn".into(), p.training_job_arn.clone().unwrap_or_default()),
        ("model_metrics".into(), if p.metrics.is_null() { String::new() } else { p.metrics.to_string() }),
    ];
    for (k, v) in &p.customer_metadata {
        out.push((format!("metadata/{}", super::keys::sanitize_key(k)), v.clone()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

fn kv(k: &str, v: &str) -> Value {
    json!({"key": k, "value": v, "value_type": "STRING"})
}

/// The package's fields as text (the version's readme): one line per field given.
fn readme(r: &RunRecord, p: &PackageSummary) -> String {
    let mut out = format!("# SageMaker model package {}\n\n", r.run.name);
    let mut line = |k: &str, v: &str| {
        if !v.is_empty() {
            out.push_str(&format!("- {k}: {v}\n"));
        }
    };
    line("ARN", &r.run.external_id);
    line("Group", &p.group);
    line("Version", &p.version.map(|v| v.to_string()).unwrap_or_default());
    line("Approval status", &p.approval_status);
    line("Approval description", p.approval_description.as_deref().unwrap_or(""));
    line("Description", p.description.as_deref().unwrap_or(""));
    line("Model data URL", &p.model_data_urls.join(", "));
    line("Image", &p.images.join(", "));
    line("Framework", p.framework.as_deref().unwrap_or(""));
    line("Task", p.task.as_deref().unwrap_or(""));
    line("Training job", p.training_job_arn.as_deref().unwrap_or(""));
    line("Created", &r.run.start.map(|t| t.to_rfc3339()).unwrap_or_default());
    line("Modified", &r.run.end.map(|t| t.to_rfc3339()).unwrap_or_default());
    if !r.project.name.is_empty() {
        line("Project", &r.project.name);
    }
    for (k, v) in &p.customer_metadata {
        line(&format!("Metadata {k}"), v);
    }
    if !p.metrics.is_null() {
        line("Model metrics", &p.metrics.to_string());
    }
    out
}

impl DesiredVersion {
    /// A digest of everything the version should hold and the run it is linked to: the same
    /// digest in the previous receipt means nothing to send.
    pub fn digest(&self, run_id: Option<&str>) -> String {
        let mut h = Sha256::new();
        let model = self.model_artifact.as_ref().map(Value::to_string).unwrap_or_default();
        let artifacts = Value::Array(self.artifacts.clone()).to_string();
        for part in [&self.model, &self.version, &self.arn, &self.description, &self.readme, &model, &artifacts, run_id.unwrap_or("")] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for l in &self.labels {
            h.update(l.as_bytes());
            h.update([0]);
        }
        for (k, v) in &self.attributes {
            h.update(k.as_bytes());
            h.update([1]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// The body that creates the version.
    pub fn create_body(&self, name: &str, run_id: Option<&str>) -> Value {
        let mut body = json!({
            "version": name,
            "description": self.description,
            "labels": self.labels,
            "readme_text": self.readme,
            "attributes": self.attributes.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>(),
        });
        if let Some(m) = &self.model_artifact {
            body["model"] = m.clone();
        }
        if !self.artifacts.is_empty() {
            body["artifacts"] = json!(self.artifacts);
        }
        if let Some(run) = run_id.filter(|r| !r.is_empty()) {
            body["experiment_run_id"] = json!(run);
        }
        body
    }

    /// The full version to PUT when `stored` differs from what it should hold (the registry's
    /// update replaces the whole version: the stored fields this sink does not own are kept; a
    /// run link is kept when `run_id` is `None`, dropped when it is empty, the run being gone);
    /// `None` when it holds it already.
    pub fn update_body(&self, stored: &Value, run_id: Option<&str>) -> Option<Value> {
        let mut want = stored.clone();
        let o = want.as_object_mut()?;
        let mut changed = false;
        let mut set = |k: &str, v: Value, same: bool| {
            if !same {
                o.insert(k.to_string(), v);
                changed = true;
            }
        };
        let text = |k: &str| stored.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        set("description", json!(self.description), text("description") == self.description);
        set("readme_text", json!(self.readme), text("readme_text") == self.readme);
        let mut labels: Vec<String> =
            stored.get("labels").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
        labels.sort();
        // Labels others added stay; an approval label of another status goes.
        let mut merged: Vec<String> =
            labels.iter().filter(|l| !l.starts_with(APPROVAL_LABEL) || self.labels.contains(l)).cloned().collect();
        for l in &self.labels {
            if !merged.contains(l) {
                merged.push(l.clone());
            }
        }
        merged.sort();
        set("labels", json!(merged), merged == labels);
        // Attributes: ours by key (changed values replaced); those others added stay.
        let stored_attrs: Vec<Value> = stored.get("attributes").and_then(Value::as_array).cloned().unwrap_or_default();
        let value_of = |a: &Value| a.get("value").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        let same_attrs = self.attributes.iter().all(|(k, v)| {
            stored_attrs
                .iter()
                .any(|a| a.get("key").and_then(Value::as_str) == Some(k.as_str()) && value_of(a).as_deref() == Some(v.as_str()))
        });
        let mut attrs: Vec<Value> = stored_attrs
            .iter()
            .filter(|a| !self.attributes.iter().any(|(k, _)| a.get("key").and_then(Value::as_str) == Some(k.as_str())))
            .cloned()
            .collect();
        attrs.extend(self.attributes.iter().map(|(k, v)| kv(k, v)));
        set("attributes", json!(attrs), same_attrs);
        if let Some(m) = &self.model_artifact {
            set("model", m.clone(), same_artifact(stored.get("model"), m));
        }
        let stored_arts: Vec<Value> = stored.get("artifacts").and_then(Value::as_array).cloned().unwrap_or_default();
        let same_arts =
            stored_arts.len() == self.artifacts.len() && stored_arts.iter().zip(&self.artifacts).all(|(a, b)| same_artifact(Some(a), b));
        set("artifacts", json!(self.artifacts), same_arts);
        if let Some(run) = run_id {
            set("experiment_run_id", json!(run), text("experiment_run_id") == run);
        }
        changed.then_some(want)
    }
}

fn same_artifact(stored: Option<&Value>, ours: &Value) -> bool {
    let Some(s) = stored else { return false };
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    f(s, "key") == f(ours, "key") && f(s, "path") == f(ours, "path") && f(s, "artifact_type") == f(ours, "artifact_type")
}

/// The package ARN a stored version belongs to: the one its description names.
pub fn version_owner(v: &Value) -> Option<String> {
    v.get("description").and_then(Value::as_str).and_then(crate::description::arn_of)
}

/// The group and version a versioned package's ARN names
/// (`arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/<version>`).
pub fn package_of_arn(arn: &str) -> Option<(&str, &str)> {
    let (group, version) = arn.split_once(":model-package/")?.1.split_once('/')?;
    (!group.is_empty() && !version.is_empty() && version.chars().all(|c| c.is_ascii_digit())).then_some((group, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RunRecord {
        use sagesync_core::{Model, Project, Run};
        let mut r = RunRecord {
            lineage: Default::default(),
            project: Project { name: "churn".into(), user: String::new(), description: String::new() },
            experiment: "exp".into(),
            run: Run {
                name: "churn-3".into(),
                external_id: "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3".into(),
                status: "Completed".into(),
                start: None,
                end: None,
            },
            model: Model { name: String::new(), model_type: String::new(), artifact_uri: None },
            hyperparameters: vec![],
            datasets: vec![],
            metrics: vec![],
            metric_history: vec![],
            tags: Default::default(),
            attributes: Default::default(),
        };
        r.lineage.kind = sagesync_core::ResourceKind::ModelPackage;
        r
    }

    #[test]
    fn a_package_is_a_version_named_by_its_number_and_owned_through_its_description() {
        let r = record();
        let p = PackageSummary {
            group: "churn".into(),
            version: Some(3),
            approval_status: "Approved".into(),
            model_data_urls: vec!["s3://b/j/output/model.tar.gz".into(), "s3://b/k/model.tar.gz".into()],
            ..Default::default()
        };
        let d = desired_version(&r, &p);
        assert_eq!((d.model.as_str(), d.version.as_str()), ("churn", "3"));
        assert_eq!(d.labels, ["approval:Approved", "sagemaker"]);
        assert_eq!(d.model_artifact.as_ref().and_then(|m| m["filename_extension"].as_str()), Some("tar.gz"));
        assert_eq!(d.artifacts[0]["key"], "model_2");
        let body = d.create_body("3", Some("run-1"));
        assert_eq!(version_owner(&body).as_deref(), Some(r.run.external_id.as_str()));
        assert_eq!(body["experiment_run_id"], "run-1");
        // Stored as sent, plus the server's own fields: nothing to update.
        let mut stored = body.clone();
        stored["id"] = json!("7");
        stored["time_created"] = json!("1700000000000");
        assert_eq!(d.update_body(&stored, Some("run-1")), None);
        // Rejected later: only the approval label changes; a label someone added stays.
        stored["labels"] = json!(["approval:Approved", "prod", "sagemaker"]);
        let rejected = desired_version(&r, &PackageSummary { approval_status: "Rejected".into(), ..p.clone() });
        let put = rejected.update_body(&stored, None).expect("a change");
        assert_eq!(put["labels"], json!(["approval:Rejected", "prod", "sagemaker"]));
        assert_eq!((put["id"].as_str(), put["experiment_run_id"].as_str()), (Some("7"), Some("run-1")), "the run link stays");
        assert_ne!(d.digest(Some("run-1")), rejected.digest(Some("run-1")));
        assert_ne!(d.digest(Some("run-1")), d.digest(None));
        assert_eq!(package_of_arn(&r.run.external_id), Some(("churn", "3")));
        assert_eq!(package_of_arn("arn:aws:sagemaker:us-east-1:1:model-package-group/churn"), None);
    }
}
