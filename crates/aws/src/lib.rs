//! # sagesync-aws
//!
//! What every AWS SDK client of sagesync (the SageMaker source's SageMaker, S3 and CloudWatch
//! clients, the DynamoDB state store's) is built from, so that they behave alike:
//!
//! - [`shared_config`]: the standard credential and region chain (`AWS_*` variables, profiles,
//!   SSO, the container and instance roles), with sagesync's retry and timeout settings;
//! - [`is_retryable`]: which AWS error codes mean "try again later" (throttling, a service
//!   failing for a moment), across services, with a service's own codes beside them.

use std::time::Duration;

/// How a client retries and times out.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkOptions {
    /// Region (else the standard chain: `AWS_REGION`, the profile...).
    pub region: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// Attempts per call, first included (the SDK's retries).
    pub max_attempts: u32,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Cap on a retry backoff.
    pub max_backoff: Duration,
    /// Adaptive retries (a client-side rate limiter that slows down after throttling) instead
    /// of standard ones.
    pub adaptive: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of a call.
    pub attempt_timeout: Duration,
}

/// The shared SDK config for `o`: every call's whole time is bounded too (each attempt's
/// timeout plus a backoff, per attempt).
pub async fn shared_config(o: &SdkOptions) -> aws_config::SdkConfig {
    use aws_config::retry::RetryConfig;
    let attempts = o.max_attempts.max(1);
    let retry = if o.adaptive { RetryConfig::adaptive() } else { RetryConfig::standard() }
        .with_max_attempts(attempts)
        .with_initial_backoff(o.initial_backoff)
        .with_max_backoff(o.max_backoff);
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(o.connect_timeout.max(Duration::from_millis(100)))
        .operation_attempt_timeout(o.attempt_timeout.max(Duration::from_millis(100)))
        .operation_timeout((o.attempt_timeout + o.max_backoff).saturating_mul(attempts))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).retry_config(retry).timeout_config(timeouts);
    if let Some(r) = &o.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &o.profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// The AWS error codes that mean "try again later" for any service: throttling (S3's
/// `SlowDown` included) and a service failing for a moment.
pub const RETRYABLE_CODES: [&str; 9] = [
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalFailure",
    "SlowDown",
];

/// DynamoDB's own "try again later" codes, beside [`RETRYABLE_CODES`]: a hot partition, a
/// transaction conflict, its control-plane limit, a request that timed out on its side.
pub const DYNAMODB_RETRYABLE_CODES: [&str; 5] = [
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "TransactionConflictException",
    "LimitExceededException",
    "RequestTimeout",
];

/// Whether an AWS error (its code and HTTP status) is worth retrying: a code of
/// [`RETRYABLE_CODES`], or a 5xx.
pub fn is_retryable(code: &str, status: u16) -> bool {
    is_retryable_with(code, status, &[])
}

/// [`is_retryable`], with a service's own codes (`extra`) too.
pub fn is_retryable_with(code: &str, status: u16, extra: &[&str]) -> bool {
    RETRYABLE_CODES.contains(&code) || extra.contains(&code) || status >= 500
}

#[cfg(test)]
mod tests {
    #[test]
    fn throttling_and_5xx_are_retryable_validation_is_not() {
        assert!(super::is_retryable_with("ProvisionedThroughputExceededException", 400, &super::DYNAMODB_RETRYABLE_CODES));
        assert!(!super::is_retryable("ProvisionedThroughputExceededException", 400), "not SageMaker's");
        assert!(super::is_retryable("ThrottlingException", 400));
        assert!(super::is_retryable("Whatever", 503));
        assert!(!super::is_retryable("ValidationException", 400));
        assert!(!super::is_retryable("ResourceLimitExceeded", 400));
    }
}
