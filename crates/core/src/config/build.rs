//! Building a parsed [`Config`]: every component's type resolved in the registry and built (no
//! I/O), every problem collected at once.

use std::sync::Arc;

use super::{ComponentConfig, Config, ConfigError, ConfigErrors, KeyPath, Options};
use crate::registry::{self, BuildContext, Factory, PluginDescriptor, PluginKind};
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::{Mapper, Validator};
use crate::state::StateStore;

/// A sink with its id and the digest of its configuration.
#[derive(Clone)]
pub struct NamedSink {
    /// Id used in receipts, the ledger and messages.
    pub id: String,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Digest of its type and options: when it changes, every job is delivered to it again.
    pub digest: String,
}

/// A component built from its config table, with the digest of that table (its kind, type
/// and options): what fingerprints it when the engine computes its digests.
pub struct Configured<T: ?Sized> {
    /// Its id (`id`, else its type name).
    pub id: String,
    /// The component.
    pub plugin: Arc<T>,
    /// Digest of its kind, type and options.
    pub table_digest: String,
}

/// The built components of a configuration.
pub struct Built {
    /// The source.
    pub source: Arc<dyn Source>,
    /// The validators, in order.
    pub validators: Vec<Configured<dyn Validator>>,
    /// The mapper.
    pub mapper: Configured<dyn Mapper>,
    /// The sinks, in order.
    pub sinks: Vec<Configured<dyn Sink>>,
    /// The `[state]` store, when the config has one.
    pub state: Option<Arc<dyn StateStore>>,
    /// The sections that shape records (registered with `shapes_records`: `[tag_keys]`), as
    /// written, by name.
    pub shaping_sections: Vec<(String, toml::Table)>,
}

enum One {
    Source(Arc<dyn Source>),
    Validator(Arc<dyn Validator>),
    Mapper(Arc<dyn Mapper>),
    Sink(Arc<dyn Sink>),
    State(Arc<dyn StateStore>),
}

fn run_factory(f: Factory, table: toml::Table, ctx: &BuildContext) -> Result<One, Vec<registry::FieldProblem>> {
    Ok(match f {
        Factory::Source(f) => One::Source(f(table, ctx)?),
        Factory::Validator(f) => One::Validator(f(table, ctx)?),
        Factory::Mapper(f) => One::Mapper(f(table, ctx)?),
        Factory::Sink(f) => One::Sink(f(table, ctx)?),
        Factory::State(f) => One::State(f(table, ctx)?),
    })
}

fn digest_of(c: &ComponentConfig) -> String {
    crate::digest::of_json(&(c.kind.as_str(), &c.type_name, &c.options.0))
}

impl Config {
    fn context(&self, id: &str) -> BuildContext {
        BuildContext { id: id.to_string(), config_dir: self.dir.clone(), sections: Arc::new(self.sections.clone()) }
    }

    fn build_one(&self, c: &ComponentConfig, errors: &mut Vec<ConfigError>) -> Option<One> {
        let desc = match registry::find(c.kind, &c.type_name) {
            Ok(d) => d,
            Err(e) => {
                let p = c.path.key("type");
                let (line, column) = self.spans.locate_value(&p);
                errors.push(ConfigError { file: self.file.clone(), line, column, key: p.to_string(), message: e.to_string() });
                return None;
            }
        };
        match run_factory(desc.factory, c.options.0.clone(), &self.context(&c.id)) {
            Ok(one) => Some(one),
            Err(problems) => {
                for p in problems {
                    errors.push(self.error_at(&c.path.join(&p.path), p.message));
                }
                None
            }
        }
    }

    /// Checks every component as [`Config::build`] does, without needing each to build: what
    /// `sagesync validate` does offline, where a value that refers to a secret holds a stand-in
    /// (a component whose only problems are about stand-ins is not reported, nor is what its
    /// absence would cause).
    pub fn check(&self) -> Result<(), ConfigErrors> {
        let mut errors = self.problems.clone();
        if let Some(p) = self.unresolved_secret() {
            errors.push(self.error_at(
                p,
                "refers to a secret that was never read (a runner calls Config::resolve_secrets at start; a library user must too)",
            ));
        }
        // Only what the plugins' own checks say of a stand-in is set aside: problems found when
        // the file was read (an undeclared secret, an unknown key) always count.
        let mut plugins = Vec::new();
        for c in
            self.source.iter().chain(self.validators.iter()).chain(self.mapper.iter()).chain(self.sinks.iter()).chain(self.state.iter())
        {
            let _ = self.build_one(c, &mut plugins);
        }
        plugins.retain(|e| !self.stands_in(&e.key) || e.message.contains("unknown field"));
        errors.extend(plugins);
        if errors.is_empty() {
            Ok(())
        } else {
            errors.sort_by_key(|e| (e.line, e.column));
            errors.dedup();
            Err(ConfigErrors(errors))
        }
    }

