//! A component's options as written, the range checks of typed sections, and serde messages
//! that never echo a value. What both the config loader and the plugin registry read, so that
//! neither depends on the other for it.

use std::fmt;

/// A plugin's options as written (after interpolation). `Debug` shows the keys only: values may
/// be expanded secrets.
#[derive(Clone, Default, PartialEq)]
pub struct Options(pub toml::Table);

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl std::ops::Deref for Options {
    type Target = toml::Table;
    fn deref(&self) -> &toml::Table {
        &self.0
    }
}

/// Range checks of a typed section: `(key, message)` pairs, empty when everything is in range.
pub trait Check {
    /// The problems found.
    fn problems(&self) -> Vec<(&'static str, String)>;
}

/// Adds a problem when `v` is outside `min..=max`.
pub fn range_u64(out: &mut Vec<(&'static str, String)>, key: &'static str, v: u64, min: u64, max: u64) {
    if v < min || v > max {
        out.push((key, format!("must be between {min} and {max}, got {v}")));
    }
}

/// Adds a problem when `v` is not finite or outside `min..=max`.
pub fn range_f64(out: &mut Vec<(&'static str, String)>, key: &'static str, v: f64, min: f64, max: f64) {
    if !v.is_finite() || v < min || v > max {
        out.push((key, format!("must be between {min} and {max}, got {v}")));
    }
}

/// Removes quoted values from serde messages (`invalid type: string "s3cr3t"` becomes
/// `invalid type: string`), so that a secret put in the wrong place is never echoed.
pub fn redact_serde_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(pos) = rest.find("string \"") {
        out.push_str(&rest[..pos + "string".len()]);
        let after = &rest[pos + "string \"".len()..];
        // Skip to the closing quote (serde escapes inner quotes with a backslash).
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            }
        }
        match end {
            Some(e) => rest = &after[e + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    crate::secret::redact(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redaction_hides_values() {
        let m = super::redact_serde_message("invalid type: string \"hunter\\\"2\", expected u16");
        assert_eq!(m, "invalid type: string, expected u16");
    }
}
