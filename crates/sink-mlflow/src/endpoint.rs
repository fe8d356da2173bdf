//! `tracking_uri`: a plain `http(s)` URL, or a SageMaker MLflow ARN.
//!
//! An ARN `arn:<partition>:sagemaker:<region>:<account>:mlflow-tracking-server/<name>` (or
//! `mlflow-app/<name>`) resolves the way AWS's `sagemaker-mlflow` plugin resolves it: the REST
//! API is at `https://<region>.experiments.sagemaker.aws` (partitions `aws` and `aws-us-gov`),
//! every request carries the ARN in `x-mlflow-sm-tracking-server-arn` (`x-sm-mlflow-app-arn`
//! for an app) and is signed with SigV4 for the service `sagemaker-mlflow`.

use sagesync_core::Secret;

/// A `tracking_uri` that cannot be used; the message never repeats credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", sagesync_core::secret::redact(.0))]
pub struct EndpointError(pub String);

/// A parsed SageMaker MLflow ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowArn {
    /// The whole ARN.
    pub arn: String,
    /// Its region.
    pub region: String,
    /// `mlflow-tracking-server` or `mlflow-app`.
    pub resource_type: String,
}

impl MlflowArn {
    /// The routing header SageMaker's MLflow front end expects.
    pub fn header_name(&self) -> &'static str {
        if self.resource_type == "mlflow-app" {
            "x-sm-mlflow-app-arn"
        } else {
            "x-mlflow-sm-tracking-server-arn"
        }
    }
}

/// Where the REST API is.
#[derive(Clone)]
pub struct Endpoint {
    /// Scheme, host, port and path prefix, without a trailing `/` (e.g. `http://127.0.0.1:5000`).
    pub base: String,
    /// The ARN, when `tracking_uri` was one.
    pub arn: Option<MlflowArn>,
    /// Credentials found in the URL (moved into basic auth by the config check).
    pub userinfo: Option<(String, Secret)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("arn", &self.arn)
            .field("userinfo", &self.userinfo.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Endpoint {
    /// Parses a `tracking_uri`.
    pub fn parse(uri: &str) -> Result<Endpoint, EndpointError> {
        let uri = uri.trim();
        if uri.starts_with("arn:") {
            return parse_arn(uri);
        }
        let url = url::Url::parse(uri)
            .map_err(|e| EndpointError(format!("is not a URL ({e}); use http(s)://host[:port] or a SageMaker MLflow ARN")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointError(format!("scheme `{}` is not supported; use http:// or https://", url.scheme())));
        }
        if !uri.get(url.scheme().len()..).is_some_and(|rest| rest.starts_with("://")) {
            return Err(EndpointError(format!("must start with `{}://`", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(EndpointError("has no host".into()));
        }
        if url.port() == Some(0) {
            return Err(EndpointError("has port 0".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(EndpointError("must not have a query or fragment".into()));
        }
        let userinfo = if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
            let user = decode(url.username()).map_err(|_| EndpointError("has a user name that is not UTF-8".into()))?;
            let pass = decode(url.password().unwrap_or("")).map_err(|_| EndpointError("has a password that is not UTF-8".into()))?;
            if user.is_empty() {
                return Err(EndpointError("has a password without a user name".into()));
            }
            Some((user, Secret::new(pass)))
        } else {
            None
        };
        let mut clean = url.clone();
        // Cannot fail for http(s) URLs with a host.
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        let base = clean.as_str().trim_end_matches('/').to_string();
        Ok(Endpoint { base, arn: None, userinfo })
    }

    /// The REST API root, `<base>/api/2.0/mlflow`.
    pub fn api_base(&self) -> String {
        format!("{}/api/2.0/mlflow", self.base)
    }
}

fn parse_arn(arn: &str) -> Result<Endpoint, EndpointError> {
    let bad = |why: &str| {
        EndpointError(format!(
            "is not a SageMaker MLflow ARN ({why}); expected arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>"
        ))
    };
    if arn.contains('#') {
        return Err(bad("an assumed role after `#` is not supported; use `auth.profile` with a role profile"));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(bad("too few parts"));
    };
    if service != "sagemaker" {
        return Err(bad("service is not `sagemaker`"));
    }
    let dns_suffix = match partition {
        "aws" | "aws-us-gov" => "aws",
        _ => return Err(bad("partition must be `aws` or `aws-us-gov`")),
    };
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(bad("bad region"));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("account must be 12 digits"));
    }
    let Some((resource_type, name)) = resource.split_once('/') else {
        return Err(bad("no resource name"));
    };
    if !matches!(resource_type, "mlflow-tracking-server" | "mlflow-app") {
        return Err(bad("resource type must be `mlflow-tracking-server` or `mlflow-app`"));
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(bad("bad resource name"));
    }
    Ok(Endpoint {
        base: format!("https://{region}.experiments.sagemaker.{dns_suffix}"),
        arn: Some(MlflowArn { arn: arn.to_string(), region: region.to_string(), resource_type: resource_type.to_string() }),
        userinfo: None,
    })
}

/// `uri` with any `user:password@` replaced by `***@`, for messages.
pub fn redact_userinfo(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &uri[..s + 3], &uri[at..]),
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:5000/").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:5000");
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("http://h/?x=1").is_err());
        assert!(Endpoint::parse("not a url").is_err());
        let e = Endpoint::parse("https://u%40x:p%3Aw@h:8443/ml").unwrap();
        assert_eq!(e.base, "https://h:8443/ml");
        let (u, p) = e.userinfo.clone().unwrap();
        assert_eq!((u.as_str(), p.expose()), ("u@x", "p:w"));
        assert!(!format!("{e:?}").contains("p:w"));
        let err = Endpoint::parse("https://:secret@h").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn arns() {
        let e = Endpoint::parse("arn:aws:sagemaker:us-west-2:123456789012:mlflow-tracking-server/my-server").unwrap();
        assert_eq!(e.base, "https://us-west-2.experiments.sagemaker.aws");
        let arn = e.arn.unwrap();
        assert_eq!(arn.header_name(), "x-mlflow-sm-tracking-server-arn");
        assert_eq!(arn.region, "us-west-2");
        let app = Endpoint::parse("arn:aws-us-gov:sagemaker:us-gov-west-1:123456789012:mlflow-app/app-1").unwrap();
        assert_eq!(app.arn.unwrap().header_name(), "x-sm-mlflow-app-arn");
        for bad in [
            "arn:aws:s3:us-east-1:123456789012:mlflow-tracking-server/x",
            "arn:aws-cn:sagemaker:cn-north-1:123456789012:mlflow-tracking-server/x",
            "arn:aws:sagemaker:us-east-1:1234:mlflow-tracking-server/x",
            "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
            "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/",
            "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/x#arn:aws:iam::1:role/r",
            "arn:aws:sagemaker",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_userinfo("https://u:p@h/x"), "https://***@h/x");
        assert_eq!(redact_userinfo("http://h"), "http://h");
    }
}
