//! Where the repository is, and the Python of the test peers.

/// The repository root (the directory holding `tests/peers`).
pub fn repo_root() -> std::path::PathBuf {
    let mut p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    while !p.join("tests/peers").is_dir() {
        assert!(p.pop(), "repository root not found");
    }
    p
}

/// The Python of the test peers: `$SAGESYNC_PYTHON`, else `.venv/bin/python`.
pub fn python() -> std::path::PathBuf {
    let p = std::env::var_os("SAGESYNC_PYTHON").map(std::path::PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(p.exists(), "test peer Python {} not found: run scripts/setup-peers.sh (scripts/test.sh does)", p.display());
    p
}
