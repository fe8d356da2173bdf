//! # sagesync-source-sagemaker
//!
//! SageMaker sources for sagesync:
//! - `sagemaker` ([`api`]): the SageMaker API (ListTrainingJobs + Describe + ListTags, or
//!   Search), with a client-side rate limit, SDK retries and per-operation call counts;
//! - `sagemaker_json` ([`recorded`]): recorded DescribeTrainingJob documents;
//! - [`document`]: the shared reader from DescribeTrainingJob JSON to a [`sagesync_core::TrainingJob`],
//!   also used by the Lambda runner for EventBridge event details.
//!
//! The `api` feature (on by default) brings the `sagemaker` source and the AWS SDK; without it
//! the crate holds the recorded sources only.

#[cfg(feature = "api")]
pub mod api;
pub mod document;
pub mod recorded;

#[cfg(feature = "api")]
pub use api::{SageMakerSource, SageMakerSourceConfig};
pub use document::{job_from_document, parse_tags, parse_timestamp, DocumentError};
pub use recorded::{RecordedSource, RecordedSourceConfig};
