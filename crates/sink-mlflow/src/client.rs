//! HTTP calls to MLflow's REST API (`/api/2.0/mlflow/...`): JSON in and out, authentication,
//! timeouts bounded by the caller's deadline, reply bodies read up to a cap, the job's lease
//! checked before every request. Errors are classified and returned: the engine alone retries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use crate::config::{Auth, MlflowSettings};
use crate::sigv4::{SignError, Signer};

/// The shortest time left before a deadline in which a request is still started.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(100);
/// How much of a server's error message is kept.
const MAX_MESSAGE_CHARS: usize = 500;

/// Errors from the REST API. Messages never carry credentials.
#[derive(thiserror::Error)]
pub enum MlflowError {
    /// The server answered with an error status.
    #[error("{op}: HTTP {status}{}: {}", code_suffix(.error_code), sagesync_core::secret::redact(.message))]
    Status {
        /// Operation (path below the API root).
        op: &'static str,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code` (`RESOURCE_ALREADY_EXISTS`...), empty if none.
        error_code: String,
        /// The server's message, shortened.
        message: String,
    },
    /// Could not connect, or the connection broke.
    #[error("{op}: connection failed: {}", sagesync_core::secret::redact(.message))]
    Connection {
        /// Operation.
        op: &'static str,
        /// What happened.
        message: String,
    },
    /// No reply within the timeout.
    #[error("{op}: no reply within {timeout:?}")]
    Timeout {
        /// Operation.
        op: &'static str,
        /// The timeout that applied.
        timeout: Duration,
    },
    /// The caller's deadline left no time for the request, or passed while it ran.
    #[error("{op}: stopped at the job's deadline")]
    Deadline {
        /// Operation.
        op: &'static str,
    },
    /// Not sent: the job's lease no longer holds (another writer may own the job).
    #[error("{op}: not sent, the job's lease was lost")]
    LeaseLost {
        /// Operation.
        op: &'static str,
    },
    /// The server's TLS certificate is not trusted (or the TLS setup cannot be loaded).
    #[error("{op}: {}", sagesync_core::secret::redact(.message))]
    Tls {
        /// Operation.
        op: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// The reply body is larger than `max_response_bytes`.
    #[error("{op}: reply larger than max_response_bytes ({limit} bytes)")]
    TooLarge {
        /// Operation.
        op: &'static str,
        /// The cap.
        limit: usize,
    },
    /// The reply is not what the API documents.
    #[error("{op}: unexpected reply: {}", sagesync_core::secret::redact(.message))]
    Decode {
        /// Operation.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request could not be signed.
    #[error("{op}: {}", sagesync_core::secret::redact(&.source.to_string()))]
    Sign {
        /// Operation.
        op: &'static str,
        /// Why.
        #[source]
        source: SignError,
    },
    /// The request could not be built (a header value the HTTP library refuses).
    #[error("{op}: cannot build the request: {}", sagesync_core::secret::redact(.message))]
    Request {
        /// Operation.
        op: &'static str,
        /// Why.
        message: String,
    },
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

impl MlflowError {
    /// Whether retrying at once could help: connection problems, timeouts, 429 and 5xx, and
    /// credentials that could not be loaded in time.
    pub fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Status { status, .. } => *status == 429 || *status >= 500,
            MlflowError::Connection { .. } | MlflowError::Timeout { .. } => true,
            MlflowError::Sign { source, .. } => matches!(source, SignError::Timeout(_)),
            MlflowError::Deadline { .. }
            | MlflowError::LeaseLost { .. }
            | MlflowError::Tls { .. }
            | MlflowError::TooLarge { .. }
            | MlflowError::Decode { .. }
            | MlflowError::Request { .. } => false,
        }
    }
    /// Whether the request was not sent because the job must stop (the deadline, a lost lease):
    /// an interruption, never a failure of the job.
    pub fn is_stop(&self) -> bool {
        matches!(self, MlflowError::Deadline { .. } | MlflowError::LeaseLost { .. })
    }
    /// Whether the store or the setup refuses, not the job's content: an untrusted certificate,
    /// credentials refused (401, 403), signing that cannot work.
    pub fn is_setup(&self) -> bool {
        match self {
            MlflowError::Tls { .. } => true,
            MlflowError::Status { status, .. } => matches!(status, 401 | 403),
            MlflowError::Sign { source, .. } => !matches!(source, SignError::Timeout(_)),
            _ => false,
        }
    }
    /// MLflow's `error_code`, if the server sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Status { error_code, .. } if !error_code.is_empty() => Some(error_code),
            _ => None,
        }
    }
    /// The HTTP status, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            MlflowError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// Whether this is MLflow's "absent" answer (404 `RESOURCE_DOES_NOT_EXIST`).
    pub fn is_absent(&self) -> bool {
        self.status() == Some(404) || self.error_code() == Some("RESOURCE_DOES_NOT_EXIST")
    }
}

