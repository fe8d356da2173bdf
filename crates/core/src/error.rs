//! Error types. Every error that can happen while syncing one job is a [`SyncError`], which says
//! whether retrying could help.

use std::fmt;

/// Which stage of the pipeline an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Listing or fetching from the source.
    Source,
    /// A validator.
    Validate,
    /// The mapper.
    Map,
    /// A sink write.
    Sink,
    /// The state store (ledger, leases).
    State,
}

impl Stage {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Validate => "validate",
            Stage::Map => "map",
            Stage::Sink => "sink",
            Stage::State => "state",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error while syncing a job. Plugins build these with the constructors below; the engine
/// retries the retryable ones with backoff.
///
/// The distinction matters beyond one attempt: a retryable error (the network, throttling, a
/// store that is down or misconfigured) never parks a job, whereas a permanent error is about
/// the job's own content (a record the store rejects, a malformed document) and parks the job
/// after `max_job_attempts`.
#[derive(thiserror::Error)]
pub enum SyncError {
    /// A transient failure: connection refused or reset, timeout, throttling, 5xx, a full disk.
    #[error("{}", crate::secret::redact(.message))]
    Transient {
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A failure caused by the job's content that will not go away by retrying.
    #[error("{}", crate::secret::redact(.message))]
    Permanent {
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store or sagesync's setup refuses the write, not the job's content: a TLS
    /// certificate that is not trusted, credentials refused, a deleted experiment, a ledger that
    /// refuses an entry. Retrying at once does not help (the engine does not repeat it within
    /// the pass), but it is never a verdict on the job either: the job is failed without counting
    /// toward `max_job_attempts`, and tried again after its backoff, so it resumes by itself once
    /// the setup is fixed.
    #[error("{}", crate::secret::redact(.message))]
    Setup {
        /// What happened, and what to fix.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The job does not exist in the source.
    #[error("job not found: {}", crate::secret::redact(.0))]
    NotFound(String),
    /// The input document is malformed; `origin` says where (file:line:column, event id...).
    #[error("{}: {}", crate::secret::redact(.origin), crate::secret::redact(.message))]
    Malformed {
        /// Where the bad input was.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The operation was cancelled before it finished (shutdown, deadline, lost lease). Never a
    /// verdict on the job.
    #[error("cancelled")]
    Cancelled,
}

impl fmt::Debug for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            SyncError::Transient { .. } => "Transient",
            SyncError::Permanent { .. } => "Permanent",
            SyncError::Setup { .. } => "Setup",
            SyncError::NotFound(_) => "NotFound",
            SyncError::Malformed { .. } => "Malformed",
            SyncError::Cancelled => "Cancelled",
        };
        write!(f, "SyncError::{kind}({:?})", self.chain())
    }
}

impl SyncError {
    /// A retryable error.
    pub fn transient(message: impl Into<String>) -> Self {
        SyncError::Transient { message: message.into(), source: None }
    }
    /// A retryable error with its cause. The cause is kept as its redacted text (and its
    /// causes'), so walking [`std::error::Error::source`] cannot show a credential either.
    pub fn transient_with(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Transient { message: message.into(), source: Some(Box::new(RedactedCause::of(&source))) }
    }
    /// A non-retryable error.
    pub fn permanent(message: impl Into<String>) -> Self {
        SyncError::Permanent { message: message.into(), source: None }
    }
    /// A non-retryable error with its cause (kept redacted, as in [`SyncError::transient_with`]).
    pub fn permanent_with(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Permanent { message: message.into(), source: Some(Box::new(RedactedCause::of(&source))) }
    }
    /// A failure of the store or the setup, not of the job (see [`SyncError::Setup`]).
    pub fn setup(message: impl Into<String>) -> Self {
        SyncError::Setup { message: message.into(), source: None }
    }
    /// A failure of the store or the setup with its cause (kept redacted).
    pub fn setup_with(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Setup { message: message.into(), source: Some(Box::new(RedactedCause::of(&source))) }
    }
    /// Whether retrying at once could succeed (the engine retries these within a pass).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Transient { .. })
    }
    /// Whether the failure is about the job's own content (a record the store rejects, a
    /// malformed document, a job that does not exist): only these count toward
    /// `max_job_attempts` and park a job. Transient and setup failures never do.
    pub fn is_about_the_job(&self) -> bool {
        matches!(self, SyncError::Permanent { .. } | SyncError::NotFound(_) | SyncError::Malformed { .. })
    }
    /// Whether this is a cancellation (not a failure of the job).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, SyncError::Cancelled)
    }
    /// The message with its chain of causes, `: `-separated, credentials in URLs redacted.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

/// A cause of a [`SyncError`], kept as text with credentials in URLs redacted, and its own
/// causes likewise.
#[derive(Debug)]
pub struct RedactedCause {
    text: String,
    source: Option<Box<RedactedCause>>,
}

impl RedactedCause {
    /// The redacted copy of `e` and of its chain of causes (at most 32 deep).
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut texts = vec![crate::secret::redact(&e.to_string()).into_owned()];
        let mut cur = e.source();
        while let Some(c) = cur {
            if texts.len() >= 32 {
                break;
            }
            texts.push(crate::secret::redact(&c.to_string()).into_owned());
            cur = c.source();
        }
        let mut out: Option<Box<RedactedCause>> = None;
        while let Some(text) = texts.pop() {
            out = Some(Box::new(RedactedCause { text, source: out }));
        }
        out.map(|b| *b).unwrap_or(RedactedCause { text: String::new(), source: None })
    }
}

impl fmt::Display for RedactedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for RedactedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Any error with its chain of causes, `: `-separated, skipping causes whose text the message
/// already contains. Credentials in URLs are redacted ([`crate::secret::redact`]).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    crate::secret::redact(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_debug_never_carry_url_credentials() {
        let inner = std::io::Error::other("connect to http://bob:pw@db:5432 refused");
        let e = SyncError::transient_with("write to http://bob:pw@db:5432/x failed", inner);
        assert!(!e.chain().contains("pw"), "{}", e.chain());
        assert!(!format!("{e:?}").contains("pw"));
        assert!(e.is_retryable());
    }
}
