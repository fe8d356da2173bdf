//! The plugin registry. Every plugin crate submits a [`PluginDescriptor`] with
//! [`register_plugin!`](crate::register_plugin), and shared config sections with
//! [`register_section!`](crate::register_section); the config loader, `sagesync plugins` and
//! `sagesync example` read them from here.
//!
//! Kinds are typed: a descriptor holds a [`Factory`] whose variant fixes what it builds, and
//! `register_plugin!(Sink, ...)` only compiles for a config that implements [`SinkPlugin`]. A
//! plugin registered under the wrong kind is a build error, never silently dropped.
//!
//! `inventory` only sees crates that are linked: a binary must reference every plugin crate it
//! wants (`use sagesync_sink_file as _;`), or that crate's plugins silently vanish.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::keypath::KeyPath;
use crate::options::{redact_serde_message, Check, Options};
use crate::sink::Sink;
use crate::source::Source;
use crate::stage::{Mapper, Validator};
use crate::state::StateStore;

/// The kinds of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// Yields training jobs (`[source]`).
    Source,
    /// Decides whether a job syncs (`[[validators]]`).
    Validator,
    /// Maps a job to a run record (`[mapper]`).
    Mapper,
    /// Writes run records (`[[sinks]]`).
    Sink,
    /// Holds the ledger, cursors and leases (`[state]`).
    State,
}

impl PluginKind {
    /// Lowercase name (`source`, `validator`, `mapper`, `sink`, `state`).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Validator => "validator",
            PluginKind::Mapper => "mapper",
            PluginKind::Sink => "sink",
            PluginKind::State => "state",
        }
    }
    /// All kinds, in pipeline order.
    pub const ALL: [PluginKind; 5] = [PluginKind::Source, PluginKind::Validator, PluginKind::Mapper, PluginKind::Sink, PluginKind::State];
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin's build step may read besides its own table. Building is pure: no I/O.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The component's id in the pipeline (its `id` key, or its type name).
    pub id: String,
    /// The directory of the config file, if it came from one.
    pub config_dir: Option<PathBuf>,
    /// The shared sections of the config (`[tag_keys]`...), as written.
    pub sections: Arc<BTreeMap<String, Options>>,
}

impl BuildContext {
    /// A shared section, deserialised (its default when absent or unreadable: the loader has
    /// already reported its problems with their location).
    pub fn section<T: DeserializeOwned + Default>(&self, name: &str) -> T {
        self.sections.get(name).and_then(|t| toml::Value::Table(t.0.clone()).try_into().ok()).unwrap_or_default()
    }
}

/// A problem with one option of a plugin's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Path of the key inside the plugin's table (empty for the table itself).
    pub path: KeyPath,
    /// What is wrong.
    pub message: String,
}

impl FieldProblem {
    /// A problem with the key `key` of the plugin's table.
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        FieldProblem { path: KeyPath::root().key(key), message: message.into() }
    }
}

/// A source plugin's config: deserialised (with `#[serde(deny_unknown_fields)]`) from its table,
/// checked and built without I/O.
pub trait SourcePlugin: DeserializeOwned {
    /// Validates the options and builds the source.
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Source>, Vec<FieldProblem>>;
}
/// A validator plugin's config.
pub trait ValidatorPlugin: DeserializeOwned {
    /// Validates the options and builds the validator.
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Validator>, Vec<FieldProblem>>;
}
/// A mapper plugin's config.
pub trait MapperPlugin: DeserializeOwned {
    /// Validates the options and builds the mapper.
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Mapper>, Vec<FieldProblem>>;
}
/// A sink plugin's config.
pub trait SinkPlugin: DeserializeOwned {
    /// Validates the options and builds the sink.
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>>;
}
/// A state store plugin's config.
pub trait StatePlugin: DeserializeOwned {
    /// Validates the options and builds the store (which opens its storage on first use).
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn StateStore>, Vec<FieldProblem>>;
}

