//! Validator `required_tags`: the AWS sample's tag check. A job without the opt-in tag is
//! skipped; an opted-in job missing a required tag is rejected, naming every missing key.

use async_trait::async_trait;
use serde::Deserialize;

use super::TagKeys;
use crate::model::TrainingJob;
use crate::registry::{BuildContext, FieldProblem, ValidatorPlugin};
use crate::stage::{Validator, Verdict};

/// The `required_tags` validator.
#[derive(Debug, Clone)]
pub struct RequiredTags {
    sync_tag: Option<String>,
    required: Vec<String>,
    non_empty: bool,
}

impl RequiredTags {
    /// The sample's check with the given tag keys.
    pub fn new(keys: &TagKeys) -> Self {
        RequiredTags {
            sync_tag: Some(keys.sync.clone()),
            required: keys.required().iter().map(|s| s.to_string()).collect(),
            non_empty: false,
        }
    }
    /// Also require these keys.
    pub fn with_extra(mut self, extra: impl IntoIterator<Item = String>) -> Self {
        for k in extra {
            if !self.required.contains(&k) {
                self.required.push(k);
            }
        }
        self
    }
    /// Treat an empty value like a missing tag.
    pub fn non_empty(mut self, yes: bool) -> Self {
        self.non_empty = yes;
        self
    }
    /// Sync every job, without looking for an opt-in tag.
    pub fn without_opt_in(mut self) -> Self {
        self.sync_tag = None;
        self
    }
}

#[async_trait]
impl Validator for RequiredTags {
    async fn validate(&self, job: &TrainingJob) -> Verdict {
        if let Some(sync) = &self.sync_tag {
            if !job.tags.contains(sync) {
                return Verdict::Skip { reason: format!("no opt-in tag `{}`", sync) };
            }
        }
        let missing: Vec<String> = self
            .required
            .iter()
            .filter(|k| match job.tags.get(k) {
                None => true,
                Some(v) => self.non_empty && v.trim().is_empty(),
            })
            .map(|k| format!("missing required tag `{}`", k))
            .collect();
        if missing.is_empty() {
            Verdict::Sync
        } else {
            Verdict::Reject { problems: missing }
        }
    }
}

/// Options of `required_tags`. Tag key names come from `[tag_keys]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequiredTagsConfig {
    /// Keys required in addition to the five of `[tag_keys]`.
    pub extra: Vec<String>,
    /// Reject jobs whose required tags are present but empty (the sample accepts them).
    pub non_empty: bool,
    /// Look for the opt-in tag (default true); false syncs every job that has the tags.
    pub opt_in: bool,
}

impl Default for RequiredTagsConfig {
    fn default() -> Self {
        RequiredTagsConfig { extra: Vec::new(), non_empty: false, opt_in: true }
    }
}

impl ValidatorPlugin for RequiredTagsConfig {
    fn build(self, ctx: &BuildContext) -> Result<std::sync::Arc<dyn Validator>, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        for (i, k) in self.extra.iter().enumerate() {
            if k.trim().is_empty() {
                problems.push(FieldProblem {
                    path: crate::keypath::KeyPath::root().key("extra").index(i),
                    message: "tag keys must not be empty".into(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut v = RequiredTags::new(&ctx.section::<TagKeys>(TagKeys::SECTION)).with_extra(self.extra).non_empty(self.non_empty);
        if !self.opt_in {
            v = v.without_opt_in();
        }
        Ok(std::sync::Arc::new(v))
    }
}

crate::register_plugin!(
    Validator,
    "required_tags",
    RequiredTagsConfig,
    summary = "Skip jobs without the opt-in tag; reject opted-in jobs missing a required tag",
    example = r#"[[validators]]
type = "required_tags"
# Keys required besides the five of [tag_keys].
extra = []
# Reject required tags that are present but empty (the AWS sample accepts them).
non_empty = false
# Look for the opt-in tag ([tag_keys] sync); false syncs every job.
opt_in = true
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tags: &[(&str, &str)]) -> TrainingJob {
        let mut j = TrainingJob::new("j", "arn:j", "Completed");
        j.tags = tags.iter().copied().collect();
        j
    }

    #[tokio::test]
    async fn verdicts() {
        let v = RequiredTags::new(&TagKeys::default());
        assert!(matches!(v.validate(&job(&[])).await, Verdict::Skip { .. }));
        match v.validate(&job(&[("MODEL_DB_SYNC", "false"), ("MODEL_DB_PROJECT_NAME", "p")])).await {
            Verdict::Reject { problems } => {
                assert_eq!(problems.len(), 4);
                assert!(problems[0].contains("MODEL_DB_PROJECT_USER"));
            }
            other => panic!("{other:?}"),
        }
        let all = [
            ("MODEL_DB_SYNC", ""),
            ("MODEL_DB_PROJECT_NAME", "p"),
            ("MODEL_DB_PROJECT_USER", "u"),
            ("MODEL_DB_PROJECT_DESC", ""),
            ("MODEL_DB_MODEL_NAME", "m"),
            ("MODEL_DB_MODEL_TYPE", "t"),
        ];
        assert_eq!(v.validate(&job(&all)).await, Verdict::Sync);
        let strict = RequiredTags::new(&TagKeys::default()).non_empty(true);
        assert!(matches!(strict.validate(&job(&all)).await, Verdict::Reject { .. }));
    }
}
