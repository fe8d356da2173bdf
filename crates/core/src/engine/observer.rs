//! Hooks into a pass for progress displays and metrics: every event as it happens.

use crate::source::Cursor;
use crate::state::{JobState, StateError};

use super::report::{JobReport, ListingFailure, PassReport};

/// What a listed job needed, decided against the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Work on it.
    Process,
    /// The ledger has it in its current state, delivered to every sink: nothing to do.
    Done,
    /// Failed before; its retry time has not come.
    Later,
}

/// One event of a pass.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A pass started.
    PassStarted {
        /// Cursor key (empty for passes over given jobs).
        key: &'a str,
    },
    /// A listed job was decided.
    Decided(Decision),
    /// A job finished (with any outcome, interrupted included).
    Job(&'a JobReport),
    /// This engine wrote a job's ledger entry (the intent before a first write, or the outcome):
    /// what it replaced (as read under the job's lease) and what it holds now. Counting these
    /// keeps ledger gauges current without reading the ledger.
    Recorded {
        /// The entry before (`None`: the job was not in the ledger).
        before: Option<&'a JobState>,
        /// The entry now.
        after: &'a JobState,
    },
    /// Another writer held a job for longer than the lease wait.
    Busy {
        /// The job.
        arn: &'a str,
    },
    /// A page was fully recorded and its cursor saved.
    PageCommitted {
        /// Cursor key.
        key: &'a str,
        /// The saved cursor.
        cursor: &'a Cursor,
    },
    /// The listing failed after retries.
    ListingFailed {
        /// Cursor key.
        key: &'a str,
        /// What happened.
        failure: &'a ListingFailure,
    },
    /// The state store failed (after retries).
    StateFailed(&'a StateError),
    /// A pass finished.
    PassFinished(&'a PassReport),
}

/// Receives a pass's events. Called from the engine's tasks: keep it quick.
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&self, _: &Event<'_>) {}
}

impl<F: Fn(&Event<'_>) + Send + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event)
    }
}

/// Forwards every event to several observers.
pub struct Fanout<'a>(pub Vec<&'a dyn Observer>);

impl Observer for Fanout<'_> {
    fn event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.event(event);
        }
    }
}
