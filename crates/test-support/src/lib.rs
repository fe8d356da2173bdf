//! # sagesync-test-support
//!
//! What the test suites share, in one place: where the repository and the test peers' Python
//! are ([`locate`]), ports held for a whole test ([`ports`]), children's stderr kept for failures
//! ([`stderr`]), private links to binaries under test ([`bin`]), a programmable HTTP/1.1 proxy on
//! loopback that counts, delays, holds, rewrites or answers requests, optionally behind TLS
//! ([`proxy`]), a test certificate authority ([`tls`]), and moto ([`moto`], feature `aws`).
//!
//! Not published; only tests and benchmarks use it.
#![allow(clippy::new_without_default)]

pub mod bin;
pub mod locate;
#[cfg(feature = "aws")]
pub mod moto;
pub mod peer;
pub mod ports;
pub mod proxy;
pub mod stderr;
pub mod tls;

/// A plain HTTP client for tests' own requests (assertions, fakes): reqwest with the one TLS
/// stack sagesync uses (rustls on aws-lc-rs, installed as the process default).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}
