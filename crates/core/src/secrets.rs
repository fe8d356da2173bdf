//! Secrets kept elsewhere: `[secret.<name>]` tables name where a secret is read from (a
//! backend: `file`, `exec`, and the AWS ones a plugin crate registers), and any string value
//! of the config may refer to one as `SECRET[<name>]` (the whole value) or
//! `SECRET[<name>.<key>]` (one key of a JSON object). References are checked offline when the
//! config is parsed; the values are read once, at start ([`crate::Config::resolve_secrets`]),
//! and every value read is added to what [`crate::redact`] hides.
//!
//! A backend is a plugin like any other: a type name, a config table checked offline, and a
//! blocking read (run on a thread of its own, at start only).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::registry::FieldProblem;
use crate::secret::Secret;
use crate::text::url_forms;

/// Reads one secret.
pub trait SecretBackend: Send + Sync {
    /// The secret's value, read now. Blocking: called on a thread of its own, once, at start.
    /// The error never holds the value.
    fn read(&self) -> Result<Secret, String>;
}

/// How a `[secret.<name>]` table (without `type`) builds its backend, checked offline.
pub type BuildBackend = fn(&toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>>;

/// A registered secret backend: its `type` and how a `[secret.<name>]` table builds it.
pub struct SecretBackendPlugin {
    /// `type = "..."`.
    pub type_name: &'static str,
    /// One line for `sagesync plugins`.
    pub description: &'static str,
    /// A `[secret.<name>]` table for `sagesync example`.
    pub example_toml: &'static str,
    /// Checks the table (without `type`) offline and builds the backend.
    pub build: BuildBackend,
}

inventory::collect!(SecretBackendPlugin);

/// Every registered secret backend, by type name.
pub fn backends() -> Vec<&'static SecretBackendPlugin> {
    let mut v: Vec<&SecretBackendPlugin> = inventory::iter::<SecretBackendPlugin>.into_iter().collect();
    v.sort_by_key(|p| p.type_name);
    v
}

/// The backend registered as `type_name`.
pub fn backend(type_name: &str) -> Option<&'static SecretBackendPlugin> {
    inventory::iter::<SecretBackendPlugin>.into_iter().find(|p| p.type_name == type_name)
}

/// One `SECRET[...]` reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// The secret's name (`[secret.<name>]`).
    pub name: String,
    /// The key of a JSON object secret, or `None` for the whole value.
    pub key: Option<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "SECRET[{}.{}]", self.name, k),
            None => write!(f, "SECRET[{}]", self.name),
        }
    }
}

const OPEN: &str = "SECRET[";

/// Whether `name` is a secret's name: 1 to 64 letters, digits, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

/// The references in `s`, in order, or what is wrong with one.
pub fn references(s: &str) -> Result<Vec<Reference>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let Some(close) = after.find(']') else {
            return Err("unterminated `SECRET[` (write SECRET[<name>] or SECRET[<name>.<key>])".into());
        };
        let inner = &after[..close];
        let (name, key) = match inner.split_once('.') {
            Some((n, k)) => (n, Some(k)),
            None => (inner, None),
        };
        if !valid_name(name) {
            return Err(format!("`{name}` in SECRET[...] is not a secret name (letters, digits, `_`, `-`)"));
        }
        if let Some(k) = key {
            if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control() || c == '[') {
                return Err(format!("the key in SECRET[{name}.…] must be 1 to 256 printable characters"));
            }
        }
        out.push(Reference { name: name.to_string(), key: key.map(str::to_string) });
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// `s` with every reference replaced by `value(reference)`.
pub fn substitute(s: &str, value: &dyn Fn(&Reference) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let Some(close) = after.find(']') else { break };
        let inner = &after[..close];
        let (name, key) = match inner.split_once('.') {
            Some((n, k)) => (n.to_string(), Some(k.to_string())),
            None => (inner.to_string(), None),
        };
        out.push_str(&rest[..at]);
        out.push_str(&value(&Reference { name, key }));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The value a reference stands for in `secret`: the whole value, or one key of the JSON object
/// it holds (a string as it is, any other JSON value as JSON text).
pub fn pick(secret: &Secret, key: Option<&str>, name: &str) -> Result<String, String> {
    let Some(key) = key else { return Ok(secret.expose().to_string()) };
    let v: serde_json::Value = serde_json::from_str(secret.expose())
        .map_err(|_| format!("secret `{name}` is not a JSON object, so SECRET[{name}.{key}] has nothing to pick (use SECRET[{name}])"))?;
    match v.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) | None => {
            let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            Err(format!("secret `{name}` has no key `{key}` (its keys: {})", keys.join(", ")))
        }
        Some(other) => Ok(other.to_string()),
    }
}

