//! Reading TOML with spans: every key's position is remembered so that any later problem (a
//! plugin's option check, a range check) points at its line and column.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::de::DeserializeOwned;

use super::sections::{Check, PipelineSettings};
use super::{interpolate, redact_serde_message, ComponentConfig, Config, ConfigError, ConfigErrors, KeyPath, Options};
use crate::registry::{self, PluginKind};

/// Positions of keys and values. Its `Debug` does not print the text, which may hold secrets.
#[derive(Clone, Default)]
pub(super) struct SpanIndex {
    text_lines: Vec<usize>,
    text: String,
    spans: HashMap<KeyPath, (usize, usize)>,
}

impl std::fmt::Debug for SpanIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SpanIndex({} lines, {} keys)", self.text_lines.len(), self.spans.len())
    }
}

impl SpanIndex {
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
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
    pub(super) fn locate(&self, path: &KeyPath) -> (usize, usize) {
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
    pub(super) fn locate_value(&self, path: &KeyPath) -> (usize, usize) {
        match self.spans.get(path) {
            Some((_, v)) => self.line_col(*v),
            None => self.locate(path),
        }
    }
}

/// The sections the loader knows itself; plugins add theirs with `register_section!`.
const CORE_SECTIONS: [&str; 7] = ["source", "validators", "mapper", "sinks", "state", "pipeline", "secret"];

struct Loader<'e> {
    file: String,
    spans: SpanIndex,
    errors: Vec<ConfigError>,
    env: &'e dyn Fn(&str) -> Option<String>,
    /// Values that refer to secrets, by key path.
    secret_refs: Vec<(KeyPath, Vec<crate::secrets::Reference>)>,
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
                Ok(s) => {
                    match crate::secrets::references(&s) {
                        Ok(refs) if refs.is_empty() => {}
                        Ok(refs) => self.secret_refs.push((path.clone(), refs)),
                        Err(msg) => self.err_value(path, msg),
                    }
                    toml::Value::String(s)
                }
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

