//! MLflow replies: any status and body.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_sink_mlflow::client::decode_reply;

fuzz_target!(|data: &[u8]| {
    let Some((s, body)) = data.split_first_chunk::<2>() else { return };
    let status = 100 + u16::from_be_bytes(*s) % 500;
    match decode_reply("runs/search", status, body) {
        Ok(v) => assert!(v.is_object()),
        Err(e) => {
            let _ = (e.to_string(), e.is_retryable(), e.error_code().map(str::len));
        }
    }
});
