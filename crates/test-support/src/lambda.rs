//! A local emulation of the Lambda Runtime API on 127.0.0.1: `/invocation/next` hands out queued
//! events, `/response` and `/error` record the outcome. The real `lambda_runtime` client in the
//! `bootstrap` binary talks to it ([`start_function`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;

/// How the function answered one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `/response`, with its body.
    Response(Value),
    /// `/error`, with the `Lambda-Runtime-Function-Error-Type` header and the body.
    Error {
        /// The error type.
        error_type: String,
        /// The error document.
        body: Value,
    },
}

/// The emulation's state.
#[derive(Default)]
pub struct RtState {
    queue: VecDeque<(String, Value)>,
    done: HashMap<String, Outcome>,
    /// When the function first asked for an event (its cold start ends there).
    pub first_next: Option<Instant>,
    /// What the function reported to `/init/error`, if it failed to initialise.
    pub init_error: Option<Value>,
    counter: u64,
}

/// The Runtime API emulation, serving on 127.0.0.1 until its runtime ends.
#[derive(Clone)]
pub struct Runtime {
    /// Its state.
    pub state: Arc<Mutex<RtState>>,
    /// Its port (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>`).
    pub port: u16,
}

async fn next(State(st): State<Arc<Mutex<RtState>>>) -> impl IntoResponse {
    loop {
        {
            let mut s = st.lock().unwrap();
            if s.first_next.is_none() {
                s.first_next = Some(Instant::now());
            }
            if let Some((id, ev)) = s.queue.pop_front() {
                let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 60_000;
                let mut h = HeaderMap::new();
                h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                h.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
                h.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:sagesync".parse().unwrap());
                h.insert("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".parse().unwrap());
                return (StatusCode::OK, h, ev.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn response(State(st): State<Arc<Mutex<RtState>>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    st.lock().unwrap().done.insert(id, Outcome::Response(v));
    StatusCode::ACCEPTED
}

async fn error(State(st): State<Arc<Mutex<RtState>>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let t = headers.get("lambda-runtime-function-error-type").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    st.lock().unwrap().done.insert(id, Outcome::Error { error_type: t, body: v });
    StatusCode::ACCEPTED
}

async fn init_error(State(st): State<Arc<Mutex<RtState>>>, body: Bytes) -> StatusCode {
    st.lock().unwrap().init_error = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

impl Runtime {
    /// Starts the emulation with no event queued.
    pub async fn start() -> Runtime {
        let state = Arc::new(Mutex::new(RtState::default()));
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Runtime { state, port }
    }

    /// Queues an event and waits for its outcome.
    pub async fn invoke(&self, ev: Value) -> Outcome {
        let id = {
            let mut s = self.state.lock().unwrap();
            s.counter += 1;
            let id = format!("req-{:04}", s.counter);
            s.queue.push_back((id.clone(), ev));
            id
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(o) = self.state.lock().unwrap().done.remove(&id) {
                return o;
            }
            if let Some(e) = self.state.lock().unwrap().init_error.clone() {
                panic!("the function failed to initialise: {e}");
            }
            assert!(Instant::now() < deadline, "no outcome for {id} within 90 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A running `bootstrap`: killed when dropped; its stderr is printed when the test panics.
pub struct Function {
    child: std::process::Child,
    /// The function's stderr.
    pub log: crate::stderr::StderrLog,
    /// The file its stdout goes to (log lines and Embedded Metric Format lines).
    stdout: tempfile::NamedTempFile,
}

impl Function {
    /// The lines the function printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.stdout.path()).unwrap_or_default().lines().map(str::to_string).collect()
    }
    /// Waits up to `secs` for the function to exit by itself; its exit status.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "bootstrap did not exit within {secs} s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bootstrap` (the built binary: `env!("CARGO_BIN_EXE_bootstrap")` in the Lambda crate's
/// tests) against the runtime, with moto's [`TEST_ENV`](crate::moto::TEST_ENV) and the given
/// extra environment, and nothing else.
pub fn start_function(bootstrap: &std::path::Path, rt: &Runtime, env: &[(&str, String)]) -> Function {
    let log = crate::stderr::StderrLog::new("bootstrap");
    let mut c = std::process::Command::new(bootstrap);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", rt.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "sagesync")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "warn")
        .stderr(log.stdio());
    let stdout = tempfile::NamedTempFile::new().expect("a file for stdout");
    c.stdout(stdout.reopen().expect("stdout file"));
    for (k, v) in crate::moto::TEST_ENV {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Function { child: c.spawn().expect("cannot start bootstrap"), log, stdout }
}
