//! The ModelDB v1 test peer (tests/peers/modeldb_v1_peer.py, the generated Thrift
//! `ModelDBService.Processor`) on 127.0.0.1: every RPC logged, its tables readable over HTTP.
//! Fails loudly when Python or the peer's packages are missing: run `scripts/setup-peers.sh`.

use std::time::Duration;

use crate::ports::HeldPort;
use crate::stderr::StderrLog;

/// A running ModelDB v1 peer. It keeps its tables in memory; stopping it loses them.
pub struct Peer {
    // Before `dir`: the peer is killed before its log directory goes.
    peer: crate::peer::Peer,
    /// Its Thrift port.
    pub port: u16,
    http_port: u16,
    /// The directory of its RPC log (`rpc.jsonl`).
    pub dir: tempfile::TempDir,
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

    /// Starts the peer with `extra` arguments (`--fail METHOD`, `--fail-times N`, `--port N`...)
    /// and waits up to 60 s for it.
    pub fn start(extra: &[&str]) -> Peer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut args = vec!["--log".to_string(), dir.path().join("rpc.jsonl").display().to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let peer =
            crate::peer::Peer::start("the ModelDB v1 peer", "modeldb_v1_peer.py", &args, &[], Duration::from_secs(60)).killed_on_stop();
        let [http_port] = peer.more_ports[..] else {
            panic!("the ModelDB v1 peer: expected `READY <thrift port> <http port>`; stderr:\n{}", peer.log.text())
        };
        Peer { port: peer.port, http_port, peer, dir }
    }

    /// The peer's stderr (printed when the test panics).
    pub fn log(&self) -> &StderrLog {
        &self.peer.log
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

    /// The methods of every RPC so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.rpc_log().iter().map(|v| v["method"].as_str().unwrap().to_string()).collect()
    }

    /// The peer's tables (GET /state on its HTTP port); `null` when it cannot be read.
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

    /// Kills the peer.
    pub fn stop(&mut self) {
        self.peer.stop();
    }
}
