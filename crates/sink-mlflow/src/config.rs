//! The `mlflow` sink's options, checked without I/O, and its registration.

use std::sync::Arc;
use std::time::Duration;

use sagesync_core::{BuildContext, FieldProblem, Secret, Sink, SinkPlugin};
use serde::Deserialize;

use crate::endpoint::{Endpoint, EndpointError};
use crate::template::ExperimentTemplate;
use crate::MlflowSink;

/// What to do when a job's hyperparameter differs from the param already logged on its run
/// (MLflow refuses to change a logged param).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnParamChange {
    /// Fail the job (a permanent error naming the param); nothing is written to the run.
    Fail,
    /// Keep the logged param and record the new value in the tag
    /// `sagesync.param_changed.<key>`, with a warning (the default).
    #[default]
    Tag,
}

/// The `auth` table.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Token {
        /// The token (secret).
        token: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password (secret).
        password: Secret,
    },
    /// AWS Signature Version 4 with the standard credential chain.
    Sigv4 {
        /// Signing region (default: the region of an ARN `tracking_uri`).
        #[serde(default)]
        region: Option<String>,
        /// Named profile for the credential chain (default: the chain's own choice).
        #[serde(default)]
        profile: Option<String>,
        /// Signing service name.
        #[serde(default = "default_service")]
        service: String,
    },
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::None => f.write_str("None"),
            AuthConfig::Token { .. } => f.write_str("Token { token: *** }"),
            AuthConfig::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: *** }}")
            }
            AuthConfig::Sigv4 { region, profile, service } => {
                f.debug_struct("Sigv4").field("region", region).field("profile", profile).field("service", service).finish()
            }
        }
    }
}

fn default_service() -> String {
    crate::sigv4::DEFAULT_SERVICE.to_string()
}

/// Options of the `mlflow` sink.
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowSinkConfig {
    /// `http(s)://host[:port][/prefix]`, or a SageMaker MLflow tracking-server (or app) ARN.
    pub tracking_uri: String,
    /// Experiment name template; `{project}` and `{experiment}` come from the record.
    #[serde(default = "default_experiment")]
    pub experiment: String,
    /// Authentication.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Whole-request timeout, seconds (1..=3600).
    #[serde(default = "thirty")]
    pub request_timeout_secs: u64,
    /// Connect timeout, seconds (1..=600).
    #[serde(default = "ten")]
    pub connect_timeout_secs: u64,
    /// Write into the run SageMaker-managed MLflow already logged for the job.
    #[serde(default)]
    pub adopt_native_runs: bool,
    /// A changed hyperparameter: `fail` or `tag` (default).
    #[serde(default)]
    pub on_param_change: OnParamChange,
    /// Largest reply body read, bytes (64 KiB..=1 GiB).
    #[serde(default = "default_max_response")]
    pub max_response_bytes: u64,
    /// A PEM file of CA certificates to trust besides the system's store (a server behind a
    /// private CA). Relative paths are read from the config file's directory.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a model package whose training job has no run here yet waits for it, seconds
    /// (0..=604800): MLflow cannot change a model version's run once it exists.
    #[serde(default = "hour")]
    pub package_link_wait_secs: u64,
}

fn hour() -> u64 {
    3600
}

impl std::fmt::Debug for MlflowSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowSinkConfig")
            .field("tracking_uri", &crate::endpoint::redact_userinfo(&self.tracking_uri))
            .field("experiment", &self.experiment)
            .field("auth", &self.auth)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("adopt_native_runs", &self.adopt_native_runs)
            .field("on_param_change", &self.on_param_change)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("ca_file", &self.ca_file)
            .field("package_link_wait_secs", &self.package_link_wait_secs)
            .finish()
    }
}

fn default_experiment() -> String {
    "{project}".into()
}
fn thirty() -> u64 {
    30
}
fn ten() -> u64 {
    10
}
/// Default cap on a reply body: 8 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 << 20;
fn default_max_response() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// How requests are authenticated, after checking.
#[derive(Clone)]
pub enum Auth {
    /// Nothing.
    None,
    /// Bearer token.
    Bearer(Secret),
    /// Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// SigV4.
    SigV4 {
        /// Signing region.
        region: String,
        /// Profile name.
        profile: Option<String>,
        /// Service name.
        service: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: *** }}")
            }
            Auth::SigV4 { region, profile, service } => {
                f.debug_struct("SigV4").field("region", region).field("profile", profile).field("service", service).finish()
            }
        }
    }
}