static HIDDEN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `value`, what a `SECRET[...]` reference was replaced with, to what [`hide`] replaces
/// (and its percent-encoded form, as a URL would carry it): so that it never shows in a
/// message, log field, summary or the ledger, whatever option it was put in. Only what is used
/// is registered (a JSON secret's other keys, a host name beside a password, stay readable).
/// Values shorter than 4 characters are not registered (they would mask ordinary text);
/// `validate --resolve-secrets` warns of them.
pub fn register(value: &str) {
    let add = url_forms(value);
    if let Ok(mut h) = HIDDEN.write() {
        for v in add {
            if v.chars().count() >= 4 && !h.contains(&v) {
                h.push(v);
            }
        }
        // Longest first, so that a value containing another is hidden whole.
        h.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret value replaced by `***`.
pub fn hide(text: &str) -> std::borrow::Cow<'_, str> {
    let Ok(h) = HIDDEN.read() else { return std::borrow::Cow::Borrowed(text) };
    if h.is_empty() || !h.iter().any(|v| text.contains(v.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for v in h.iter() {
        out = out.replace(v.as_str(), "***");
    }
    std::borrow::Cow::Owned(out)
}

/// The most bytes read from a file or a command's output.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

fn string_opt(t: &toml::Table, key: &str, problems: &mut Vec<FieldProblem>) -> Option<String> {
    match t.get(key) {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push(FieldProblem::at(key, "must be a string"));
            None
        }
    }
}

fn unknown_keys(t: &toml::Table, known: &[&str], problems: &mut Vec<FieldProblem>) {
    for k in t.keys() {
        if !known.contains(&k.as_str()) {
            problems.push(FieldProblem::at(k, format!("unknown key; expected one of: {}", known.join(", "))));
        }
    }
}

/// `type = "file"`: the contents of `path` (a trailing newline dropped).
struct FileSecret {
    path: std::path::PathBuf,
}

impl SecretBackend for FileSecret {
    fn read(&self) -> Result<Secret, String> {
        // A FIFO or a device is never opened (opening a FIFO blocks until a writer comes).
        let meta = std::fs::metadata(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", self.path.display()));
        }
        let f = std::fs::File::open(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut buf = Vec::new();
        f.take(MAX_SECRET_BYTES as u64 + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if buf.len() > MAX_SECRET_BYTES {
            return Err(format!("{} holds more than {MAX_SECRET_BYTES} bytes", self.path.display()));
        }
        let text = String::from_utf8(buf).map_err(|_| format!("{} is not UTF-8", self.path.display()))?;
        Ok(Secret::new(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text)))
    }
}

fn build_file(t: &toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    unknown_keys(t, &["path"], &mut problems);
    let path = string_opt(t, "path", &mut problems);
    if path.as_deref().is_none_or(str::is_empty) && !problems.iter().any(|p| p.message.contains("string")) {
        problems.push(FieldProblem::at("path", "required: the file that holds the secret"));
    }
    match (problems.is_empty(), path) {
        (true, Some(p)) => Ok(Box::new(FileSecret { path: p.into() })),
        _ => Err(problems),
    }
}

/// `type = "exec"`: what `command` (a program and its arguments, run without a shell) prints
/// on stdout, a trailing newline dropped; a non-zero exit or `timeout_secs` is an error.
struct ExecSecret {
    command: Vec<String>,
    timeout: Duration,
}

impl SecretBackend for ExecSecret {
    fn read(&self) -> Result<Secret, String> {
        let (program, args) = self.command.split_first().ok_or("`command` is empty")?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        // The output is read on a thread of its own and handed over through a channel, so that
        // a process left behind holding the pipe (a background grandchild) cannot hold the read
        // past the timeout: the thread is then left to end with the pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let r = (&mut stdout).take(MAX_SECRET_BYTES as u64 + 1).read_to_end(&mut buf);
            let _ = tx.send(r.map(|_| buf));
        });
        let deadline = Instant::now() + self.timeout;
        let timed_out = || format!("`{program}` did not finish within {} s", self.timeout.as_secs());
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(timed_out());
                }
                Err(e) => return Err(format!("`{program}`: {e}")),
            }
        };
        let buf = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => r.map_err(|e| format!("`{program}`: {e}"))?,
            Err(_) => return Err(format!("{} (its output stayed open)", timed_out())),
        };
        // Too much output first: the reader stopping makes the program fail on a broken pipe.
        if buf.len() > MAX_SECRET_BYTES {
            return Err(format!("`{program}` printed more than {MAX_SECRET_BYTES} bytes"));
        }
        if !status.success() {
            return Err(format!("`{program}` exited with {status}"));
        }
        let text = String::from_utf8(buf).map_err(|_| format!("`{program}` printed something that is not UTF-8"))?;
        Ok(Secret::new(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text)))
    }
}

