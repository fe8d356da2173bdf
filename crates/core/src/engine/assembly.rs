//! Assembling an [`Engine`]: from a config file (the one path every runner takes) or in code.
//! Both go through [`EngineBuilder`], so that an engine is fingerprinted the same way whichever
//! way it was made (one place computes the digests, [`digests`]). A dry run is another assembly
//! of the same parts: sinks that write nothing and a ledger that keeps nothing
//! (`engine/dry_run.rs`); the engine's path is the same.

use std::path::Path;
use std::sync::Arc;

use super::dry_run::{DryRunSink, DryRunState};
use super::{owner_id, Engine, InFlight};
use crate::config::Check;
use crate::config::{Built, Config, ConfigErrors, NamedSink, PipelineSettings};
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::{Mapper, Validator};
use crate::state::{MemoryState, StateStore};

/// What a runner decides when assembling an engine from a config.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The state store type when the config has no `[state]` (`memory` for `sagesync run`,
    /// `sqlite` for the daemon and the ledger commands).
    pub default_state: String,
    /// Its options.
    pub default_state_options: toml::Table,
    /// Validate and map only (`--dry-run`).
    pub dry_run: bool,
    /// How `SECRET[...]` references are resolved (read at start, or not at all for
    /// `sagesync validate`).
    pub secrets: crate::config::SecretMode,
}

impl EngineOptions {
    /// Defaults to an in-memory ledger.
    pub fn memory() -> Self {
        EngineOptions {
            default_state: "memory".into(),
            default_state_options: toml::Table::new(),
            dry_run: false,
            secrets: crate::config::SecretMode::Resolve,
        }
    }
    /// Defaults to the SQLite file `sagesync-state.db`.
    pub fn sqlite() -> Self {
        EngineOptions {
            default_state: "sqlite".into(),
            default_state_options: toml::Table::new(),
            dry_run: false,
            secrets: crate::config::SecretMode::Resolve,
        }
    }
    /// Sets `dry_run`.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
    /// Sets how secrets are resolved.
    pub fn secrets(mut self, mode: crate::config::SecretMode) -> Self {
        self.secrets = mode;
        self
    }
}

impl Engine {
    /// Builds the engine a config describes: every component through the registry, the state
    /// store from `[state]` or the runner's default. Every configuration error at once.
    pub fn from_config(cfg: &Config, opts: &EngineOptions) -> Result<Engine, ConfigErrors> {
        let built = cfg.build()?;
        let state = match built.state.clone() {
            Some(s) => s,
            None => cfg.build_default_state(&opts.default_state, opts.default_state_options.clone())?,
        };
        let mut settings = cfg.pipeline.clone();
        settings.dry_run |= opts.dry_run;
        EngineBuilder::configured(built).state(state).settings(settings).build().map_err(|e| ConfigErrors::one(&cfg.file, e.to_string()))
    }

    /// Reads a config file and builds its engine.
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<(Engine, Config), ConfigErrors> {
        let mut cfg = Config::from_file(path)?;
        cfg.resolve_secrets(opts.secrets)?;
        let engine = Engine::from_config(&cfg, opts)?;
        Ok((engine, cfg))
    }
}

/// Errors from assembling an engine in code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// No source was given.
    #[error("an engine needs a source")]
    NoSource,
    /// No mapper was given.
    #[error("an engine needs a mapper")]
    NoMapper,
    /// No sink was given.
    #[error("an engine needs at least one sink")]
    NoSink,
    /// Bad settings.
    #[error("invalid pipeline setting `{0}`: {1}")]
    Settings(String, String),
    /// Two sinks share an id.
    #[error("duplicate sink id `{0}`")]
    DuplicateSink(String),
    /// A sink id outside the rule of [`crate::config::valid_id`].
    #[error("invalid sink id `{0}`: 1 to 64 letters, digits, `_`, `-` or `.`")]
    InvalidSinkId(String),
    /// More than [`crate::config::MAX_SINKS`] sinks.
    #[error("at most {max} sinks per engine, got {0}", max = crate::config::MAX_SINKS)]
    TooManySinks(usize),
}