/// Checked settings of the sink (what [`MlflowSink::new`] takes).
#[derive(Debug, Clone)]
pub struct MlflowSettings {
    /// Where the REST API is.
    pub endpoint: Endpoint,
    /// Experiment name template.
    pub experiment: ExperimentTemplate,
    /// Authentication.
    pub auth: Auth,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Adopt SageMaker's native runs.
    pub adopt_native_runs: bool,
    /// Changed-param policy.
    pub on_param_change: OnParamChange,
    /// Cap on a reply body, bytes.
    pub max_response_bytes: usize,
    /// Extra trusted CA certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a model package waits for its training job's run.
    pub package_link_wait: Duration,
}

impl MlflowSettings {
    /// Settings for a plain `http(s)` tracking server with every default.
    pub fn for_url(url: &str) -> Result<Self, Vec<FieldProblem>> {
        MlflowSinkConfig::with_uri(url).settings()
    }
}

fn bounded(problems: &mut Vec<FieldProblem>, key: &str, value: u64, range: std::ops::RangeInclusive<u64>, unit: &str) {
    if !range.contains(&value) {
        problems.push(FieldProblem::at(key, format!("must be between {} and {} {unit}, got {value}", range.start(), range.end())));
    }
}

/// Defaults of the optional keys (`tracking_uri` is required).
impl Default for MlflowSinkConfig {
    fn default() -> Self {
        MlflowSinkConfig::with_uri("")
    }
}

impl MlflowSinkConfig {
    /// A config with every default and this `tracking_uri`.
    pub fn with_uri(tracking_uri: &str) -> Self {
        MlflowSinkConfig {
            tracking_uri: tracking_uri.to_string(),
            experiment: default_experiment(),
            auth: None,
            request_timeout_secs: thirty(),
            connect_timeout_secs: ten(),
            adopt_native_runs: false,
            on_param_change: OnParamChange::default(),
            max_response_bytes: default_max_response(),
            ca_file: None,
            package_link_wait_secs: hour(),
        }
    }

    /// Checks every option (no I/O) and returns the settings, or every problem found.
    pub fn settings(self) -> Result<MlflowSettings, Vec<FieldProblem>> {
        self.settings_in(None)
    }