/// Whether an operation may be repeated safely after a broken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read.
    Read,
    /// A write that is a no-op when repeated (log-batch, update, delete, set-tag...).
    IdempotentWrite,
    /// A write that creates something (runs/create, experiments/create): never repeated here.
    Create,
}

/// What one sink call has sent so far, by when it must finish, and whether it may still send
/// (the job's lease).
#[derive(Debug, Default)]
pub struct Budget {
    /// Write requests sent.
    pub writes: AtomicU32,
    /// All requests sent.
    pub requests: AtomicU32,
    /// The engine's context: deadline and lease guard.
    pub cx: sagesync_core::WriteContext,
}

impl Budget {
    /// A budget for one sink call of the engine.
    pub fn new(cx: &sagesync_core::WriteContext) -> Self {
        Budget { cx: cx.clone(), ..Default::default() }
    }
    /// The timeout of the next request: `request_timeout`, cut to the time left before the
    /// deadline; an error when the request must not be sent at all.
    fn admit(&self, op: &'static str, request_timeout: Duration) -> Result<Duration, MlflowError> {
        if !self.cx.guard.holds() {
            return Err(MlflowError::LeaseLost { op });
        }
        match self.cx.time_left() {
            Some(left) if left < MIN_REQUEST_TIME => Err(MlflowError::Deadline { op }),
            Some(left) => Ok(left.min(request_timeout)),
            None => Ok(request_timeout),
        }
    }
    /// Write requests sent so far.
    pub fn writes(&self) -> u32 {
        self.writes.load(Ordering::SeqCst)
    }
}

/// Query strings are encoded as SigV4 canonicalises them: everything but RFC 3986's unreserved
/// characters is percent-encoded (a space is `%20`, never `+`).
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

enum Authorizer {
    None,
    Bearer(sagesync_core::Secret),
    Basic(String, sagesync_core::Secret),
    SigV4(Box<Signer>),
}

/// The REST client.
pub struct Client {
    /// Built on first use (the TLS setup reads the trust store and `ca_file`): building the
    /// sink stays free of I/O.
    http: OnceLock<Result<reqwest::Client, String>>,
    tls: sagesync_http::TlsOptions,
    connect_timeout: Duration,
    api: String,
    auth: Authorizer,
    routing: Option<(HeaderName, HeaderValue)>,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("api", &self.api).finish_non_exhaustive()
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{}", sagesync_core::secret::redact(.0))]
pub struct BuildError(String);

impl Client {
    /// Builds the client. No connection is made and no credential is loaded.
    pub fn new(s: &MlflowSettings) -> Result<Client, BuildError> {
        let auth = match &s.auth {
            Auth::None => Authorizer::None,
            Auth::Bearer(t) => Authorizer::Bearer(t.clone()),
            Auth::Basic { username, password } => Authorizer::Basic(username.clone(), password.clone()),
            Auth::SigV4 { region, profile, service } => Authorizer::SigV4(Box::new(Signer::new(
                region.clone(),
                service.clone(),
                profile.clone(),
                s.connect_timeout + Duration::from_secs(20),
            ))),
        };
        let routing = match &s.endpoint.arn {
            Some(arn) => Some((
                HeaderName::from_static(arn.header_name()),
                HeaderValue::from_str(&arn.arn).map_err(|_| BuildError("the ARN is not a valid header value".into()))?,
            )),
            None => None,
        };
        Ok(Client {
            http: OnceLock::new(),
            tls: sagesync_http::TlsOptions { ca_file: s.ca_file.clone() },
            connect_timeout: s.connect_timeout,
            api: s.endpoint.api_base(),
            auth,
            routing,
            request_timeout: s.request_timeout,
            max_response_bytes: s.max_response_bytes,
        })
    }

