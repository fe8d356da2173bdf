//! A certificate authority made for one test: its PEM file (what a sink's `ca_file` or
//! `SSL_CERT_FILE` points at) and server certificates it signs for 127.0.0.1 and localhost.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

/// A server certificate and its key.
pub struct ServerCert {
    /// The chain (the leaf).
    pub certs: Vec<CertificateDer<'static>>,
    /// The key.
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).expect("write ca.pem");
        TestCa { issuer, dir }
    }

    /// The CA certificate as a PEM file.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for 127.0.0.1 and localhost, signed by this CA.
    pub fn server(&self) -> ServerCert {
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &self.issuer).expect("a signed server certificate");
        ServerCert { certs: vec![cert.der().clone()], key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }
}

/// A rustls server configuration for `cert` (aws-lc-rs, as everywhere in sagesync).
pub fn server_config(cert: &ServerCert) -> rustls::ServerConfig {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(cert.certs.clone(), cert.key.clone_key())
        .expect("a server TLS config")
}
