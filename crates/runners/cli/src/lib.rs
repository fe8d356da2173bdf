//! `sagesync`: the command-line runner, as a library so that a custom binary is its own `main`
//! plus `use my_plugin as _;` (see `docs/writing-a-plugin.md`). It parses arguments, calls the
//! engine and renders the result; nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sagesync_core::config::{parse_time, SecretMode};
use sagesync_core::{registry, CancellationToken, Engine, EngineOptions, JobRef, PassRequest, RefOptions};

mod render;

// Link the plugins (an unreferenced crate's `inventory` registrations vanish): the standard
// set with the `standard-plugins` feature (on by default), and every runner's config sections,
// so that one config file serves every runner.
#[cfg(feature = "standard-plugins")]
use sagesync_plugins as _;
use sagesync_runner_settings as _;

#[derive(Parser)]
#[command(name = "sagesync", version, about = "Keep ML metadata stores in sync with SageMaker training jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output format.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// One line per job, then the counts.
    Text,
    /// The pass report as JSON.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sync every job the source lists (a poll; the ledger is `[state]`, else in memory).
    Run {
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Validate and map, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Fetch one job by name (or ARN) and write it to every sink.
    SyncJob {
        /// Training job name or ARN.
        #[arg(value_name = "NAME")]
        name: String,
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Validate and map, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Re-decide every job modified in a time range (Search, tags in bulk), resumable.
    Backfill {
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Jobs modified at or after (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: String,
        /// Jobs modified before.
        #[arg(long)]
        until: Option<String>,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Summarise the ledger: counts by outcome, cursors, failed jobs with their errors.
    Status {
        /// Pipeline config (TOML); reads its `[state]`.
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Re-drive failed jobs (all, or the named ones) and record the outcome in the ledger.
    Retry {
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Job names or ARNs (default: every failed job).
        jobs: Vec<String>,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Check a config file: every error at once, with file, line, column and key.
    Validate {
        /// Pipeline config (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Also read every secret the config refers to (`SECRET[...]`), online, and report
        /// each that cannot be read (their values are never shown). Without it, nothing is read.
        #[arg(long)]
        resolve_secrets: bool,
    },
    /// List the registered plugins.
    Plugins {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print an example config table for a plugin type.
    Example {
        /// Plugin type name (see `sagesync plugins`).
        #[arg(value_name = "TYPE")]
        type_name: String,
    },
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Registered plugin type names, `(kind, type)` (for the linking test).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    registry::registered()
}

/// The `sagesync` command: parses the process arguments and runs.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(errors) = registry::check_unique() {
        for e in errors {
            eprintln!("error: {e}");
        }
        return ExitCode::from(EXIT_USAGE);
    }
    match cli.command {
        Command::Plugins { format } => render::plugins(format == Format::Json),
        Command::Example { type_name } => example(&type_name),
        Command::Validate { config, resolve_secrets } => validate(&config, resolve_secrets),
        Command::Run { config, dry_run, format } => {
            with_engine(&config, EngineOptions::memory().dry_run(dry_run), format, false, |e, cancel, progress| async move {
                Ok(e.pass(&PassRequest::poll().collecting(), &cancel, &progress).await)
            })
        }
        Command::SyncJob { name, config, dry_run, format } => {
            with_engine(&config, EngineOptions::memory().dry_run(dry_run), format, false, |e, cancel, progress| async move {
                let opts = RefOptions { force: true, urgent: true, collect: true, ..Default::default() };
                Ok(e.sync_refs(vec![JobRef::by_name(name)], &opts, &cancel, &progress).await)
            })
        }
        Command::Backfill { config, since, until, format } => {
            let range = parse_time(&since).and_then(|s| until.as_deref().map(parse_time).transpose().map(|u| (s, u)));
            let (since, until) = match range {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            if until.is_some_and(|u| u <= since) {
                eprintln!("error: --until must be after --since");
                return ExitCode::from(EXIT_USAGE);
            }
            with_engine(&config, EngineOptions::sqlite(), format, true, move |e, cancel, progress| async move {
                Ok(e.pass(&PassRequest::backfill(since, until), &cancel, &progress).await)
            })
        }
        Command::Retry { config, jobs, format } => {
            with_engine(&config, EngineOptions::sqlite(), format, true, |e, cancel, progress| async move {
                let r = e.retry(&jobs, &cancel, &progress).await?;
                if r.pages == 0 {
                    eprintln!(
                        "no failed jobs{} in the ledger",
                        if jobs.is_empty() { String::new() } else { format!(" named {}", jobs.join(", ")) }
                    );
                }
                Ok(r)
            })
        }
        Command::Status { config, format } => status(&config, format),
    }
}

fn example(type_name: &str) -> ExitCode {
    let found = registry::find_any(type_name);
    if let Some(b) = sagesync_core::secrets::backend(type_name).filter(|_| found.is_empty()) {
        print!("{}", b.example_toml);
        return ExitCode::SUCCESS;
    }
    if found.is_empty() {
        let names: Vec<&str> = registry::all().iter().map(|d| d.type_name).collect();
        eprintln!("error: unknown plugin type `{type_name}`; available: {}", names.join(", "));
        return ExitCode::from(EXIT_USAGE);
    }
    for d in found {
        print!("{}", d.example_toml);
    }
    ExitCode::SUCCESS
}

fn validate(config: &Path, resolve_secrets: bool) -> ExitCode {
    let loaded = if resolve_secrets {
        Engine::load(config, &EngineOptions::memory()).map(|(engine, cfg)| (engine.sink_ids(), cfg))
    } else {
        // Offline: nothing is read, and a value that refers to a secret holds a stand-in that a
        // plugin's check must not be judged on; every component is checked without building
        // the engine.
        sagesync_core::Config::from_file(config).and_then(|mut cfg| {
            cfg.resolve_secrets(SecretMode::Offline)?;
            cfg.check()?;
            Ok((cfg.sinks.iter().map(|s| s.id.clone()).collect(), cfg))
        })
    };
    match loaded {
        Ok((sink_ids, cfg)) => {
            for r in cfg.short_secrets() {
                eprintln!("warning: {r} is shorter than 4 characters: it cannot be hidden from messages");
            }
            let refs = cfg.secret_references();
            if !refs.is_empty() {
                let names: Vec<String> = refs.iter().map(|(n, at)| format!("`{n}` ({} value(s))", at.len())).collect();
                println!(
                    "secrets {}: {}",
                    if resolve_secrets { "read" } else { "referenced (not read; --resolve-secrets reads them)" },
                    names.join(", ")
                );
            }
            println!(
                "{}: OK (source `{}`, {} validator(s), sinks: {}, state: {})",
                config.display(),
                cfg.source.as_ref().map(|s| s.type_name.as_str()).unwrap_or("?"),
                cfg.validators.len(),
                sink_ids.join(", "),
                cfg.state.as_ref().map(|s| s.type_name.as_str()).unwrap_or("(runner default)")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

/// Loads the engine, runs `f` with Ctrl-C wired to cancellation and a progress display, prints
/// the report. Exit code 0, or 1 when anything failed, 2 for a config error.
fn with_engine<F, Fut>(config: &Path, opts: EngineOptions, format: Format, lines: bool, f: F) -> ExitCode
where
    F: FnOnce(std::sync::Arc<Engine>, CancellationToken, render::Progress) -> Fut,
    Fut: std::future::Future<Output = Result<sagesync_core::PassReport, sagesync_core::StateError>>,
{
    let engine = match Engine::load(config, &opts) {
        Ok((e, _)) => std::sync::Arc::new(e),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    let result = rt.block_on(async {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            // SIGINT (a terminal) and SIGTERM (systemd, Kubernetes, `kill`) alike: stop
            // cleanly, record nothing against the jobs in flight.
            #[cfg(unix)]
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut t) => t.recv().await,
                    Err(_) => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<Option<()>>();
            let got = tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                _ = term => true,
            };
            if got {
                eprintln!("interrupted: finishing writes in flight, starting nothing new (run again to resume)");
                c.cancel();
            }
        });
        let progress = render::Progress::new(lines && format == Format::Text);
        let r = f(engine.clone(), cancel, progress.clone()).await;
        progress.finish();
        r
    });
    match result {
        Ok(report) => {
            render::report(&report, format == Format::Json);
            if report.has_failures() {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_retryable() { EXIT_FAILED } else { EXIT_USAGE })
        }
    }
}

fn status(config: &Path, format: Format) -> ExitCode {
    let engine = match Engine::load(config, &EngineOptions::sqlite()) {
        Ok((e, _)) => e,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    match rt.block_on(engine.status(200)) {
        Ok(s) => {
            render::status(&s, format == Format::Json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            // A busy or throttled ledger is worth another try; an unusable one is a setup error.
            ExitCode::from(if e.is_retryable() { EXIT_FAILED } else { EXIT_USAGE })
        }
    }
}
