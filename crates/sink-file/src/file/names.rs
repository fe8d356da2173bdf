use sha2::{Digest, Sha256};

const MAX_BYTES: usize = 120;

/// Names Windows reserves for devices, whatever the extension (`CON`, `nul.json`, `COM1.x`).
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2", "LPT3", "LPT4",
    "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Whether Windows would take `name` for a device (its part before the first `.`, any case).
pub fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem))
}

/// Turns any string into one safe path component: letters, digits (any script), `-`, `_` and
/// `.` are kept, everything else becomes `_`; leading dots are dropped (no `.`, `..` or hidden
/// files), trailing dots too, and a name Windows reserves (`CON`, `NUL`...) gets a leading `_`.
/// When anything changed, or the name is too long, a short hash of the original is appended so
/// that different names never share a file.
pub fn sanitize_component(name: &str) -> String {
    let mapped: String = name.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect();
    let trimmed = mapped.trim_matches('.');
    let mut out = if trimmed.is_empty() { "_".to_string() } else { trimmed.to_string() };
    if is_reserved(&out) {
        out.insert(0, '_');
    }
    if out != name || out.len() > MAX_BYTES {
        let mut cut = out.len().min(MAX_BYTES - 13);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        let digest = Sha256::digest(name.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        out.push('-');
        out.push_str(&hex);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize_component as s;

    #[test]
    fn plain_names_unchanged() {
        assert_eq!(s("xgboost-2026-01-01-00-00-00-001"), "xgboost-2026-01-01-00-00-00-001");
        assert_eq!(s("Projekt_Äß"), "Projekt_Äß");
    }

    #[test]
    fn traversal_and_separators_neutralised() {
        for bad in ["..", ".", "../../etc/passwd", "/abs", "a/b", "a\\b", "\0", "", ".hidden", "a\nb", "C:\\x"] {
            let out = s(bad);
            assert!(
                !out.contains('/') && !out.contains('\\') && !out.contains('\0') && !out.starts_with('.') && !out.is_empty(),
                "{bad:?} -> {out:?}"
            );
        }
    }

    #[test]
    fn distinct_inputs_stay_distinct() {
        assert_ne!(s("a/b"), s("a_b"));
        assert_ne!(s("a/b"), s("a:b"));
        // NFC vs NFD of the same visible name
        assert_ne!(s("caf\u{e9}"), s("cafe\u{301}"));
        // bidi override and zero-width joiner are replaced
        assert!(!s("x\u{202e}gpj.exe").contains('\u{202e}'));
        assert!(!s("a\u{200d}b").contains('\u{200d}'));
    }

    #[test]
    fn reserved_device_names_are_renamed() {
        for bad in ["CON", "con", "NUL", "nul.json", "Com1", "LPT9.tar.gz", "aux", "prn.", "x."] {
            let out = s(bad);
            assert!(!super::is_reserved(&out) && !out.ends_with('.'), "{bad:?} -> {out:?}");
            assert_eq!(s(&out), out, "idempotent: {bad:?}");
        }
        assert_ne!(s("CON"), s("con"));
        assert_eq!(s("CONSOLE"), "CONSOLE");
        assert_eq!(s("COM10"), "COM10");
    }

    #[test]
    fn long_names_capped() {
        let long = "é".repeat(500);
        let out = s(&long);
        assert!(out.len() <= 120, "{}", out.len());
        assert_ne!(s(&"a".repeat(300)), s(&"a".repeat(301)));
    }
}