fn build_exec(t: &toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    unknown_keys(t, &["command", "timeout_secs"], &mut problems);
    let command: Vec<String> = match t.get("command") {
        Some(toml::Value::Array(a)) if !a.is_empty() && a.iter().all(toml::Value::is_str) => {
            a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
        }
        _ => {
            problems.push(FieldProblem::at("command", "required: a list, the program then its arguments (no shell)"));
            Vec::new()
        }
    };
    let timeout = match t.get("timeout_secs") {
        None => 10,
        Some(toml::Value::Integer(n)) if (1..=600).contains(n) => *n as u64,
        Some(_) => {
            problems.push(FieldProblem::at("timeout_secs", "must be an integer between 1 and 600"));
            10
        }
    };
    if problems.is_empty() {
        Ok(Box::new(ExecSecret { command, timeout: Duration::from_secs(timeout) }))
    } else {
        Err(problems)
    }
}

inventory::submit! {
    SecretBackendPlugin {
        type_name: "file",
        description: "a file's contents (`path`)",
        example_toml: "[secret.store_token]\ntype = \"file\"\npath = \"/run/secrets/store-token\"   # a trailing newline is dropped; at most 64 KiB\n",
        build: build_file,
    }
}
inventory::submit! {
    SecretBackendPlugin {
        type_name: "exec",
        description: "what a command prints (`command` = [program, args...], no shell; `timeout_secs`)",
        example_toml: "[secret.store_token]\ntype = \"exec\"\ncommand = [\"vault\", \"kv\", \"get\", \"-field=token\", \"secret/sagesync\"]   # no shell\ntimeout_secs = 10\n",
        build: build_exec,
    }
}

