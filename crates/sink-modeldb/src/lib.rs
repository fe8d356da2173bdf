//! # sagesync-sink-modeldb
//!
//! ModelDB sinks for sagesync:
//! - [`v1`]: `modeldb_v1`, ModelDB v1 through its Thrift Light API;
//! - [`v2`]: `modeldb_v2`, ModelDB 2.x through its REST API.

pub mod description;
pub mod v1;
pub mod v2;
