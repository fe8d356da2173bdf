//! ModelDB v2 replies: any status and body.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_sink_modeldb::v2::client::{decode_reply, error_from, is_absent};

fuzz_target!(|data: &[u8]| {
    let Some((s, body)) = data.split_first_chunk::<2>() else { return };
    let status = 100 + u16::from_be_bytes(*s) % 500;
    let r = decode_reply(status, body);
    let _ = is_absent(&r);
    let e = error_from("/v1/modeldb/project/getProjectByName", r.status, &r.body);
    let _ = (e.to_string(), e.is_retryable());
});
