//! # sagesync-plugins
//!
//! One place that links sagesync's standard plugins into a binary. `inventory` only sees crates
//! that are linked, and a crate nobody references is not: a binary that wants the standard
//! plugins writes `use sagesync_plugins as _;`, and picks them with this crate's features (all
//! on by default):
//!
//! | feature | plugins | brings |
//! | --- | --- | --- |
//! | `sagemaker` | source `sagemaker` (and `recorded`'s) | the AWS SDK |
//! | `recorded` | source `sagemaker_json` | |
//! | `file` | sink `file` | |
//! | `modeldb` | sinks `modeldb_v1`, `modeldb_v2` | an HTTP client |
//! | `mlflow` | sink `mlflow` | an HTTP client (and the AWS SDK's signing, for SageMaker MLflow) |
//! | `sqlite` | state `sqlite` | SQLite |
//! | `dynamodb` | state `dynamodb` | the AWS SDK |
//!
//! A custom syncer that uses one plugin of its own and the recorded source builds with
//! `default-features = false, features = ["recorded"]`: no AWS SDK, no SQLite.

#[cfg(feature = "file")]
pub use sagesync_sink_file as file;
#[cfg(feature = "mlflow")]
pub use sagesync_sink_mlflow as mlflow;
#[cfg(feature = "modeldb")]
pub use sagesync_sink_modeldb as modeldb;
#[cfg(feature = "recorded")]
pub use sagesync_source_sagemaker as sagemaker;
#[cfg(feature = "dynamodb")]
pub use sagesync_state_dynamodb as dynamodb;
#[cfg(feature = "sqlite")]
pub use sagesync_state_sqlite as sqlite;

/// The `(kind, type)` of every plugin registered in this binary (what the runners' linking tests
/// assert).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    sagesync_core::registry::registered()
}