/// A factory function of one kind.
pub type FactoryFn<T> = fn(toml::Table, &BuildContext) -> Result<Arc<T>, Vec<FieldProblem>>;

/// Builds a plugin from its table (without `type` and `id`); the variant is the kind.
#[derive(Clone, Copy)]
pub enum Factory {
    /// A source.
    Source(FactoryFn<dyn Source>),
    /// A validator.
    Validator(FactoryFn<dyn Validator>),
    /// A mapper.
    Mapper(FactoryFn<dyn Mapper>),
    /// A sink.
    Sink(FactoryFn<dyn Sink>),
    /// A state store.
    State(FactoryFn<dyn StateStore>),
}

impl Factory {
    /// The kind this factory builds.
    pub fn kind(&self) -> PluginKind {
        match self {
            Factory::Source(_) => PluginKind::Source,
            Factory::Validator(_) => PluginKind::Validator,
            Factory::Mapper(_) => PluginKind::Mapper,
            Factory::Sink(_) => PluginKind::Sink,
            Factory::State(_) => PluginKind::State,
        }
    }
}

/// One registered plugin.
pub struct PluginDescriptor {
    /// The `type = "..."` name.
    pub type_name: &'static str,
    /// One-line summary for `sagesync plugins`.
    pub summary: &'static str,
    /// A complete example table, printed by `sagesync example TYPE` (checked by
    /// [`crate::config::check_example`] in every runner's tests).
    pub example_toml: &'static str,
    /// Builds the plugin.
    pub factory: Factory,
    /// The config's defaults, every key (an unset optional key is `null`): what the config
    /// reference in docs/config.md is checked against.
    pub defaults: fn() -> serde_json::Value,
}

impl PluginDescriptor {
    /// Its kind.
    pub fn kind(&self) -> PluginKind {
        self.factory.kind()
    }
}

impl fmt::Debug for PluginDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDescriptor").field("kind", &self.kind()).field("type_name", &self.type_name).finish()
    }
}

inventory::collect!(PluginDescriptor);

/// A top-level config section registered outside the core: one that plugins share
/// (`[tag_keys]`), or a runner's settings (`[daemon]`, `[lambda]`).
pub struct SectionDescriptor {
    /// The section's name.
    pub name: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Reads the section's table: its problems (an unknown key, a wrong type) are located at
    /// their key by the loader.
    pub check: fn(toml::Table) -> Vec<FieldProblem>,
    /// Range-checks the section once it reads: problems are located at their value.
    pub ranges: fn(toml::Table) -> Vec<FieldProblem>,
    /// The section's defaults, every key.
    pub defaults: fn() -> serde_json::Value,
    /// Whether the section shapes records (plugins read it while they map or validate jobs):
    /// then it is part of the configuration digest, and changing it decides every job again.
    /// A runner's settings (its schedule, its deadlines) do not.
    pub shapes_records: bool,
}

inventory::collect!(SectionDescriptor);

/// Deserialises a plugin config from its table, with the failing key's path.
pub fn deserialize<C: DeserializeOwned>(table: toml::Table) -> Result<C, Vec<FieldProblem>> {
    serde_path_to_error::deserialize::<_, C>(toml::Value::Table(table)).map_err(|err| {
        vec![FieldProblem { path: KeyPath::from_serde_path(err.path()), message: redact_serde_message(err.inner().message()) }]
    })
}

