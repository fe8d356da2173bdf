//! One real MLflow tracking server per test binary (tests/peers/mlflow_peer.py), and plain REST
//! reads to check what it stored.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use super::child::{Log, Peer};

pub struct Server {
    pub peer: Peer,
    pub dir: tempfile::TempDir,
}

impl Server {
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
    pub fn url(&self) -> String {
        self.peer.url()
    }
    pub fn log(&self) -> (String, Log) {
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
    pub base: String,
}

impl Rest {
    pub fn new(url: &str) -> Rest {
        Rest {
            http: sagesync_test_support::http().timeout(Duration::from_secs(30)).build().expect("client"),
            base: format!("{url}/api/2.0/mlflow"),
        }
    }

    pub async fn get(&self, op: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.get(format!("{}/{op}", self.base)).query(query).send().await.unwrap_or_else(|e| panic!("GET {op}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, op: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/{op}", self.base)).json(body).send().await.unwrap_or_else(|e| panic!("POST {op}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn run(&self, run_id: &str) -> Value {
        let (s, v) = self.get("runs/get", &[("run_id", run_id)]).await;
        assert_eq!(s, 200, "runs/get {run_id}: {v}");
        v["run"].clone()
    }

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

    pub async fn history(&self, run_id: &str, key: &str) -> Vec<Value> {
        let (s, v) = self.get("metrics/get-history", &[("run_id", run_id), ("metric_key", key)]).await;
        assert_eq!(s, 200, "{v}");
        v["metrics"].as_array().cloned().unwrap_or_default()
    }
}

pub fn kv<'a>(run: &'a Value, kind: &str, key: &str) -> Option<&'a Value> {
    run["data"][kind].as_array()?.iter().find(|x| x["key"] == key).map(|x| &x["value"])
}

pub fn kv_str<'a>(run: &'a Value, kind: &str, key: &str) -> Option<&'a str> {
    kv(run, kind, key).and_then(Value::as_str)
}
