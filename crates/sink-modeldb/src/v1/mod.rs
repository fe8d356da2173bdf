//! Sink `modeldb_v1`: ModelDB v1 (MIT) through the Thrift service the Light API uses — strict
//! binary protocol, framed transport, TCP.

pub mod client;
pub mod codec;
mod config;
pub mod messages;
pub mod package;
mod sink;

pub use client::V1Error;
pub use config::ModelDbV1Config;
pub use sink::{run_description, ModelDbV1Settings, ModelDbV1Sink, DEFAULT_EXPERIMENT};
