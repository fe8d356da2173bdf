//! # sagesync-sink-mlflow
//!
//! Sink `mlflow`: writes each training job to an MLflow tracking server over its REST API
//! (`/api/2.0/mlflow/...`): a self-hosted server, or SageMaker's managed MLflow (a
//! tracking-server ARN as `tracking_uri`, requests signed with SigV4).
//!
//! - **Idempotent by job ARN**: every run carries the tag `sagemaker.training_job_arn`; the
//!   experiment is got or created (race-safe), the run found by that tag, and a concurrent
//!   create settled deterministically (earliest start, then smallest run id).
//! - **Diffed**: a re-sync sends only what the run lacks; an unchanged job sends no write (and
//!   no request at all when the ledger's previous receipt carries the same digest).
//! - **Within the server's limits**: keys sanitised injectively ([`keys`]), batches of at most
//!   100 params, 100 tags and 1,000 items, values longer than the server stores reported.
//!
//! See `docs/config.md` (section `mlflow`) and `docs/mapping.md` (column "Sink `mlflow`").

pub mod client;
mod config;
pub mod endpoint;
pub mod keys;
pub mod mapping;
pub mod registry;
/// SigV4 signing (shared with the AWS secret backends: `sagesync_aws::sigv4`).
pub use sagesync_aws::sigv4;
mod sink;
pub mod template;

pub use client::{Budget, MlflowError};
pub use config::{Auth, AuthConfig, MlflowSettings, MlflowSinkConfig, OnParamChange, DEFAULT_MAX_RESPONSE_BYTES, EXAMPLE};
pub use sink::MlflowSink;