    /// Resolves every component's type in the registry and builds it (no I/O), collecting all
    /// errors, parse problems included.
    pub fn build(&self) -> Result<Built, ConfigErrors> {
        let mut errors = self.problems.clone();
        if let Some(p) = self.unresolved_secret() {
            errors.push(self.error_at(
                p,
                "refers to a secret that was never read (a runner calls Config::resolve_secrets at start; a library user must too)",
            ));
        }
        let found_when_read = errors.len();
        let default_mapper = ComponentConfig {
            kind: PluginKind::Mapper,
            id: "tags".into(),
            type_name: "tags".into(),
            options: Options::default(),
            path: KeyPath::root().key("mapper"),
        };
        let source = self.source.as_ref().and_then(|c| match self.build_one(c, &mut errors) {
            Some(One::Source(s)) => Some(s),
            _ => None,
        });
        let mut validators = Vec::new();
        for c in &self.validators {
            if let Some(One::Validator(v)) = self.build_one(c, &mut errors) {
                validators.push(Configured { id: c.id.clone(), plugin: v, table_digest: digest_of(c) });
            }
        }
        let mapper_cfg = self.mapper.as_ref().unwrap_or(&default_mapper);
        let mapper = match self.build_one(mapper_cfg, &mut errors) {
            Some(One::Mapper(m)) => Some(Configured { id: mapper_cfg.id.clone(), plugin: m, table_digest: digest_of(mapper_cfg) }),
            _ => None,
        };
        let mut sinks = Vec::new();
        for c in &self.sinks {
            if let Some(One::Sink(s)) = self.build_one(c, &mut errors) {
                sinks.push(Configured { id: c.id.clone(), plugin: s, table_digest: digest_of(c) });
            }
        }
        let state = match &self.state {
            Some(c) => match self.build_one(c, &mut errors) {
                Some(One::State(s)) => Some(s),
                _ => None,
            },
            None => None,
        };
        // Offline, a value that refers to a secret holds a stand-in: what a plugin says of it
        // is not about the value that will be there (what was found when the file was read
        // always counts).
        let mut plugins = errors.split_off(found_when_read);
        plugins.retain(|e| !self.stands_in(&e.key) || e.message.contains("unknown field"));
        errors.extend(plugins);
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            errors.dedup();
            return Err(ConfigErrors(errors));
        }
        // A section nobody registered as a runner's shapes records (the loader refused unknown
        // ones).
        let runner_sections: Vec<&str> = registry::sections().into_iter().filter(|d| !d.shapes_records).map(|d| d.name).collect();
        let shaping_sections =
            self.sections.iter().filter(|(k, _)| !runner_sections.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.0.clone())).collect();
        match (source, mapper) {
            (Some(source), Some(mapper)) => Ok(Built { source, validators, mapper, sinks, state, shaping_sections }),
            _ => Err(ConfigErrors(vec![self.error_at(&KeyPath::root(), "the configuration has no usable source or mapper")])),
        }
    }

    /// Builds the state store of type `type_name` with `options`, for runners whose config has
    /// no `[state]` (the daemon's default SQLite file, the CLI's memory store).
    pub fn build_default_state(&self, type_name: &str, options: toml::Table) -> Result<Arc<dyn StateStore>, ConfigErrors> {
        let c = ComponentConfig {
            kind: PluginKind::State,
            id: type_name.into(),
            type_name: type_name.into(),
            options: Options(options),
            path: KeyPath::root().key("state"),
        };
        let mut errors = Vec::new();
        match self.build_one(&c, &mut errors) {
            Some(One::State(s)) => Ok(s),
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// Checks a plugin's example: its table is read like a config file's (interpolation with an
/// empty environment) and built. Every runner's tests call this for every registered plugin.
pub fn check_example(d: &PluginDescriptor) -> Result<(), String> {
    let doc: toml::Table =
        d.example_toml.parse().map_err(|e: toml::de::Error| format!("{}: example is not TOML: {}", d.type_name, e.message()))?;
    let section = match d.kind() {
        PluginKind::Source => "source",
        PluginKind::Validator => "validators",
        PluginKind::Mapper => "mapper",
        PluginKind::Sink => "sinks",
        PluginKind::State => "state",
    };
    let table = match doc.get(section) {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(toml::Value::Array(a)) => match a.first() {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => return Err(format!("{}: example has an empty `[[{section}]]`", d.type_name)),
        },
        _ => return Err(format!("{}: example has no `[{section}]` table", d.type_name)),
    };
    let mut text = String::new();
    for (k, v) in doc.iter() {
        if k != section && !matches!(v, toml::Value::Table(_)) {
            return Err(format!("{}: example has a stray top-level key `{k}`", d.type_name));
        }
    }
    let mut wrapped = toml::Table::new();
    wrapped.insert(
        section.into(),
        if section.ends_with('s') {
            toml::Value::Array(vec![toml::Value::Table(table.clone())])
        } else {
            toml::Value::Table(table.clone())
        },
    );
    for (k, v) in doc.iter().filter(|(k, _)| k.as_str() != section) {
        wrapped.insert(k.clone(), v.clone());
    }
    text.push_str(&toml::to_string(&wrapped).map_err(|e| e.to_string())?);
    let cfg = Config::parse(&text, &format!("example of `{}`", d.type_name), &|_| None).map_err(|e| e.to_string())?;
    let component = match d.kind() {
        PluginKind::Source => cfg.source.clone(),
        PluginKind::Validator => cfg.validators.first().cloned(),
        PluginKind::Mapper => cfg.mapper.clone(),
        PluginKind::Sink => cfg.sinks.first().cloned(),
        PluginKind::State => cfg.state.clone(),
    };
    let Some(c) = component else { return Err(format!("{}: example did not yield a {} table", d.type_name, d.kind())) };
    if c.type_name != d.type_name {
        return Err(format!("{}: example has `type = \"{}\"`", d.type_name, c.type_name));
    }
    let section_problems: Vec<String> = cfg.problems().iter().filter(|e| !e.key.is_empty()).map(|e| e.to_string()).collect();
    if !section_problems.is_empty() {
        return Err(section_problems.join("; "));
    }
    let mut errors = Vec::new();
    match cfg.build_one(&c, &mut errors) {
        Some(_) => Ok(()),
        None => Err(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
    }
}
