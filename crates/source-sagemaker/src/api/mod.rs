//! Source `sagemaker`: training jobs from the SageMaker API.

pub mod client;
mod config;
pub mod convert;
mod source;

pub use client::{ClientSettings, RetryMode};
pub use config::{parse_time_filter, SageMakerSourceConfig};
pub use source::{job_name, Filters, Mode, SageMakerSettings, SageMakerSource};
