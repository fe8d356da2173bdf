//! Validator `status`: only jobs in the configured statuses sync (default `Completed`); others
//! are skipped with their status as the reason.

use async_trait::async_trait;
use serde::Deserialize;

use crate::model::TrainingJob;
use crate::registry::{BuildContext, FieldProblem, ValidatorPlugin};
use crate::stage::{Validator, Verdict};

/// The statuses SageMaker reports for training jobs.
pub const KNOWN_STATUSES: [&str; 6] = ["InProgress", "Completed", "Failed", "Stopping", "Stopped", "Deleting"];

/// The `status` validator.
#[derive(Debug, Clone)]
pub struct StatusFilter {
    allowed: Vec<String>,
}

impl StatusFilter {
    /// Allows these statuses.
    pub fn new(allowed: impl IntoIterator<Item = impl Into<String>>) -> Self {
        StatusFilter { allowed: allowed.into_iter().map(Into::into).collect() }
    }
}

#[async_trait]
impl Validator for StatusFilter {
    async fn validate(&self, job: &TrainingJob) -> Verdict {
        if self.allowed.iter().any(|s| s == &job.status) {
            Verdict::Sync
        } else {
            Verdict::Skip { reason: format!("status {} (syncing {})", job.status, self.allowed.join(", ")) }
        }
    }
}

/// Options of `status`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Statuses that sync.
    pub statuses: Vec<String>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig { statuses: vec!["Completed".into()] }
    }
}

impl ValidatorPlugin for StatusConfig {
    fn build(self, _ctx: &BuildContext) -> Result<std::sync::Arc<dyn Validator>, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        if self.statuses.is_empty() {
            problems.push(FieldProblem::at("statuses", "must name at least one status"));
        }
        for (i, s) in self.statuses.iter().enumerate() {
            if !KNOWN_STATUSES.contains(&s.as_str()) {
                problems.push(FieldProblem {
                    path: crate::keypath::KeyPath::root().key("statuses").index(i),
                    message: format!("unknown status `{}`; expected one of: {}", s, KNOWN_STATUSES.join(", ")),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(std::sync::Arc::new(StatusFilter::new(self.statuses)))
    }
}

crate::register_plugin!(
    Validator,
    "status",
    StatusConfig,
    summary = "Sync only jobs in the given statuses (default Completed); skip the rest",
    example = r#"[[validators]]
type = "status"
statuses = ["Completed"]
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn filters() {
        let v = StatusFilter::new(["Completed", "Failed"]);
        assert_eq!(v.validate(&TrainingJob::new("a", "b", "Failed")).await, Verdict::Sync);
        match v.validate(&TrainingJob::new("a", "b", "Stopped")).await {
            Verdict::Skip { reason } => assert!(reason.starts_with("status Stopped")),
            other => panic!("{other:?}"),
        }
    }
}
