//! The options of `[state] type = "dynamodb"` and the plugin registration.

use std::sync::Arc;
use std::time::Duration;

use sagesync_core::{BuildContext, FieldProblem, StatePlugin, StateStore};
use serde::Deserialize;

use crate::client::DynamoSettings;
use crate::store::DynamoState;

/// Options of `[state] type = "dynamodb"`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoStateConfig {
    /// The table (3 to 255 characters: letters, digits, `_`, `-`, `.`). Required.
    pub table: String,
    /// AWS region (else the standard chain: `AWS_REGION`, the profile...).
    pub region: Option<String>,
    /// DynamoDB endpoint override (`AWS_ENDPOINT_URL_DYNAMODB` also works).
    pub endpoint_url: Option<String>,
    /// Named AWS profile.
    pub profile: Option<String>,
    /// Create the table when it does not exist (on-demand billing, TTL on `lease_ttl`). Needs
    /// `dynamodb:CreateTable` and `dynamodb:UpdateTimeToLive`.
    pub create_table: bool,
    /// Attempts per request, first included (SDK retries with backoff: throttling, 5xx,
    /// timeouts), 1 to 20.
    pub max_attempts: u32,
    /// First SDK retry backoff, milliseconds (1 to 60000).
    pub initial_backoff_ms: u64,
    /// Connect timeout, milliseconds (100 to 60000).
    pub connect_timeout_ms: u64,
    /// Timeout of one attempt of a request, milliseconds (100 to 300000).
    pub request_timeout_ms: u64,
    /// Pages (of up to 1 MB) a counting scan reads per second, 0.1 to 100: `sagesync status`
    /// and a daemon's opted-in `ledger_recount_secs` scan the table to count it.
    pub scan_pages_per_second: f64,
}

impl Default for DynamoStateConfig {
    fn default() -> Self {
        let d = DynamoSettings::new("");
        DynamoStateConfig {
            table: String::new(),
            region: None,
            endpoint_url: None,
            profile: None,
            create_table: false,
            max_attempts: d.max_attempts,
            initial_backoff_ms: d.initial_backoff.as_millis() as u64,
            connect_timeout_ms: d.connect_timeout.as_millis() as u64,
            request_timeout_ms: d.request_timeout.as_millis() as u64,
            scan_pages_per_second: d.scan_pages_per_second,
        }
    }
}

fn table_name_ok(t: &str) -> bool {
    (3..=255).contains(&t.len()) && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

impl DynamoStateConfig {
    /// Checks the options and turns them into settings.
    pub fn settings(&self) -> Result<DynamoSettings, Vec<FieldProblem>> {
        let mut p = Vec::new();
        if self.table.is_empty() {
            p.push(FieldProblem::at("table", "is required: the DynamoDB table holding the ledger"));
        } else if !table_name_ok(&self.table) {
            p.push(FieldProblem::at(
                "table",
                format!("`{}` is not a DynamoDB table name (3 to 255 characters: letters, digits, `_`, `-`, `.`)", self.table),
            ));
        }
        if let Some(u) = &self.endpoint_url {
            if let Err(m) = sagesync_core::config::endpoint_url(u) {
                p.push(FieldProblem::at("endpoint_url", m));
            }
        }
        if !self.scan_pages_per_second.is_finite() || !(0.1..=100.0).contains(&self.scan_pages_per_second) {
            p.push(FieldProblem::at("scan_pages_per_second", format!("must be between 0.1 and 100, got {}", self.scan_pages_per_second)));
        }
        for (k, v) in [("region", &self.region), ("profile", &self.profile)] {
            if v.as_deref().is_some_and(str::is_empty) {
                p.push(FieldProblem::at(k, "must not be empty (leave it out for the standard chain)"));
            }
        }
        if !(1..=20).contains(&self.max_attempts) {
            p.push(FieldProblem::at("max_attempts", format!("must be between 1 and 20, got {}", self.max_attempts)));
        }
        for (k, v, lo, hi) in [
            ("initial_backoff_ms", self.initial_backoff_ms, 1, 60_000),
            ("connect_timeout_ms", self.connect_timeout_ms, 100, 60_000),
            ("request_timeout_ms", self.request_timeout_ms, 100, 300_000),
        ] {
            if !(lo..=hi).contains(&v) {
                p.push(FieldProblem::at(k, format!("must be between {lo} and {hi}, got {v}")));
            }
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(DynamoSettings {
            table: self.table.clone(),
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            profile: self.profile.clone(),
            create_table: self.create_table,
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            scan_pages_per_second: self.scan_pages_per_second,
        })
    }
}

impl StatePlugin for DynamoStateConfig {
    fn build(self, _ctx: &BuildContext) -> Result<Arc<dyn StateStore>, Vec<FieldProblem>> {
        Ok(Arc::new(DynamoState::new(self.settings()?)))
    }
}

sagesync_core::register_plugin!(
    State,
    "dynamodb",
    DynamoStateConfig,
    summary = "The ledger, cursors and per-job leases in a DynamoDB table, shared by Lambdas and daemons on many machines",
    example = r#"[state]
type = "dynamodb"
table = "sagesync-state"
# Credentials and region come from the standard AWS chain (env, profile, SSO, IMDS, ECS...).
region = "us-east-1"
# profile = "ml-prod"
# endpoint_url = "http://127.0.0.1:8000"
create_table = false        # true: create it on first use (on-demand, TTL on lease_ttl)
max_attempts = 8            # per request, SDK retries on throttling, 5xx and timeouts
initial_backoff_ms = 50
connect_timeout_ms = 5000
request_timeout_ms = 10000
scan_pages_per_second = 4   # counting scans (sagesync status)
"#
);
