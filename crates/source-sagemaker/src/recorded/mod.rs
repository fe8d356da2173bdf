//! Source `sagemaker_json`: recorded DescribeTrainingJob documents from files, directories or
//! standard input.

mod config;
mod source;

pub use config::RecordedSourceConfig;
pub use source::{parse_recorded, RecordedSource};
