//! A child process's stderr kept in a temporary file, printed (its tail) when the test that holds
//! it panics. The child writes to the file directly, so it can never block on a pipe nobody reads.

/// A child process's stderr, kept in a temporary file.
pub struct StderrLog {
    name: String,
    file: tempfile::NamedTempFile,
}

impl StderrLog {
    /// A new, empty log for the child called `name`.
    pub fn new(name: &str) -> StderrLog {
        StderrLog { name: name.to_string(), file: tempfile::NamedTempFile::new().expect("a temporary file for a child's stderr") }
    }

    /// What to pass to `Command::stderr` (each call: another handle, appending to the log).
    pub fn stdio(&self) -> std::process::Stdio {
        let f = std::fs::OpenOptions::new().append(true).open(self.file.path()).expect("open a child's stderr log");
        std::process::Stdio::from(f)
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.file.path()).unwrap_or_default()).into_owned()
    }

    /// The last `max` bytes written so far (cut at a character boundary).
    pub fn tail(&self, max: usize) -> String {
        let text = self.text();
        let at = text.len().saturating_sub(max);
        let at = (at..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text[at..].to_string()
    }
}

impl Drop for StderrLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- stderr of {} (last 24 KiB) -----\n{}\n----- end of {} -----", self.name, self.tail(24 << 10), self.name);
        }
    }
}
