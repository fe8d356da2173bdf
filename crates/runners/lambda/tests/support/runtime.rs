//! A local emulation of the Lambda Runtime API on 127.0.0.1: `/invocation/next` hands out queued
//! events, `/response` and `/error` record the outcome. The real `lambda_runtime` client in the
//! `bootstrap` binary talks to it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response(Value),
    Error { error_type: String, body: Value },
}

#[derive(Default)]
pub struct RtState {
    queue: VecDeque<(String, Value)>,
    done: HashMap<String, Outcome>,
    pub first_next: Option<Instant>,
    pub init_error: Option<Value>,
    counter: u64,
}

#[derive(Clone)]
pub struct Runtime {
    pub state: Arc<Mutex<RtState>>,
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

/// A private link to the binary under test, made once when the tests start: the build directory
/// may be shared with another checkout whose builds replace the binary while these tests run.
fn private_bin(built: &str) -> std::path::PathBuf {
    static COPY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::path::Path::new(built).parent().unwrap().join(".private-bin");
        std::fs::create_dir_all(&dir).unwrap();
        // Links left by test processes that have ended.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let to = dir.join(format!("{}-{}", std::path::Path::new(built).file_name().unwrap().to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&to);
        // A hard link keeps this build's file even when the next build replaces the path (no
        // space used); a copy where links cannot be made.
        if std::fs::hard_link(built, &to).is_err() {
            std::fs::copy(built, &to).unwrap_or_else(|e| panic!("cannot copy {built}: {e}"));
        }
        to
    })
    .clone()
}

/// Starts `bootstrap` against the runtime with the given extra environment.
pub fn start_function(rt: &Runtime, env: &[(&str, String)]) -> std::process::Child {
    let bin = option_env!("CARGO_BIN_EXE_bootstrap").expect("only integration tests start the function this way");
    let mut c = std::process::Command::new(private_bin(bin));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", rt.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "sagesync")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in super::moto::TEST_ENV {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("cannot start bootstrap")
}
