//! A Python test peer as a child process: it binds its own port and prints `READY <port>`;
//! its stderr is kept and printed when a test fails; it stops when its stdin closes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

include!("../../../../tests/rust-support/locate.rs");

/// The last 256 KiB a child wrote to stderr.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    fn push(&self, s: &str) {
        if let Ok(mut l) = self.0.lock() {
            l.push_str(s);
            if l.len() > 256 << 10 {
                let cut = l.len() - (192 << 10);
                let at = (cut..l.len()).find(|i| l.is_char_boundary(*i)).unwrap_or(0);
                l.drain(..at);
            }
        }
    }
    pub fn text(&self) -> String {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

pub struct Peer {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub port: u16,
    pub log: Log,
    /// Whether closing stdin stops the peer (else it is killed).
    stdin_stops: bool,
}

impl Peer {
    /// Starts `python tests/peers/<script> <args>` and waits up to `wait` for `READY <port>`.
    pub fn start(name: &str, script: &str, args: &[String], env: &[(&str, &str)], wait: Duration) -> Peer {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/peers").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({script}): {e}"));
        let log = Log::default();
        let err = child.stderr.take().expect("piped stderr");
        let l = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l.push(&String::from_utf8_lossy(&buf[..n]));
            }
        });
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
                // Give the stderr reader a moment to drain, bounded.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && log.text().is_empty() {
                    std::thread::yield_now();
                }
                panic!("{name} exited ({status}) before it was ready; stderr:\n{}", log.text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name} not ready within {wait:?}; stderr:\n{}", log.text());
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: unexpected output {line:?}; stderr:\n{}", log.text()));
        let stdin = child.stdin.take();
        Peer { name: name.to_string(), child, stdin, port, log, stdin_stops: true }
    }

    /// For peers that do not watch stdin: stopping kills them.
    pub fn killed_on_stop(mut self) -> Self {
        self.stdin_stops = false;
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes stdin (the peer stops itself) and waits for it, up to 20 s.
    pub fn stop(&mut self) {
        self.stdin.take();
        if !self.stdin_stops {
            let _ = self.child.kill();
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

/// Prints the stderr of every listed peer when the test that holds it panics.
pub struct DumpOnPanic(pub Vec<(String, Log)>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in &self.0 {
                let text = log.text();
                let tail_at = text.len().saturating_sub(24 << 10);
                let tail_at = (tail_at..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
                eprintln!("----- stderr of {name} (last 24 KiB) -----\n{}\n----- end of {name} -----", &text[tail_at..]);
            }
        }
    }
}
