// Shared by test crates through `include!`: a private link to a binary under test.

/// A private link to the binary under test, made once when the tests start: the build directory
/// may be shared with another checkout whose builds replace the binary while these tests run.
fn private_bin(built: &str) -> std::path::PathBuf {
    static COPY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::path::Path::new(built).parent().unwrap().join(".private-bin");
        std::fs::create_dir_all(&dir).unwrap();
        // Links left by test processes that have ended.
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok()) {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let to = dir.join(format!("{}-{}", std::path::Path::new(built).file_name().unwrap().to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&to);
        // A hard link keeps this build's file even when the next build replaces the path (no
        // space used); a copy where links cannot be made.
        if std::fs::hard_link(built, &to).is_err() {
            std::fs::copy(built, &to).unwrap_or_else(|e| panic!("cannot copy {built}: {e}"));
        }
        to
    })
    .clone()
}
