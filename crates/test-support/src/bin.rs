//! A private link to a binary under test.

/// A private link to the binary under test (one per binary and test process): the build
/// directory may be shared with another checkout whose builds replace the binary while these
/// tests run.
pub fn private_bin(built: &str) -> std::path::PathBuf {
    static COPIES: std::sync::Mutex<Vec<(String, std::path::PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut copies = COPIES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = copies.iter().find(|(b, _)| b == built) {
        return p.clone();
    }
    let made = link(built);
    copies.push((built.to_string(), made.clone()));
    made
}

fn link(built: &str) -> std::path::PathBuf {
    {
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
    }
}
