//! # sagesync-sink-file
//!
//! Sink `file`: one JSON document per run at `<dir>/<project>/<run>.json`, written atomically
//! (temporary file, fsync, rename). Names are sanitised so that no input can write outside
//! `dir`. An unchanged record writes nothing. The document's schema is versioned
//! (`docs/file-sink-schema.md`).

pub mod file;

pub use file::{sanitize_component, FileSink, FileSinkConfig, RunDocument, SCHEMA_NAME, SCHEMA_VERSION};
