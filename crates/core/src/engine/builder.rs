//! Assembling an [`Engine`]: from a config file (the one path every runner takes) or in code.

use std::path::Path;
use std::sync::Arc;

use super::{owner_id, Engine, InFlight};
use crate::config::Check;
use crate::config::{Config, ConfigErrors, NamedSink, PipelineSettings};
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
}

impl EngineOptions {
    /// Defaults to an in-memory ledger.
    pub fn memory() -> Self {
        EngineOptions { default_state: "memory".into(), default_state_options: toml::Table::new(), dry_run: false }
    }
    /// Defaults to the SQLite file `sagesync-state.db`.
    pub fn sqlite() -> Self {
        EngineOptions { default_state: "sqlite".into(), default_state_options: toml::Table::new(), dry_run: false }
    }
    /// Sets `dry_run`.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
}

impl Engine {
    /// Builds the engine a config describes: every component through the registry, the state
    /// store from `[state]` or the runner's default. Every configuration error at once.
    pub fn from_config(cfg: &Config, opts: &EngineOptions) -> Result<Engine, ConfigErrors> {
        let built = cfg.build()?;
        let state = match built.state {
            Some(s) => s,
            None => cfg.build_default_state(&opts.default_state, opts.default_state_options.clone())?,
        };
        let mut settings = cfg.pipeline.clone();
        settings.dry_run |= opts.dry_run;
        let config_digest = crate::digest::of_json(&(&built.config_digest, built.source.fingerprint()));
        Ok(Engine {
            source: built.source,
            validators: built.validators,
            mapper: built.mapper,
            sinks: built.sinks,
            state,
            settings,
            config_digest,
            owner: owner_id(),
            inflight: InFlight::default(),
            passes: Default::default(),
        })
    }

    /// Reads a config file and builds its engine.
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<(Engine, Config), ConfigErrors> {
        let cfg = Config::from_file(path)?;
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

/// Assembles an [`Engine`] in code, without TOML.
#[derive(Default)]
pub struct EngineBuilder {
    source: Option<Arc<dyn Source>>,
    validators: Vec<(String, Arc<dyn Validator>)>,
    mapper: Option<Arc<dyn Mapper>>,
    sinks: Vec<NamedSink>,
    state: Option<Arc<dyn StateStore>>,
    settings: PipelineSettings,
}

impl EngineBuilder {
    /// An empty builder with default settings and an in-memory ledger.
    pub fn new() -> Self {
        Self::default()
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
    pub fn validator(mut self, id: impl Into<String>, v: impl Validator + 'static) -> Self {
        self.validators.push((id.into(), Arc::new(v)));
        self
    }
    /// Sets the mapper.
    pub fn mapper(mut self, m: impl Mapper + 'static) -> Self {
        self.mapper = Some(Arc::new(m));
        self
    }
    /// Appends a sink.
    pub fn sink(self, id: impl Into<String>, s: impl Sink + 'static) -> Self {
        self.sink_arc(id, Arc::new(s))
    }
    /// Appends a sink from an `Arc`.
    pub fn sink_arc(mut self, id: impl Into<String>, s: Arc<dyn Sink>) -> Self {
        let id = id.into();
        self.sinks.push(NamedSink { digest: crate::digest::of_bytes(id.as_bytes()), id, sink: s });
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
        let mut ids = std::collections::HashSet::new();
        if self.sinks.len() > crate::config::MAX_SINKS {
            return Err(BuildError::TooManySinks(self.sinks.len()));
        }
        for s in &self.sinks {
            if !crate::config::valid_id(&s.id) {
                let mut id = s.id.clone();
                crate::state::cut_text(&mut id, 80);
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
        let config_digest = crate::digest::of_json(&(self.validators.iter().map(|(id, _)| id).collect::<Vec<_>>(), source.fingerprint()));
        Ok(Engine {
            source,
            validators: self.validators,
            mapper: self.mapper.ok_or(BuildError::NoMapper)?,
            sinks: self.sinks,
            state: self.state.unwrap_or_else(|| Arc::new(MemoryState::new())),
            settings: self.settings,
            config_digest,
            owner: owner_id(),
            inflight: InFlight::default(),
            passes: Default::default(),
        })
    }
}
