//! TOML pipeline configuration.
//!
//! Loading is pure and reports every problem at once, each with file, line, column and key:
//! TOML syntax, unknown sections and keys, unknown plugin types (with the available ones), bad
//! option values and unset environment variables. `${VAR}` and `${VAR:-default}` are expanded
//! inside string values (`$$` is a literal `$`); values are never echoed in messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::pipeline::PipelineSettings;
use crate::registry::{self, BuildContext, Component, PluginKind};

/// A path to a key: `sinks[0].dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<PathSeg>);

/// One segment of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl KeyPath {
    /// The empty path.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    /// This path with a key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Key(k.to_string()));
        KeyPath(v)
    }
    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Index(i));
        KeyPath(v)
    }
    /// This path followed by `other`.
    pub fn join(&self, other: &KeyPath) -> Self {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        KeyPath(v)
    }
    /// Converts a `serde_path_to_error` path.
    pub fn from_serde_path(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut v = Vec::new();
        for seg in p.iter() {
            match seg {
                Segment::Map { key } => v.push(PathSeg::Key(key.clone())),
                Segment::Seq { index } => v.push(PathSeg::Index(*index)),
                Segment::Enum { variant } => v.push(PathSeg::Key(variant.clone())),
                Segment::Unknown => {}
            }
        }
        KeyPath(v)
    }
    /// Whether the path is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{:?}", k)?;
                    }
                }
                PathSeg::Index(i) => write!(f, "[{}]", i)?,
            }
            first = false;
        }
        Ok(())
    }
}

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The key concerned (`sinks[0].dir`), empty for file-level problems.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}:{}: key `{}`: {}", self.file, self.line, self.column, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{} configuration error{}:", n, if n == 1 { "" } else { "s" })?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "  {}", e)?;
            if i + 1 < n {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// The tag keys the built-in validator and mapper read (the `[tag_keys]` section). Defaults
/// are the AWS sample's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagKeys {
    /// Opt-in tag (any value, even empty, opts in).
    pub sync: String,
    /// Project name.
    pub project_name: String,
    /// Project owner.
    pub project_user: String,
    /// Project description.
    pub project_desc: String,
    /// Model name.
    pub model_name: String,
    /// Model type.
    pub model_type: String,
}

impl Default for TagKeys {
    fn default() -> Self {
        TagKeys {
            sync: "MODEL_DB_SYNC".into(),
            project_name: "MODEL_DB_PROJECT_NAME".into(),
            project_user: "MODEL_DB_PROJECT_USER".into(),
            project_desc: "MODEL_DB_PROJECT_DESC".into(),
            model_name: "MODEL_DB_MODEL_NAME".into(),
            model_type: "MODEL_DB_MODEL_TYPE".into(),
        }
    }
}

impl TagKeys {
    /// The five keys that must be present on an opted-in job, in the sample's order.
    pub fn required(&self) -> [&str; 5] {
        [&self.project_name, &self.project_user, &self.project_desc, &self.model_name, &self.model_type]
    }
}

/// One `[source]`, `[[validators]]`, `[mapper]` or `[[sinks]]` entry.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// Kind.
    pub kind: PluginKind,
    /// Its id (`id` key, else its type name; sinks get `-2`, `-3`... when types repeat).
    pub id: String,
    /// `type`.
    pub type_name: String,
    /// The remaining options.
    pub options: toml::Table,
    /// Where the table is in the file.
    pub path: KeyPath,
}

/// Sections that runners read for themselves; the loader keeps them for [`Config::section`].
pub const RUNNER_SECTIONS: [&str; 3] = ["state", "daemon", "lambda"];

const TOP_LEVEL: [&str; 7] = ["source", "validators", "mapper", "sinks", "pipeline", "tag_keys", "state"];

/// A parsed pipeline configuration (not yet built).
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
    /// `[pipeline]`.
    pub pipeline: PipelineSettings,
    /// `[tag_keys]`.
    pub tag_keys: TagKeys,
    /// Runner sections (`[state]`, `[daemon]`, `[lambda]`).
    pub sections: BTreeMap<String, toml::Value>,
    problems: Vec<ConfigError>,
    spans: SpanIndex,
}

