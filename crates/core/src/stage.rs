//! The [`Validator`] and [`Mapper`] traits.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::model::{RunRecord, TrainingJob};

/// A validator's decision about one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Go on with the next validator, then map and sync.
    Sync,
    /// Not meant to be synced (a normal outcome, e.g. no opt-in tag).
    Skip {
        /// Why.
        reason: String,
    },
    /// Meant to be synced but unusable (e.g. a required tag missing).
    Reject {
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// Decides whether a job should be synced.
#[async_trait]
pub trait Validator: Send + Sync {
    /// Checks one job.
    async fn validate(&self, job: &TrainingJob) -> Verdict;
    /// What in this validator's settings decides its verdicts, as a string: when it changes,
    /// every job is decided again. A validator built from a config file is fingerprinted by its
    /// table; this tells apart validators assembled in code. Default: nothing.
    fn fingerprint(&self) -> String {
        String::new()
    }
}

/// Turns a [`TrainingJob`] into a [`RunRecord`].
#[async_trait]
pub trait Mapper: Send + Sync {
    /// Maps one job. An error here rejects the job.
    async fn map(&self, job: &TrainingJob) -> Result<RunRecord, SyncError>;
    /// What in this mapper's settings shapes its records, as a string: when it changes, every
    /// job is decided again. A mapper built from a config file is fingerprinted by its table;
    /// this tells apart mappers assembled in code. Default: nothing.
    fn fingerprint(&self) -> String {
        String::new()
    }
}
