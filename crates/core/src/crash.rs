//! A test hook that stops the process at a named step of a job's way through the engine, so
//! that crash tests hit the dangerous moments every time instead of by chance.
//!
//! Set `SAGESYNC_CRASH_AT=<step>[:<n>]` and the process calls [`std::process::abort`] (no
//! destructors, no flushing, no cleanup: like `kill -9`) the `n`-th time (default 1) it reaches
//! `<step>`. The steps are the names of [`Step`]. The variable is read once; when it is unset
//! (or not understood, which is reported once on stderr) each check is one load of a
//! [`OnceLock`]. Not for production use: the hook is compiled only with the `crash-hook`
//! feature, which the runners enable for their tests and benches (a dev-dependency), never in
//! the binaries they ship; without it [`reached`] does nothing and the variable is ignored.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// The environment variable that arms the hook.
pub const VAR: &str = "SAGESYNC_CRASH_AT";

/// A point of a job's way through the engine where the hook may stop the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `after-lease`: the job's lease was granted; nothing written yet.
    AfterLease,
    /// `after-sink-write`: at least one sink was written; the ledger row is not committed.
    AfterSinkWrite,
    /// `after-commit`: the job's ledger row was committed; the page's cursor is not saved.
    AfterCommit,
    /// `after-cursor`: a page's cursor was saved.
    AfterCursor,
}

impl Step {
    /// Every step, in the order a job meets them.
    pub const ALL: [Step; 4] = [Step::AfterLease, Step::AfterSinkWrite, Step::AfterCommit, Step::AfterCursor];

    /// The step's name in [`VAR`].
    pub fn name(self) -> &'static str {
        match self {
            Step::AfterLease => "after-lease",
            Step::AfterSinkWrite => "after-sink-write",
            Step::AfterCommit => "after-commit",
            Step::AfterCursor => "after-cursor",
        }
    }

    /// The step named `name`, if any.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The armed step, the count at which to stop, and how often it was reached.
#[cfg_attr(not(feature = "crash-hook"), allow(dead_code))]
struct Armed {
    step: Step,
    at: u64,
    seen: AtomicU64,
}

/// Parses `<step>[:<n>]` (n ≥ 1).
#[cfg_attr(not(feature = "crash-hook"), allow(dead_code))]
fn parse(text: &str) -> Result<(Step, u64), String> {
    let (name, n) = match text.split_once(':') {
        Some((name, n)) => (name, n.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| format!("`{n}` is not a count of 1 or more"))?),
        None => (text, 1),
    };
    let step = Step::parse(name.trim())
        .ok_or_else(|| format!("unknown step `{name}` (one of: {})", Step::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")))?;
    Ok((step, n))
}

#[cfg_attr(not(feature = "crash-hook"), allow(dead_code))]
fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let text = std::env::var(VAR).ok().filter(|t| !t.trim().is_empty())?;
            match parse(text.trim()) {
                Ok((step, at)) => Some(Armed { step, at, seen: AtomicU64::new(0) }),
                Err(e) => {
                    eprintln!("{VAR}={text}: {e}; the crash hook stays off");
                    None
                }
            }
        })
        .as_ref()
}

/// Marks that the process reached `step`; aborts it when [`VAR`] names this step and this is
/// its `n`-th time.
pub fn reached(step: Step) {
    #[cfg(feature = "crash-hook")]
    if let Some(a) = armed() {
        if a.step == step && a.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == a.at {
            eprintln!("{VAR}: aborting at {} (time {})", step.name(), a.at);
            std::process::abort();
        }
    }
    #[cfg(not(feature = "crash-hook"))]
    let _ = step;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps_and_counts() {
        assert_eq!(parse("after-lease"), Ok((Step::AfterLease, 1)));
        assert_eq!(parse("after-sink-write:7"), Ok((Step::AfterSinkWrite, 7)));
        assert_eq!(parse("after-commit:1"), Ok((Step::AfterCommit, 1)));
        assert_eq!(parse("after-cursor:3"), Ok((Step::AfterCursor, 3)));
        assert!(parse("after-cursor:0").unwrap_err().contains("count"));
        assert!(parse("after-lunch").unwrap_err().contains("after-lease, after-sink-write, after-commit, after-cursor"));
        for s in Step::ALL {
            assert_eq!(Step::parse(s.name()), Some(s));
        }
    }
}
