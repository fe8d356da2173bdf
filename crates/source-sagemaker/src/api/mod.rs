//! Source `sagemaker`: training jobs from the SageMaker API.

pub mod client;
mod config;
pub mod convert;
pub mod event;
pub mod history;
pub mod metrics;
mod packages;
pub mod pairs;
mod pipelines;
mod source;
mod tuning;

pub use client::{ClientSettings, RateLimits, RetryMode};
pub use config::{is_region_name, parse_time_filter, role_account, AccountConfig, PairSettings, Resource, SageMakerSourceConfig};
pub use event::{parse_event, read_payload, EventKind, ItemKind, PayloadItem, StateChange};
pub use pairs::PairedSource;
pub use source::{job_name, Filters, Mode, SageMakerSettings, SageMakerSource, OPERATIONS};
