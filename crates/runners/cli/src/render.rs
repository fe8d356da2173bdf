//! Rendering reports for people (text) and programs (JSON), and progress while a pass runs.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use sagesync_core::{registry, Event, Observer, Outcome, PassReport, PluginKind, StatusReport, WriteKind};

fn write_name(w: WriteKind) -> &'static str {
    match w {
        WriteKind::Created => "created",
        WriteKind::Updated => "updated",
        WriteKind::Unchanged => "unchanged",
        WriteKind::Removed => "removed",
    }
}

/// One line per job, then the counts.
pub fn text(r: &PassReport) -> String {
    let width = r.jobs.iter().map(|j| j.job.chars().count()).max().unwrap_or(0).min(60);
    let mut out = String::new();
    for j in &r.jobs {
        let receipts: Vec<String> = j.receipts.iter().map(|rc| format!("{}: {}", rc.sink, write_name(rc.write))).collect();
        let detail = match (&j.reason, receipts.is_empty()) {
            (Some(reason), true) => reason.clone(),
            (Some(reason), false) => format!("{} — {}", receipts.join(", "), reason),
            (None, false) => receipts.join(", "),
            (None, true) if j.outcome == Outcome::Synced => "unchanged".into(),
            (None, true) => String::new(),
        };
        out.push_str(&format!("{:<8}  {:<width$}  {}\n", j.outcome.as_str(), j.job, detail, width = width));
    }
    let total = r.total();
    out.push_str(&format!(
        "{} job{}: {} synced, {} skipped, {} rejected, {} failed",
        total,
        if total == 1 { "" } else { "s" },
        r.synced,
        r.skipped,
        r.rejected,
        r.failed
    ));
    if r.interrupted > 0 {
        out.push_str(&format!(", {} interrupted", r.interrupted));
    }
    if r.already_done > 0 || r.deferred > 0 || r.busy > 0 {
        out.push_str(&format!("\n{} already in the ledger, {} deferred, {} held by another writer", r.already_done, r.deferred, r.busy));
    }
    if r.jobs_omitted > 0 {
        out.push_str(&format!("\n({} more job reports not listed; every job is counted above)", r.jobs_omitted));
    }
    if !r.api_calls.is_empty() {
        let calls: Vec<String> = r.api_calls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("\nAPI calls: {}", calls.join(", ")));
    }
    if let Some(l) = &r.listing_error {
        out.push_str(&format!("\nlisting failed after {} attempt(s): {} (run again to resume)", l.attempts, l.message));
    }
    if let Some(s) = &r.state_error {
        out.push_str(&format!("\nstate store failed: {s}"));
    }
    if r.cancelled {
        out.push_str("\n(cancelled before the listing ended)");
    }
    out.push('\n');
    out
}

/// Prints a pass report.
pub fn report(r: &PassReport, json: bool) {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot print the report: {e}"),
        }
    } else {
        print!("{}", text(r));
    }
}

