//! A child process's stderr kept in a temporary file, printed (its tail) when the test that holds
//! it panics. The child writes to the file directly, so it can never block on a pipe nobody reads.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

/// A child process's stderr, kept in a temporary file. Clones are handles on the same log (for a
/// [`DumpOnPanic`], say); a panicking test prints it once, whichever handle goes first.
#[derive(Clone)]
pub struct StderrLog {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    file: tempfile::NamedTempFile,
    /// The test thread that printed the log last: another handle dropped by the same panic does
    /// not print it again.
    shown_in: Mutex<Option<ThreadId>>,
}

impl StderrLog {
    /// A new, empty log for the child called `name`.
    pub fn new(name: &str) -> StderrLog {
        StderrLog {
            inner: Arc::new(Inner {
                name: name.to_string(),
                file: tempfile::NamedTempFile::new().expect("a temporary file for a child's stderr"),
                shown_in: Mutex::new(None),
            }),
        }
    }

    /// What to pass to `Command::stderr` (each call: another handle, appending to the log).
    pub fn stdio(&self) -> std::process::Stdio {
        let f = std::fs::OpenOptions::new().append(true).open(self.inner.file.path()).expect("open a child's stderr log");
        std::process::Stdio::from(f)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.inner.file.path()).unwrap_or_default()).into_owned()
    }

    /// The last `max` bytes written so far (cut at a character boundary).
    pub fn tail(&self, max: usize) -> String {
        let text = self.text();
        let at = text.len().saturating_sub(max);
        let at = (at..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text[at..].to_string()
    }

    /// Prints the last 24 KiB under `name`, unless this thread printed this log already.
    fn show(&self, name: &str) {
        let me = std::thread::current().id();
        {
            let mut shown = self.inner.shown_in.lock().unwrap_or_else(|e| e.into_inner());
            if *shown == Some(me) {
                return;
            }
            *shown = Some(me);
        }
        eprintln!("----- stderr of {name} (last 24 KiB) -----\n{}\n----- end of {name} -----", self.tail(24 << 10));
    }
}

impl Drop for StderrLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.show(&self.inner.name);
        }
    }
}

/// Prints the stderr of every listed child when the test that holds it panics: for children
/// that outlive the test (a server shared by a test binary), or to name them otherwise.
pub struct DumpOnPanic(pub Vec<(String, StderrLog)>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, log) in &self.0 {
                log.show(name);
            }
        }
    }
}