    fn component(&mut self, kind: PluginKind, value: toml::Value, path: &KeyPath, default_type: Option<&str>) -> Option<ComponentConfig> {
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
            None => match default_type {
                Some(t) => t.to_string(),
                None => {
                    self.err_at(path, format!("missing `type`; available {kind} types: {}", registry::names(kind).join(", ")));
                    return None;
                }
            },
        };
        let id = match options.remove("id") {
            Some(toml::Value::String(s)) if super::valid_id(&s) => Some(s),
            Some(_) => {
                // Ids key the ledger's deliveries and label the daemon's metrics.
                self.err_value(&path.key("id"), "`id` must be 1 to 64 letters, digits, `_`, `-` or `.`");
                None
            }
            None => None,
        };
        Some(ComponentConfig {
            kind,
            id: id.unwrap_or_else(|| type_name.clone()),
            type_name,
            options: Options(options),
            path: path.clone(),
        })
    }

    /// One `[secret.<name>]` table, checked offline by its backend.
    fn secret(&mut self, name: &str, value: toml::Value, path: &KeyPath) -> Option<Options> {
        if !crate::secrets::valid_name(name) {
            self.err_at(path, "a secret's name is 1 to 64 letters, digits, `_` or `-`");
            return None;
        }
        let toml::Value::Table(mut t) = value else {
            self.err_at(path, format!("expected a table: `[secret.{name}]` with `type`"));
            return None;
        };
        let kinds = || crate::secrets::backends().iter().map(|b| b.type_name).collect::<Vec<_>>().join(", ");
        let type_name = match t.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => {
                self.err_value(&path.key("type"), "`type` must be a string");
                return None;
            }
            None => {
                self.err_at(path, format!("missing `type`; available secret types: {}", kinds()));
                return None;
            }
        };
        let Some(b) = crate::secrets::backend(&type_name) else {
            self.err_value(&path.key("type"), format!("unknown secret type `{type_name}`; available: {}", kinds()));
            return None;
        };
        if let Err(problems) = (b.build)(&t) {
            for p in problems {
                self.err_at(&path.join(&p.path), p.message);
            }
            return None;
        }
        t.insert("type".into(), toml::Value::String(type_name));
        Some(Options(t))
    }

    /// Deserialises a typed section and range-checks it, with located errors.
    fn typed<T: DeserializeOwned + Default + Check>(&mut self, value: Option<toml::Value>, name: &str) -> T {
        let path = KeyPath::root().key(name);
        let Some(value) = value else { return T::default() };
        let v = match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => v,
            Err(e) => {
                let p = path.join(&KeyPath::from_serde_path(e.path()));
                self.err_at(&p, redact_serde_message(e.inner().message()));
                return T::default();
            }
        };
        for (k, m) in v.problems() {
            self.err_value(&path.key(k), m);
        }
        v
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and parses a config file, using the process environment for `${VAR}`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        Config::from_file_with(path, &process_env)
    }

    /// Reads and parses a config file, resolving `${VAR}` through `env` (a runner that reads
    /// its variables from elsewhere, a test). Relative paths in it are relative to its
    /// directory where the plugin says so.
    pub fn from_file_with(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors::one(&file, format!("cannot read config file: {e}")))?;
        let mut cfg = Config::parse(&text, &file, env)?;
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
        let mut loader = Loader { file: file.to_string(), spans, errors: Vec::new(), env, secret_refs: Vec::new() };

        let doc = match toml_edit::ImDocument::parse(text.to_string()) {
            Ok(d) => d,
            Err(e) => {
                let (line, column) = e.span().map(|s| loader.spans.line_col(s.start)).unwrap_or((1, 1));
                let message = e.message().trim().to_string();
                return Err(ConfigErrors(vec![ConfigError {
                    file: file.to_string(),
                    line,
                    column,
                    key: String::new(),
                    message: format!("invalid TOML: {message}"),
                }]));
            }
        };
        let root = loader.table(doc.as_table(), &KeyPath::root());

        let shared = registry::sections();
        let mut source = None;
        let mut validators = Vec::new();
        let mut mapper = None;
        let mut sinks = Vec::new();
        let mut state = None;
        let mut pipeline_v = None;
        let mut sections = BTreeMap::new();
        let mut secrets: BTreeMap<String, Options> = BTreeMap::new();

        for (key, value) in root {
            let path = KeyPath::root().key(&key);
            match key.as_str() {
                "source" | "mapper" | "state" => {
                    let kind = match key.as_str() {
                        "source" => PluginKind::Source,
                        "mapper" => PluginKind::Mapper,
                        _ => PluginKind::State,
                    };
                    if let toml::Value::Array(_) = value {
                        loader.err_at(&path, format!("there is exactly one {kind}: write `[{key}]`, not `[[{key}]]`"));
                        continue;
                    }
                    let c = loader.component(kind, value, &path, (kind == PluginKind::State).then_some("sqlite"));
                    match kind {
                        PluginKind::Source => source = c,
                        PluginKind::Mapper => mapper = c,
                        _ => state = c,
                    }
                }
                "validators" | "sinks" => {
                    let kind = if key == "sinks" { PluginKind::Sink } else { PluginKind::Validator };
                    let toml::Value::Array(items) = value else {
                        loader.err_at(&path, format!("`{key}` is a list: write `[[{key}]]`"));
                        continue;
                    };
                    for (i, item) in items.into_iter().enumerate() {
                        if let Some(c) = loader.component(kind, item, &path.index(i), None) {
                            if kind == PluginKind::Sink {
                                sinks.push(c);
                            } else {
                                validators.push(c);
                            }
                        }
                    }
                }
                "pipeline" => pipeline_v = Some(value),
                "secret" => {
                    let toml::Value::Table(t) = value else {
                        loader.err_at(&path, "`secret` holds one table per secret: write `[secret.<name>]`");
                        continue;
                    };
                    for (name, v) in t {
                        let p = path.key(&name);
                        if let Some(o) = loader.secret(&name, v, &p) {
                            secrets.insert(name, o);
                        }
                    }
                }
                k => match shared.iter().find(|s| s.name == k) {
                    Some(desc) => match value {
                        toml::Value::Table(t) => {
                            for p in (desc.check)(t.clone()) {
                                loader.err_at(&path.join(&p.path), p.message);
                            }
                            for p in (desc.ranges)(t.clone()) {
                                loader.err_value(&path.join(&p.path), p.message);
                            }
                            sections.insert(key, Options(t));
                        }
                        _ => loader.err_at(&path, format!("`{key}` is a section: write `[{key}]`")),
                    },
                    None => {
                        let mut known: Vec<&str> = CORE_SECTIONS.to_vec();
                        known.extend(shared.iter().map(|s| s.name));
                        loader.err_at(&path, format!("unknown section `{key}`; expected one of: {}", known.join(", ")));
                    }
                },
            }
        }

        let pipeline: PipelineSettings = loader.typed(pipeline_v, "pipeline");

        if source.is_none() && !loader.errors.iter().any(|e| e.key.starts_with("source")) {
            loader.err_at(
                &KeyPath::root(),
                format!("missing `[source]` section; available source types: {}", registry::names(PluginKind::Source).join(", ")),
            );
        }
        if sinks.is_empty() && !loader.errors.iter().any(|e| e.key.starts_with("sinks")) {
            loader.err_at(
                &KeyPath::root(),
                format!(
                    "missing `[[sinks]]`: at least one sink is required; available sink types: {}",
                    registry::names(PluginKind::Sink).join(", ")
                ),
            );
        }
        if sinks.len() > super::MAX_SINKS {
            // Each sink has a delivery in every ledger entry: their number bounds its size.
            let p = sinks[super::MAX_SINKS].path.clone();
            loader.err_at(&p, format!("at most {} sinks per pipeline, got {}", super::MAX_SINKS, sinks.len()));
        }
        // Repeated sink types without ids get numbered; every id must then be unique.
        let mut per_type: HashMap<String, usize> = HashMap::new();
        for s in sinks.iter_mut().filter(|s| s.id == s.type_name) {
            let n = per_type.entry(s.type_name.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                s.id = format!("{}-{}", s.type_name, n);
            }
        }
        let mut used = std::collections::HashSet::new();
        for s in &sinks {
            if !used.insert(s.id.clone()) {
                loader.err_value(&s.path.key("id"), format!("duplicate sink id `{}`", s.id));
            }
        }

        // Every reference names a declared secret; a secret's own table refers to none.
        let refs = std::mem::take(&mut loader.secret_refs);
        for (path, list) in &refs {
            if path.to_string().starts_with("secret.") {
                loader.err_value(path, "a secret's own table cannot refer to a secret");
                continue;
            }
            let top = match path.0.first() {
                Some(crate::keypath::PathSeg::Key(k)) => k.clone(),
                _ => String::new(),
            };
            if !["source", "validators", "mapper", "sinks", "state"].contains(&top.as_str()) {
                // [pipeline] and the registered sections are read and checked when the file is;
                // they hold no credential.
                loader.err_value(path, format!("[{top}] values cannot refer to secrets (only the components' can)"));
                continue;
            }
            for r in list {
                if !secrets.contains_key(&r.name) {
                    let declared: Vec<&str> = secrets.keys().map(String::as_str).collect();
                    loader.err_value(
                        path,
                        format!(
                            "{r} refers to an undeclared secret; add a `[secret.{}]` table{}",
                            r.name,
                            if declared.is_empty() { String::new() } else { format!(" (declared: {})", declared.join(", ")) }
                        ),
                    );
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
            state,
            pipeline,
            sections,
            secrets,
            secret_refs: refs,
            secrets_resolved: None,
            short_secrets: Vec::new(),
            problems: loader.errors,
            spans: loader.spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn syntax_error_is_located() {
        let err = Config::parse("[source]\ntype = \"x\"\nbroken = \n", "f.toml", &env).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, 3, "{}", err);
        assert!(err.0[0].message.starts_with("invalid TOML"));
    }

    #[test]
    fn the_pipeline_section_is_typed_and_located() {
        // (The runners' sections are checked where they are registered: sagesync-runner-settings.)
        let text = "[source]\ntype = \"x\"\n[[sinks]]\ntype = \"y\"\n[pipeline]\nmax_job_attempts = 0\nretry_backoff_secs = 10000000000000\n[state]\npth = \"x\"\n";
        let cfg = Config::parse(text, "f.toml", &env).unwrap();
        let msgs: Vec<String> = cfg.problems().iter().map(|e| e.to_string()).collect();
        let has = |needle: &str| msgs.iter().any(|m| m.contains(needle));
        assert!(has("f.toml:6:20: key `pipeline.max_job_attempts`: must be between 1 and 1000, got 0"), "{msgs:#?}");
        assert!(has("key `pipeline.retry_backoff_secs`"), "{msgs:#?}");
        assert_eq!(cfg.state.as_ref().map(|s| s.type_name.as_str()), Some("sqlite"), "[state] defaults to sqlite");
    }

    #[test]
    fn debug_never_shows_option_values() {
        let text = "[source]\ntype = \"x\"\ntoken = \"${T}\"\n[[sinks]]\ntype = \"y\"\npassword = \"hunter2\"\n";
        let cfg = Config::parse(text, "f.toml", &|k| (k == "T").then(|| "s3cr3t".to_string())).unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("password"), "keys are shown");
    }
}
