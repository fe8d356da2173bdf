//! An engine assembled in code, no TOML: recorded jobs → the built-in validators and mapper →
//! the example sink, with an in-memory ledger.
//!
//! Run: `cargo run -p sagesync-example-custom-plugin --bin in-code -- examples/jobs`

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, NoObserver, PassRequest, TagKeys};
use sagesync_source_sagemaker::RecordedSource;
use stdout_lines::StdoutLines;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "examples/jobs".into());
    let keys = TagKeys::default();
    let engine = match Engine::builder()
        .source(RecordedSource::new(vec![dir.into()], false))
        .validator("required_tags", RequiredTags::new(&keys))
        .validator("status", StatusFilter::new(["Completed"]))
        .mapper(TagsMapper::new(keys).experiment("from-code"))
        .sink("stdout", StdoutLines { prefix: "run: ".into() })
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let r = engine.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
    println!("{} jobs: {} synced, {} skipped, {} rejected, {} failed", r.total(), r.synced, r.skipped, r.rejected, r.failed);
    if r.has_failures() {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
