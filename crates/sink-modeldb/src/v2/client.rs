//! HTTP calls to the ModelDB v2 REST API (grpc-gateway JSON), with retries for 502/503/504 and
//! connection failures.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use sagesync_core::Secret;
use serde_json::Value;

/// Errors from the REST API.
#[derive(thiserror::Error)]
pub enum V2Error {
    /// The server answered with an error status.
    #[error("{}: HTTP {status} (gRPC code {code}): {}", sagesync_core::secret::redact(.op), sagesync_core::secret::redact(.message))]
    Status {
        /// Operation (path).
        op: String,
        /// HTTP status.
        status: u16,
        /// gRPC code from the body.
        code: i64,
        /// The server's message.
        message: String,
    },
    /// Could not connect, or the connection broke.
    #[error("{}: {}", sagesync_core::secret::redact(.op), sagesync_core::secret::redact(.message))]
    Connection {
        /// Operation.
        op: String,
        /// What happened.
        message: String,
    },
    /// The response body is not what the API documents.
    #[error("{}: unexpected response: {}", sagesync_core::secret::redact(.op), sagesync_core::secret::redact(.message))]
    Decode {
        /// Operation.
        op: String,
        /// What is wrong.
        message: String,
    },
}

impl V2Error {
    /// Whether retrying later could help.
    pub fn is_retryable(&self) -> bool {
        match self {
            // Throttling and server errors are the server's state, not the record's.
            V2Error::Status { status, .. } => matches!(status, 429 | 500 | 502..=504),
            V2Error::Connection { .. } => true,
            V2Error::Decode { .. } => false,
        }
    }
    /// The HTTP status, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            V2Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Settings of the HTTP client.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `http://modeldb:3000`.
    pub base_url: String,
    /// `/api/v1/modeldb` (web app) or `/v1` (proxy).
    pub api_prefix: String,
    /// User e-mail for `Grpc-Metadata-email`.
    pub email: Option<String>,
    /// Developer key for `Grpc-Metadata-developer_key` / `-developer-key`.
    pub developer_key: Option<Secret>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
    /// Attempts per request for 502/503/504 and connection errors, first included.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
}

/// A response: status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (`{}` when empty).
    pub body: Value,
}

