//! # sagesync-core
//!
//! The heart of sagesync: the record model ([`TrainingJob`] in, [`RunRecord`] out), the four
//! plugin traits ([`Source`], [`Validator`], [`Mapper`], [`Sink`]), the [`Pipeline`] every runner
//! uses, TOML configuration ([`config`]) and the plugin [`registry`].
//!
//! Use it as a library to write your own syncer: implement a trait, register it with
//! [`register_plugin!`], and either load a TOML config or assemble a pipeline with
//! [`Pipeline::builder`]. No AWS or HTTP code lives here.
#![deny(missing_docs)]

pub mod builtin;
pub mod config;
pub mod error;
pub mod model;
pub mod pipeline;
pub mod registry;
pub mod secret;
pub mod state;
pub mod traits;

pub use config::{Config, ConfigError, ConfigErrors, TagKeys};
pub use error::{error_chain, Stage, SyncError};
pub use model::*;
pub use pipeline::{Decision, JobObserver, JobReport, Outcome, Pipeline, PipelineBuilder, PipelineSettings, RunSummary};
pub use registry::{BuildContext, Component, FieldProblem, PluginConfig, PluginDescriptor, PluginKind};
pub use secret::Secret;
pub use state::{LedgerEntry, LedgerObserver, RetryPolicy, SqliteState, StateError, StateStore};
pub use traits::{Cursor, JobRef, Listing, ListingProblem, Mapper, Sink, SinkReceipt, Source, Validator, Verdict, WriteContext, WriteKind};

#[doc(hidden)]
pub use inventory;
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

/// Loads a config file and builds its pipeline, reporting every configuration error at once.
pub fn load_pipeline(path: &std::path::Path) -> Result<(Pipeline, Config), ConfigErrors> {
    let cfg = Config::from_file(path)?;
    let built = cfg.build()?;
    let pipeline = Pipeline::from_config(built).map_err(|e| {
        ConfigErrors(vec![ConfigError { file: cfg.file.clone(), line: 1, column: 1, key: String::new(), message: e.to_string() }])
    })?;
    Ok((pipeline, cfg))
}
