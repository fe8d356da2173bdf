//! The plugin registry. Every plugin crate submits a [`PluginDescriptor`] with
//! [`register_plugin!`](crate::register_plugin); the config loader, `sagesync plugins` and
//! `sagesync example` read them from here.
//!
//! `inventory` only sees crates that are linked: a binary must reference every plugin crate it
//! wants (`use sagesync_sink_file as _;`), or that crate's plugins silently vanish.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::config::{KeyPath, TagKeys};
use crate::traits::{Mapper, Sink, Source, Validator};

/// The four kinds of plugin.
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
}

impl PluginKind {
    /// Lowercase name (`source`, `validator`, `mapper`, `sink`).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Validator => "validator",
            PluginKind::Mapper => "mapper",
            PluginKind::Sink => "sink",
        }
    }
    /// All kinds, in pipeline order.
    pub const ALL: [PluginKind; 4] = [PluginKind::Source, PluginKind::Validator, PluginKind::Mapper, PluginKind::Sink];
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built plugin instance.
#[derive(Clone)]
pub enum Component {
    /// A source.
    Source(Arc<dyn Source>),
    /// A validator.
    Validator(Arc<dyn Validator>),
    /// A mapper.
    Mapper(Arc<dyn Mapper>),
    /// A sink.
    Sink(Arc<dyn Sink>),
}

impl Component {
    /// The kind of this component.
    pub fn kind(&self) -> PluginKind {
        match self {
            Component::Source(_) => PluginKind::Source,
            Component::Validator(_) => PluginKind::Validator,
            Component::Mapper(_) => PluginKind::Mapper,
            Component::Sink(_) => PluginKind::Sink,
        }
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Component::{:?}", self.kind())
    }
}

/// What a plugin's build step may read besides its own table. Building is pure: no I/O.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The component's id in the pipeline (its `id` key, or its type name).
    pub id: String,
    /// The tag keys of the `[tag_keys]` section.
    pub tag_keys: TagKeys,
    /// The directory of the config file, if it came from one.
    pub config_dir: Option<std::path::PathBuf>,
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

/// The function a descriptor uses to build its plugin from the TOML table (without `type` and
/// `id`).
pub type BuildFn = fn(toml::Table, &BuildContext) -> Result<Component, Vec<FieldProblem>>;

/// One registered plugin.
pub struct PluginDescriptor {
    /// Its kind.
    pub kind: PluginKind,
    /// The `type = "..."` name.
    pub type_name: &'static str,
    /// One-line summary for `sagesync plugins`.
    pub summary: &'static str,
    /// A complete example table, printed by `sagesync example TYPE`.
    pub example_toml: &'static str,
    /// Builds the plugin from its table.
    pub build: BuildFn,
}

impl fmt::Debug for PluginDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginDescriptor").field("kind", &self.kind).field("type_name", &self.type_name).finish()
    }
}

inventory::collect!(PluginDescriptor);

/// A typed plugin configuration: deserialised (with `#[serde(deny_unknown_fields)]`) from the
/// plugin's table, checked, and turned into a component without I/O.
pub trait PluginConfig: DeserializeOwned {
    /// Validates the options and builds the component.
    fn build(self, ctx: &BuildContext) -> Result<Component, Vec<FieldProblem>>;
}

/// Deserialises `C` from `table` and builds it; a [`BuildFn`] for any [`PluginConfig`].
pub fn build_typed<C: PluginConfig>(table: toml::Table, ctx: &BuildContext) -> Result<Component, Vec<FieldProblem>> {
    let value = toml::Value::Table(table);
    match serde_path_to_error::deserialize::<_, C>(value) {
        Ok(cfg) => cfg.build(ctx),
        Err(err) => {
            let path = KeyPath::from_serde_path(err.path());
            let message = crate::config::redact_serde_message(err.inner().message());
            Err(vec![FieldProblem { path, message }])
        }
    }
}

/// Registers a plugin. `$config` must implement [`PluginConfig`].
///
/// ```text
/// sagesync_core::register_plugin!(Sink, "my_sink", MySinkConfig,
///     summary = "Writes runs somewhere",
///     example = "[[sinks]]\ntype = \"my_sink\"\n");
/// ```
#[macro_export]
macro_rules! register_plugin {
    ($kind:ident, $name:expr, $config:ty, summary = $summary:expr, example = $example:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::PluginDescriptor {
                kind: $crate::registry::PluginKind::$kind,
                type_name: $name,
                summary: $summary,
                example_toml: $example,
                build: $crate::registry::build_typed::<$config>,
            }
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
    /// Two plugins of one kind registered the same type name.
    #[error("duplicate {kind} type `{type_name}` registered {count} times; plugin type names must be unique")]
    Duplicate {
        /// Kind.
        kind: PluginKind,
        /// The clashing name.
        type_name: &'static str,
        /// How many registrations.
        count: usize,
    },
}

/// Every registered plugin, sorted by kind then name.
pub fn all() -> Vec<&'static PluginDescriptor> {
    let mut v: Vec<&'static PluginDescriptor> = inventory::iter::<PluginDescriptor>.into_iter().collect();
    v.sort_by(|a, b| (a.kind, a.type_name).cmp(&(b.kind, b.type_name)));
    v
}

/// The registered type names of one kind, sorted.
pub fn names(kind: PluginKind) -> Vec<&'static str> {
    let mut v: Vec<_> = all().into_iter().filter(|d| d.kind == kind).map(|d| d.type_name).collect();
    v.dedup();
    v
}

/// Fails when two plugins of one kind share a type name. Runners call this at start-up.
pub fn check_unique() -> Result<(), Vec<RegistryError>> {
    check_unique_in(all())
}

/// [`check_unique`] over an explicit list of descriptors.
pub fn check_unique_in(descriptors: Vec<&PluginDescriptor>) -> Result<(), Vec<RegistryError>> {
    let mut counts: BTreeMap<(PluginKind, &'static str), usize> = BTreeMap::new();
    for d in descriptors {
        *counts.entry((d.kind, d.type_name)).or_default() += 1;
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
    all()
        .into_iter()
        .find(|d| d.kind == kind && d.type_name == type_name)
        .ok_or_else(|| RegistryError::UnknownType { kind, requested: type_name.to_string(), available: names(kind) })
}

/// Every plugin (of any kind) named `type_name`.
pub fn find_any(type_name: &str) -> Vec<&'static PluginDescriptor> {
    all().into_iter().filter(|d| d.type_name == type_name).collect()
}