    /// [`MlflowSinkConfig::settings`], with a relative `ca_file` read from `dir`.
    pub fn settings_in(self, dir: Option<&std::path::Path>) -> Result<MlflowSettings, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let ca_file = match &self.ca_file {
            Some(p) if p.as_os_str().is_empty() => {
                problems.push(FieldProblem::at("ca_file", "must not be empty (leave it out to trust the system's store only)"));
                None
            }
            Some(p) => Some(match dir {
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
        bounded(&mut problems, "request_timeout_secs", self.request_timeout_secs, 1..=3600, "seconds");
        bounded(&mut problems, "connect_timeout_secs", self.connect_timeout_secs, 1..=600, "seconds");
        bounded(&mut problems, "max_response_bytes", self.max_response_bytes, 64 << 10..=1 << 30, "bytes");
        bounded(&mut problems, "package_link_wait_secs", self.package_link_wait_secs, 0..=604_800, "seconds");
        let experiment = match ExperimentTemplate::parse(&self.experiment) {
            Ok(t) => Some(t),
            Err(m) => {
                problems.push(FieldProblem::at("experiment", m));
                None
            }
        };
        let endpoint = match Endpoint::parse(&self.tracking_uri) {
            Ok(e) => Some(e),
            Err(EndpointError(m)) => {
                problems.push(FieldProblem::at("tracking_uri", m));
                None
            }
        };
        let auth = endpoint.as_ref().and_then(|e| match resolve_auth(self.auth.clone(), e) {
            Ok(a) => Some(a),
            Err(p) => {
                problems.push(p);
                None
            }
        });
        match (endpoint, experiment, auth) {
            (Some(mut endpoint), Some(experiment), Some(auth)) if problems.is_empty() => {
                endpoint.userinfo = None;
                Ok(MlflowSettings {
                    endpoint,
                    experiment,
                    auth,
                    request_timeout: Duration::from_secs(self.request_timeout_secs),
                    connect_timeout: Duration::from_secs(self.connect_timeout_secs),
                    adopt_native_runs: self.adopt_native_runs,
                    on_param_change: self.on_param_change,
                    max_response_bytes: usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX),
                    ca_file,
                    package_link_wait: Duration::from_secs(self.package_link_wait_secs),
                })
            }
            _ => Err(problems),
        }
    }
}

/// A problem with `auth.<key>`.
fn auth_problem(key: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem { path: sagesync_core::config::KeyPath::root().key("auth").key(key), message: message.into() }
}

fn non_empty(key: &str, v: &str) -> Result<(), FieldProblem> {
    if v.trim().is_empty() {
        Err(auth_problem(key, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Combines `auth` with what the endpoint implies: credentials in the URL become basic auth,
/// an ARN needs SigV4 (its region by default).
fn resolve_auth(auth: Option<AuthConfig>, endpoint: &Endpoint) -> Result<Auth, FieldProblem> {
    if let Some((username, password)) = &endpoint.userinfo {
        return match auth {
            None | Some(AuthConfig::None) => Ok(Auth::Basic { username: username.clone(), password: password.clone() }),
            Some(_) => Err(FieldProblem::at(
                "tracking_uri",
                "carries credentials (user:password@) and `auth` is set too; keep the credentials in `auth` only",
            )),
        };
    }
    match (auth, &endpoint.arn) {
        (None, Some(arn)) => Ok(Auth::SigV4 { region: arn.region.clone(), profile: None, service: default_service() }),
        (Some(AuthConfig::Sigv4 { region, profile, service }), arn) => {
            let region = match (region, arn) {
                (Some(r), _) => r,
                (None, Some(arn)) => arn.region.clone(),
                (None, None) => return Err(auth_problem("region", "is required for `sigv4` when `tracking_uri` is not an ARN")),
            };
            let valid_region = !region.is_empty()
                && region.len() <= 64
                && region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_region {
                return Err(auth_problem("region", "must be an AWS region name such as `us-east-1`"));
            }
            if let Some(p) = &profile {
                non_empty("profile", p)?;
            }
            non_empty("service", &service)?;
            Ok(Auth::SigV4 { region, profile, service })
        }
        (Some(_), Some(_)) => Err(auth_problem("type", "a SageMaker MLflow ARN needs `sigv4` (or leave `auth` out)")),
        (None | Some(AuthConfig::None), None) => Ok(Auth::None),
        (Some(AuthConfig::Token { token }), None) => {
            if token.is_empty() || !token.expose().bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(auth_problem("token", "must be a non-empty token of visible ASCII characters"));
            }
            Ok(Auth::Bearer(token))
        }
        (Some(AuthConfig::Basic { username, password }), None) => {
            non_empty("username", &username)?;
            if username.contains(':') || username.chars().any(char::is_control) {
                return Err(auth_problem("username", "must not contain `:` or control characters"));
            }
            if password.expose().chars().any(char::is_control) {
                return Err(auth_problem("password", "must not contain control characters"));
            }
            Ok(Auth::Basic { username, password })
        }
    }
}

impl SinkPlugin for MlflowSinkConfig {
    fn build(self, ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        let sink = MlflowSink::new(self.settings_in(ctx.config_dir.as_deref())?)
            .map_err(|e| vec![FieldProblem::at("tracking_uri", e.to_string())])?;
        Ok(Arc::new(sink))
    }
}

/// The example `sagesync example mlflow` prints.
pub const EXAMPLE: &str = r#"[[sinks]]
type = "mlflow"
tracking_uri = "http://127.0.0.1:5000"   # or "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/my-server"
experiment = "{project}"                 # placeholders: {project}, {experiment}
request_timeout_secs = 30
connect_timeout_secs = 10
adopt_native_runs = false                # true: write into the run SageMaker's MLflow integration logged
on_param_change = "tag"                  # or "fail"
max_response_bytes = 8388608
# ca_file = "/etc/ssl/private-ca.pem"    # a server behind a private CA
# [sinks.auth]                           # default: none (sigv4 for an ARN tracking_uri)
# type = "token"
# token = "${MLFLOW_TRACKING_TOKEN}"
# type = "basic"
# username = "sagesync"
# password = "${MLFLOW_TRACKING_PASSWORD}"
# type = "sigv4"
# region = "us-east-1"
# profile = "ml"
# service = "sagemaker-mlflow"
"#;

sagesync_core::register_plugin!(
    Sink,
    "mlflow",
    MlflowSinkConfig,
    summary = "MLflow tracking server (self-hosted or SageMaker managed): one run per job ARN, diffed re-syncs, SigV4",
    example = EXAMPLE
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Result<MlflowSettings, Vec<FieldProblem>> {
        serde_json::from_value::<MlflowSinkConfig>(v).map_err(|e| vec![FieldProblem::at("?", e.to_string())])?.settings()
    }

    fn keys(p: &[FieldProblem]) -> Vec<String> {
        p.iter().map(|p| p.path.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let s = cfg(json!({"tracking_uri": "http://127.0.0.1:5000"})).unwrap();
        assert_eq!(s.endpoint.api_base(), "http://127.0.0.1:5000/api/2.0/mlflow");
        assert!(matches!(s.auth, Auth::None));
        assert_eq!(s.on_param_change, OnParamChange::Tag);
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.max_response_bytes, 8 << 20);
    }

    #[test]
    fn every_bad_number_is_named() {
        let p =
            cfg(json!({"tracking_uri": "http://h", "request_timeout_secs": 0, "connect_timeout_secs": 100000, "max_response_bytes": 10}))
                .unwrap_err();
        let k = keys(&p);
        for key in ["request_timeout_secs", "connect_timeout_secs", "max_response_bytes"] {
            assert!(k.iter().any(|x| x.contains(key)), "{key} missing from {k:?}");
        }
    }

    #[test]
    fn url_credentials_become_basic_auth_and_never_show() {
        let s = cfg(json!({"tracking_uri": "https://bot:hunter2@mlflow.example.com/prefix"})).unwrap();
        match &s.auth {
            Auth::Basic { username, password } => {
                assert_eq!(username, "bot");
                assert_eq!(password.expose(), "hunter2");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.endpoint.api_base(), "https://mlflow.example.com/prefix/api/2.0/mlflow");
        assert!(!format!("{s:?}").contains("hunter2"));
        let c: MlflowSinkConfig = serde_json::from_value(json!({"tracking_uri": "https://bot:hunter2@h"})).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        let p = cfg(json!({"tracking_uri": "https://bot:hunter2@h", "auth": {"type": "token", "token": "t"}})).unwrap_err();
        assert!(keys(&p).iter().any(|k| k.contains("tracking_uri")));
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn arn_means_sigv4_in_its_region() {
        let arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team-a";
        let s = cfg(json!({"tracking_uri": arn})).unwrap();
        assert_eq!(s.endpoint.api_base(), "https://eu-west-1.experiments.sagemaker.aws/api/2.0/mlflow");
        assert!(matches!(&s.auth, Auth::SigV4 { region, service, .. } if region == "eu-west-1" && service == "sagemaker-mlflow"));
        let p = cfg(json!({"tracking_uri": arn, "auth": {"type": "token", "token": "x"}})).unwrap_err();
        assert!(keys(&p).iter().any(|k| k.contains("auth")));
    }

    #[test]
    fn sigv4_on_a_url_needs_a_region() {
        let p = cfg(json!({"tracking_uri": "http://h", "auth": {"type": "sigv4"}})).unwrap_err();
        assert!(keys(&p).iter().any(|k| k.contains("auth.region")), "{p:?}");
        let s = cfg(json!({"tracking_uri": "http://h", "auth": {"type": "sigv4", "region": "us-east-1", "profile": "ml"}})).unwrap();
        assert!(matches!(&s.auth, Auth::SigV4 { profile: Some(p), .. } if p == "ml"));
    }

    #[test]
    fn unknown_keys_and_placeholders_are_refused() {
        assert!(serde_json::from_value::<MlflowSinkConfig>(json!({"tracking_uri": "http://h", "nope": 1})).is_err());
        assert!(serde_json::from_value::<MlflowSinkConfig>(
            json!({"tracking_uri": "http://h", "auth": {"type": "token", "token": "t", "extra": 1}})
        )
        .is_err());
        let p = cfg(json!({"tracking_uri": "http://h", "experiment": "{team}/{project}"})).unwrap_err();
        assert_eq!(keys(&p), ["experiment"]);
        assert!(p[0].message.contains("team"));
    }

    #[test]
    fn token_is_never_printed() {
        let c: MlflowSinkConfig =
            serde_json::from_value(json!({"tracking_uri": "http://h", "auth": {"type": "token", "token": "s3cr3t"}})).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let s = c.settings().unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
