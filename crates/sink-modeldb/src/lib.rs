//! # sagesync-sink-modeldb
//!
//! ModelDB sinks for sagesync (filled by the ModelDB v1 and v2 issues).
#![deny(missing_docs)]