/// Factory of a [`SourcePlugin`].
pub fn build_source<C: SourcePlugin>(t: toml::Table, ctx: &BuildContext) -> Result<Arc<dyn Source>, Vec<FieldProblem>> {
    deserialize::<C>(t)?.build(ctx)
}
/// Factory of a [`ValidatorPlugin`].
pub fn build_validator<C: ValidatorPlugin>(t: toml::Table, ctx: &BuildContext) -> Result<Arc<dyn Validator>, Vec<FieldProblem>> {
    deserialize::<C>(t)?.build(ctx)
}
/// Factory of a [`MapperPlugin`].
pub fn build_mapper<C: MapperPlugin>(t: toml::Table, ctx: &BuildContext) -> Result<Arc<dyn Mapper>, Vec<FieldProblem>> {
    deserialize::<C>(t)?.build(ctx)
}
/// Factory of a [`SinkPlugin`].
pub fn build_sink<C: SinkPlugin>(t: toml::Table, ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
    deserialize::<C>(t)?.build(ctx)
}
/// Factory of a [`StatePlugin`].
pub fn build_state<C: StatePlugin>(t: toml::Table, ctx: &BuildContext) -> Result<Arc<dyn StateStore>, Vec<FieldProblem>> {
    deserialize::<C>(t)?.build(ctx)
}
/// The defaults of a config type, every key (unset optional keys are `null`).
pub fn defaults_of<C: Default + serde::Serialize>() -> serde_json::Value {
    serde_json::to_value(C::default()).unwrap_or(serde_json::Value::Null)
}

/// Check function of a shared section type.
pub fn check_section<T: DeserializeOwned>(t: toml::Table) -> Vec<FieldProblem> {
    deserialize::<T>(t).err().unwrap_or_default()
}

/// Range check of a runner's section type ([`Check`]); nothing when it does not read (its
/// [`check_section`] says why).
pub fn range_check_section<T: DeserializeOwned + Check>(t: toml::Table) -> Vec<FieldProblem> {
    match deserialize::<T>(t) {
        Ok(v) => v.problems().into_iter().map(|(k, m)| FieldProblem::at(k, m)).collect(),
        Err(_) => Vec::new(),
    }
}

/// The range check of a section that has none.
pub fn no_ranges(_: toml::Table) -> Vec<FieldProblem> {
    Vec::new()
}

/// Registers a plugin of a kind (`Source`, `Validator`, `Mapper`, `Sink`, `State`). `$config`
/// must implement that kind's plugin trait (`SinkPlugin` for `Sink`...), `Default` (every
/// optional key's default) and `Serialize` (its defaults are what the config reference is
/// checked against), or this does not compile.
///
/// ```text
/// sagesync_core::register_plugin!(Sink, "my_sink", MySinkConfig,
///     summary = "Writes runs somewhere",
///     example = "[[sinks]]\ntype = \"my_sink\"\n");
/// ```
#[macro_export]
macro_rules! register_plugin {
    (Source, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::register_plugin!(@submit $name, $summary, $example, $crate::registry::Factory::Source($crate::registry::build_source::<$config>), $crate::registry::defaults_of::<$config>);
    };
    (Validator, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::register_plugin!(@submit $name, $summary, $example, $crate::registry::Factory::Validator($crate::registry::build_validator::<$config>), $crate::registry::defaults_of::<$config>);
    };
    (Mapper, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::register_plugin!(@submit $name, $summary, $example, $crate::registry::Factory::Mapper($crate::registry::build_mapper::<$config>), $crate::registry::defaults_of::<$config>);
    };
    (Sink, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::register_plugin!(@submit $name, $summary, $example, $crate::registry::Factory::Sink($crate::registry::build_sink::<$config>), $crate::registry::defaults_of::<$config>);
    };
    (State, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::register_plugin!(@submit $name, $summary, $example, $crate::registry::Factory::State($crate::registry::build_state::<$config>), $crate::registry::defaults_of::<$config>);
    };
    (@submit $name:expr, $summary:expr, $example:expr, $factory:expr, $defaults:expr) => {
        $crate::inventory::submit! {
            $crate::registry::PluginDescriptor { type_name: $name, summary: $summary, example_toml: $example, factory: $factory, defaults: $defaults }
        }
    };
}

