//! # sagesync-sink-modeldb
//!
//! ModelDB sinks for sagesync:
//! - [`v1`]: `modeldb_v1`, ModelDB v1 through its Thrift Light API.
#![deny(missing_docs)]

pub mod v1;
