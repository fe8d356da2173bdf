//! # sagesync-aws
//!
//! What every AWS SDK client of sagesync (the SageMaker source's SageMaker, S3 and CloudWatch
//! clients, the DynamoDB state store's) is built from, so that they behave alike:
//!
//! - [`shared_config`]: the standard credential and region chain (`AWS_*` variables, profiles,
//!   SSO, the container and instance roles), with sagesync's retry and timeout settings;
//! - [`is_retryable`]: which AWS error codes mean "try again later" (throttling, a service
//!   failing for a moment), across services, with a service's own codes beside them;
//! - [`sigv4`]: SigV4 signing of plain HTTP requests (SageMaker managed MLflow, the secret
//!   backends), with the standard credential chain;
//! - [`secrets`]: the `aws_secrets_manager` and `aws_ssm_parameter` secret backends.

use std::time::Duration;

pub mod secrets;
pub mod sigv4;

pub use aws_config::SdkConfig;

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

/// A role to assume (STS AssumeRole) over the base credentials: another account's SageMaker.
#[derive(Clone, PartialEq)]
pub struct AssumeRole {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The external id the role's trust policy asks for: sent to STS only, never logged, and
    /// left out of `Debug`.
    pub external_id: Option<String>,
    /// The role session's name (CloudTrail shows it).
    pub session_name: String,
    /// An STS endpoint (a VPC endpoint, an emulator); `AWS_ENDPOINT_URL_STS` works too.
    pub sts_endpoint_url: Option<String>,
}

impl std::fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumeRole")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<redacted>"))
            .field("session_name", &self.session_name)
            .field("sts_endpoint_url", &self.sts_endpoint_url)
            .finish()
    }
}

/// `base` with credentials from assuming `role`: AWS's `AssumeRoleProvider` (not the
/// profile-based one, which logs the external id), called by the config's identity cache when
/// credentials are first needed and again before they expire. Nothing is written anywhere; the
/// external id goes into the AssumeRole request only.
pub async fn assume_role(base: &aws_config::SdkConfig, role: &AssumeRole) -> aws_config::SdkConfig {
    let sts_conf = match &role.sts_endpoint_url {
        Some(url) => base.to_builder().endpoint_url(url).build(),
        None => base.clone(),
    };
    let mut b = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn).session_name(&role.session_name).configure(&sts_conf);
    if let Some(r) = base.region() {
        b = b.region(r.clone());
    }
    if let Some(x) = &role.external_id {
        b = b.external_id(x);
    }
    let provider = Redacted(b.build().await);
    base.to_builder().credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider)).build()
}

/// The assume-role provider with a `Debug` that shows nothing of its request: the SDK's runtime
/// logs its components' `Debug` at trace level, and the provider's holds the external id.
struct Redacted(aws_config::sts::AssumeRoleProvider);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssumeRoleProvider(<redacted>)")
    }
}

impl aws_credential_types::provider::ProvideCredentials for Redacted {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.provide_credentials()
    }
}

/// Why STS GetCallerIdentity failed.
#[derive(Debug, Clone)]
pub struct CallerError {
    /// The AWS error code, when STS answered one.
    pub code: Option<String>,
    /// The HTTP status, when STS answered.
    pub status: Option<u16>,
    /// What happened.
    pub message: String,
}

impl CallerError {
    /// Whether trying again later may help: no answer (a timeout, a connection), throttling, 5xx.
    pub fn is_retryable(&self) -> bool {
        match (&self.code, self.status) {
            (_, None) => true,
            (code, Some(status)) => is_retryable(code.as_deref().unwrap_or(""), status),
        }
    }
}

/// The account id of `conf`'s credentials (STS GetCallerIdentity).
pub async fn caller_account(conf: &aws_config::SdkConfig) -> Result<String, CallerError> {
    use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
    match aws_sdk_sts::Client::new(conf).get_caller_identity().send().await {
        Ok(out) => out.account().map(str::to_string).ok_or_else(|| CallerError {
            code: None,
            status: Some(200),
            message: "STS named no account".into(),
        }),
        Err(e) => {
            let status = match &e {
                SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
                SdkError::ResponseError(re) => Some(re.raw().status().as_u16()),
                _ => None,
            };
            Err(CallerError {
                code: e.code().map(str::to_string),
                status,
                message: aws_sdk_sts::error::DisplayErrorContext(&e).to_string(),
            })
        }
    }
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
