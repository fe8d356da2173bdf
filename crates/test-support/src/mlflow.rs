//! MLflow for the tests: a real tracking server (tests/peers/mlflow_peer.py), one per test
//! binary or one of a test's own ([`Server`]), plain REST reads to check what it stored
//! ([`Rest`]), and an in-process reverse proxy in front of it that logs every request and
//! injects faults ([`Proxy`]).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::peer::Peer;
use crate::stderr::StderrLog;

// --- The tracking server and plain REST reads -----------------------------------------------

/// A real MLflow tracking server (tests/peers/mlflow_peer.py) on a SQLite store in `dir`.
pub struct Server {
    /// The server's process.
    pub peer: Peer,
    /// Its store (keep it to restart a server on the same database).
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on the store in `dir`; up to 120 s.
    pub fn start_in(dir: tempfile::TempDir) -> Server {
        let peer = Peer::start(
            "mlflow server",
            "mlflow_peer.py",
            &["--dir".into(), dir.path().display().to_string(), "--wait".into(), "90".into()],
            &[],
            Duration::from_secs(120),
        );
        Server { peer, dir }
    }
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.peer.url()
    }
    /// Its stderr, named, for a [`DumpOnPanic`](crate::stderr::DumpOnPanic).
    pub fn log(&self) -> (String, StderrLog) {
        ("mlflow server".into(), self.peer.log.clone())
    }
}

/// The binary's shared server, started on first use.
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start_in(tempfile::tempdir().expect("temp dir")))
}

/// A plain REST client for assertions (no sagesync code involved).
pub struct Rest {
    http: reqwest::Client,
    /// `<url>/api/2.0/mlflow`.
    pub base: String,
}

impl Rest {
    /// A client of the server at `url`.
    pub fn new(url: &str) -> Rest {
        Rest { http: crate::http().timeout(Duration::from_secs(30)).build().expect("client"), base: format!("{url}/api/2.0/mlflow") }
    }

    /// `GET <op>?<query>`: status and JSON body (`null` when it is not JSON).
    pub async fn get(&self, op: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.get(format!("{}/{op}", self.base)).query(query).send().await.unwrap_or_else(|e| panic!("GET {op}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST <op>` with a JSON body: status and JSON body (`null` when it is not JSON).
    pub async fn post(&self, op: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/{op}", self.base)).json(body).send().await.unwrap_or_else(|e| panic!("POST {op}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `runs/get`: the run (asserted to exist).
    pub async fn run(&self, run_id: &str) -> Value {
        let (s, v) = self.get("runs/get", &[("run_id", run_id)]).await;
        assert_eq!(s, 200, "runs/get {run_id}: {v}");
        v["run"].clone()
    }

    /// The id of the experiment called `name`, if there is one.
    pub async fn experiment_id(&self, name: &str) -> Option<String> {
        let (s, v) = self.get("experiments/get-by-name", &[("experiment_name", name)]).await;
        (s == 200).then(|| v["experiment"]["experiment_id"].as_str().unwrap_or_default().to_string())
    }

    /// Runs carrying the ARN tag in every active experiment (`view` = ACTIVE_ONLY / ALL).
    pub async fn runs_of(&self, arn: &str, view: &str) -> Vec<Value> {
        let (_, exps) = self.post("experiments/search", &json!({"max_results": 1000})).await;
        let ids: Vec<Value> =
            exps["experiments"].as_array().cloned().unwrap_or_default().iter().map(|e| e["experiment_id"].clone()).collect();
        let (s, v) = self.post("runs/search", &json!({"experiment_ids": ids, "filter": format!("tags.`sagemaker.training_job_arn` = '{arn}'"), "run_view_type": view, "max_results": 1000})).await;
        assert_eq!(s, 200, "{v}");
        v["runs"].as_array().cloned().unwrap_or_default()
    }

    /// `metrics/get-history` of one metric of a run.
    pub async fn history(&self, run_id: &str, key: &str) -> Vec<Value> {
        let (s, v) = self.get("metrics/get-history", &[("run_id", run_id), ("metric_key", key)]).await;
        assert_eq!(s, 200, "{v}");
        v["metrics"].as_array().cloned().unwrap_or_default()
    }
}

/// The value of `key` in a run's `data.<kind>` (`params`, `metrics`, `tags`).
pub fn kv<'a>(run: &'a Value, kind: &str, key: &str) -> Option<&'a Value> {
    run["data"][kind].as_array()?.iter().find(|x| x["key"] == key).map(|x| &x["value"])
}

/// [`kv`] as a string.
pub fn kv_str<'a>(run: &'a Value, kind: &str, key: &str) -> Option<&'a str> {
    kv(run, kind, key).and_then(Value::as_str)
}

// --- The reverse proxy ---------------------------------------------------------------------

/// A request the [`Proxy`] passed on (or answered), and the status the client got.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The body as JSON (`null` when it is not).
    pub body: Value,
    /// The status the client got.
    pub status: u16,
}

impl Logged {
    /// Whether the request changes state (everything but GETs and searches).
    pub fn is_write(&self) -> bool {
        self.method != "GET" && !self.path.ends_with("/search")
    }
    /// The MLflow operation: the path after `/api/2.0/mlflow/` (`runs/log-batch`...).
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

/// An in-process reverse proxy in front of an MLflow server (any URL, plain HTTP or TLS): logs
/// every request, can answer 503 to the next N requests, hold or gather requests of one path,
/// and switch upstreams (a restarted server).
pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Shared,
}

impl Proxy {
    /// Starts in front of `upstream` (a base URL, no trailing `/`).
    pub async fn start(upstream: &str) -> Proxy {
        let shared = Shared {
            upstream: Arc::new(Mutex::new(upstream.to_string())),
            log: Default::default(),
            faults: Default::default(),
            http: crate::http().timeout(Duration::from_secs(60)).build().expect("client"),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { url, shared }
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.shared.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    /// The requests so far that change state ([`Logged::is_write`]).
    pub fn writes(&self) -> Vec<Logged> {
        self.log().into_iter().filter(Logged::is_write).collect()
    }
    /// The operations of the requests so far, in order.
    pub fn ops(&self) -> Vec<String> {
        self.log().iter().map(|l| l.op().to_string()).collect()
    }
    /// Forgets the log.
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
    /// Sends the next requests to `url` (a restarted server).
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