/// Registers a top-level config section. `$ty` is its `Deserialize` type (with `Default` and
/// `Serialize`, for the config reference); the loader reports its problems with their
/// locations.
///
/// - `register_section!("tag_keys", TagKeys, summary = "...")`: a section plugins share while
///   they validate or map jobs; it is part of the configuration digest.
/// - `register_section!("daemon", DaemonSettings, summary = "...", runner)`: a runner's
///   settings, range-checked with [`Check`](crate::options::Check); changing them decides no job
///   again. Every runner links every runner's sections, so that one config file serves them all.
#[macro_export]
macro_rules! register_section {
    ($name:expr, $ty:ty, summary = $summary:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::SectionDescriptor { name: $name, summary: $summary, check: $crate::registry::check_section::<$ty>, ranges: $crate::registry::no_ranges, defaults: $crate::registry::defaults_of::<$ty>, shapes_records: true }
        }
    };
    ($name:expr, $ty:ty, summary = $summary:expr, runner $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::SectionDescriptor { name: $name, summary: $summary, check: $crate::registry::check_section::<$ty>, ranges: $crate::registry::range_check_section::<$ty>, defaults: $crate::registry::defaults_of::<$ty>, shapes_records: false }
        }
    };
}

/// Errors from looking plugins up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No plugin of that kind has that type name.
    #[error("unknown {kind} type `{requested}`; available: {}", if available.is_empty() { "(none registered: is the plugin crate linked?)".to_string() } else { available.join(", ") })]
    UnknownType {
        /// Kind looked up.
        kind: PluginKind,
        /// The requested type name.
        requested: String,
        /// The registered names of that kind.
        available: Vec<&'static str>,
    },
    /// Two plugins of one kind registered the same type name (or two sections one name).
    #[error("duplicate {kind} `{type_name}` registered {count} times; names must be unique")]
    Duplicate {
        /// Kind (`source`... or `section`).
        kind: String,
        /// The clashing name.
        type_name: &'static str,
        /// How many registrations.
        count: usize,
    },
}

/// Every registered plugin, sorted by kind then name.
pub fn all() -> Vec<&'static PluginDescriptor> {
    let mut v: Vec<&'static PluginDescriptor> = inventory::iter::<PluginDescriptor>.into_iter().collect();
    v.sort_by(|a, b| (a.kind(), a.type_name).cmp(&(b.kind(), b.type_name)));
    v
}

/// Every registered shared section, sorted by name.
pub fn sections() -> Vec<&'static SectionDescriptor> {
    let mut v: Vec<&'static SectionDescriptor> = inventory::iter::<SectionDescriptor>.into_iter().collect();
    v.sort_by_key(|s| s.name);
    v
}

/// The registered type names of one kind, sorted.
pub fn names(kind: PluginKind) -> Vec<&'static str> {
    let mut v: Vec<_> = all().into_iter().filter(|d| d.kind() == kind).map(|d| d.type_name).collect();
    v.dedup();
    v
}

/// `(kind, type)` of every registered plugin (what the runners' linking tests assert).
pub fn registered() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = all().into_iter().map(|d| (d.kind().as_str(), d.type_name)).collect();
    out.extend(crate::secrets::backends().into_iter().map(|b| ("secret", b.type_name)));
    out
}

/// Fails when two plugins of one kind share a type name, or two sections a name. Runners call
/// this at start-up.
pub fn check_unique() -> Result<(), Vec<RegistryError>> {
    let mut counts: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    for d in all() {
        *counts.entry((d.kind().as_str().to_string(), d.type_name)).or_default() += 1;
    }
    for s in sections() {
        *counts.entry(("section".to_string(), s.name)).or_default() += 1;
    }
    let errors: Vec<_> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((kind, type_name), count)| RegistryError::Duplicate { kind, type_name, count })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The plugin of `kind` named `type_name`.
pub fn find(kind: PluginKind, type_name: &str) -> Result<&'static PluginDescriptor, RegistryError> {
    all().into_iter().find(|d| d.kind() == kind && d.type_name == type_name).ok_or_else(|| RegistryError::UnknownType {
        kind,
        requested: type_name.to_string(),
        available: names(kind),
    })
}

/// Every plugin (of any kind) named `type_name`.
pub fn find_any(type_name: &str) -> Vec<&'static PluginDescriptor> {
    all().into_iter().filter(|d| d.type_name == type_name).collect()
}
