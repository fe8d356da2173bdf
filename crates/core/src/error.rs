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
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Source => "source",
            Stage::Validate => "validate",
            Stage::Map => "map",
            Stage::Sink => "sink",
        })
    }
}

/// An error while syncing a job. Plugins build these with the constructors below; the pipeline
/// retries the retryable ones with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A transient failure: connection refused or reset, timeout, throttling, 5xx.
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A failure that will not go away by retrying (bad data, rejected request, missing job).
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The job does not exist in the source.
    #[error("job not found: {0}")]
    NotFound(String),
    /// The input document is malformed; `origin` says where (file:line:column, event id...).
    #[error("{origin}: {message}")]
    Malformed {
        /// Where the bad input was.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// The operation was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,
}

impl SyncError {
    /// A retryable error.
    pub fn transient(message: impl Into<String>) -> Self {
        SyncError::Transient { message: message.into(), source: None }
    }
    /// A retryable error with its cause.
    pub fn transient_with(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Transient { message: message.into(), source: Some(Box::new(source)) }
    }
    /// A non-retryable error.
    pub fn permanent(message: impl Into<String>) -> Self {
        SyncError::Permanent { message: message.into(), source: None }
    }
    /// A non-retryable error with its cause.
    pub fn permanent_with(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SyncError::Permanent { message: message.into(), source: Some(Box::new(source)) }
    }
    /// Whether retrying could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SyncError::Transient { .. })
    }
    /// The message with its chain of causes, `: `-separated.
    pub fn chain(&self) -> String {
        error_chain(self)
    }
}

/// Any error with its chain of causes, `: `-separated, skipping causes whose text the message
/// already contains.
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
    out
}
