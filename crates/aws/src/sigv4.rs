//! SigV4 request signing with the `aws-sigv4` crate and credentials from the standard AWS
//! chain (environment, profile files, SSO, process, container and instance roles), loaded
//! lazily on the first request and cached until shortly before they expire.

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::{Mutex, OnceCell};

/// The signing service of SageMaker's managed MLflow.
pub const DEFAULT_SERVICE: &str = "sagemaker-mlflow";

/// How long non-expiring credentials are reused before the chain is asked again.
const REFRESH_AFTER: Duration = Duration::from_secs(600);
/// Expiring credentials are refreshed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The credential chain gave nothing.
    #[error("no AWS credentials: {}", sagesync_core::secret::redact(.0))]
    Credentials(String),
    /// The chain took too long.
    #[error("loading AWS credentials timed out after {0:?}")]
    Timeout(Duration),
    /// The signer refused the request.
    #[error("cannot sign the request: {}", sagesync_core::secret::redact(.0))]
    Sign(String),
}

/// Signs requests for one region and service.
pub struct Signer {
    region: String,
    service: String,
    profile: Option<String>,
    timeout: Duration,
    provider: OnceCell<SharedCredentialsProvider>,
    cached: Mutex<Option<(Credentials, Instant)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer; nothing is loaded until the first [`Signer::sign`].
    pub fn new(region: String, service: String, profile: Option<String>, timeout: Duration) -> Self {
        Signer { region, service, profile, timeout, provider: OnceCell::new(), cached: Mutex::new(None) }
    }

    /// A signer with fixed credentials (tests, callers with their own chain).
    pub fn with_provider(region: String, service: String, provider: SharedCredentialsProvider) -> Self {
        let s = Signer::new(region, service, None, Duration::from_secs(30));
        let _ = s.provider.set(provider);
        s
    }

    async fn provider(&self) -> Result<&SharedCredentialsProvider, SignError> {
        self.provider
            .get_or_try_init(|| async {
                let mut loader =
                    aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(self.region.clone()));
                if let Some(p) = &self.profile {
                    loader = loader.profile_name(p);
                }
                let conf = loader.load().await;
                conf.credentials_provider().ok_or_else(|| SignError::Credentials("the AWS credential chain has no provider".into()))
            })
            .await
    }

    async fn credentials(&self) -> Result<Credentials, SignError> {
        let mut cached = self.cached.lock().await;
        if let Some((c, at)) = cached.as_ref() {
            let fresh = match c.expiry() {
                Some(exp) => exp.duration_since(SystemTime::now()).is_ok_and(|left| left > EXPIRY_MARGIN),
                None => at.elapsed() < REFRESH_AFTER,
            };
            if fresh {
                return Ok(c.clone());
            }
        }
        let load = async {
            let provider = self.provider().await?;
            provider.provide_credentials().await.map_err(|e| SignError::Credentials(sagesync_core::error_chain(&e)))
        };
        let creds = tokio::time::timeout(self.timeout, load).await.map_err(|_| SignError::Timeout(self.timeout))??;
        *cached = Some((creds.clone(), Instant::now()));
        Ok(creds)
    }

    /// The headers to add to a request: `authorization`, `x-amz-date`, `x-amz-content-sha256`
    /// and, for temporary credentials, `x-amz-security-token`. `headers` are the request's
    /// headers to sign (besides `host`, which comes from `url`); `url` must be percent-encoded
    /// the way SigV4 canonicalises it (RFC 3986, `%20` for spaces).
    pub async fn sign(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<(String, String)>, SignError> {
        let identity: Identity = self.credentials().await?.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into();
        let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| SignError::Sign(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| SignError::Sign(e.to_string()))?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signs_with_the_given_credentials() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", Some("session".into()), None, "test");
        let s = Signer::with_provider("us-east-1".into(), DEFAULT_SERVICE.into(), SharedCredentialsProvider::new(creds));
        let h =
            s.sign("POST", "http://127.0.0.1:1/api/2.0/mlflow/runs/search", &[("content-type", "application/json")], b"{}").await.unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let auth = get("authorization");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), "{auth}");
        assert!(auth.contains("/us-east-1/sagemaker-mlflow/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"), "{auth}");
        assert_eq!(get("x-amz-content-sha256"), "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_eq!(get("x-amz-security-token"), "session");
    }
}
