//! The recorded-file reader (`sagemaker_json`): any text, as a document file and as JSON
//! Lines. Every origin it reports names a line and column inside the text.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_source_sagemaker::recorded::parse_recorded;

fn check_origin(origin: &str, text: &str) {
    let rest = origin.strip_prefix("f.json:").expect("origins name the file");
    let pos = rest.split('[').next().unwrap_or(rest);
    let mut parts = pos.split(':');
    let line: usize = parts.next().and_then(|l| l.parse().ok()).expect("a line number");
    let col: usize = parts.next().and_then(|c| c.parse().ok()).expect("a column number");
    assert!(line >= 1 && col >= 1, "{origin}");
    assert!(line <= text.matches('\n').count() + 1, "{origin}: past the last line");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for lines in [false, true] {
        let (jobs, problems) = parse_recorded(text, "f.json", lines);
        for (job, origin) in &jobs {
            assert!(!job.arn.is_empty() && !job.status.is_empty());
            check_origin(origin, text);
        }
        for (origin, e) in &problems {
            check_origin(origin, text);
            let _ = e.chain();
        }
    }
});
