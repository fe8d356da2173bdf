//! Sink `modeldb_v2`: Verta ModelDB 2.x through its REST API (grpc-gateway JSON).

//!
//! One module per concern, as Vector's sinks are laid out: [`config`] (the TOML options, checked
//! without I/O), [`mapping`] (pure: a record in ModelDB's JSON shapes, and the requests that
//! bring a stored run to it), [`client`] (the HTTP service: timeouts, caps, the lease checked
//! before each request, errors classified), and the sink that drives them.

pub mod client;
pub mod config;
pub mod keys;
pub mod mapping;
pub mod registry;
mod sink;

pub use client::{ApiSettings, V2Error};
pub use config::ModelDbV2Config;
pub use mapping::{hashed_run_name, manifest_tag, run_description, OnConflict};
pub use sink::{ModelDbV2Settings, ModelDbV2Sink};
