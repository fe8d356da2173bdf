//! `[tag_keys]`: the tag keys the built-in validator and mapper read. Defaults are the AWS
//! sample's.

use serde::{Deserialize, Serialize};

/// The `[tag_keys]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagKeys {
    /// Opt-in tag (any value, even empty, opts in).
    pub sync: String,
    /// Project name.
    pub project_name: String,
    /// Project owner.
    pub project_user: String,
    /// Project description.
    pub project_desc: String,
    /// Model name.
    pub model_name: String,
    /// Model type.
    pub model_type: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        TagKeys {
            sync: "MODEL_DB_SYNC".into(),
            project_name: "MODEL_DB_PROJECT_NAME".into(),
            project_user: "MODEL_DB_PROJECT_USER".into(),
            project_desc: "MODEL_DB_PROJECT_DESC".into(),
            model_name: "MODEL_DB_MODEL_NAME".into(),
            model_type: "MODEL_DB_MODEL_TYPE".into(),
        }
    }
}

impl TagKeys {
    /// The section's name.
    pub const SECTION: &'static str = "tag_keys";

    /// The five keys that must be present on an opted-in job, in the sample's order.
    pub fn required(&self) -> [&str; 5] {
        [&self.project_name, &self.project_user, &self.project_desc, &self.model_name, &self.model_type]
    }
}

crate::register_section!("tag_keys", TagKeys, summary = "Tag keys read by `required_tags` and the `tags` mapper");