/// Prints `sagesync status`.
pub fn status(s: &StatusReport, json: bool) {
    let interrupted = |e: &sagesync_core::JobState| e.class() == sagesync_core::CountClass::Interrupted;
    if json {
        let v = serde_json::json!({
            "state": s.location,
            "counts": s.counts,
            "total": s.counts.total(),
            "failed_jobs": s.failed.iter().map(|e| serde_json::json!({"job": e.job, "arn": e.arn, "attempts": e.attempts, "permanent_failures": e.permanent_failures, "parked": e.parked, "interrupted": interrupted(e), "error": e.reason, "next_attempt_at": e.next_attempt_at})).collect::<Vec<_>>(),
            "cursors": s.cursors.iter().map(|(k, c)| serde_json::json!({"key": k, "watermark": c.watermark, "in_progress": c.token.is_some() || !c.seen_at_watermark.is_empty(),
                // Each account and region's own cursor (`<account>/<region>`), when the source reads several.
                "pairs": c.parts.iter().filter(|(p, _)| p.contains('/')).map(|(p, pc)| serde_json::json!({"pair": p, "watermark": pc.watermark})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let c = &s.counts;
    print!(
        "{}: {} jobs — {} synced, {} skipped, {} rejected, {} failed ({} parked)",
        s.location,
        c.total(),
        c.synced,
        c.skipped,
        c.rejected,
        c.failed,
        c.parked
    );
    if c.interrupted > 0 {
        print!(", {} interrupted (first write cut short; picked up again)", c.interrupted);
    }
    println!();
    // Per account and region, when the ledger holds more than one.
    if c.by_account_region.len() > 1 {
        for (pair, n) in &c.by_account_region {
            println!(
                "  {pair}: {} jobs — {} synced, {} skipped, {} rejected, {} failed ({} parked)",
                n.total(),
                n.synced,
                n.skipped,
                n.rejected,
                n.failed,
                n.parked
            );
        }
    }
    for (k, cur) in &s.cursors {
        println!("cursor {k}: {}", cur.watermark.map(|w| w.to_rfc3339()).unwrap_or_else(|| "(start)".into()));
        for (pair, pc) in cur.parts.iter().filter(|(p, _)| p.contains('/')) {
            println!("  {pair}: {}", pc.watermark.map(|w| w.to_rfc3339()).unwrap_or_else(|| "(start)".into()));
        }
    }
    for e in &s.failed {
        if interrupted(e) {
            println!("interrupted  {}: {}", e.job, e.reason.as_deref().unwrap_or(""));
            continue;
        }
        println!(
            "failed  {} (attempts {}, {} on its content{}): {}",
            e.job,
            e.attempts,
            e.permanent_failures,
            if e.parked { ", parked" } else { "" },
            e.reason.as_deref().unwrap_or("")
        );
    }
}

/// Prints `sagesync plugins`.
pub fn plugins(json: bool) -> ExitCode {
    let all = registry::all();
    let secrets = sagesync_core::secrets::backends();
    if json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|d| serde_json::json!({"kind": d.kind().as_str(), "type": d.type_name, "summary": d.summary}))
            .chain(secrets.iter().map(|b| serde_json::json!({"kind": "secret", "type": b.type_name, "summary": b.description})))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return ExitCode::SUCCESS;
    }
    for kind in PluginKind::ALL {
        println!("{kind}s:");
        for d in all.iter().filter(|d| d.kind() == kind) {
            println!("  {:<16} {}", d.type_name, d.summary);
        }
    }
    println!("secrets ([secret.<name>] tables):");
    for b in &secrets {
        println!("  {:<20} {}", b.type_name, b.description);
    }
    ExitCode::SUCCESS
}

/// Progress on a terminal (indicatif), plain lines on stderr otherwise (text format only).
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    counts: Arc<Mutex<[u64; 5]>>,
}

impl Progress {
    /// A progress display; `lines` prints one stderr line per job when not on a terminal.
    pub fn new(lines: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar, lines: lines && !std::io::stderr().is_terminal(), counts: Arc::new(Mutex::new([0; 5])) }
    }
    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&self, e: &Event<'_>) {
        let Event::Job(r) = e else { return };
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let i = match r.outcome {
            Outcome::Synced => 0,
            Outcome::Skipped => 1,
            Outcome::Rejected => 2,
            Outcome::Failed => 3,
            Outcome::Interrupted => 4,
        };
        c[i] += 1;
        match &self.bar {
            Some(b) => b.set_message(format!("{} synced, {} skipped, {} rejected, {} failed — {}", c[0], c[1], c[2], c[3], r.job)),
            None if self.lines => {
                eprintln!("{:<8} {}{}", r.outcome.as_str(), r.job, r.reason.as_deref().map(|x| format!(" ({x})")).unwrap_or_default())
            }
            None => {}
        }
    }
}