/// Reads `secrets` (name → backend), each on a thread of its own, all at once.
pub fn read_all(secrets: BTreeMap<String, Box<dyn SecretBackend>>) -> BTreeMap<String, Result<Secret, String>> {
    std::thread::scope(|s| {
        let handles: Vec<(String, std::thread::ScopedJoinHandle<'_, Result<Secret, String>>)> =
            secrets.iter().map(|(name, b)| (name.clone(), s.spawn(move || b.read()))).collect();
        handles.into_iter().map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err("the backend panicked".to_string())))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_substitution() {
        let r = references("Bearer SECRET[mlflow.token] and SECRET[plain]").unwrap();
        assert_eq!(r, [Reference { name: "mlflow".into(), key: Some("token".into()) }, Reference { name: "plain".into(), key: None }]);
        assert_eq!(substitute("a SECRET[x.k] b SECRET[y]", &|r| format!("<{}>", r.name)), "a <x> b <y>");
        assert!(references("SECRET[open").is_err());
        assert!(references("SECRET[bad name]").is_err());
        assert!(references("no secret").unwrap().is_empty());
    }

    #[test]
    fn json_secrets_by_key_plain_ones_whole() {
        let s = Secret::new(r#"{"token":"t0k3n","port":6543}"#);
        assert_eq!(pick(&s, Some("token"), "m").unwrap(), "t0k3n");
        assert_eq!(pick(&s, Some("port"), "m").unwrap(), "6543");
        let e = pick(&s, Some("nope"), "m").unwrap_err();
        assert!(e.contains("no key `nope`") && !e.contains("t0k3n"), "{e}");
        assert!(pick(&Secret::new("plain"), Some("k"), "m").unwrap_err().contains("not a JSON object"));
        assert_eq!(pick(&Secret::new("plain"), None, "m").unwrap(), "plain");
    }

    #[test]
    fn file_and_exec_backends() {
        let dir = std::env::temp_dir().join(format!("sagesync-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "from-a-file\n").unwrap();
        let t: toml::Table = toml::from_str(&format!("path = {:?}", f.display().to_string())).unwrap();
        assert_eq!(build_file(&t).ok().unwrap().read().unwrap().expose(), "from-a-file");
        let t: toml::Table = toml::from_str(r#"command = ["sh", "-c", "printf printed"]"#).unwrap();
        assert_eq!(build_exec(&t).ok().unwrap().read().unwrap().expose(), "printed");
        let t: toml::Table = toml::from_str(r#"command = ["sh", "-c", "exit 3"]"#).unwrap();
        assert!(build_exec(&t).ok().unwrap().read().unwrap_err().contains("exited"));
        let t: toml::Table = toml::from_str(
            r#"command = ["sleep", "5"]
timeout_secs = 1"#,
        )
        .unwrap();
        assert!(build_exec(&t).ok().unwrap().read().unwrap_err().contains("did not finish"));
        // A background process keeping the output open: still bounded by the timeout.
        let t: toml::Table = toml::from_str(
            r#"command = ["sh", "-c", "echo tok; sleep 5 &"]
timeout_secs = 1"#,
        )
        .unwrap();
        let started = Instant::now();
        assert!(build_exec(&t).ok().unwrap().read().unwrap_err().contains("did not finish"));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        // Too much output says so.
        let t: toml::Table = toml::from_str(r#"command = ["sh", "-c", "head -c 100000 /dev/zero"]"#).unwrap();
        assert!(build_exec(&t).ok().unwrap().read().unwrap_err().contains("more than"));
        // Not a regular file: refused, never opened.
        let t: toml::Table = toml::from_str(r#"path = "/dev/zero""#).unwrap();
        assert!(build_file(&t).ok().unwrap().read().unwrap_err().contains("not a regular file"));
        assert!(build_exec(&toml::Table::new()).is_err());
        assert!(build_file(&toml::from_str("path = 3").unwrap()).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn registered_values_are_hidden() {
        register("inner-value-1");
        register("whole value/22");
        assert_eq!(hide("a inner-value-1 b whole value/22 c"), "a *** b *** c");
        assert_eq!(hide("http://h/whole%20value%2F22/x"), "http://h/***/x", "as a URL carries it");
        assert_eq!(hide("nothing"), "nothing");
    }
}