    fn http(&self, op: &'static str) -> Result<&reqwest::Client, MlflowError> {
        let built = self.http.get_or_init(|| {
            sagesync_http::client_builder(&self.tls, self.connect_timeout)
                .map_err(|e| e.0)?
                .timeout(self.request_timeout)
                // uvicorn closes idle keep-alive connections; reuse only fresh ones.
                .pool_idle_timeout(Duration::from_secs(2))
                .user_agent(concat!("sagesync-sink-mlflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        });
        built.as_ref().map_err(|m| MlflowError::Tls { op, message: m.clone() })
    }

    /// Replaces the signer's credential chain with fixed credentials (tests, embedding callers).
    pub fn set_signer(&mut self, signer: Signer) {
        self.auth = Authorizer::SigV4(Box::new(signer));
    }

    /// GET `op` with a query.
    pub async fn get(&self, op: &'static str, query: &[(&str, &str)], b: &Budget) -> Result<Value, MlflowError> {
        self.send(Method::GET, op, query, None, Kind::Read, b).await
    }

    /// POST `op` with a JSON body.
    pub async fn post(&self, op: &'static str, body: &Value, kind: Kind, b: &Budget) -> Result<Value, MlflowError> {
        self.send(Method::POST, op, &[], Some(body), kind, b).await
    }

    /// PATCH `op` with a JSON body (the registry's updates).
    pub async fn patch(&self, op: &'static str, body: &Value, b: &Budget) -> Result<Value, MlflowError> {
        self.send(Method::PATCH, op, &[], Some(body), Kind::IdempotentWrite, b).await
    }

    /// DELETE `op` with a JSON body (the registry's deletes).
    pub async fn delete(&self, op: &'static str, body: &Value, b: &Budget) -> Result<Value, MlflowError> {
        self.send(Method::DELETE, op, &[], Some(body), Kind::IdempotentWrite, b).await
    }

    async fn send(
        &self,
        method: Method,
        op: &'static str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        kind: Kind,
        b: &Budget,
    ) -> Result<Value, MlflowError> {
        let mut url = format!("{}/{op}", self.api);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&percent_encoding::utf8_percent_encode(k, QUERY).to_string());
            url.push('=');
            url.push_str(&percent_encoding::utf8_percent_encode(v, QUERY).to_string());
        }
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| MlflowError::Request { op, message: e.to_string() })?,
            None => Vec::new(),
        };
        // Checked before the request is built (signing may take a while) and again right
        // before it is sent.
        let timeout = b.admit(op, self.request_timeout)?;
        let http = self.http(op)?;
        let req = self.build(http, &method, op, &url, body.is_some(), &bytes, timeout).await?;
        let timeout = b.admit(op, timeout)?;
        b.requests.fetch_add(1, Ordering::SeqCst);
        if kind != Kind::Read {
            b.writes.fetch_add(1, Ordering::SeqCst);
        }
        // A timeout cut by the job's deadline is an interruption, not the server's slowness.
        let capped = timeout < self.request_timeout;
        match http.execute(req).await {
            Ok(resp) => match self.reply(op, resp, timeout).await {
                Err(MlflowError::Timeout { .. }) if capped => Err(MlflowError::Deadline { op }),
                other => other,
            },
            Err(e) if e.is_timeout() && capped => Err(MlflowError::Deadline { op }),
            Err(e) if e.is_timeout() => Err(MlflowError::Timeout { op, timeout }),
            Err(e) if sagesync_http::is_tls_verification(&e) => Err(MlflowError::Tls { op, message: describe(&e) }),
            Err(e) => Err(MlflowError::Connection { op, message: describe(&e) }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        http: &reqwest::Client,
        method: &Method,
        op: &'static str,
        url: &str,
        has_body: bool,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<reqwest::Request, MlflowError> {
        let mut rb = http.request(method.clone(), url).timeout(timeout);
        if has_body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(bytes.to_vec());
        }
        if let Some((name, value)) = &self.routing {
            rb = rb.header(name.clone(), value.clone());
        }
        match &self.auth {
            Authorizer::None => {}
            Authorizer::Bearer(t) => rb = rb.bearer_auth(t.expose()),
            Authorizer::Basic(u, p) => rb = rb.basic_auth(u, Some(p.expose())),
            Authorizer::SigV4(signer) => {
                let mut signed: Vec<(&str, &str)> = Vec::new();
                if has_body {
                    signed.push(("content-type", "application/json"));
                }
                if let Some((name, value)) = &self.routing {
                    signed.push((name.as_str(), value.to_str().unwrap_or_default()));
                }
                let headers = signer.sign(method.as_str(), url, &signed, bytes).await.map_err(|source| MlflowError::Sign { op, source })?;
                for (k, v) in headers {
                    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| MlflowError::Request { op, message: e.to_string() })?;
                    let mut value = HeaderValue::from_str(&v)
                        .map_err(|_| MlflowError::Request { op, message: format!("signed header {k} is not a valid header value") })?;
                    value.set_sensitive(name == AUTHORIZATION || k == "x-amz-security-token");
                    rb = rb.header(name, value);
                }
            }
        }
        rb.build().map_err(|e| MlflowError::Request { op, message: describe(&e) })
    }

    /// Reads the reply up to the cap and decodes it; non-2xx statuses become errors.
    async fn reply(&self, op: &'static str, mut resp: reqwest::Response, timeout: Duration) -> Result<Value, MlflowError> {
        let status = resp.status().as_u16();
        let buf = match sagesync_http::read_capped(&mut resp, self.max_response_bytes).await {
            Ok(b) => b,
            Err(sagesync_http::ReadError::TooLarge(limit)) => return Err(MlflowError::TooLarge { op, limit }),
            Err(sagesync_http::ReadError::Timeout) => return Err(MlflowError::Timeout { op, timeout }),
            Err(sagesync_http::ReadError::BrokeOff(message)) => return Err(MlflowError::Connection { op, message }),
        };
        decode_reply(op, status, &buf)
    }
}

/// A reply from its status and raw body (already capped): a 2xx must carry a JSON object (an
/// empty body counts as `{}`); any other status becomes [`MlflowError::Status`] with MLflow's
/// `error_code` and a message cut to 500 characters without control characters.
pub fn decode_reply(op: &'static str, status: u16, buf: &[u8]) -> Result<Value, MlflowError> {
    let parsed = sagesync_http::json_body(buf);
    if (200..300).contains(&status) {
        return match parsed {
            Some(v @ Value::Object(_)) => Ok(v),
            _ => Err(MlflowError::Decode { op, message: format!("HTTP {status} with a body that is not a JSON object") }),
        };
    }
    let (error_code, message) = match &parsed {
        Some(v) => (
            v.get("error_code").and_then(Value::as_str).unwrap_or_default().to_string(),
            v.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string()),
        ),
        None => (String::new(), String::from_utf8_lossy(buf).into_owned()),
    };
    let message = sagesync_http::reply_text(&message, MAX_MESSAGE_CHARS);
    Err(MlflowError::Status { op, status, error_code, message })
}

/// An error's chain without the URL.
fn describe(e: &reqwest::Error) -> String {
    sagesync_http::describe(e)
}

sagesync_core::debug_as_display!(MlflowError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding_is_sigv4_canonical() {
        let enc = percent_encoding::utf8_percent_encode("a b+c/é~", QUERY).to_string();
        assert_eq!(enc, "a%20b%2Bc%2F%C3%A9~");
    }

    #[test]
    fn retry_classes() {
        let s = |status| MlflowError::Status { op: "x", status, error_code: String::new(), message: String::new() };
        assert!(s(503).is_retryable() && s(429).is_retryable() && s(500).is_retryable());
        assert!(!s(400).is_retryable() && !s(404).is_retryable() && !s(403).is_retryable());
        assert!(s(404).is_absent());
    }
}
