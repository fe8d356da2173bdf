//! The `file` sink.

mod config;
mod names;
mod sink;

pub use config::FileSinkConfig;
pub use names::sanitize_component;
pub use sink::{FileSink, RunDocument, SCHEMA_NAME, SCHEMA_VERSION};
