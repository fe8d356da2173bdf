//! Source `sagemaker`: training jobs from the SageMaker API.

pub mod client;
mod config;
pub mod convert;
pub mod event;
pub mod history;
mod source;

pub use client::{ClientSettings, RetryMode};
pub use event::{parse_event, EventKind, StateChange};
pub use config::{backfill_options, parse_time_filter, SageMakerSourceConfig};
pub use source::{job_name, Filters, Mode, SageMakerSettings, SageMakerSource};
