//! Benchmark: sync N jobs from moto into the file sink in each source mode and print jobs/s and
//! SageMaker calls per job. Run with `scripts/bench-sagemaker.sh [N]` (default 1000).

use std::time::Instant;

use sagesync_core::builtin::{RequiredTags, StatusFilter, TagsMapper};
use sagesync_core::{CancellationToken, Engine, NoObserver, PassRequest, PipelineSettings, TagKeys};
use sagesync_sink_file::FileSink;
use sagesync_source_sagemaker::api::{Mode, SageMakerSettings, SageMakerSource};
use sagesync_test_support::moto;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let moto = moto::Moto::start();
    let t = Instant::now();
    moto.create_jobs("bench", n, &moto::SYNC_TAGS).await;
    println!("seeded {n} jobs into moto in {:.1} s", t.elapsed().as_secs_f64());
    let out = std::env::temp_dir().join(format!("sagesync-bench-{}", std::process::id()));
    println!("{:<8} {:>6} {:>10} {:>10} {:>14}  calls", "mode", "jobs", "wall s", "jobs/s", "calls/job");
    // List mode twice: without client-side budgets (the engine's own speed), and with the
    // default per-operation budgets a user gets (DescribeTrainingJob's 10/s bounds it).
    for (mode, budgets) in [(Mode::List, false), (Mode::List, true), (Mode::Search, false)] {
        let mut settings = SageMakerSettings::new(mode).endpoint(&moto.url(), "us-east-1");
        if !budgets {
            settings = settings.unlimited();
        }
        settings.client.initial_backoff = std::time::Duration::from_millis(50);
        let p = Engine::builder()
            .source(SageMakerSource::new(settings))
            .validator("required_tags", RequiredTags::new(&TagKeys::default()))
            .validator("status", StatusFilter::new(["Completed"]))
            .mapper(TagsMapper::new(TagKeys::default()))
            .sink("file", FileSink::new(out.join(format!("{mode:?}{budgets}"))))
            .settings(PipelineSettings { concurrency: 8, ..Default::default() })
            .build()
            .expect("engine");
        let t = Instant::now();
        let s = p.pass(&PassRequest::poll(), &CancellationToken::new(), &NoObserver).await;
        let wall = t.elapsed().as_secs_f64();
        assert_eq!(s.synced, n, "failed: {}", s.failed);
        let calls: u64 = s.api_calls.values().sum();
        println!(
            "{:<8} {:>6} {:>10.2} {:>10.1} {:>14.3}  {:?}",
            format!("{}{}", format!("{mode:?}").to_lowercase(), if budgets { "*" } else { "" }),
            n,
            wall,
            n as f64 / wall,
            calls as f64 / n as f64,
            s.api_calls
        );
    }
    println!("* with the default budgets (ListTrainingJobs 2/s, DescribeTrainingJob 10/s, ListTags 10/s)");
    let _ = std::fs::remove_dir_all(&out);
}
