//! recorded jobs → `sagesync run` → modeldb_v2 sink → the in-process ModelDB v2 fake.

use sagesync_test_support::locate::repo_root;
use sagesync_test_support::modeldb_v2::Fake;
use serde_json::Value;

async fn run_once(cfg: std::path::PathBuf) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagesync"))
        .current_dir(repo_root())
        .args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_jobs_to_modeldb_v2_twice() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("v2.toml");
    std::fs::write(
        &cfg,
        format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"examples/jobs\"]\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"{}\"\nexperiment = \"sagemaker\"\n", fake.base_url),
    )
    .unwrap();
    let first = run_once(cfg.clone()).await;
    assert_eq!(first["synced"], 4, "{first}");
    assert_eq!(fake.runs().len(), 4);
    let run_writes = fake.writes().iter().filter(|w| w.path.starts_with("/experiment-run/")).count();
    assert_eq!(run_writes, 4, "one write per new run");
    fake.clear_requests();
    let second = run_once(cfg).await;
    assert_eq!(second["synced"], 4);
    for j in second["jobs"].as_array().unwrap().iter().filter(|j| j["outcome"] == "synced") {
        assert_eq!(j["receipts"][0]["write"], "unchanged", "{j}");
    }
    assert!(fake.writes().is_empty(), "a re-sync writes nothing: {:?}", fake.writes());
    assert_eq!(fake.runs().len(), 4);
    let exps = fake.with(|s| s.experiments.clone());
    assert!(exps.iter().all(|e| e["name"] == "sagemaker"));
}

fn v2_config(dir: &std::path::Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("v2.toml");
    std::fs::write(
        &cfg,
        format!("[source]\ntype = \"sagemaker_json\"\npaths = [\"{}\"]\n\n[[validators]]\ntype = \"required_tags\"\n\n[[validators]]\ntype = \"status\"\n\n[[sinks]]\ntype = \"modeldb_v2\"\nbase_url = \"{base_url}\"\nexperiment = \"sagemaker\"\n{extra}\n\n[pipeline]\nmax_attempts = 5\ninitial_backoff_ms = 200\n", repo_root().join("examples/jobs").display()),
    )
    .unwrap();
    cfg
}

/// `sagesync run` with `env` set and SSL_CERT_FILE, SSL_CERT_DIR and the proxy variables
/// removed unless `env` sets them: exit code, summary, stderr, time taken.
fn run_with(cfg: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, Value, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_sagesync"));
    c.args(["run", "--config", cfg.to_str().unwrap(), "--format", "json"]);
    for k in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), summary, String::from_utf8_lossy(&out.stderr).to_string(), started.elapsed())
}

/// Issue 19, item 4: a store behind a private CA. Through an HTTPS front whose certificate a
/// test CA signed, the sink writes with `ca_file`, and with `SSL_CERT_FILE` naming the CA;
/// with neither it fails at once with a clear TLS error: no hang, no retries (the trust store
/// must change first), and the job is not parked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_a_private_ca_with_ca_file_or_ssl_cert_file() {
    use sagesync_test_support::proxy::Proxy;
    use sagesync_test_support::tls::TestCa;
    let fake = Fake::start().await;
    let port: u16 = fake.base_url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let ca = TestCa::new("sagesync test CA");
    let front = Proxy::start_tls(port, &ca.server()).await;
    assert!(front.url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    // Neither: the system's trust store (the machine's bundle) does not know this CA.
    let cfg = v2_config(dir.path(), &front.url(), "");
    let (code, s, err, took) = run_with(&cfg, &[("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")]);
    assert_eq!(code, Some(1), "{s}\n{err}");
    assert!(took < std::time::Duration::from_secs(10), "no retries, no hang: {took:?}");
    let failed = s["jobs"].as_array().unwrap().iter().find(|j| j["outcome"] == "failed").cloned().unwrap_or(Value::Null);
    let reason = failed["reason"].as_str().unwrap_or("");
    assert!(reason.contains("not trusted") && reason.contains("ca_file"), "{failed}");
    assert_eq!(failed["attempts"], 1, "not retried within the pass: {failed}");
    assert_eq!(failed["parked"], false, "{failed}");
    assert!(fake.runs().is_empty());
    // ca_file.
    let cfg = v2_config(dir.path(), &front.url(), &format!("ca_file = \"{}\"", ca.ca_file().display()));
    let (code, s, err, _) = run_with(&cfg, &[]);
    assert_eq!(code, Some(0), "{s}\n{err}");
    assert_eq!(s["synced"], 4, "{s}");
    assert_eq!(fake.runs().len(), 4);
    // SSL_CERT_FILE (the CA only), another experiment's runs written over TLS too.
    let cfg = v2_config(dir.path(), &front.url(), "").to_string_lossy().to_string();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("experiment = \"sagemaker\"", "experiment = \"over-tls\"");
    std::fs::write(&cfg, text).unwrap();
    let ca_path = ca.ca_file();
    let (code, s, err, _) = run_with(std::path::Path::new(&cfg), &[("SSL_CERT_FILE", ca_path.to_str().unwrap())]);
    assert_eq!(code, Some(0), "{s}\n{err}");
    assert_eq!(s["synced"], 4, "{s}");
    assert_eq!(fake.runs().len(), 8);
}

/// Issue 19, item 15: every HTTP sink honours the proxy variables (HTTP(S)_PROXY, NO_PROXY), as
/// curl and the AWS SDK do: the ModelDB v2 sink's requests go through `HTTP_PROXY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v2_sink_honours_http_proxy() {
    use sagesync_test_support::proxy::Proxy;
    let fake = Fake::start().await;
    let port: u16 = fake.base_url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let forward = Proxy::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    // The store's address is one the test machine cannot reach by itself: only the proxy can.
    let cfg = v2_config(dir.path(), "http://modeldb.invalid:3000", "");
    let (code, s, err, _) = run_with(&cfg, &[("HTTP_PROXY", &forward.url())]);
    assert_eq!(code, Some(0), "{s}\n{err}");
    assert_eq!(s["synced"], 4, "{s}");
    let through: Vec<String> = forward.log().iter().map(|l| l.path.clone()).collect();
    assert!(!through.is_empty() && through.iter().all(|p| p.starts_with("http://modeldb.invalid:3000/")), "{through:?}");
    // NO_PROXY exempts the host.
    let (code, _, err, _) = run_with(&cfg, &[("HTTP_PROXY", &forward.url()), ("NO_PROXY", "modeldb.invalid")]);
    assert_eq!(code, Some(1), "without the proxy the host does not resolve: {err}");
}
