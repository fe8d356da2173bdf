//! The options of `[[sinks]] type = "modeldb_v2"`, checked without I/O, and the plugin registration.

use std::sync::Arc;
use std::time::Duration;

use sagesync_core::{BuildContext, FieldProblem, Secret, Sink, SinkPlugin};
use serde::Deserialize;

use super::client::ApiSettings;
use super::{ModelDbV2Settings, ModelDbV2Sink, OnConflict};

/// Options of `modeldb_v2`.
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDbV2Config {
    /// `http://modeldb:3000`.
    pub base_url: String,
    /// `/api/v1/modeldb` through the web app; `/v1` on the proxy.
    #[serde(default = "default_prefix")]
    pub api_prefix: String,
    /// E-mail for `Grpc-Metadata-email`.
    #[serde(default)]
    pub email: Option<String>,
    /// Developer key (secret).
    #[serde(default)]
    pub developer_key: Option<Secret>,
    /// Connect timeout, seconds.
    #[serde(default = "ten")]
    pub connect_timeout_secs: u64,
    /// Request timeout, seconds.
    #[serde(default = "thirty")]
    pub request_timeout_secs: u64,
    /// Removed: the engine's `[pipeline] max_attempts` is the one retry policy. Accepted (and
    /// ignored, with a warning) so that older configs still load.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Removed with `max_attempts` (the engine's `[pipeline] initial_backoff_ms` applies).
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// A PEM file of CA certificates to trust besides the system's store (a server behind a
    /// private CA). Relative paths are read from the config file's directory.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Experiment name for every run (else the mapper's experiment).
    #[serde(default)]
    pub experiment: Option<String>,
    /// `keep` (write-once) or `replace` when a stored value differs.
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Version S3 channels that carry a manifest as ModelDB datasets.
    #[serde(default = "yes")]
    pub dataset_versions: bool,
    /// The registry workspace of model packages' registered models (`resources` with
    /// `"model_packages"`).
    #[serde(default = "personal")]
    pub registry_workspace: String,
    /// Where the registry service lives; default: `api_prefix` with its trailing `/modeldb` as
    /// `/registry` (`/api/v1/registry` through Verta's web app, `/v1/registry` on the proxy).
    #[serde(default)]
    pub registry_api_prefix: Option<String>,
    /// Seconds a model package's version waits for its training job's run before it is written
    /// unlinked (0 to 604800; from the package's creation).
    #[serde(default = "hour")]
    pub package_link_wait_secs: u64,
}

impl std::fmt::Debug for ModelDbV2Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDbV2Config")
            .field("base_url", &self.base_url)
            .field("api_prefix", &self.api_prefix)
            .field("email", &self.email)
            .field("developer_key", &self.developer_key)
            .finish_non_exhaustive()
    }
}

/// Defaults of the optional keys (`base_url` is required).
impl Default for ModelDbV2Config {
    fn default() -> Self {
        ModelDbV2Config {
            base_url: String::new(),
            api_prefix: default_prefix(),
            email: None,
            developer_key: None,
            connect_timeout_secs: ten(),
            request_timeout_secs: thirty(),
            max_attempts: None,
            initial_backoff_ms: None,
            ca_file: None,
            experiment: None,
            on_conflict: OnConflict::default(),
            dataset_versions: yes(),
            registry_workspace: personal(),
            registry_api_prefix: None,
            package_link_wait_secs: hour(),
        }
    }
}

fn default_prefix() -> String {
    "/api/v1/modeldb".into()
}
fn ten() -> u64 {
    10
}
fn thirty() -> u64 {
    30
}
fn yes() -> bool {
    true
}
/// The registry's prefix for a tracking prefix: Verta's web app serves the tracking services
/// under `/api/v1/modeldb` and the registry under `/api/v1/registry`; the proxy serves them
/// under `/v1` and `/v1/registry`.
pub fn default_registry_prefix(api_prefix: &str) -> String {
    let p = api_prefix.trim_end_matches('/');
    format!("{}/registry", p.strip_suffix("/modeldb").unwrap_or(p))
}

fn personal() -> String {
    "personal".into()
}
fn hour() -> u64 {
    3600
}

