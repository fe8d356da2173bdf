use std::sync::Arc;
use std::time::Duration;

use sagesync_core::{BuildContext, FieldProblem, Sink, SinkPlugin};
use serde::Deserialize;

use super::{ModelDbV1Settings, ModelDbV1Sink};

/// Options of `modeldb_v1`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelDbV1Config {
    /// Server host name (not a URL).
    pub host: String,
    /// Thrift port (a number, or a string such as `"${MODEL_DB_INSTANCE_PORT:-6543}"`).
    #[serde(deserialize_with = "port")]
    pub port: u16,
    /// Connect timeout in seconds.
    pub connect_timeout_secs: u64,
    /// Per-call timeout in seconds.
    pub request_timeout_secs: u64,
    /// Replay the AWS sample's Light API calls exactly (not idempotent).
    pub compat: bool,
    /// Seconds a model package's model waits for its training job's run before the package
    /// gets a run of its own (0 to 604800; from the package's creation).
    pub package_link_wait_secs: u64,
}

fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(i64),
        S(String),
    }
    let bad = || serde::de::Error::custom("must be a port number between 1 and 65535");
    match P::deserialize(d)? {
        P::N(n) => u16::try_from(n).map_err(|_| bad()),
        P::S(s) => s.trim().parse::<u16>().map_err(|_| bad()),
    }
}

impl Default for ModelDbV1Config {
    fn default() -> Self {
        ModelDbV1Config {
            host: "localhost".into(),
            port: 6543,
            connect_timeout_secs: 10,
            request_timeout_secs: 60,
            compat: false,
            package_link_wait_secs: 3600,
        }
    }
}

impl SinkPlugin for ModelDbV1Config {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn Sink>, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push(FieldProblem::at("host", "must not be empty"));
        } else if self.host.contains("://") || self.host.contains('/') {
            problems.push(FieldProblem::at("host", "a host name, not a URL (e.g. `modeldb.internal`)"));
        }
        if self.port == 0 {
            problems.push(FieldProblem::at("port", "must be between 1 and 65535"));
        }
        for (k, v) in [("connect_timeout_secs", self.connect_timeout_secs), ("request_timeout_secs", self.request_timeout_secs)] {
            if !(1..=3600).contains(&v) {
                problems.push(FieldProblem::at(k, format!("must be between 1 and 3600, got {v}")));
            }
        }
        if self.package_link_wait_secs > 604_800 {
            problems.push(FieldProblem::at("package_link_wait_secs", "must be between 0 and 604800 seconds"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Arc::new(ModelDbV1Sink::new(ModelDbV1Settings {
            host: self.host,
            port: self.port,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            compat: self.compat,
            package_link_wait: Duration::from_secs(self.package_link_wait_secs),
        })))
    }
}

sagesync_core::register_plugin!(
    Sink,
    "modeldb_v1",
    ModelDbV1Config,
    summary = "ModelDB v1 over its Thrift Light API (idempotent by ARN; compat = true replays the AWS sample)",
    example = r#"[[sinks]]
type = "modeldb_v1"
host = "localhost"
port = 6543
connect_timeout_secs = 10
request_timeout_secs = 60
# true: exactly the AWS sample's calls (fit on `train`, all metrics on `test`, a new run per sync).
compat = false
# package_link_wait_secs = 3600   # a model package's model waits this long for its job's run
"#
);
