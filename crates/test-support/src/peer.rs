//! A Python test peer (`tests/peers/<script>`) as a child process: it binds its own port and
//! prints `READY <port> [<port>...]`; its stderr is kept (and printed when the test holding it
//! panics); it stops when its stdin closes, or is killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::locate::{python, repo_root};
use crate::stderr::StderrLog;

/// A running peer.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its port on 127.0.0.1 (the first of its `READY` line).
    pub port: u16,
    /// The other ports its `READY` line names, in order (the ModelDB v1 peer's HTTP port).
    pub more_ports: Vec<u16>,
    /// Its stderr.
    pub log: StderrLog,
    /// Whether closing stdin stops the peer (else stopping kills it).
    stdin_stops: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Peer {
    /// Starts `python tests/peers/<script> <args>` with `env`, and waits up to `wait` for its
    /// `READY <port>` line. Panics, with the peer's stderr, when it does not come.
    pub fn start(name: &str, script: &str, args: &[String], env: &[(&str, &str)], wait: Duration) -> Peer {
        let log = StderrLog::new(name);
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/peers").join(script)).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log.stdio());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({script}): {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + wait;
        let line = loop {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                break l;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited ({status}) before it was ready; run scripts/setup-peers.sh; stderr:\n{}", log.tail(24 << 10));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name} not ready within {wait:?}; stderr:\n{}", log.tail(24 << 10));
            }
        };
        let ports: Vec<u16> = line
            .strip_prefix("READY ")
            .and_then(|p| p.split_whitespace().map(|x| x.parse().ok()).collect::<Option<Vec<u16>>>())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| panic!("{name}: unexpected output {line:?}; stderr:\n{}", log.tail(24 << 10)));
        let stdin = child.stdin.take();
        Peer { child, stdin, port: ports[0], more_ports: ports[1..].to_vec(), log, stdin_stops: true, _dir: None }
    }

    /// For peers that do not watch stdin: stopping kills them.
    pub fn killed_on_stop(mut self) -> Self {
        self.stdin_stops = false;
        self
    }

    /// A real MLflow tracking server (tests/peers/mlflow_peer.py, the pinned `mlflow`) on a
    /// SQLite store of its own; up to 120 s to start.
    pub fn mlflow() -> Peer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut p = Peer::start(
            "mlflow server",
            "mlflow_peer.py",
            &["--dir".into(), dir.path().display().to_string(), "--wait".into(), "110".into()],
            &[],
            Duration::from_secs(120),
        );
        p._dir = Some(dir);
        p
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes stdin (the peer stops itself), waits up to 20 s, then kills it; kills it at once
    /// when it does not watch stdin ([`Peer::killed_on_stop`]).
    pub fn stop(&mut self) {
        self.stdin.take();
        if !self.stdin_stops {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}