/// One component and what fingerprints it: the digest of its config table when it was built
/// from one, else its own `fingerprint()`.
struct Part<T: ?Sized> {
    id: String,
    plugin: Arc<T>,
    table_digest: Option<String>,
}

/// Assembles an [`Engine`] in code, without TOML (and, from a config, for
/// [`Engine::from_config`]).
#[derive(Default)]
pub struct EngineBuilder {
    source: Option<Arc<dyn Source>>,
    validators: Vec<Part<dyn Validator>>,
    mapper: Option<Part<dyn Mapper>>,
    sinks: Vec<Part<dyn Sink>>,
    state: Option<Arc<dyn StateStore>>,
    settings: PipelineSettings,
    /// The config's sections that shape records (`None`: assembled in code).
    sections: Option<Vec<(String, toml::Table)>>,
}

impl EngineBuilder {
    /// An empty builder with default settings and an in-memory ledger.
    pub fn new() -> Self {
        Self::default()
    }
    /// A builder holding a config's built components (each fingerprinted by its table).
    fn configured(b: Built) -> Self {
        EngineBuilder {
            source: Some(b.source),
            validators: b.validators.into_iter().map(|c| Part { id: c.id, plugin: c.plugin, table_digest: Some(c.table_digest) }).collect(),
            mapper: Some(Part { id: b.mapper.id, plugin: b.mapper.plugin, table_digest: Some(b.mapper.table_digest) }),
            sinks: b.sinks.into_iter().map(|c| Part { id: c.id, plugin: c.plugin, table_digest: Some(c.table_digest) }).collect(),
            state: b.state,
            settings: PipelineSettings::default(),
            sections: Some(b.shaping_sections),
        }
    }
    /// Sets the source.
    pub fn source(mut self, s: impl Source + 'static) -> Self {
        self.source = Some(Arc::new(s));
        self
    }
    /// Sets the source from an `Arc`.
    pub fn source_arc(mut self, s: Arc<dyn Source>) -> Self {
        self.source = Some(s);
        self
    }
    /// Appends a validator.
    pub fn validator(self, id: impl Into<String>, v: impl Validator + 'static) -> Self {
        self.validator_arc(id, Arc::new(v))
    }
    /// Appends a validator from an `Arc`.
    pub fn validator_arc(mut self, id: impl Into<String>, v: Arc<dyn Validator>) -> Self {
        self.validators.push(Part { id: id.into(), plugin: v, table_digest: None });
        self
    }
    /// Sets the mapper.
    pub fn mapper(self, m: impl Mapper + 'static) -> Self {
        self.mapper_arc(Arc::new(m))
    }
    /// Sets the mapper from an `Arc`.
    pub fn mapper_arc(mut self, m: Arc<dyn Mapper>) -> Self {
        self.mapper = Some(Part { id: "mapper".into(), plugin: m, table_digest: None });
        self
    }
    /// Appends a sink.
    pub fn sink(self, id: impl Into<String>, s: impl Sink + 'static) -> Self {
        self.sink_arc(id, Arc::new(s))
    }
    /// Appends a sink from an `Arc`.
    pub fn sink_arc(mut self, id: impl Into<String>, s: Arc<dyn Sink>) -> Self {
        self.sinks.push(Part { id: id.into(), plugin: s, table_digest: None });
        self
    }
    /// Sets the state store (default: in memory).
    pub fn state(mut self, s: Arc<dyn StateStore>) -> Self {
        self.state = Some(s);
        self
    }
    /// Replaces the settings.
    pub fn settings(mut self, s: PipelineSettings) -> Self {
        self.settings = s;
        self
    }
    /// Builds the engine.
    pub fn build(self) -> Result<Engine, BuildError> {
        if let Some((k, m)) = self.settings.problems().into_iter().next() {
            return Err(BuildError::Settings(k.to_string(), m));
        }
        if self.sinks.len() > crate::config::MAX_SINKS {
            return Err(BuildError::TooManySinks(self.sinks.len()));
        }
        let mut ids = std::collections::HashSet::new();
        for s in &self.sinks {
            if !crate::config::valid_id(&s.id) {
                let mut id = s.id.clone();
                crate::limits::cut_text(&mut id, 80);
                return Err(BuildError::InvalidSinkId(id));
            }
            if !ids.insert(s.id.clone()) {
                return Err(BuildError::DuplicateSink(s.id.clone()));
            }
        }
        if self.sinks.is_empty() {
            return Err(BuildError::NoSink);
        }
        let source = self.source.ok_or(BuildError::NoSource)?;
        let mapper = self.mapper.ok_or(BuildError::NoMapper)?;
        let (config_digest, sink_digests) = digests(source.as_ref(), &self.validators, &mapper, self.sections.as_deref(), &self.sinks);
        let dry_run = self.settings.dry_run;
        let sinks = self
            .sinks
            .into_iter()
            .zip(sink_digests)
            .map(|(p, digest)| NamedSink {
                id: p.id,
                // A dry run: the same sinks, fingerprinted the same, writing nothing.
                sink: if dry_run { Arc::new(DryRunSink) } else { p.plugin },
                digest,
            })
            .collect();
        let state = self.state.unwrap_or_else(|| Arc::new(MemoryState::new()));
        // A dry run reads the ledger and keeps what it would write in memory.
        let state: Arc<dyn StateStore> = if dry_run { Arc::new(DryRunState::new(state)) } else { state };
        Ok(Engine {
            source,
            validators: self.validators.into_iter().map(|p| (p.id, p.plugin)).collect(),
            mapper: mapper.plugin,
            sinks,
            state,
            settings: self.settings,
            config_digest,
            owner: owner_id(),
            inflight: InFlight::default(),
            passes: Default::default(),
        })
    }
}

