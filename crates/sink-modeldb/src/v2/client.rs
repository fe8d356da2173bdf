//! HTTP calls to the ModelDB v2 REST API (grpc-gateway JSON). Each call checks the job's lease
//! and deadline before it is sent, caps its timeout by the deadline, and classifies its error:
//! the engine alone retries.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
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
    /// Not sent: the job's lease was lost, or its deadline leaves no time.
    #[error("{}: not sent ({why})", sagesync_core::secret::redact(.op))]
    Stopped {
        /// Operation.
        op: String,
        /// Why.
        why: &'static str,
    },
    /// The server's certificate is not trusted, or the TLS setup cannot be loaded.
    #[error("{}: {}", sagesync_core::secret::redact(.op), sagesync_core::secret::redact(.message))]
    Tls {
        /// Operation.
        op: String,
        /// What is wrong.
        message: String,
    },
}

impl V2Error {
    /// Whether retrying at once could help.
    pub fn is_retryable(&self) -> bool {
        match self {
            // Throttling and server errors are the server's state, not the record's.
            V2Error::Status { status, .. } => matches!(status, 429 | 500 | 502..=504),
            V2Error::Connection { .. } => true,
            V2Error::Decode { .. } | V2Error::Stopped { .. } | V2Error::Tls { .. } => false,
        }
    }
    /// Whether the request was not sent because the job must stop.
    pub fn is_stop(&self) -> bool {
        matches!(self, V2Error::Stopped { .. })
    }
    /// Whether the store or the setup refuses, not the job's content: an untrusted certificate,
    /// credentials refused (401; 403 without gRPC's "absent" code 7).
    pub fn is_setup(&self) -> bool {
        match self {
            V2Error::Tls { .. } => true,
            V2Error::Status { status, code, .. } => *status == 401 || (*status == 403 && *code != 7),
            _ => false,
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
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<std::path::PathBuf>,
}

/// A response: status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (`{}` when empty).
    pub body: Value,
}

impl Reply {
    /// The reply when it is a 200, else the error it stands for.
    pub fn ok(self, op: &str) -> Result<Reply, V2Error> {
        if self.status == 200 {
            Ok(self)
        } else {
            Err(self.error(op))
        }
    }
    /// The error a reply stands for (its status, ModelDB's `code` and message).
    pub fn error(&self, op: &str) -> V2Error {
        error_from(op, self.status, &self.body)
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct Api {
    /// Built on first use (the TLS setup reads the trust store and `ca_file`).
    http: std::sync::Arc<OnceLock<Result<reqwest::Client, String>>>,
    settings: ApiSettings,
    headers: HeaderMap,
    base: String,
}

/// One sink call's view of the client: its requests check the job's lease and deadline, and
/// count the writes of this call alone.
pub struct Call<'a> {
    api: &'a Api,
    cx: &'a sagesync_core::WriteContext,
    writes: AtomicU32,
}

/// The shortest time left before a deadline in which a request is still started.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(100);

impl Api {
    /// Checks the settings (credentials become default headers marked sensitive); the HTTP
    /// client itself is built on first use.
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
        Ok(Api {
            http: Default::default(),
            settings: s.clone(),
            headers,
            base: format!("{}{}", s.base_url.trim_end_matches('/'), s.api_prefix.trim_end_matches('/')),
        })
    }

    fn http(&self, op: &str) -> Result<&reqwest::Client, V2Error> {
        let built = self.http.get_or_init(|| {
            let tls = sagesync_http::TlsOptions { ca_file: self.settings.ca_file.clone() };
            sagesync_http::client_builder(&tls, self.settings.connect_timeout)
                .map_err(|e| e.0)?
                .default_headers(self.headers.clone())
                .timeout(self.settings.request_timeout)
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        });
        built.as_ref().map_err(|m| V2Error::Tls { op: op.to_string(), message: m.clone() })
    }

    /// The client for one sink call.
    pub fn call<'a>(&'a self, cx: &'a sagesync_core::WriteContext) -> Call<'a> {
        Call { api: self, cx, writes: AtomicU32::new(0) }
    }
}

impl Call<'_> {
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
    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Reply, V2Error> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }
    /// DELETE without a body (the registry's deletes carry their ids in the path).
    pub async fn delete_plain(&self, path: &str) -> Result<Reply, V2Error> {
        self.send(Method::DELETE, path, &[], None).await
    }
    /// State-changing requests of this call that got a 2xx.
    pub fn writes(&self) -> u32 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Sends one request, if the job's lease holds and its deadline leaves time. Statuses other
    /// than 2xx are returned as they are (404 and 409 carry meaning), except 502/503/504, which
    /// are errors (retryable).
    async fn send(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Reply, V2Error> {
        let stopped = |why| V2Error::Stopped { op: path.to_string(), why };
        if !self.cx.guard.holds() {
            return Err(stopped("the job's lease was lost"));
        }
        let timeout = match self.cx.time_left() {
            Some(left) if left < MIN_REQUEST_TIME => return Err(stopped("the deadline is too close")),
            Some(left) => left.min(self.api.settings.request_timeout),
            None => self.api.settings.request_timeout,
        };
        // A timeout cut by the job's deadline is an interruption, not the server's slowness.
        let capped = timeout < self.api.settings.request_timeout;
        let url = format!("{}{}", self.api.base, path);
        let mut req = self.api.http(path)?.request(method.clone(), &url).query(query).timeout(timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) if sagesync_http::is_tls_verification(&e) => {
                return Err(V2Error::Tls { op: path.to_string(), message: sagesync_http::describe(&e) })
            }
            Err(e) if e.is_timeout() && capped => return Err(stopped("the deadline passed")),
            Err(e) => {
                return Err(V2Error::Connection {
                    op: path.to_string(),
                    message: if e.is_timeout() {
                        format!("no reply within {timeout:?}")
                    } else if e.is_connect() {
                        format!("cannot connect to {}: {}", self.api.base, sagesync_http::describe(&e))
                    } else {
                        sagesync_http::describe(&e)
                    },
                })
            }
        };
        let status = resp.status().as_u16();
        let bytes = match sagesync_http::read_capped(&mut resp, MAX_REPLY_BYTES).await {
            Ok(b) => b,
            Err(sagesync_http::ReadError::TooLarge(_)) => {
                return Err(V2Error::Decode { op: path.to_string(), message: format!("reply larger than {MAX_REPLY_BYTES} bytes") })
            }
            Err(sagesync_http::ReadError::Timeout) if capped => return Err(stopped("the deadline passed")),
            Err(e) => return Err(V2Error::Connection { op: path.to_string(), message: e.to_string() }),
        };
        let Reply { body, .. } = decode_reply(status, &bytes);
        if (200..300).contains(&status) {
            // A find is a POST that changes nothing.
            if method != Method::GET && !path.ends_with("/find") {
                self.writes.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(Reply { status, body });
        }
        if matches!(status, 502..=504) {
            return Err(error_from(path, status, &body));
        }
        Ok(Reply { status, body })
    }
}

/// The largest reply body read from the server (16 MiB); a larger one fails the request.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A reply from its status and raw body: JSON as sent, `{}` when empty, and anything else
/// as `{"message": <its first 500 characters>}`.
pub fn decode_reply(status: u16, bytes: &[u8]) -> Reply {
    let body = sagesync_http::json_body(bytes)
        .unwrap_or_else(|| serde_json::json!({ "message": sagesync_http::reply_text(&String::from_utf8_lossy(bytes), 500) }));
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
