//! One framed Thrift connection to a ModelDB v1 server, calls in strict sequence.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{decode, mtype, TValue, Writer};

/// Largest reply frame accepted.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Errors talking to a ModelDB v1 server.
#[derive(thiserror::Error)]
pub enum V1Error {
    /// Could not connect (refused, unreachable, DNS).
    #[error("cannot connect to ModelDB at {}: {}", sagesync_core::secret::redact(.addr), sagesync_core::secret::redact(&.source.to_string()))]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Connecting or a call took too long.
    #[error("{} timed out after {secs}s", sagesync_core::secret::redact(.what))]
    Timeout {
        /// What timed out.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// The connection broke during a call.
    #[error("{}: connection error: {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(&.source.to_string()))]
    Io {
        /// Method being called.
        method: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The server raised `ServerLogicException`.
    #[error("{}: ServerLogicException: {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(.message))]
    ServerLogic {
        /// Method.
        method: String,
        /// The server's message.
        message: String,
    },
    /// The server raised `InvalidExperimentRunException`.
    #[error("{}: InvalidExperimentRunException: {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(.message))]
    InvalidExperimentRun {
        /// Method.
        method: String,
        /// The server's message.
        message: String,
    },
    /// The server raised `ResourceNotFoundException`.
    #[error("{}: ResourceNotFoundException: {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(.message))]
    ResourceNotFound {
        /// Method.
        method: String,
        /// The server's message.
        message: String,
    },
    /// The server answered with a `TApplicationException`.
    #[error("{}: TApplicationException ({kind_name}): {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(.message))]
    Application {
        /// Method.
        method: String,
        /// Type code.
        kind: i32,
        /// Type name (`UNKNOWN_METHOD`, `INTERNAL_ERROR`...).
        kind_name: &'static str,
        /// The server's message.
        message: String,
    },
    /// Not sent: the job's lease was lost, or its deadline leaves no time.
    #[error("{}: not sent ({why})", sagesync_core::secret::redact(.method))]
    Stopped {
        /// Method.
        method: String,
        /// Why.
        why: &'static str,
    },
    /// The reply could not be understood.
    #[error("{}: protocol error: {}", sagesync_core::secret::redact(.method), sagesync_core::secret::redact(.message))]
    Protocol {
        /// Method.
        method: String,
        /// What is wrong.
        message: String,
    },
}

impl V1Error {
    /// Whether retrying could help: connection problems and timeouts.
    pub fn is_retryable(&self) -> bool {
        matches!(self, V1Error::Connect { .. } | V1Error::Timeout { .. } | V1Error::Io { .. })
    }
    /// Whether the call was not sent because the job must stop (an interruption).
    pub fn is_stop(&self) -> bool {
        matches!(self, V1Error::Stopped { .. })
    }
}

/// The shortest time left before a deadline in which a call is still started.
const MIN_CALL_TIME: Duration = Duration::from_millis(100);

fn app_kind_name(kind: i32) -> &'static str {
    match kind {
        0 => "UNKNOWN",
        1 => "UNKNOWN_METHOD",
        2 => "INVALID_MESSAGE_TYPE",
        3 => "WRONG_METHOD_NAME",
        4 => "BAD_SEQUENCE_ID",
        5 => "MISSING_RESULT",
        6 => "INTERNAL_ERROR",
        7 => "PROTOCOL_ERROR",
        _ => "OTHER",
    }
}

/// Which declared exception each result field id carries, per method.
fn exception_for(method: &str, field: i16, message: String) -> V1Error {
    let m = method.to_string();
    match (method, field) {
        ("storeFitEvent" | "storeMetricEvent" | "storeDataFrame", 1) => V1Error::InvalidExperimentRun { method: m, message },
        ("getExperimentRunDetails", 2) => V1Error::ResourceNotFound { method: m, message },
        _ => V1Error::ServerLogic { method: m, message },
    }
}

/// An open connection, for one sink call: every call checks the job's lease and deadline
/// first, and its timeout is cut to the time left.
pub struct Connection {
    stream: TcpStream,
    request_timeout: Duration,
    cx: sagesync_core::WriteContext,
}

impl Connection {
    /// Connects to `host:port` for the sink call `cx`.
    pub async fn connect(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        request_timeout: Duration,
        cx: &sagesync_core::WriteContext,
    ) -> Result<Self, V1Error> {
        let addr = format!("{host}:{port}");
        if let Some(left) = cx.time_left() {
            if left < MIN_CALL_TIME {
                return Err(V1Error::Stopped { method: format!("connecting to {addr}"), why: "the deadline is too close" });
            }
        }
        let connect_timeout = cx.time_left().map_or(connect_timeout, |l| l.min(connect_timeout));
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(V1Error::Connect { addr, source }),
            Err(_) => return Err(V1Error::Timeout { what: format!("connecting to {addr}"), secs: connect_timeout.as_secs() }),
        };
        let _ = stream.set_nodelay(true);
        Ok(Connection { stream, request_timeout, cx: cx.clone() })
    }

