//! `backfill`, `status` and `retry`: the commands that use the `[state]` ledger.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;

use sagesync_core::state::{LedgerCounts, StateSettings};
use sagesync_core::{CancellationToken, Config, JobObserver, JobRef, JobReport, LedgerObserver, Outcome, Pipeline, RetryPolicy, RunSummary, SqliteState, StateStore};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(EXIT_USAGE)
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().ok()
}

fn open_state(cfg: &Config) -> Result<(SqliteState, RetryPolicy), String> {
    let settings: StateSettings = cfg.section("state").map_err(|e| e.to_string())?.unwrap_or_default();
    let retry: RetryPolicy = match cfg.sections.get("daemon") {
        Some(toml::Value::Table(t)) => {
            let d = RetryPolicy::default();
            let get = |k: &str, def: u64| t.get(k).and_then(toml::Value::as_integer).map(|v| v.max(0) as u64).unwrap_or(def);
            RetryPolicy { max_job_attempts: get("max_job_attempts", d.max_job_attempts as u64) as u32, retry_backoff_secs: get("retry_backoff_secs", d.retry_backoff_secs), max_retry_backoff_secs: get("max_retry_backoff_secs", d.max_retry_backoff_secs) }
        }
        _ => RetryPolicy::default(),
    };
    let state = SqliteState::open(&settings.path).map_err(|e| format!("error: {e}"))?;
    Ok((state, retry))
}

fn pipeline_of(cfg: &Config) -> Result<Pipeline, String> {
    let built = cfg.build().map_err(|e| e.to_string())?;
    Pipeline::from_config(built).map_err(|e| e.to_string())
}

/// The pipeline, the ledger and the retry policy of a (possibly adjusted) config.
fn load(cfg: &Config) -> Result<(Pipeline, SqliteState, RetryPolicy, tokio::runtime::Runtime), ExitCode> {
    let pipeline = pipeline_of(cfg).map_err(fail)?;
    let (state, retry) = open_state(cfg).map_err(fail)?;
    let rt = runtime().ok_or_else(|| fail("error: cannot start the async runtime"))?;
    Ok((pipeline, state, retry, rt))
}

/// Progress on a terminal (indicatif), plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    counts: Mutex<[u64; 4]>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar, counts: Mutex::new([0; 4]) }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl JobObserver for Progress {
    fn on_job(&self, r: &JobReport) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let i = match r.outcome {
            Outcome::Synced => 0,
            Outcome::Skipped => 1,
            Outcome::Rejected => 2,
            Outcome::Failed => 3,
        };
        c[i] += 1;
        match &self.bar {
            Some(b) => b.set_message(format!("{} synced, {} skipped, {} rejected, {} failed — {}", c[0], c[1], c[2], c[3], r.job)),
            None => eprintln!("{:<8} {}{}", r.outcome.as_str(), r.job, r.reason.as_deref().map(|x| format!(" ({x})")).unwrap_or_default()),
        }
    }
}

fn print_summary(summary: &RunSummary, json: bool) {
    if json {
        match serde_json::to_string_pretty(summary) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        print!("{}", summary.render_text());
        if summary.already_done > 0 || summary.deferred > 0 {
            println!("{} already in the ledger, {} deferred", summary.already_done, summary.deferred);
        }
    }
}

/// Prints the summary; exit code 1 when a job failed or the ledger could not be written.
fn finish(summary: &RunSummary, state_error: Option<sagesync_core::StateError>, json: bool) -> ExitCode {
    if let Some(e) = state_error {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    print_summary(summary, json);
    if summary.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

pub fn backfill(config: &Path, since: &str, until: Option<&str>, json: bool) -> ExitCode {
    let mut cfg = match Config::from_file(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Some(src) = cfg.source.as_mut() else { return fail("error: the config has no [source]") };
    if src.type_name != "sagemaker" {
        return fail(format!("error: backfill reads the SageMaker API: `[source] type` must be \"sagemaker\", not \"{}\"", src.type_name));
    }
    if let Err(e) = sagesync_source_sagemaker::api::backfill_options(&mut src.options, since, until) {
        return fail(format!("error: {e}"));
    }
    let (pipeline, state, retry, rt) = match load(&cfg) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let key = format!("backfill:{since}:{}", until.unwrap_or(""));
    let progress = Progress::new();
    let (summary, state_error) = rt.block_on(async {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing jobs in flight; run the same backfill again to resume");
                c.cancel();
            }
        });
        let start = state.cursor(&key).ok().flatten().unwrap_or_default();
        let observer = LedgerObserver::new(&state, key.clone(), retry).with(&progress);
        let s = pipeline.run_observed(start, &cancel, &observer).await;
        (s, observer.take_error())
    });
    progress.finish();
    finish(&summary, state_error, json)
}

pub fn status(config: &Path, json: bool) -> ExitCode {
    let cfg = match Config::from_file(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (state, _) = match open_state(&cfg) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (entries, counts) = match (state.entries(), state.counts()) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(e), _) | (_, Err(e)) => return fail(format!("error: {e}")),
    };
    let failed: Vec<_> = entries.iter().filter(|e| e.outcome == Outcome::Failed).collect();
    let cursors: Vec<(String, Option<String>)> = ["daemon"].iter().map(|k| (k.to_string(), state.cursor(k).ok().flatten().and_then(|c| c.watermark).map(|w| w.to_rfc3339()))).collect();
    if json {
        let v = serde_json::json!({
            "state": state.path().display().to_string(),
            "counts": counts,
            "total": entries.len(),
            "failed_jobs": failed.iter().map(|e| serde_json::json!({"job": e.job, "arn": e.arn, "attempts": e.attempts, "parked": e.parked, "error": e.last_error, "next_attempt_at": e.next_attempt_at})).collect::<Vec<_>>(),
            "cursors": cursors.iter().map(|(k, w)| serde_json::json!({"key": k, "watermark": w})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let LedgerCounts { synced, skipped, rejected, failed: f, parked } = counts;
        println!("{}: {} jobs — {synced} synced, {skipped} skipped, {rejected} rejected, {f} failed ({parked} parked)", state.path().display(), entries.len());
        for (k, w) in cursors {
            println!("cursor {k}: {}", w.unwrap_or_else(|| "(none)".into()));
        }
        for e in failed {
            println!("failed  {} (attempts {}{}): {}", e.job, e.attempts, if e.parked { ", parked" } else { "" }, e.last_error.as_deref().unwrap_or(""));
        }
    }
    ExitCode::SUCCESS
}

pub fn retry(config: &Path, jobs: &[String], json: bool) -> ExitCode {
    let cfg = match Config::from_file(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (pipeline, state, policy, rt) = match load(&cfg) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let entries = match state.unpark(jobs) {
        Ok(e) => e,
        Err(e) => return fail(format!("error: {e}")),
    };
    if entries.is_empty() {
        eprintln!("no failed jobs{} in the ledger", if jobs.is_empty() { String::new() } else { format!(" named {}", jobs.join(", ")) });
        return ExitCode::SUCCESS;
    }
    let (summary, err) = rt.block_on(async {
        let cancel = CancellationToken::new();
        let observer = LedgerObserver::new(&state, "retry", policy);
        let refs = entries.iter().map(|e| JobRef { name: e.job.clone(), arn: Some(e.arn.clone()), last_modified: None, origin: None, job: None }).collect();
        let reports = pipeline.process_many(refs, &cancel, &observer).await;
        (RunSummary::from_reports(reports, pipeline.source().api_calls()), observer.take_error())
    });
    finish(&summary, err, json)
}
