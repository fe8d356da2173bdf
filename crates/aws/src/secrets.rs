//! Secret backends on AWS, for `[secret.<name>]` tables:
//!
//! - `type = "aws_secrets_manager"`: `secret_id` (a name or ARN), optional `version_stage`;
//!   Secrets Manager `GetSecretValue`, its `SecretString`;
//! - `type = "aws_ssm_parameter"`: `name` (a name or ARN); Systems Manager `GetParameter` with
//!   decryption, the parameter's value.
//!
//! Both take optional `region` (else the standard chain's), `profile` and `endpoint_url` (else
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM`, then `AWS_ENDPOINT_URL`, then
//! the service's regional endpoint), and sign with the standard credential chain.
//!
//! Each is one signed JSON request (`aws-sigv4`, the SDK's own signer, and the credential chain
//! of `aws-config`) rather than a client of the services' SDK crates: two calls do not warrant
//! compiling `aws-sdk-ssm`'s hundreds of operations into every binary. Replies are capped at
//! [`MAX_REPLY_BYTES`]; a call takes at most [`CALL_TIMEOUT`].

use std::time::Duration;

use sagesync_core::registry::FieldProblem;
use sagesync_core::secrets::{SecretBackend, SecretBackendPlugin};
use sagesync_core::Secret;
use serde_json::{json, Value};

use crate::sigv4::Signer;

/// The largest reply read.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;
/// The whole time of one call (credentials, connection, reply).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
        }
    }
    fn target(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager.GetSecretValue",
            Service::Ssm => "AmazonSSM.GetParameter",
        }
    }
    fn endpoint_env(self) -> &'static str {
        match self {
            Service::SecretsManager => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            Service::Ssm => "AWS_ENDPOINT_URL_SSM",
        }
    }
}

struct AwsSecret {
    service: Service,
    /// The secret id or parameter name.
    id: String,
    version_stage: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    endpoint_url: Option<String>,
}

impl SecretBackend for AwsSecret {
    fn read(&self) -> Result<Secret, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("no runtime: {e}"))?;
        rt.block_on(async {
            tokio::time::timeout(CALL_TIMEOUT, self.fetch()).await.map_err(|_| format!("no answer within {} s", CALL_TIMEOUT.as_secs()))?
        })
    }
}

fn regional_endpoint(service: Service, region: &str) -> String {
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://{}.{region}.{suffix}", service.signing_name())
}

impl AwsSecret {
    async fn region(&self) -> Result<String, String> {
        if let Some(r) = &self.region {
            return Ok(r.clone());
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        loader.load().await.region().map(|r| r.to_string()).ok_or_else(|| "no region: set `region`, or AWS_REGION".to_string())
    }

    async fn fetch(&self) -> Result<Secret, String> {
        let region = self.region().await?;
        let endpoint = self
            .endpoint_url
            .clone()
            .or_else(|| std::env::var(self.service.endpoint_env()).ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| regional_endpoint(self.service, &region));
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        let body = match self.service {
            Service::SecretsManager => {
                let mut b = json!({"SecretId": self.id});
                if let Some(s) = &self.version_stage {
                    b["VersionStage"] = json!(s);
                }
                b
            }
            Service::Ssm => json!({"Name": self.id, "WithDecryption": true}),
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let signer = Signer::new(region, self.service.signing_name().to_string(), self.profile.clone(), CALL_TIMEOUT);
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", self.service.target())];
        let signed = signer.sign("POST", &url, &headers, &bytes).await.map_err(|e| e.to_string())?;
        let client = sagesync_http::client_builder(&Default::default(), Duration::from_secs(10))
            .map_err(|e| e.to_string())?
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let mut req = client.post(&url).body(bytes);
        for (k, v) in headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain(signed) {
            req = req.header(k, v);
        }
        let mut resp = req.send().await.map_err(|e| format!("{} {url}: {}", self.service.target(), sagesync_http::describe(&e)))?;
        let status = resp.status().as_u16();
        let raw = sagesync_http::read_capped(&mut resp, MAX_REPLY_BYTES).await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if status != 200 {
            // The error's type and message: neither holds the secret (it was never sent back).
            let code = v.get("__type").and_then(Value::as_str).unwrap_or("error");
            let code = code.rsplit('#').next().unwrap_or(code);
            let message = v.get("message").or_else(|| v.get("Message")).and_then(Value::as_str).unwrap_or("");
            return Err(format!(
                "{} {}: HTTP {status} {code}{}",
                self.service.target(),
                self.id,
                if message.is_empty() { String::new() } else { format!(": {message}") }
            ));
        }
        let value = match self.service {
            Service::SecretsManager => v
                .get("SecretString")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{} has no SecretString (a binary secret is not supported)", self.id))?,
            Service::Ssm => {
                v.pointer("/Parameter/Value").and_then(Value::as_str).ok_or_else(|| format!("{} answered no Parameter.Value", self.id))?
            }
        };
        Ok(Secret::new(value))
    }
}

/// Reads the SSM parameter `name` (decrypted) with the standard chain, on a thread of its own
/// (callable from inside a runtime): the Lambda's `ConfigParameter`, a whole sagesync.toml.
pub fn read_ssm_parameter(name: &str, endpoint_url: Option<&str>) -> Result<Secret, String> {
    let b = AwsSecret {
        service: Service::Ssm,
        id: name.to_string(),
        version_stage: None,
        region: None,
        profile: None,
        endpoint_url: endpoint_url.filter(|u| !u.is_empty()).map(str::to_string),
    };
    std::thread::spawn(move || b.read()).join().map_err(|_| "reading the parameter panicked".to_string())?
}

fn build(service: Service, t: &toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>> {
    let id_key = match service {
        Service::SecretsManager => "secret_id",
        Service::Ssm => "name",
    };
    let mut known = vec![id_key, "region", "profile", "endpoint_url"];
    if service == Service::SecretsManager {
        known.push("version_stage");
    }
    let mut problems = Vec::new();
    for k in t.keys() {
        if !known.contains(&k.as_str()) {
            problems.push(FieldProblem::at(k, format!("unknown key; expected one of: {}", known.join(", "))));
        }
    }
    let mut get = |k: &str| match t.get(k) {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            problems.push(FieldProblem::at(k, "must be a non-empty string"));
            None
        }
    };
    let id = get(id_key);
    let (version_stage, region, profile, endpoint_url) = (get("version_stage"), get("region"), get("profile"), get("endpoint_url"));
    if id.is_none() && !problems.iter().any(|p| p.path.to_string() == id_key) {
        problems.push(FieldProblem::at(id_key, "required"));
    }
    if let Some(r) = &region {
        if !r.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
            problems.push(FieldProblem::at("region", format!("`{r}` is not a region name (e.g. `us-east-1`)")));
        }
    }
    if let Some(u) = &endpoint_url {
        if let Err(m) = sagesync_core::config::endpoint_url(u) {
            problems.push(FieldProblem::at("endpoint_url", m));
        }
    }
    match (problems.is_empty(), id) {
        (true, Some(id)) => Ok(Box::new(AwsSecret { service, id, version_stage, region, profile, endpoint_url })),
        _ => Err(problems),
    }
}

fn build_secrets_manager(t: &toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>> {
    build(Service::SecretsManager, t)
}

fn build_ssm(t: &toml::Table) -> Result<Box<dyn SecretBackend>, Vec<FieldProblem>> {
    build(Service::Ssm, t)
}

inventory::submit! {
    SecretBackendPlugin {
        type_name: "aws_secrets_manager",
        description: "an AWS Secrets Manager secret's string (`secret_id`, `version_stage`, `region`)",
        example_toml: "[secret.store]\ntype = \"aws_secrets_manager\"\nsecret_id = \"prod/modeldb\"   # a name or an ARN; SECRET[store.developer_key] picks a JSON key\n# version_stage = \"AWSCURRENT\"\n# region = \"us-east-1\"\n# endpoint_url = \"https://secretsmanager.us-east-1.amazonaws.com\"\n",
        build: build_secrets_manager,
    }
}
inventory::submit! {
    SecretBackendPlugin {
        type_name: "aws_ssm_parameter",
        description: "an AWS Systems Manager parameter, decrypted (`name`, `region`)",
        example_toml: "[secret.store_token]\ntype = \"aws_ssm_parameter\"\nname = \"/sagesync/store-token\"   # a name or an ARN; SecureString is decrypted\n# region = \"us-east-1\"\n",
        build: build_ssm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_checked_offline() {
        let t: toml::Table = toml::from_str("secret_id = \"prod/mlflow\"\nregion = \"eu-west-1\"").unwrap();
        assert!(build_secrets_manager(&t).is_ok());
        let t: toml::Table = toml::from_str("secret_id = \"x\"\nregion = \"EU WEST\"\nbogus = 1").unwrap();
        let p = build_secrets_manager(&t).err().unwrap();
        assert!(p.iter().any(|p| p.message.contains("not a region")) && p.iter().any(|p| p.message.contains("unknown key")));
        assert!(build_ssm(&toml::Table::new()).err().unwrap().iter().any(|p| p.message == "required"));
        assert_eq!(regional_endpoint(Service::Ssm, "cn-north-1"), "https://ssm.cn-north-1.amazonaws.com.cn");
    }
}
