//! # sagesync-test-support
//!
//! What the test suites and benchmarks share, in one place:
//!
//! - where the repository and the test peers' Python are ([`locate`]), ports held for a whole
//!   test ([`ports`]), children's stderr kept for failures ([`stderr`]), private links to
//!   binaries under test ([`bin`]);
//! - Python test peers as child processes ([`peer`]), among them the ModelDB v1 Thrift peer
//!   ([`modeldb_v1`]);
//! - a programmable HTTP/1.1 proxy on loopback that counts, delays, holds, rewrites or answers
//!   requests, optionally behind TLS, with the one HTTP request-head parser of the test suites
//!   ([`proxy`]), and built on it: SageMaker throttling ([`throttle`]) and a DynamoDB counting and
//!   throttling proxy ([`dynamodb`]); a test certificate authority ([`tls`]);
//! - moto ([`moto`], feature `aws`);
//! - an in-process ModelDB v2 REST fake ([`modeldb_v2`]) and the swagger check of what it was sent
//!   ([`swagger`]), feature `modeldb`;
//! - a real MLflow tracking server, REST reads of it and a fault-injecting reverse proxy
//!   ([`mlflow`], feature `mlflow`);
//! - the Lambda Runtime API emulation and `bootstrap` against it ([`lambda`], feature `lambda`).
//!
//! Not published; only tests and benchmarks use it.
#![allow(clippy::new_without_default)]

pub mod bin;
pub mod dynamodb;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod locate;
#[cfg(feature = "mlflow")]
pub mod mlflow;
pub mod modeldb_v1;
#[cfg(feature = "modeldb")]
pub mod modeldb_v2;
#[cfg(feature = "aws")]
pub mod moto;
pub mod peer;
pub mod ports;
pub mod proxy;
pub mod stderr;
#[cfg(feature = "modeldb")]
pub mod swagger;
pub mod throttle;
pub mod tls;

/// A plain HTTP client for tests' own requests (assertions, fakes): reqwest with the one TLS
/// stack sagesync uses (rustls on aws-lc-rs, installed as the process default).
pub fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}