impl SinkPlugin for ModelDbV2Config {
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let base_url = match sagesync_http::parse_base_url(&self.base_url) {
            Ok(u) => u,
            Err(m) => {
                problems.push(FieldProblem::at("base_url", m));
                String::new()
            }
        };
        if self.max_attempts.is_some() || self.initial_backoff_ms.is_some() {
            tracing::warn!("modeldb_v2: `max_attempts` and `initial_backoff_ms` are ignored; [pipeline] max_attempts and initial_backoff_ms retry every sink");
        }
        let ca_file = match &self.ca_file {
            Some(p) if p.as_os_str().is_empty() => {
                problems.push(FieldProblem::at("ca_file", "must not be empty (leave it out to trust the system's store only)"));
                None
            }
            Some(p) => Some(match &ctx.config_dir {
                Some(d) if p.is_relative() => d.join(p),
                _ => p.clone(),
            }),
            None => None,
        };
        if let Some(p) = &ca_file {
            // Read when the config is checked (a local file, capped), so that `validate` names
            // a missing, unreadable or empty CA file at its key.
            if let Err(e) = sagesync_http::read_ca_file(p) {
                problems.push(FieldProblem::at("ca_file", e.0));
            }
        }
        if !self.api_prefix.is_empty() && !self.api_prefix.starts_with('/') {
            problems.push(FieldProblem::at("api_prefix", "must start with `/`"));
        }
        if self.email.is_some() != self.developer_key.is_some() {
            problems.push(FieldProblem::at(
                if self.email.is_some() { "developer_key" } else { "email" },
                "`email` and `developer_key` go together",
            ));
        }
        if let Some(e) = &self.experiment {
            if e.trim().is_empty() || e.chars().count() > 256 {
                problems.push(FieldProblem::at("experiment", "must be 1 to 256 characters"));
            }
        }
        for (k, v) in [("connect_timeout_secs", self.connect_timeout_secs), ("request_timeout_secs", self.request_timeout_secs)] {
            if !(1..=3600).contains(&v) {
                problems.push(FieldProblem::at(k, "must be between 1 and 3600"));
            }
        }
        let ws = &self.registry_workspace;
        if ws.is_empty() || ws.len() > 256 || !ws.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            problems.push(FieldProblem::at("registry_workspace", "must be 1 to 256 letters, digits, `-`, `_` or `.`"));
        }
        let registry_api_prefix = self.registry_api_prefix.clone().unwrap_or_else(|| default_registry_prefix(&self.api_prefix));
        if !registry_api_prefix.is_empty() && !registry_api_prefix.starts_with('/') {
            problems.push(FieldProblem::at("registry_api_prefix", "must start with `/`"));
        }
        if self.package_link_wait_secs > 604_800 {
            problems.push(FieldProblem::at("package_link_wait_secs", "must be between 0 and 604800 seconds"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let settings = ModelDbV2Settings {
            api: ApiSettings {
                base_url,
                api_prefix: self.api_prefix,
                email: self.email,
                developer_key: self.developer_key,
                connect_timeout: Duration::from_secs(self.connect_timeout_secs),
                request_timeout: Duration::from_secs(self.request_timeout_secs),
                ca_file,
            },
            experiment: self.experiment,
            on_conflict: self.on_conflict,
            dataset_versions: self.dataset_versions,
            registry_workspace: self.registry_workspace,
            registry_api_prefix,
            package_link_wait: Duration::from_secs(self.package_link_wait_secs),
        };
        ModelDbV2Sink::new(settings).map(|s| Arc::new(s) as Arc<dyn Sink>).map_err(|m| vec![FieldProblem::at("developer_key", m)])
    }
}

sagesync_core::register_plugin!(
    Sink,
    "modeldb_v2",
    ModelDbV2Config,
    summary = "ModelDB v2 (Verta 2.x) over its REST API: get-or-create, one write per new run, diff on re-sync",
    example = r#"[[sinks]]
type = "modeldb_v2"
base_url = "http://modeldb:3000"
api_prefix = "/api/v1/modeldb"   # "/v1" when talking to the proxy directly
# email = "ml-bot@example.com"
# developer_key = "${MODELDB_DEVELOPER_KEY}"
connect_timeout_secs = 10
request_timeout_secs = 30
# ca_file = "/etc/ssl/private-ca.pem"   # a server behind a private CA
# experiment = "sagemaker"       # default: the mapper's experiment
on_conflict = "keep"             # or "replace"
dataset_versions = true
# registry_workspace = "personal"   # model packages' registered models (Verta's registry)
# registry_api_prefix = "/api/v1/registry"   # default: api_prefix's "/modeldb" as "/registry"
# package_link_wait_secs = 3600     # a package's version waits this long for its job's run
"#
);
