//! DescribeTrainingJob documents (and Search records): any bytes that are JSON go through the
//! converter every source uses; a job that converts also round-trips through its record form.
#![no_main]

#[path = "bounded.rs"]
mod bounded;

use libfuzzer_sys::fuzz_target;
use sagesync_source_sagemaker::job_from_document;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(job) = job_from_document(&doc) {
        let text = serde_json::to_string(&job).expect("a converted job serialises");
        let back: sagesync_core::TrainingJob = serde_json::from_str(&text).expect("and reads back");
        assert_eq!(back.arn, job.arn);
        let _ = sagesync_source_sagemaker::api::history::metric_names(&job);
    }
});
