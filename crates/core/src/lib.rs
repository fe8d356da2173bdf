//! # sagesync-core
//!
//! The heart of sagesync: the record model ([`TrainingJob`] in, [`RunRecord`] out), the plugin
//! traits ([`Source`], [`Validator`], [`Mapper`], [`Sink`], and [`StateStore`] for the ledger),
//! the one [`Engine`] every runner calls, TOML configuration ([`config`]) and the plugin
//! [`registry`].
//!
//! Use it as a library to write your own syncer: implement a trait, register it with
//! [`register_plugin!`], and either load a TOML config ([`Engine::load`]) or assemble an engine
//! in code ([`Engine::builder`]). No AWS, HTTP or SQLite code lives here.

pub mod builtin;
pub mod config;
pub mod crash;
pub mod delivery;
pub mod digest;
pub mod engine;
pub mod error;
pub mod keypath;
pub mod limits;
pub mod model;
pub mod options;
pub mod registry;
pub mod secret;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod stage;
pub mod state;
pub mod text;

pub use builtin::TagKeys;
pub use config::{Config, ConfigError, ConfigErrors, PipelineSettings};
pub use engine::{
    Decision, Engine, EngineBuilder, EngineOptions, Event, JobReport, ListingFailure, NoObserver, Observer, PassReport, PassRequest,
    Reconcile, RefOptions, RefResult, Schedule, StatusReport,
};
pub use error::{error_chain, RedactedCause, Stage, SyncError};
pub use model::*;
pub use registry::{
    BuildContext, FieldProblem, MapperPlugin, PluginDescriptor, PluginKind, SinkPlugin, SourcePlugin, StatePlugin, ValidatorPlugin,
};
pub use secret::{redact, Secret};
pub use sink::{LeaseGuard, PendingNames, Sink, SinkReceipt, WriteContext, WriteKind};
pub use source::{Cursor, JobRef, ListScope, ListingProblem, Page, Source};
pub use stage::{Mapper, Validator, Verdict};
pub use state::{
    Acquired, Basis, CountClass, Delivery, DeliveryState, JobState, Lease, LedgerCounts, MemoryState, Outcome, StateError, StateStore,
};

pub use async_trait::async_trait;
#[doc(hidden)]
pub use inventory;
pub use tokio_util::sync::CancellationToken;
