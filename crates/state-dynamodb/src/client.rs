//! The DynamoDB client: its settings (the shared AWS SDK config of `sagesync-aws`, with this
//! store's retries and timeouts) and how its errors become [`StateError`]s.

use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::Client;
use sagesync_core::StateError;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// The table.
    pub table: String,
    /// Region (else the standard chain).
    pub region: Option<String>,
    /// Endpoint override (`AWS_ENDPOINT_URL_DYNAMODB` also works).
    pub endpoint_url: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Create the table (on-demand, TTL on [`TTL_ATTRIBUTE`](crate::TTL_ATTRIBUTE)) when it does not exist.
    pub create_table: bool,
    /// Attempts per request, first included (SDK retries, standard mode).
    pub max_attempts: u32,
    /// First SDK retry backoff.
    pub initial_backoff: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of a request.
    pub request_timeout: Duration,
    /// Pages a counting scan reads per second (`sagesync status`, a daemon's opted-in recount).
    pub scan_pages_per_second: f64,
}

impl DynamoSettings {
    /// Settings for `table` with the defaults of `[state] type = "dynamodb"`.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoSettings {
            table: table.into(),
            region: None,
            endpoint_url: None,
            profile: None,
            create_table: false,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            scan_pages_per_second: 4.0,
        }
    }

    pub(crate) async fn client(&self) -> Client {
        let shared = sagesync_aws::shared_config(&sagesync_aws::SdkOptions {
            region: self.region.clone(),
            profile: self.profile.clone(),
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: Duration::from_secs(5),
            adaptive: false,
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.request_timeout,
        })
        .await;
        let mut b = aws_sdk_dynamodb::config::Builder::from(&shared);
        if let Some(e) = &self.endpoint_url {
            b = b.endpoint_url(e);
        }
        Client::from_conf(b.build())
    }
}

/// A failed request as a [`StateError`] at `loc`: throttling, 5xx, timeouts and connection
/// failures are retryable; a missing table makes the store unusable (with what to do).
pub(crate) fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    loc: String,
    table: &str,
    op: &str,
    e: SdkError<E, HttpResponse>,
) -> StateError {
    let (retryable, message) = match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("unknown error");
            let status = se.raw().status().as_u16();
            let retryable = sagesync_aws::is_retryable_with(code, status, &sagesync_aws::DYNAMODB_RETRYABLE_CODES);
            (retryable, format!("{op}: {code} (HTTP {status}): {}", se.err().message().unwrap_or("no message")))
        }
        SdkError::ConstructionFailure(_) => (false, format!("{op}: {}", DisplayErrorContext(&e))),
        // Timeouts, connection failures, unreadable responses.
        _ => (true, format!("{op}: {}", DisplayErrorContext(&e))),
    };
    if retryable {
        tracing::debug!(table = %table, %message, "retryable DynamoDB failure");
    }
    if matches!(&e, SdkError::ServiceError(se) if se.err().code() == Some("ResourceNotFoundException")) {
        return StateError::Unusable {
            location: loc,
            message: format!("{message}. Create the table (docs/state.md) or set [state] create_table = true"),
        };
    }
    StateError::Backend { location: loc, message, retryable }
}

/// Whether a failed request is a conditional check failure (the lease is not ours).
pub(crate) fn conditional_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}
