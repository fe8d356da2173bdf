//! A SageMaker model package as an MLflow Model Registry entry: one registered model per
//! package group, one model version per package, linked to the run this sink wrote for the
//! training job that made the model. Pure: what the version should hold ([`DesiredVersion`]).
//!
//! See `docs/mapping.md` (section "Model packages") for the table this implements.

use std::collections::BTreeMap;

use sagesync_core::{PackageSummary, RunRecord};
use sha2::{Digest, Sha256};

use crate::keys::{cut_chars, MAX_TAG_VALUE_CHARS};

/// The tag that names the package of a model version: the idempotency key.
pub const PACKAGE_TAG: &str = "sagemaker.model_package_arn";
/// The tag holding the package's approval status.
pub const APPROVAL_TAG: &str = "sagemaker.approval_status";
/// The alias that follows the newest approved version of a registered model.
pub const APPROVED_ALIAS: &str = "approved";

/// What a model version should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVersion {
    /// The registered model's name (the package group's).
    pub model: String,
    /// The package's ARN.
    pub arn: String,
    /// `source`: the model data URL.
    pub source: String,
    /// The training job that made the model, when known.
    pub training_job_arn: Option<String>,
    /// The version's description.
    pub description: String,
    /// Tags, by key.
    pub tags: BTreeMap<String, String>,
    /// Whether the package is approved.
    pub approved: bool,
}

/// The registered model's name for a package group: MLflow takes any name but `/` (a path
/// separator in its URIs) and names no longer than 256 characters; a group name is letters,
/// digits and hyphens already.
pub fn model_name(group: &str) -> String {
    let cleaned: String = group.chars().map(|c| if c == '/' || c.is_control() { '-' } else { c }).collect();
    cut_chars(&cleaned, 256).0
}

/// What the record of a package asks of the registry.
pub fn desired_version(r: &RunRecord, p: &PackageSummary) -> DesiredVersion {
    desired_of(&r.run.external_id, &r.project.name, p)
}

fn desired_of(arn: &str, project: &str, p: &PackageSummary) -> DesiredVersion {
    let mut tags = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        tags.insert(k.to_string(), cut_chars(v, MAX_TAG_VALUE_CHARS).0);
    };
    put(PACKAGE_TAG, arn);
    put(APPROVAL_TAG, &p.approval_status);
    put("sagemaker.model_package_group", &p.group);
    if let Some(v) = p.version {
        put("sagemaker.model_package_version", &v.to_string());
    }
    if let Some(d) = &p.approval_description {
        put("sagemaker.approval_description", d);
    }
    if let Some(t) = &p.training_job_arn {
        put("sagemaker.training_job_arn", t);
    }
    if let Some(f) = &p.framework {
        put("sagemaker.framework", f);
    }
    if let Some(t) = &p.task {
        put("sagemaker.task", t);
    }
    if let Some(im) = p.images.first() {
        put("sagemaker.image", im);
    }
    if !p.metrics.is_null() {
        put("sagemaker.model_metrics", &p.metrics.to_string());
    }
    for (k, v) in &p.customer_metadata {
        // SageMaker's keys may hold characters MLflow refuses in a tag key (`=`, `+`, `@`).
        put(&format!("sagemaker.metadata.{}", crate::keys::mlflow_key(k)), v);
    }
    if !project.is_empty() {
        put("sagemaker.project", project);
    }
    DesiredVersion {
        model: model_name(&p.group),
        arn: arn.to_string(),
        source: p.model_data_urls.first().cloned().unwrap_or_default(),
        training_job_arn: p.training_job_arn.clone(),
        description: cut_chars(p.description.as_deref().unwrap_or(""), 5000).0,
        tags,
        approved: p.approval_status == "Approved",
    }
}

/// Whether `s` can stand quoted in a registry search filter (MLflow has no escape for `'`).
pub fn filter_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\'', '\\', '`']) && !s.chars().any(char::is_control)
}

impl DesiredVersion {
    /// A digest of everything the version should hold (and whether it is linked to a run):
    /// the same digest in the previous receipt means nothing to send.
    pub fn digest(&self, run_id: Option<&str>) -> String {
        let mut h = Sha256::new();
        for part in
            [self.model.as_str(), &self.arn, &self.source, &self.description, run_id.unwrap_or(""), if self.approved { "a" } else { "" }]
        {
            h.update(part.as_bytes());
            h.update([0]);
        }
        for (k, v) in &self.tags {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_asks_for_a_version_with_its_tags() {
        let arn = "arn:aws:sagemaker:us-east-1:1:model-package/churn/2";
        let p = PackageSummary {
            group: "churn".into(),
            version: Some(2),
            approval_status: "Approved".into(),
            model_data_urls: vec!["s3://b/x/output/model.tar.gz".into()],
            training_job_arn: Some("arn:aws:sagemaker:us-east-1:1:training-job/x".into()),
            customer_metadata: [("team".to_string(), "a".to_string()), ("k=v".to_string(), "x".to_string())].into_iter().collect(),
            ..Default::default()
        };
        let d = desired_of(arn, "p", &p);
        assert_eq!((d.model.as_str(), d.source.as_str(), d.approved), ("churn", "s3://b/x/output/model.tar.gz", true));
        assert_eq!(d.tags[PACKAGE_TAG], arn);
        assert_eq!(d.tags[APPROVAL_TAG], "Approved");
        assert_eq!(d.tags["sagemaker.metadata.team"], "a");
        assert!(d.tags.keys().all(|k| crate::keys::mlflow_key(k) == *k), "every key one MLflow takes: {:?}", d.tags.keys());
        assert!(filter_safe(arn) && !filter_safe("c' OR name LIKE '%"));
        assert_ne!(d.digest(Some("r1")), d.digest(None), "linking changes the digest");
        assert_eq!(model_name("a/b"), "a-b");
    }
}
