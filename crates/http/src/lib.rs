//! # sagesync-http
//!
//! What every HTTP sink of sagesync (MLflow, ModelDB v2) builds its client from, so that they
//! behave alike:
//!
//! - **One TLS stack for the whole binary**: rustls with the `aws-lc-rs` provider, the one the
//!   AWS SDK uses (no second crypto library: `cargo tree -i ring` is empty).
//! - **Trust**: the system's store (read by `rustls-native-certs`, which honours
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR` in place of it, as OpenSSL does), plus the certificates
//!   of a sink's `ca_file` (a private CA).
//! - **Proxies**: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment
//!   are honoured, as by curl and the AWS SDK.
//! - **Redirects** are never followed (credentials ride in headers).
//! - **Reply bodies** are read up to a cap ([`read_capped`]).
//! - **URLs** of stores are checked when the config is built ([`parse_base_url`]).
//! - **Errors** are described without the URL, and a TLS verification failure is told apart
//!   ([`is_tls_verification`]): it does not heal by retrying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// TLS settings of a client.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// A PEM file of extra trusted CA certificates (a private CA), besides the system's store.
    pub ca_file: Option<PathBuf>,
}

/// Why a client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// The largest CA file read: a bundle of every public CA is about 250 KB.
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The certificates of a PEM file: an error when it is not a regular file, is larger than
/// [`MAX_CA_FILE_BYTES`], cannot be read or holds none. (A device or a FIFO named by mistake is
/// refused, never read without end.)
pub fn read_ca_file(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BuildError> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let fail = |m: String| BuildError(format!("ca_file {}: {m}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let mut pem = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem)).map_err(|e| fail(e.to_string()))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
    }
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Makes `aws-lc-rs` the process's default rustls provider (once; later calls do nothing), so
/// that anything in a process that builds a TLS client without a configuration of its own (a
/// plain `reqwest::Client::new()`, which otherwise panics: no provider is compiled in besides
/// aws-lc-rs) uses the one crypto library too. sagesync's own clients never need it.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The rustls configuration: `aws-lc-rs`, the system's roots (or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), and the CA file's.
pub fn tls_config(tls: &TlsOptions) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    let named =
        ["SSL_CERT_FILE", "SSL_CERT_DIR"].into_iter().filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty())).collect::<Vec<_>>();
    if !native.errors.is_empty() || ignored > 0 {
        let first = native.errors.first().map(|e| e.to_string()).unwrap_or_default();
        if named.is_empty() {
            tracing::debug!(added, ignored, errors = native.errors.len(), first = %first, "some system certificates could not be loaded");
        } else {
            // The operator named the roots: what cannot be read of them is said, not skipped.
            tracing::warn!(added, ignored, errors = native.errors.len(), first = %first, vars = ?named, "trusted certificates could not be loaded");
        }
    }
    if added == 0 && !named.is_empty() {
        // Roots the operator named and none usable: refuse now, with the reason, rather than
        // fail every request later.
        return Err(BuildError(format!(
            "no trusted CA certificate could be loaded from {}; fix it (or unset it for the system's store)",
            named.join(" / ")
        )));
    }
    if let Some(path) = &tls.ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| BuildError(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A client builder with the shared TLS stack, proxies from the environment, no redirects and
/// the given connect timeout. Callers add their own default headers and timeouts.
pub fn client_builder(tls: &TlsOptions, connect_timeout: Duration) -> Result<reqwest::ClientBuilder, BuildError> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls_config(tls)?)
        .connect_timeout(connect_timeout)
        // Credentials ride in headers: never follow a redirect that could carry them to another
        // host. A 3xx is returned as it is, and fails the request.
        .redirect(reqwest::redirect::Policy::none()))
}

/// Why reading a reply body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The body is larger than the cap (it will not shrink: not retryable).
    #[error("reply larger than {0} bytes")]
    TooLarge(usize),
    /// No more of it arrived in time.
    #[error("the reply did not arrive in time")]
    Timeout,
    /// The connection broke before the body ended (retryable).
    #[error("the reply broke off: {0}")]
    BrokeOff(String),
}

/// Reads a reply's body, at most `max` bytes: a larger announced or actual body is
/// [`ReadError::TooLarge`] as soon as it is known, without reading the rest.
pub async fn read_capped(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(ReadError::TooLarge(max));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(e) if e.is_timeout() => return Err(ReadError::Timeout),
            Err(e) => return Err(ReadError::BrokeOff(describe(&e))),
        }
    }
}

/// Whether a request failed because the server's certificate could not be verified (unknown
/// issuer, expired, wrong name...). Retrying does not help: the trust store or `ca_file`
/// must change.
pub fn is_tls_verification(e: &reqwest::Error) -> bool {
    if typed_tls_verification(e) {
        return true;
    }
    // The connector's error types between reqwest and rustls are private and change between
    // releases; rustls's own wording of a verification failure is stable.
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        text.push_str(&err.to_string());
        text.push('\n');
        cur = err.source();
    }
    ["invalid peer certificate", "peer sent no certificates"].iter().any(|m| text.contains(m))
}

fn typed_tls_verification(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return is_verification(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // io::Error::source skips the error it wraps: look at it directly.
            if let Some(r) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return is_verification(r);
            }
        }
        cur = err.source();
    }
    false
}

fn is_verification(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::InvalidCertRevocationList(_)
    )
}

/// An error's chain of causes without the URL (which could, with a misconfigured proxy, carry
/// more than it should).
pub fn describe(e: &reqwest::Error) -> String {
    let head = if is_tls_verification(e) {
        "TLS: the server's certificate is not trusted (add its CA with `ca_file`, or SSL_CERT_FILE)"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the reply broke off"
    } else {
        "the request failed"
    };
    let mut out = head.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        if let Some(inner) = c.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            let s = inner.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
        }
        cur = c.source();
    }
    out
}

/// A reply body as JSON: `{}` when it is empty (or only whitespace), `None` when it is not
/// JSON. What every client reads a capped body with ([`read_capped`]).
pub fn json_body(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(bytes).ok()
}

/// A peer's text as it may appear in an error: at most `max` characters, control characters
/// dropped (a hostile reply cannot forge log lines or fill them).
pub fn reply_text(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control() || *c == ' ').take(max).collect()
}

/// Checks the base URL of a store (see [`sagesync_core::config::endpoint_url`]).
pub fn parse_base_url(s: &str) -> Result<String, String> {
    sagesync_core::config::endpoint_url(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(parse_base_url("https://mlflow.example.com/"), Ok("https://mlflow.example.com".into()));
        assert_eq!(parse_base_url("http://127.0.0.1:5000/prefix"), Ok("http://127.0.0.1:5000/prefix".into()));
        for bad in [
            "httpx://h",
            "http://",
            "https://u:p@h",
            "https://u@h",
            "https://h/?a=1",
            "https://h/#f",
            "ftp://h",
            "h:80",
            "",
            "http:/h",
            "http:h",
            "http://h:0",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("sagesync-http-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        assert!(read_ca_file(&f).unwrap_err().0.contains("no PEM certificate"));
        assert!(read_ca_file(&dir.join("missing.pem")).is_err());
        assert!(tls_config(&TlsOptions { ca_file: Some(dir.join("missing.pem")) }).is_err());
        assert!(tls_config(&TlsOptions::default()).is_ok());
    }
}