/// The built components of a configuration.
pub struct BuiltConfig {
    /// The source, with its id.
    pub source: (String, std::sync::Arc<dyn crate::Source>),
    /// The validators, in order.
    pub validators: Vec<(String, std::sync::Arc<dyn crate::Validator>)>,
    /// The mapper.
    pub mapper: (String, std::sync::Arc<dyn crate::Mapper>),
    /// The sinks, in order.
    pub sinks: Vec<(String, std::sync::Arc<dyn crate::Sink>)>,
    /// Pipeline settings.
    pub settings: PipelineSettings,
}

#[derive(Debug, Clone, Default)]
struct SpanIndex {
    text_lines: Vec<usize>, // byte offset of each line start
    text: String,
    spans: HashMap<KeyPath, (usize, usize)>, // key span start, value span start
}

impl SpanIndex {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line_idx = match self.text_lines.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.text_lines.get(line_idx).copied().unwrap_or(0);
        let end = offset.min(self.text.len());
        let col = self.text.get(start..end).map(|s| s.chars().count()).unwrap_or(0) + 1;
        (line_idx + 1, col)
    }
    /// Position of the longest known prefix of `path`: the key itself when known.
    fn locate(&self, path: &KeyPath) -> (usize, usize) {
        let mut p = path.clone();
        loop {
            if let Some((k, _)) = self.spans.get(&p) {
                return self.line_col(*k);
            }
            if p.0.pop().is_none() {
                return (1, 1);
            }
        }
    }
    fn locate_value(&self, path: &KeyPath) -> (usize, usize) {
        match self.spans.get(path) {
            Some((_, v)) => self.line_col(*v),
            None => self.locate(path),
        }
    }
}

struct Loader<'e> {
    file: String,
    spans: SpanIndex,
    errors: Vec<ConfigError>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Loader<'_> {
    fn err_at(&mut self, path: &KeyPath, message: impl Into<String>) {
        let (line, column) = self.spans.locate(path);
        self.errors.push(ConfigError { file: self.file.clone(), line, column, key: path.to_string(), message: message.into() });
    }
    fn err_value(&mut self, path: &KeyPath, message: impl Into<String>) {
        let (line, column) = self.spans.locate_value(path);
        self.errors.push(ConfigError { file: self.file.clone(), line, column, key: path.to_string(), message: message.into() });
    }

    fn record(&mut self, path: &KeyPath, key: Option<std::ops::Range<usize>>, value: Option<std::ops::Range<usize>>) {
        let k = key.as_ref().or(value.as_ref()).map(|r| r.start);
        let v = value.as_ref().or(key.as_ref()).map(|r| r.start);
        if let (Some(k), Some(v)) = (k, v) {
            self.spans.spans.entry(path.clone()).or_insert((k, v));
        }
    }

    fn table(&mut self, t: &toml_edit::Table, path: &KeyPath) -> toml::Table {
        let mut out = toml::Table::new();
        for (k, item) in t.iter() {
            let p = path.key(k);
            let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
            self.record(&p, key_span, item.span());
            if let Some(v) = self.item(item, &p) {
                out.insert(k.to_string(), v);
            }
        }
        out
    }

    fn inline(&mut self, t: &toml_edit::InlineTable, path: &KeyPath) -> toml::Table {
        let mut out = toml::Table::new();
        for (k, v) in t.iter() {
            let p = path.key(k);
            let key_span = t.get_key_value(k).and_then(|(key, _)| key.span());
            self.record(&p, key_span, v.span());
            out.insert(k.to_string(), self.value(v, &p));
        }
        out
    }

    fn item(&mut self, item: &toml_edit::Item, path: &KeyPath) -> Option<toml::Value> {
        match item {
            toml_edit::Item::None => None,
            toml_edit::Item::Value(v) => Some(self.value(v, path)),
            toml_edit::Item::Table(t) => Some(toml::Value::Table(self.table(t, path))),
            toml_edit::Item::ArrayOfTables(a) => {
                let mut arr = Vec::new();
                for (i, t) in a.iter().enumerate() {
                    let p = path.index(i);
                    self.record(&p, t.span(), t.span());
                    arr.push(toml::Value::Table(self.table(t, &p)));
                }
                Some(toml::Value::Array(arr))
            }
        }
    }

    fn value(&mut self, v: &toml_edit::Value, path: &KeyPath) -> toml::Value {
        match v {
            toml_edit::Value::String(s) => match interpolate(s.value(), self.env) {
                Ok(s) => toml::Value::String(s),
                Err(msg) => {
                    self.err_value(path, msg);
                    toml::Value::String(String::new())
                }
            },
            toml_edit::Value::Integer(i) => toml::Value::Integer(*i.value()),
            toml_edit::Value::Float(f) => toml::Value::Float(*f.value()),
            toml_edit::Value::Boolean(b) => toml::Value::Boolean(*b.value()),
            toml_edit::Value::Datetime(d) => match d.value().to_string().parse::<toml::value::Datetime>() {
                Ok(d) => toml::Value::Datetime(d),
                Err(_) => toml::Value::String(d.value().to_string()),
            },
            toml_edit::Value::Array(a) => {
                let mut arr = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    let p = path.index(i);
                    self.record(&p, v.span(), v.span());
                    arr.push(self.value(v, &p));
                }
                toml::Value::Array(arr)
            }
            toml_edit::Value::InlineTable(t) => toml::Value::Table(self.inline(t, path)),
        }
    }

    fn component(&mut self, kind: PluginKind, value: toml::Value, path: &KeyPath) -> Option<ComponentConfig> {
        let toml::Value::Table(mut options) = value else {
            self.err_at(path, format!("expected a table for the {kind}"));
            return None;
        };
        let type_name = match options.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                self.err_value(&path.key("type"), "`type` must be a string");
                return None;
            }
            None => {
                self.err_at(path, format!("missing `type`; available {kind} types: {}", registry::names(kind).join(", ")));
                return None;
            }
        };
        let id = match options.remove("id") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.err_value(&path.key("id"), "`id` must be a non-empty string");
                None
            }
            None => None,
        };
        Some(ComponentConfig { kind, id: id.unwrap_or_else(|| type_name.clone()), type_name, options, path: path.clone() })
    }

    fn typed<T: DeserializeOwned + Default>(&mut self, value: Option<toml::Value>, path: &KeyPath) -> T {
        let Some(value) = value else { return T::default() };
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => v,
            Err(e) => {
                let p = path.join(&KeyPath::from_serde_path(e.path()));
                let msg = redact_serde_message(e.inner().message());
                self.err_at(&p, msg);
                T::default()
            }
        }
    }
}