    /// Sends one call and returns the result struct's success value (field 0).
    pub async fn call(&mut self, method: &str, args: Writer) -> Result<TValue, V1Error> {
        if !self.cx.guard.holds() {
            return Err(V1Error::Stopped { method: method.to_string(), why: "the job's lease was lost" });
        }
        let timeout = match self.cx.time_left() {
            Some(left) if left < MIN_CALL_TIME => {
                return Err(V1Error::Stopped { method: method.to_string(), why: "the deadline is too close" });
            }
            Some(left) => left.min(self.request_timeout),
            None => self.request_timeout,
        };
        let frame = args.into_frame();
        let capped = timeout < self.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(method, &frame)).await {
            Ok(r) => r,
            // Cut by the job's deadline, not by the server's slowness: an interruption.
            Err(_) if capped => Err(V1Error::Stopped { method: method.to_string(), why: "the deadline passed" }),
            Err(_) => Err(V1Error::Timeout { what: format!("{method} call"), secs: timeout.as_secs() }),
        }
    }

    async fn exchange(&mut self, method: &str, frame: &[u8]) -> Result<TValue, V1Error> {
        let io = |source| V1Error::Io { method: method.to_string(), source };
        self.stream.write_all(frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(V1Error::Protocol { method: method.into(), message: format!("reply frame of {len} bytes exceeds {MAX_FRAME}") });
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await.map_err(io)?;
        let msg = decode(&buf).map_err(|e| V1Error::Protocol { method: method.into(), message: e.to_string() })?;
        interpret(method, msg.name, msg.kind, msg.body)
    }
}

/// Turns a decoded reply into the success value or a typed error.
pub fn interpret(method: &str, name: String, kind: u8, body: TValue) -> Result<TValue, V1Error> {
    if kind == mtype::EXCEPTION {
        let k = body.field(2).and_then(TValue::as_i32).unwrap_or(0);
        return Err(V1Error::Application { method: method.into(), kind: k, kind_name: app_kind_name(k), message: body.str_field(1) });
    }
    if kind != mtype::REPLY {
        return Err(V1Error::Protocol { method: method.into(), message: format!("unexpected message type {kind}") });
    }
    if name != method {
        return Err(V1Error::Protocol { method: method.into(), message: format!("reply is for `{name}`") });
    }
    if let Some(v) = body.field(0) {
        return Ok(v.clone());
    }
    for id in [1i16, 2, 3] {
        if let Some(ex) = body.field(id) {
            return Err(exception_for(method, id, ex.str_field(1)));
        }
    }
    Err(V1Error::Application {
        method: method.into(),
        kind: 5,
        kind_name: "MISSING_RESULT",
        message: format!("{method} failed: unknown result"),
    })
}

sagesync_core::debug_as_display!(V1Error);
