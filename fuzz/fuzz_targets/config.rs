//! The TOML config loader: any text, every `${VAR}` set; every problem it reports carries a
//! position inside the text.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_core::Config;
// Linked so that their registrations (and option structs) are in the registry.
use sagesync_sink_file as _;
use sagesync_sink_mlflow as _;
use sagesync_sink_modeldb as _;
use sagesync_source_sagemaker as _;
use sagesync_state_sqlite as _;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.split('\n').count();
    let problems = match Config::parse(text, "fuzz.toml", &|name| (name.len() < 64).then(|| "x".to_string())) {
        Ok(c) => c.problems().to_vec(),
        Err(e) => e.0,
    };
    for p in problems {
        assert!(p.line >= 1 && p.line <= lines + 1, "{p}");
        assert!(p.column >= 1, "{p}");
    }
});
