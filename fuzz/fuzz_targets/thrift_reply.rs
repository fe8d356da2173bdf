//! ModelDB v1 replies: the frame's length prefix, then the strict binary message, then the
//! reply's interpretation for a method.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_sink_modeldb::v1::client::{interpret, MAX_FRAME};
use sagesync_sink_modeldb::v1::codec::decode;

fuzz_target!(|data: &[u8]| {
    // As the client reads a frame: a 4-byte big-endian length, capped, then that many bytes.
    let Some((head, body)) = data.split_first_chunk::<4>() else { return };
    let len = u32::from_be_bytes(*head) as usize;
    if len > MAX_FRAME || len > body.len() {
        return;
    }
    if let Ok(m) = decode(&body[..len]) {
        for method in ["storeProjectEvent", "getRunsAndExperimentsInProject", "storeMetricEvent"] {
            let _ = interpret(method, m.name.clone(), m.kind, m.body.clone());
        }
    }
});