/// Removes quoted values from serde messages (`invalid type: string "s3cr3t"` becomes
/// `invalid type: string`), so that a secret put in the wrong place is never echoed.
pub fn redact_serde_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = rest.find("string \"") {
        out.push_str(&rest[..pos + "string".len()]);
        let after = &rest[pos + "string \"".len()..];
        // Skip to the closing quote (serde escapes inner quotes with a backslash).
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        match end {
            Some(e) => rest = &after[e + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` in `s`.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                out.push('$');
            }
            Some((_, '{')) => {
                let rest = &s[i + 2..];
                let Some(close) = rest.find('}') else {
                    return Err("unterminated `${` in value".to_string());
                };
                let expr = &rest[..close];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(format!("invalid environment variable name `{}` in `${{...}}`", name));
                }
                match env(name) {
                    Some(v) if !(v.is_empty() && default.is_some()) => out.push_str(&v),
                    _ => match default {
                        Some(d) => out.push_str(d),
                        None => return Err(format!("environment variable `{}` is not set (write `${{{}:-default}}` to give a default)", name, name)),
                    },
                }
                // Advance past the expression.
                let end = i + 2 + close;
                while let Some((j, _)) = chars.peek() {
                    if *j <= end {
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and parses a config file, using the process environment for `${VAR}`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { file: file.clone(), line: 1, column: 1, key: String::new(), message: format!("cannot read config file: {e}") }])
        })?;
        let mut cfg = Config::parse(&text, &file, &process_env)?;
        cfg.dir = path.parent().map(Path::to_path_buf);
        Ok(cfg)
    }

    /// Parses config text. `file` names it in messages; `env` resolves `${VAR}`. Only a TOML
    /// syntax error fails here; every other problem is kept (see [`Config::problems`]) and
    /// reported by [`Config::build`] together with the plugins' own problems.
    pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let mut lines = vec![0usize];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                lines.push(i + 1);
            }
        }
        let spans = SpanIndex { text_lines: lines, text: text.to_string(), spans: HashMap::new() };
        let mut loader = Loader { file: file.to_string(), spans, errors: Vec::new(), env };

        let doc = match toml_edit::ImDocument::parse(text.to_string()) {
            Ok(d) => d,
            Err(e) => {
                let (line, column) = e.span().map(|s| loader.spans.line_col(s.start)).unwrap_or((1, 1));
                let message = e.message().trim().to_string();
                return Err(ConfigErrors(vec![ConfigError { file: file.to_string(), line, column, key: String::new(), message: format!("invalid TOML: {message}") }]));
            }
        };
        let root = loader.table(doc.as_table(), &KeyPath::root());

        let mut source = None;
        let mut validators = Vec::new();
        let mut mapper = None;
        let mut sinks = Vec::new();
        let mut pipeline_v = None;
        let mut tag_keys_v = None;
        let mut sections = BTreeMap::new();

        for (key, value) in root {
            let path = KeyPath::root().key(&key);
            match key.as_str() {
                "source" => {
                    if let toml::Value::Array(_) = value {
                        loader.err_at(&path, "there is exactly one source: write `[source]`, not `[[source]]`");
                    } else {
                        source = loader.component(PluginKind::Source, value, &path);
                    }
                }
                "mapper" => {
                    if let toml::Value::Array(_) = value {
                        loader.err_at(&path, "there is exactly one mapper: write `[mapper]`, not `[[mapper]]`");
                    } else {
                        mapper = loader.component(PluginKind::Mapper, value, &path);
                    }
                }
                "validators" | "sinks" => {
                    let kind = if key == "sinks" { PluginKind::Sink } else { PluginKind::Validator };
                    let toml::Value::Array(items) = value else {
                        loader.err_at(&path, format!("`{key}` is a list: write `[[{key}]]`"));
                        continue;
                    };
                    for (i, item) in items.into_iter().enumerate() {
                        if let Some(c) = loader.component(kind, item, &path.index(i)) {
                            if kind == PluginKind::Sink {
                                sinks.push(c);
                            } else {
                                validators.push(c);
                            }
                        }
                    }
                }
                "pipeline" => pipeline_v = Some(value),
                "tag_keys" => tag_keys_v = Some(value),
                k if RUNNER_SECTIONS.contains(&k) => {
                    sections.insert(key, value);
                }
                _ => {
                    let mut known: Vec<&str> = TOP_LEVEL.to_vec();
                    for s in RUNNER_SECTIONS {
                        if !known.contains(&s) {
                            known.push(s);
                        }
                    }
                    loader.err_at(&path, format!("unknown section `{key}`; expected one of: {}", known.join(", ")));
                }
            }
        }

        let pipeline: PipelineSettings = loader.typed(pipeline_v, &KeyPath::root().key("pipeline"));
        if let Err(problems) = pipeline.check() {
            for (k, m) in problems {
                loader.err_value(&KeyPath::root().key("pipeline").key(k), m);
            }
        }
        let tag_keys: TagKeys = loader.typed(tag_keys_v, &KeyPath::root().key("tag_keys"));

        if source.is_none() && !loader.errors.iter().any(|e| e.key.starts_with("source")) {
            loader.err_at(&KeyPath::root(), format!("missing `[source]` section; available source types: {}", registry::names(PluginKind::Source).join(", ")));
        }
        if sinks.is_empty() && !loader.errors.iter().any(|e| e.key.starts_with("sinks")) {
            loader.err_at(&KeyPath::root(), format!("missing `[[sinks]]`: at least one sink is required; available sink types: {}", registry::names(PluginKind::Sink).join(", ")));
        }
        // Ids must be unique per kind; repeated sink types without ids get numbered.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for s in sinks.iter_mut() {
            let n = seen.entry(s.id.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                if s.id == s.type_name {
                    s.id = format!("{}-{}", s.type_name, n);
                } else {
                    let p = s.path.key("id");
                    loader.err_value(&p, format!("duplicate sink id `{}`", s.id));
                }
            }
        }

        Ok(Config {
            file: file.to_string(),
            dir: None,
            source,
            validators,
            mapper,
            sinks,
            pipeline,
            tag_keys,
            sections,
            problems: loader.errors,
            spans: loader.spans,
        })
    }

    /// Problems found while parsing (reported again, with the plugin problems, by
    /// [`Config::build`]).
    pub fn problems(&self) -> &[ConfigError] {
        &self.problems
    }

    fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.spans.locate(path);
        ConfigError { file: self.file.clone(), line, column, key: path.to_string(), message: message.into() }
    }

    /// Reads a runner section (`[state]`, `[daemon]`, `[lambda]`) into `T`, with located errors.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConfigErrors> {
        let Some(v) = self.sections.get(name) else { return Ok(None) };
        serde_path_to_error::deserialize::<_, T>(v.clone()).map(Some).map_err(|e| {
            let p = KeyPath::root().key(name).join(&KeyPath::from_serde_path(e.path()));
            ConfigErrors(vec![self.error(&p, redact_serde_message(e.inner().message()))])
        })
    }

    /// Resolves every component's type in the registry and builds it (no I/O), collecting all
    /// errors.
    pub fn build(&self) -> Result<BuiltConfig, ConfigErrors> {
        let mut errors = self.problems.clone();
        let default_mapper = ComponentConfig {
            kind: PluginKind::Mapper,
            id: "tags".into(),
            type_name: "tags".into(),
            options: toml::Table::new(),
            path: KeyPath::root().key("mapper"),
        };
        let mut build_one = |c: &ComponentConfig| -> Option<Component> {
            let desc = match registry::find(c.kind, &c.type_name) {
                Ok(d) => d,
                Err(e) => {
                    let p = c.path.key("type");
                    let (line, column) = self.spans.locate_value(&p);
                    errors.push(ConfigError { file: self.file.clone(), line, column, key: p.to_string(), message: e.to_string() });
                    return None;
                }
            };
            let ctx = BuildContext { id: c.id.clone(), tag_keys: self.tag_keys.clone(), config_dir: self.dir.clone() };
            match (desc.build)(c.options.clone(), &ctx) {
                Ok(comp) => Some(comp),
                Err(problems) => {
                    for p in problems {
                        let full = c.path.join(&p.path);
                        errors.push(self.error(&full, p.message));
                    }
                    None
                }
            }
        };
        let source = self.source.as_ref().and_then(|c| match build_one(c) {
            Some(Component::Source(s)) => Some((c.id.clone(), s)),
            _ => None,
        });
        let mut validators = Vec::new();
        for c in &self.validators {
            if let Some(Component::Validator(v)) = build_one(c) {
                validators.push((c.id.clone(), v));
            }
        }
        let mapper_cfg = self.mapper.as_ref().unwrap_or(&default_mapper);
        let mapper = match build_one(mapper_cfg) {
            Some(Component::Mapper(m)) => Some((mapper_cfg.id.clone(), m)),
            _ => None,
        };
        let mut sinks = Vec::new();
        for c in &self.sinks {
            if let Some(Component::Sink(s)) = build_one(c) {
                sinks.push((c.id.clone(), s));
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            errors.dedup();
            return Err(ConfigErrors(errors));
        }
        match (source, mapper) {
            (Some(source), Some(mapper)) => Ok(BuiltConfig { source, validators, mapper, sinks, settings: self.pipeline.clone() }),
            _ => Err(ConfigErrors(vec![self.error(&KeyPath::root(), "the configuration has no usable source or mapper")])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation_forms() {
        assert_eq!(interpolate("${HOME_DIR}/x", &env).unwrap(), "/home/me/x");
        assert_eq!(interpolate("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("cost $$5 and $x", &env).unwrap(), "cost $5 and $x");
        assert!(interpolate("${NOPE}", &env).unwrap_err().contains("`NOPE` is not set"));
        assert!(interpolate("${1BAD}", &env).is_err());
        assert!(interpolate("${OPEN", &env).is_err());
    }

    #[test]
    fn redaction_hides_values() {
        let m = redact_serde_message("invalid type: string \"hunter\\\"2\", expected u16");
        assert_eq!(m, "invalid type: string, expected u16");
    }

    #[test]
    fn key_paths_display() {
        let p = KeyPath::root().key("sinks").index(0).key("dir");
        assert_eq!(p.to_string(), "sinks[0].dir");
        assert_eq!(KeyPath::root().key("tags").key("a b").to_string(), "tags.\"a b\"");
    }

    #[test]
    fn syntax_error_is_located() {
        let err = Config::parse("[source]\ntype = \"x\"\nbroken = \n", "f.toml", &env).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 3, "{}", err);
        assert!(err.0[0].message.starts_with("invalid TOML"));
    }
}
