//! This crate's own test helpers: records and sinks (the MLflow server, its REST reads and the
//! proxy in front of it are `sagesync_test_support::mlflow`).

pub mod records;
