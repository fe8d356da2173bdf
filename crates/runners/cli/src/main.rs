//! `sagesync`: the command-line runner. Thin by design: it parses arguments, loads the config,
//! runs the pipeline and prints the summary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sagesync_core::{registry, CancellationToken, Cursor};

// Link every plugin crate: an unreferenced crate's `inventory` registrations vanish.
use sagesync_sink_file as _;
use sagesync_sink_modeldb as _;
use sagesync_source_sagemaker as _;

#[derive(Parser)]
#[command(name = "sagesync", version, about = "Keep ML metadata stores in sync with SageMaker training jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sync every job the source lists.
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
    /// Fetch one job by name (or ARN) from the configured source and sync it.
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
    /// Sync every job modified since DATE (Search mode), resumable through the ledger.
    Backfill {
        /// Pipeline config (TOML); its `[source]` must be `type = "sagemaker"`.
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
    /// Summarise the ledger: counts by outcome, failed jobs with their errors.
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

mod ledger;

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    if let Err(errors) = registry::check_unique() {
        for e in errors {
            eprintln!("error: {e}");
        }
        return ExitCode::from(EXIT_USAGE);
    }
    match cli.command {
        Command::Plugins { format } => plugins(format),
        Command::Example { type_name } => example(&type_name),
        Command::Validate { config } => validate(&config),
        Command::Run { config, dry_run, format } => run(&config, dry_run, format, None),
        Command::SyncJob { name, config, dry_run, format } => run(&config, dry_run, format, Some(name)),
        Command::Backfill { config, since, until, format } => ledger::backfill(&config, &since, until.as_deref(), format == Format::Json),
        Command::Status { config, format } => ledger::status(&config, format == Format::Json),
        Command::Retry { config, jobs, format } => ledger::retry(&config, &jobs, format == Format::Json),
    }
}

fn plugins(format: Format) -> ExitCode {
    let all = registry::all();
    if format == Format::Json {
        let v: Vec<serde_json::Value> = all.iter().map(|d| serde_json::json!({"kind": d.kind.as_str(), "type": d.type_name, "summary": d.summary})).collect();
        println!("{}", serde_json::Value::Array(v));
        return ExitCode::SUCCESS;
    }
    for kind in registry::PluginKind::ALL {
        println!("{}s:", kind);
        for d in all.iter().filter(|d| d.kind == kind) {
            println!("  {:<16} {}", d.type_name, d.summary);
        }
    }
    ExitCode::SUCCESS
}

fn example(type_name: &str) -> ExitCode {
    let found = registry::find_any(type_name);
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

fn validate(config: &std::path::Path) -> ExitCode {
    match sagesync_core::load_pipeline(config) {
        Ok((pipeline, cfg)) => {
            println!(
                "{}: OK (source `{}`, {} validator(s), sinks: {})",
                config.display(),
                cfg.source.as_ref().map(|s| s.type_name.as_str()).unwrap_or("?"),
                cfg.validators.len(),
                pipeline.sink_ids().join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(config: &std::path::Path, dry_run: bool, format: Format, job: Option<String>) -> ExitCode {
    let (mut pipeline, _cfg) = match sagesync_core::load_pipeline(config) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if dry_run {
        pipeline.settings_mut().dry_run = true;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let summary = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing jobs in flight, starting no new ones");
                c.cancel();
            }
        });
        match job {
            Some(name) => {
                let report = pipeline.process(sagesync_core::JobRef::by_name(name), &cancel).await;
                sagesync_core::RunSummary::from_reports([report], pipeline.source().api_calls())
            }
            None => pipeline.run(Cursor::default(), &cancel).await,
        }
    });
    match format {
        Format::Json => match serde_json::to_string_pretty(&summary) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot print the summary: {e}"),
        },
        Format::Text => print!("{}", summary.render_text()),
    }
    if summary.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
