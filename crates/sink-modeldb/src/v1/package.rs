//! A SageMaker model package as a ModelDB v1 model: the Light API has no registry, so a package
//! is a model (transformer) entry on the run of the training job that made it, its fields in the
//! model's metadata document. The metadata is the one place the Light API can change later
//! (`createOrUpdateScalarField`): an approval changes the `approval_status` field of the same
//! model, never a second one. Pure: the fields wanted, and those a stored document lacks.

use std::collections::BTreeMap;

use sagesync_core::{PackageSummary, RunRecord};
use sha2::{Digest, Sha256};

/// The metadata field naming the package: how a model is known as a package's.
pub const PACKAGE_KEY: &str = "sagemaker_model_package_arn";
/// The metadata field saying whether the package still exists (`Active`, `Retracted`, or
/// [`DUPLICATE`]).
pub const STATE_KEY: &str = "sagemaker_package_state";

/// The state of a second model of one package, written by another writer at the same time:
/// the lowest model is the package's.
pub const DUPLICATE: &str = "Duplicate";

/// The metadata fields of a package's model (all strings), by key.
pub fn desired_metadata(r: &RunRecord, p: &PackageSummary) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put(PACKAGE_KEY, r.run.external_id.clone());
    put(STATE_KEY, "Active".into());
    put("model_package_group", p.group.clone());
    put("model_package_version", p.version.map(|v| v.to_string()).unwrap_or_default());
    put("approval_status", p.approval_status.clone());
    put("approval_description", p.approval_description.clone().unwrap_or_default());
    put("package_description", p.description.clone().unwrap_or_default());
    put("model_data_url", p.model_data_urls.join(", "));
    put("image", p.images.join(", "));
    put("framework", p.framework.clone().unwrap_or_default());
    put("task", p.task.clone().unwrap_or_default());
    put("training_job_arn", p.training_job_arn.clone().unwrap_or_default());
    put("created", r.run.start.map(|t| t.to_rfc3339()).unwrap_or_default());
    put("modified", r.run.end.map(|t| t.to_rfc3339()).unwrap_or_default());
    put(
        "customer_metadata",
        if p.customer_metadata.is_empty() { String::new() } else { serde_json::to_string(&p.customer_metadata).unwrap_or_default() },
    );
    put("model_metrics", if p.metrics.is_null() { String::new() } else { p.metrics.to_string() });
    m
}

/// A stored model's metadata document (the server's serialisation of it, `_id` and
/// `MODELDB_model_id` included) as an object; `None` when there is none or it is not JSON.
pub fn stored_metadata(text: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Object(o) => Some(o),
        _ => None,
    }
}

/// The package a stored model belongs to, from its metadata.
pub fn model_owner(metadata: &str) -> Option<String> {
    stored_metadata(metadata)?.get(PACKAGE_KEY)?.as_str().map(str::to_string)
}

/// The fields of `want` the stored document lacks or holds otherwise (an absent field counts
/// as empty), in key order.
pub fn changed_fields<'a>(want: &'a BTreeMap<String, String>, stored: &str) -> Vec<(&'a str, &'a str)> {
    let have = stored_metadata(stored).unwrap_or_default();
    want.iter()
        .filter(|(k, v)| {
            let held = match have.get(k.as_str()) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            held != **v
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The metadata of a new package model, as the FitEvent's JSON (empty fields left out).
pub fn metadata_json(want: &BTreeMap<String, String>) -> String {
    let o: serde_json::Map<String, serde_json::Value> =
        want.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::Value::Object(o).to_string()
}

/// A digest of the fields and the run they go to: the same digest in the previous receipt
/// means nothing to send.
pub fn digest(want: &BTreeMap<String, String>, run_id: i32) -> String {
    let mut h = Sha256::new();
    h.update(run_id.to_le_bytes());
    for (k, v) in want {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The group and version a versioned package's ARN names.
pub fn package_of_arn(arn: &str) -> Option<(&str, &str)> {
    crate::v2::registry::package_of_arn(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_document_is_compared_field_by_field() {
        let mut want = BTreeMap::new();
        want.insert(PACKAGE_KEY.to_string(), "arn:p".to_string());
        want.insert("approval_status".to_string(), "Approved".to_string());
        want.insert("task".to_string(), String::new());
        // As the reference server serialises a document (MongoDB's legacy JSON).
        let stored = r#"{ "_id" : { "$oid" : "5c6e5a1b2f0c3a1d9c8b4567"} , "sagemaker_model_package_arn" : "arn:p" , "approval_status" : "PendingManualApproval" , "MODELDB_model_id" : 3}"#;
        assert_eq!(model_owner(stored).as_deref(), Some("arn:p"));
        assert_eq!(changed_fields(&want, stored), [("approval_status", "Approved")], "an absent field is empty");
        assert_eq!(metadata_json(&want), r#"{"approval_status":"Approved","sagemaker_model_package_arn":"arn:p"}"#);
        assert_eq!(model_owner(""), None);
        assert_eq!(model_owner("{}"), None);
        assert_ne!(digest(&want, 1), digest(&want, 2));
    }
}
