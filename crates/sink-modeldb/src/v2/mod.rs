//! Sink `modeldb_v2`: Verta ModelDB 2.x through its REST API (grpc-gateway JSON).

pub mod client;
mod config;
pub mod keys;
mod sink;

pub use client::{ApiSettings, V2Error};
pub use config::ModelDbV2Config;
pub use sink::{hashed_run_name, manifest_tag, run_description, ModelDbV2Settings, ModelDbV2Sink, OnConflict};
