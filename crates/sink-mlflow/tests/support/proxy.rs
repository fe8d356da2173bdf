//! An in-process reverse proxy in front of the MLflow server: logs every request (method, path,
//! body, status), can answer 503 to the next N requests, hold one path until released, and
//! switch upstreams (a restarted server).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub status: u16,
}

impl Logged {
    /// Whether the request changes state (everything but GETs and searches).
    pub fn is_write(&self) -> bool {
        self.method != "GET" && !self.path.ends_with("/search")
    }
    pub fn op(&self) -> &str {
        self.path.split("/api/2.0/mlflow/").nth(1).unwrap_or(&self.path)
    }
}

#[derive(Default)]
struct Faults {
    fail_next: u32,
    hold: Option<(String, Arc<Notify>, Arc<Notify>)>,
    barrier: Option<(String, usize, Arc<tokio::sync::Barrier>)>,
}

#[derive(Clone)]
struct Shared {
    upstream: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<Logged>>>,
    faults: Arc<Mutex<Faults>>,
    http: reqwest::Client,
}

pub struct Proxy {
    pub url: String,
    shared: Shared,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let shared = Shared {
            upstream: Arc::new(Mutex::new(upstream.to_string())),
            log: Default::default(),
            faults: Default::default(),
            http: sagesync_test_support::http().timeout(Duration::from_secs(60)).build().expect("client"),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { url, shared }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    pub fn writes(&self) -> Vec<Logged> {
        self.log().into_iter().filter(Logged::is_write).collect()
    }
    pub fn ops(&self) -> Vec<String> {
        self.log().iter().map(|l| l.op().to_string()).collect()
    }
    pub fn clear(&self) {
        if let Ok(mut l) = self.shared.log.lock() {
            l.clear();
        }
    }
    /// Answers 503 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.fail_next = n;
        }
    }
    /// Holds the next request whose path ends with `op`: `arrived` is notified when it comes,
    /// and it is forwarded once `release` is notified.
    pub fn hold(&self, op: &str) -> (Arc<Notify>, Arc<Notify>) {
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        if let Ok(mut f) = self.shared.faults.lock() {
            f.hold = Some((op.to_string(), arrived.clone(), release.clone()));
        }
        (arrived, release)
    }
    /// Holds requests whose path ends with `op` until `n` of them have arrived (at most 20 s).
    pub fn barrier(&self, op: &str, n: usize) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.barrier = Some((op.to_string(), n, Arc::new(tokio::sync::Barrier::new(n))));
        }
    }
    pub fn set_upstream(&self, url: &str) {
        if let Ok(mut u) = self.shared.upstream.lock() {
            *u = url.to_string();
        }
    }
}

fn reply(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    r
}

async fn forward(State(s): State<Shared>, req: Request<Body>) -> Response<Body> {
    let method = req.method().clone();
    let path_q = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let bytes = to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let record = |status: u16| {
        if let Ok(mut l) = s.log.lock() {
            l.push(Logged { method: method.to_string(), path: path.clone(), body: body.clone(), status });
        }
    };
    let (fail, hold, barrier) = {
        let mut f = s.faults.lock().expect("faults");
        let fail = f.fail_next > 0;
        if fail {
            f.fail_next -= 1;
        }
        let hold = match &f.hold {
            Some((op, _, _)) if path.ends_with(op.as_str()) => f.hold.take(),
            _ => None,
        };
        let barrier = match &f.barrier {
            Some((op, _, b)) if path.ends_with(op.as_str()) => Some(b.clone()),
            _ => None,
        };
        (fail, hold, barrier)
    };
    if fail {
        record(503);
        return reply(503, r#"{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected by the test proxy"}"#);
    }
    if let Some((_, arrived, release)) = hold {
        arrived.notify_one();
        release.notified().await;
    }
    if let Some(b) = barrier {
        let _ = tokio::time::timeout(Duration::from_secs(20), b.wait()).await;
    }
    let upstream = s.upstream.lock().map(|u| u.clone()).unwrap_or_default();
    let mut rb = s.http.request(method.clone(), format!("{upstream}{path_q}")).body(bytes.to_vec());
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            rb = rb.header(k, v);
        }
    }
    match rb.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ct = resp.headers().get("content-type").cloned();
            let data = resp.bytes().await.unwrap_or_default();
            record(status);
            let mut r = Response::new(Body::from(data));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(ct) = ct {
                r.headers_mut().insert("content-type", ct);
            }
            r
        }
        Err(e) => {
            record(502);
            reply(
                502,
                &serde_json::json!({"error_code": "BAD_GATEWAY", "message": format!("test proxy: upstream unreachable: {e}")}).to_string(),
            )
        }
    }
}