/// The client.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    max_attempts: u32,
    initial_backoff: Duration,
    /// Number of state-changing requests that got a 2xx.
    pub writes: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Api {
    /// Builds the client; credentials become default headers marked sensitive.
    pub fn new(s: &ApiSettings) -> Result<Api, String> {
        let mut headers = HeaderMap::new();
        if let (Some(email), Some(key)) = (&s.email, &s.developer_key) {
            let mut put = |name: &'static str, v: &str, sensitive: bool| -> Result<(), String> {
                let mut hv = HeaderValue::from_str(v).map_err(|_| format!("{name} contains characters not allowed in an HTTP header"))?;
                hv.set_sensitive(sensitive);
                headers.insert(HeaderName::from_static(name), hv);
                Ok(())
            };
            put("grpc-metadata-source", "PythonClient", false)?;
            put("grpc-metadata-email", email, true)?;
            put("grpc-metadata-developer_key", key.expose(), true)?;
            put("grpc-metadata-developer-key", key.expose(), true)?;
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(s.connect_timeout)
            .timeout(s.request_timeout)
            .no_proxy()
            // Credentials ride in default headers: never follow a redirect that could carry
            // them to another host. A 3xx is returned as it is, and fails the write.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Api {
            http,
            base: format!("{}{}", s.base_url.trim_end_matches('/'), s.api_prefix.trim_end_matches('/')),
            max_attempts: s.max_attempts.max(1),
            initial_backoff: s.initial_backoff,
            writes: Default::default(),
        })
    }

    /// GET with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Reply, V2Error> {
        self.send(Method::GET, path, query, None).await
    }
    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, V2Error> {
        self.send(Method::POST, path, &[], Some(body)).await
    }
    /// DELETE with a JSON body.
    pub async fn delete(&self, path: &str, body: &Value) -> Result<Reply, V2Error> {
        self.send(Method::DELETE, path, &[], Some(body)).await
    }

    /// Sends one request; 502/503/504 and connection errors are retried with jittered
    /// exponential backoff. Other statuses are returned (404 and 409 carry meaning).
    async fn send(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Reply, V2Error> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), &url).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let err = match req.send().await {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let bytes = match read_capped(path, &mut resp).await {
                        Ok(b) => b,
                        Err(e @ V2Error::Decode { .. }) => return Err(e),
                        Err(e) => {
                            if attempt < self.max_attempts {
                                tracing::debug!(op = path, attempt, error = %e, "retrying ModelDB request");
                                continue;
                            }
                            return Err(e);
                        }
                    };
                    let Reply { body, .. } = decode_reply(status, &bytes);
                    if (200..300).contains(&status) {
                        if method != Method::GET {
                            self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        return Ok(Reply { status, body });
                    }
                    if !matches!(status, 502..=504) {
                        return Ok(Reply { status, body });
                    }
                    error_from(path, status, &body)
                }
                Err(e) => V2Error::Connection {
                    op: path.to_string(),
                    message: if e.is_timeout() {
                        "request timed out".to_string()
                    } else if e.is_connect() {
                        format!("cannot connect to {}", self.base)
                    } else {
                        format!("connection error: {e}")
                    },
                },
            };
            if !(err.is_retryable() && attempt < self.max_attempts) {
                return Err(err);
            }
            let d = self.initial_backoff.saturating_mul(1 << (attempt - 1).min(10)).min(Duration::from_secs(10));
            let jittered = d / 2 + Duration::from_millis(fastrand::u64(0..=d.as_millis() as u64 / 2));
            tracing::debug!(op = path, attempt, error = %err, "retrying ModelDB request");
            tokio::time::sleep(jittered).await;
        }
    }
}

/// The largest reply body read from the server (16 MiB); a larger one fails the request.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Reads the body, at most [`MAX_REPLY_BYTES`]: a larger one is a `Decode` error (it will not
/// shrink), a body that breaks off a `Connection` error (retryable).
async fn read_capped(op: &str, resp: &mut reqwest::Response) -> Result<Vec<u8>, V2Error> {
    let too_large = || V2Error::Decode { op: op.to_string(), message: format!("reply larger than {MAX_REPLY_BYTES} bytes") };
    if resp.content_length().is_some_and(|n| n > MAX_REPLY_BYTES as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(V2Error::Connection { op: op.to_string(), message: format!("the reply broke off: {e}") }),
        }
    }
}

/// A reply from its status and raw body: JSON as sent, `{}` when empty, and anything else
/// as `{"message": <its first 500 characters>}`.
pub fn decode_reply(status: u16, bytes: &[u8]) -> Reply {
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|_| {
            let text: String = String::from_utf8_lossy(bytes).chars().take(500).collect();
            serde_json::json!({ "message": text })
        })
    };
    Reply { status, body }
}

/// The error for a non-2xx reply.
pub fn error_from(op: &str, status: u16, body: &Value) -> V2Error {
    let code = body.get("code").and_then(|c| c.as_i64().or_else(|| c.as_str().and_then(|s| s.parse().ok()))).unwrap_or(-1);
    let message = body.get("message").or_else(|| body.get("error")).and_then(Value::as_str).unwrap_or("").to_string();
    V2Error::Status { op: op.to_string(), status, code, message }
}

/// Whether a reply means "absent": 404 with code 5, or 403 with code 7 (as the Python client
/// reads it).
pub fn is_absent(r: &Reply) -> bool {
    let code = r.body.get("code").and_then(Value::as_i64);
    (r.status == 404 && code.is_none_or(|c| c == 5)) || (r.status == 403 && code == Some(7))
}

sagesync_core::debug_as_display!(V2Error);
