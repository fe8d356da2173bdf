//! Starts the ModelDB v1 test peer (tests/peers/modeldb_v1_peer.py) on 127.0.0.1. Fails loudly
//! when Python or the peer's packages are missing: run `scripts/setup-peers.sh`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

include!("../../../../tests/rust-support/locate.rs");
include!("../../../../tests/rust-support/stderr.rs");
include!("../../../../tests/rust-support/ports.rs");

pub struct Peer {
    child: Child,
    pub port: u16,
    http_port: u16,
    pub dir: tempfile::TempDir,
    /// The peer's stderr (printed when the test panics).
    pub log: StderrLog,
}

impl Peer {
    /// Starts the peer on the port `held` holds, taking it over (`--reuse-port`): until then,
    /// and between two peers on it, connections to it are refused.
    pub fn start_on(held: &HeldPort, extra: &[&str]) -> Peer {
        let port = held.port.to_string();
        let mut args = vec!["--port", port.as_str(), "--reuse-port"];
        args.extend_from_slice(extra);
        let p = Peer::start(&args);
        assert_eq!(p.port, held.port);
        p
    }

    pub fn start(extra: &[&str]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let log = StderrLog::new("the ModelDB v1 peer");
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/peers/modeldb_v1_peer.py"))
            .arg("--log")
            .arg(dir.path().join("rpc.jsonl"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log.stdio())
            .spawn()
            .expect("cannot start the ModelDB v1 peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let line = loop {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                break l;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("ModelDB v1 peer exited ({status}) before it was ready:\n{}", log.text());
            }
            assert!(Instant::now() < deadline, "ModelDB v1 peer not ready within 60 s:\n{}", log.text());
        };
        let ports: Vec<u16> =
            line.strip_prefix("READY ").map(|p| p.split_whitespace().filter_map(|x| x.parse().ok()).collect()).unwrap_or_default();
        let [port, http_port] = ports[..] else { panic!("unexpected peer output: {line}\n{}", log.text()) };
        Peer { child, port, http_port, dir, log }
    }

    /// Every RPC so far, without the sequence numbers.
    pub fn rpc_log(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("rpc.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seq");
                v
            })
            .collect()
    }

    pub fn methods(&self) -> Vec<String> {
        self.rpc_log().iter().map(|v| v["method"].as_str().unwrap().to_string()).collect()
    }

    /// The peer's tables (GET /state on its HTTP port).
    pub fn state(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else { return serde_json::Value::Null };
        let _ = write!(s, "GET /state HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut buf = String::new();
        if s.read_to_string(&mut buf).is_err() {
            return serde_json::Value::Null;
        }
        buf.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(serde_json::Value::Null)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}
