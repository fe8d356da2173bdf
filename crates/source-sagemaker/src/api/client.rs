//! The SDK clients, built lazily from the standard `aws-config` chain, plus a client-side rate
//! limit, per-operation call counts and the mapping of SDK errors to [`SyncError`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sagemaker::config::http::HttpResponse;
use aws_sdk_sagemaker::error::{ProvideErrorMetadata, SdkError};
use sagesync_core::SyncError;

/// How the SDK retries throttled and failed calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// Exponential backoff with full jitter.
    #[default]
    Standard,
    /// Standard plus a client-side rate limiter that slows down after throttling (backfills).
    Adaptive,
}

/// Connection settings shared by the SageMaker and S3 clients.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// Region (else the standard chain: `AWS_REGION`, profile...).
    pub region: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// SageMaker endpoint override (`AWS_ENDPOINT_URL_SAGEMAKER` also works).
    pub endpoint_url: Option<String>,
    /// S3 endpoint override, for dataset manifests (path-style addressing when set).
    pub s3_endpoint_url: Option<String>,
    /// CloudWatch endpoint override, for metric histories.
    pub cloudwatch_endpoint_url: Option<String>,
    /// SageMaker metrics service endpoint override, for metric histories
    /// (`AWS_ENDPOINT_URL_SAGEMAKER_METRICS` also works).
    pub metrics_endpoint_url: Option<String>,
    /// Attempts per call, first included.
    pub max_attempts: u32,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Retry mode.
    pub retry_mode: RetryMode,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of a call.
    pub attempt_timeout: Duration,
    /// A role to assume over the base credentials (another account's pair).
    pub assume: Option<sagesync_aws::AssumeRole>,
    /// STS endpoint override (GetCallerIdentity, AssumeRole).
    pub sts_endpoint_url: Option<String>,
}

/// Built clients.
pub struct Clients {
    /// SageMaker.
    pub sagemaker: aws_sdk_sagemaker::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// CloudWatch (metric histories).
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// SageMaker's metrics service (metric histories by iteration number).
    pub metrics: aws_sdk_sagemakermetrics::Client,
    /// The shared config they were built from (credentials, region).
    pub shared: sagesync_aws::SdkConfig,
}

impl ClientSettings {
    /// Loads the shared config and builds the clients.
    pub async fn build(&self) -> Clients {
        let shared = sagesync_aws::shared_config(&sagesync_aws::SdkOptions {
            region: self.region.clone(),
            profile: self.profile.clone(),
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: Duration::from_secs(20),
            adaptive: self.retry_mode == RetryMode::Adaptive,
            connect_timeout: self.connect_timeout,
            attempt_timeout: self.attempt_timeout,
        })
        .await;
        let shared = match &self.assume {
            Some(role) => sagesync_aws::assume_role(&shared, role).await,
            None => shared,
        };
        let mut sm = aws_sdk_sagemaker::config::Builder::from(&shared);
        if let Some(e) = &self.endpoint_url {
            sm = sm.endpoint_url(e);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(e) = &self.s3_endpoint_url {
            s3 = s3.endpoint_url(e).force_path_style(true);
        }
        let mut cw = aws_sdk_cloudwatch::config::Builder::from(&shared);
        if let Some(e) = &self.cloudwatch_endpoint_url {
            cw = cw.endpoint_url(e);
        }
        let mut mx = aws_sdk_sagemakermetrics::config::Builder::from(&shared);
        if let Some(e) = &self.metrics_endpoint_url {
            mx = mx.endpoint_url(e);
        }
        Clients {
            metrics: aws_sdk_sagemakermetrics::Client::from_conf(mx.build()),
            sagemaker: aws_sdk_sagemaker::Client::from_conf(sm.build()),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cw.build()),
            shared,
        }
    }
}

/// One client-side budget per operation (a token bucket from `governor`, burst 1), so that a
/// slow operation's budget never holds another back: ListTrainingJobs' 2 TPS is its own, and
/// Describe, ListTags, Search and ListObjectsV2 have theirs.
#[derive(Debug, Default)]
pub struct RateLimits {
    limits: BTreeMap<String, governor::DefaultDirectRateLimiter>,
}

impl RateLimits {
    /// Budgets in calls per second by operation name; 0 means unlimited.
    pub fn new(per_op: &BTreeMap<String, f64>) -> Self {
        let mut limits = BTreeMap::new();
        for (op, rate) in per_op {
            if *rate > 0.0 && rate.is_finite() {
                let period = Duration::from_secs_f64((1.0 / rate).clamp(0.000_001, 86_400.0));
                if let Some(q) = governor::Quota::with_period(period) {
                    limits.insert(op.clone(), governor::RateLimiter::direct(q));
                }
            }
        }
        RateLimits { limits }
    }
    /// Waits for `op`'s next slot.
    pub async fn acquire(&self, op: &str) {
        if let Some(l) = self.limits.get(op) {
            l.until_ready().await;
        }
    }
}

/// Per-operation call counts.
#[derive(Debug, Default)]
pub struct CallCounter(Mutex<BTreeMap<String, u64>>);

impl CallCounter {
    /// Counts one call.
    pub fn count(&self, op: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op.to_string()).or_default() += 1;
        }
    }
    /// The counts.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Maps an SDK error: missing resources become [`SyncError::NotFound`]; throttling, 5xx,
/// timeouts and connection failures are retryable; everything else is permanent.
pub fn map_sdk_error<E>(op: &str, subject: &str, err: SdkError<E, HttpResponse>) -> SyncError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let lower = message.to_ascii_lowercase();
            if code == "ResourceNotFound"
                || code == "NoSuchBucket"
                || (code == "ValidationException"
                    && (lower.contains("could not find") || lower.contains("does not exist") || lower.contains(" not found")))
            {
                return SyncError::NotFound(format!("{subject} ({op}: {code}: {message})"));
            }
            let text = format!("{op} {subject}: {code}: {message}");
            // A role without the permission is the setup's fault, not the job's: such a
            // failure never parks a job, and it is tried again once the role allows it.
            if matches!(code.as_str(), "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "NotAuthorized") {
                return SyncError::setup(text);
            }
            if sagesync_aws::is_retryable(&code, se.raw().status().as_u16()) {
                SyncError::transient(text)
            } else {
                SyncError::permanent(text)
            }
        }
        SdkError::TimeoutError(_) => SyncError::transient(format!(
            "{op} {subject}: timed out (no answer within request_timeout_secs): {}",
            sagesync_core::error_chain(&err)
        )),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SyncError::transient(format!("{op} {subject}: {}", sagesync_core::error_chain(&err)))
        }
        _ => SyncError::permanent(format!("{op} {subject}: {}", sagesync_core::error_chain(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budgets_are_per_operation() {
        let l = RateLimits::new(&[("A".to_string(), 20.0), ("B".to_string(), 0.0)].into_iter().collect());
        let start = std::time::Instant::now();
        for _ in 0..4 {
            l.acquire("A").await;
        }
        assert!(start.elapsed() >= Duration::from_millis(140), "{:?}", start.elapsed());
        let start = std::time::Instant::now();
        for _ in 0..100 {
            l.acquire("B").await;
            l.acquire("C").await;
        }
        assert!(start.elapsed() < Duration::from_millis(100), "unlimited operations never wait");
    }
}