/// The engine's digests, computed here only: the configuration digest (what shapes decisions
/// and records: validators, mapper, the record-shaping sections, the source's record options;
/// when it changes every job is decided again) and one digest per sink (when it changes, every
/// job is delivered to that sink again).
///
/// A component built from a config table is fingerprinted by that table; one assembled in code
/// by its `fingerprint()` (with its id). The formulas keep the digests of earlier releases for
/// both kinds of engine, so that an upgrade re-delivers nothing by itself.
fn digests(
    source: &dyn Source,
    validators: &[Part<dyn Validator>],
    mapper: &Part<dyn Mapper>,
    sections: Option<&[(String, toml::Table)]>,
    sinks: &[Part<dyn Sink>],
) -> (String, Vec<String>) {
    use crate::digest::{of_bytes, of_json};
    let mut shaping: Vec<String> = validators
        .iter()
        .map(|v| match (&v.table_digest, v.plugin.fingerprint()) {
            (Some(t), _) => t.clone(),
            (None, fp) if fp.is_empty() => v.id.clone(),
            (None, fp) => of_json(&("validator", &v.id, fp)),
        })
        .collect();
    match (&mapper.table_digest, mapper.plugin.fingerprint()) {
        (Some(t), _) => shaping.push(t.clone()),
        (None, fp) if fp.is_empty() => {}
        (None, fp) => shaping.push(of_json(&("mapper", fp))),
    }
    let config = match sections {
        Some(secs) => of_json(&(of_json(&(shaping, secs)), source.fingerprint())),
        None => of_json(&(shaping, source.fingerprint())),
    };
    let sinks = sinks
        .iter()
        .map(|s| match (&s.table_digest, s.plugin.fingerprint()) {
            (Some(t), _) => t.clone(),
            (None, fp) if fp.is_empty() => of_bytes(s.id.as_bytes()),
            (None, fp) => of_json(&("sink", &s.id, fp)),
        })
        .collect();
    (config, sinks)
}
