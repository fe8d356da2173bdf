//! Source `sagemaker`: training jobs from the SageMaker API.

pub mod client;
mod config;
pub mod convert;
pub mod event;
pub mod history;
mod packages;
mod pipelines;
mod source;
mod tuning;

pub use client::{ClientSettings, RateLimits, RetryMode};
pub use config::{parse_time_filter, Resource, SageMakerSourceConfig};
pub use event::{parse_event, read_payload, EventKind, ItemKind, PayloadItem, StateChange};
pub use source::{job_name, Filters, Mode, SageMakerSettings, SageMakerSource, OPERATIONS};
