//! A tracking server restarted in the middle of a sync: nothing is lost. This binary starts its
//! own MLflow server (the shared one of `tests/mlflow.rs` must not be killed) and restarts it
//! once on the same database.

mod support;

use sagesync_core::{Sink, WriteContext, WriteKind};
use sagesync_test_support::mlflow::{kv_str, Proxy, Rest, Server};
use sagesync_test_support::stderr::DumpOnPanic;
use support::records::{synthetic, upsert_retrying};

#[tokio::test]
async fn a_server_restart_in_the_middle_of_a_sync_loses_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_in(dir);
    let _g1 = DumpOnPanic(vec![server.log()]);
    let proxy = Proxy::start(&server.url()).await;
    let mut r = synthetic("restart");
    r.hyperparameters.extend((0..150).map(|i| sagesync_core::HyperParameter {
        name: format!("h{i}"),
        raw: i.to_string(),
        value: serde_json::json!(i),
    }));
    let sink = support::records::sink(&proxy.url, "restart-{project}");

    // The run is created, then the first log-batch is held while the server goes down.
    let (arrived, release) = proxy.hold("runs/log-batch");
    let task = tokio::spawn({
        let r = r.clone();
        async move { sink.upsert(&r, &WriteContext::new()).await.map_err(|e| (e.is_retryable(), e.chain())) }
    });
    arrived.notified().await;
    let Server { mut peer, dir: kept } = server;
    peer.stop();
    release.notify_one();
    let first = task.await.expect("task");
    let (retryable, message) = first.expect_err("the server is down");
    assert!(retryable, "a server that went away is a transient error: {message}");

    // The same database, a new process (and port); the engine retries.
    let restarted = Server::start_in(kept);
    let _g2 = DumpOnPanic(vec![restarted.log()]);
    proxy.set_upstream(&restarted.url());
    let sink = support::records::sink(&proxy.url, "restart-{project}");
    let (rc, _) = upsert_retrying(&sink, &r, &WriteContext::new(), 5).await;
    let rc = rc.unwrap_or_else(|e| panic!("{}", e.chain()));
    assert_eq!(rc.write, WriteKind::Updated, "the run created before the restart is reused");
    let rest = Rest::new(&restarted.url());
    let runs = rest.runs_of(&r.run.external_id, "ACTIVE_ONLY").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = rest.run(&rc.ids["run_id"]).await;
    assert_eq!(run["data"]["params"].as_array().map(Vec::len), Some(152), "every param arrived");
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(kv_str(&run, "tags", "team"), Some("ml"));
    assert_eq!(run["inputs"]["dataset_inputs"].as_array().map(Vec::len), Some(1));
    proxy.clear();
    assert_eq!(sink.upsert(&r, &WriteContext::new()).await.expect("re-sync").write, WriteKind::Unchanged);
    assert!(proxy.writes().is_empty());
}
