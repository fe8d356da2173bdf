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
        // A plugin's check may quote the value it refuses, which may have come from a secret.
        let message = crate::redact(&self.message);
        if self.key.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, message)
        } else {
            write!(f, "{}:{}:{}: key `{}`: {}", self.file, self.line, self.column, self.key, message)
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

pub use crate::options::redact_serde_message;
