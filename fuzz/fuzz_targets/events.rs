//! EventBridge events and SQS envelopes, as the Lambda receives them.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_source_sagemaker::api::{parse_event, read_payload};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = parse_event(&v);
    for item in read_payload(&v) {
        let _ = format!("{item:?}");
    }
});
