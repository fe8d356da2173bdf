//! This crate's own test helpers: fresh tables and stores on them.

use std::sync::atomic::{AtomicUsize, Ordering};

use sagesync_state_dynamodb::{DynamoSettings, DynamoState};

/// A table name no other test in this process uses.
pub fn fresh_table(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Settings for a fresh table at `url`, created on first use.
pub fn settings(url: &str, table: &str) -> DynamoSettings {
    let mut s = DynamoSettings::new(table);
    s.endpoint_url = Some(url.to_string());
    s.region = Some("us-east-1".into());
    s.create_table = true;
    s
}

/// A store on a fresh table at `url`.
pub fn store(url: &str, table: &str) -> DynamoState {
    DynamoState::new(settings(url, table))
}
