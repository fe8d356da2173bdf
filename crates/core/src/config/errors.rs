//! Located configuration errors.

use std::fmt;

/// One configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The key concerned (`sinks[0].dir`), empty for file-level problems.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        } else {
            write!(f, "{}:{}:{}: key `{}`: {}", self.file, self.line, self.column, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// One file-level error.
    pub fn one(file: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError { file: file.to_string(), line: 1, column: 1, key: String::new(), message: message.into() }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{} configuration error{}:", n, if n == 1 { "" } else { "s" })?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "  {}", e)?;
            if i + 1 < n {
                writeln!(f)?;
            }
        }
        Ok(())
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
