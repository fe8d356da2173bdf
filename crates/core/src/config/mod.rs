//! TOML pipeline configuration.
//!
//! Loading is pure and reports every problem at once, each with file, line, column and key:
//! TOML syntax, unknown sections and keys, unknown plugin types (with the available ones), bad
//! option values, out-of-range numbers and unset environment variables. `${VAR}` and
//! `${VAR:-default}` are expanded inside string values (`$$` is a literal `$`); values are never
//! echoed in messages, and `Debug` prints option names, not values.
//!
//! - [`load`](Config::parse): TOML with spans, interpolation, sections;
//! - [`sections`]: the typed `[pipeline]` section (runners register theirs, `[daemon]` and
//!   `[lambda]`, like plugins register `[tag_keys]`);
//! - [`build`](Config::build): resolving every plugin in the registry and building it (no I/O).

mod build;
mod errors;
mod interpolate;
mod load;
mod secrets;
pub mod sections;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use build::{check_example, Built, Configured, NamedSink};
pub use errors::{redact_serde_message, ConfigError, ConfigErrors};
pub use interpolate::interpolate;
pub use sections::{parse_time, range_f64, range_u64, Check, OnIneligible, PipelineSettings};

/// The most sinks a pipeline may have: every ledger entry holds one delivery per sink, and an
/// entry must stay far below the smallest store's item limit (DynamoDB's 400 KB).
pub const MAX_SINKS: usize = 16;

/// Whether `id` is a component id: 1 to 64 ASCII letters, digits, `_`, `-` or `.` (ids key the
/// ledger's deliveries and label metrics).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// Checks the URL of an endpoint or a store: `http` or `https`, a host, no user or password
/// (credentials go in their own keys, kept secret), no query and no fragment. Returns it
/// trimmed, without a trailing `/`. Every plugin checks its URLs with it.
pub fn endpoint_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    // The value is never echoed: it may hold a credential.
    let u = url::Url::parse(t).map_err(|e| format!("is not a URL ({e}); write http(s)://host[:port][/path]"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL, got scheme `{}`", u.scheme()));
    }
    // `http:/h` and `http:h` parse (the URL standard repairs them): what is written must be
    // what is meant.
    if !t.get(u.scheme().len()..).is_some_and(|rest| rest.starts_with("://")) {
        return Err(format!("must start with `{}://`", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if u.port() == Some(0) {
        return Err("has port 0".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a user or password (use the plugin's credential keys, which are kept secret)".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not have a query string or fragment".into());
    }
    Ok(t.trim_end_matches('/').to_string())
}

pub use crate::keypath::{KeyPath, PathSeg};
pub use crate::options::Options;
use crate::registry::PluginKind;

/// One `[source]`, `[[validators]]`, `[mapper]`, `[[sinks]]` or `[state]` entry.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// Kind.
    pub kind: PluginKind,
    /// Its id (`id` key, else its type name; sinks get `-2`, `-3`... when types repeat).
    pub id: String,
    /// `type`.
    pub type_name: String,
    /// The remaining options.
    pub options: Options,
    /// Where the table is in the file.
    pub path: KeyPath,
}

/// A parsed configuration (not yet built).
#[derive(Debug, Clone)]
pub struct Config {
    /// File name used in messages.
    pub file: String,
    /// Directory of the file.
    pub dir: Option<PathBuf>,
    /// `[source]`.
    pub source: Option<ComponentConfig>,
    /// `[[validators]]`.
    pub validators: Vec<ComponentConfig>,
    /// `[mapper]` (defaults to `type = "tags"`).
    pub mapper: Option<ComponentConfig>,
    /// `[[sinks]]`.
    pub sinks: Vec<ComponentConfig>,
    /// `[state]` (`type` defaults to `sqlite`); `None` lets the runner choose.
    pub state: Option<ComponentConfig>,
    /// `[pipeline]`.
    pub pipeline: PipelineSettings,
    /// The registered sections (`[tag_keys]`, `[daemon]`, `[lambda]`...), as written.
    pub sections: BTreeMap<String, Options>,
    /// `[secret.<name>]` tables: where each secret is read from (`type` and its options).
    pub secrets: BTreeMap<String, Options>,
    /// The values that refer to secrets (`SECRET[...]`), by key path.
    secret_refs: Vec<(KeyPath, Vec<crate::secrets::Reference>)>,
    /// How the references were resolved (none yet: `None`).
    secrets_resolved: Option<SecretMode>,
    /// References whose values are too short to be hidden.
    short_secrets: Vec<String>,
    problems: Vec<ConfigError>,
    spans: load::SpanIndex,
}

/// How [`Config::resolve_secrets`] treats `SECRET[...]` references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretMode {
    /// Read every referenced secret from its backend (at start).
    #[default]
    Resolve,
    /// Read nothing (`sagesync validate`): references stand as `SECRET`, and a problem a plugin
    /// finds with such a value is not reported (it would be about the stand-in).
    Offline,
}

impl Config {
    /// Problems found while parsing (reported again, with the plugin problems, by
    /// [`Config::build`]).
    pub fn problems(&self) -> &[ConfigError] {
        &self.problems
    }

    /// A registered section, deserialised: its default when absent (or unreadable: its problems
    /// are reported by [`Config::build`] with their location).
    pub fn section<T: serde::de::DeserializeOwned + Default>(&self, name: &str) -> T {
        self.sections.get(name).and_then(|t| toml::Value::Table(t.0.clone()).try_into().ok()).unwrap_or_default()
    }

    /// A located error at `path`.
    pub fn error_at(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.spans.locate(path);
        ConfigError { file: self.file.clone(), line, column, key: path.to_string(), message: message.into() }
    }
}
