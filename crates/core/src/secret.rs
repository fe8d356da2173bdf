//! [`Secret`]: a string that never shows in `Debug`, `Display` or logs, and [`redact`], which
//! removes credentials from any text before it reaches a message, a log, a summary or the
//! ledger.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// A secret option value (API key, password). Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value, for sending it where it belongs. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A secret serialises as `***` (or `""` when empty): never its value.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A value of another type is refused without echoing it (serde's own error would quote
        // a number or a boolean that was meant to be the secret).
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string (quote it: the value is a secret and is not shown)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it); its value is not shown"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it); its value is not shown"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it); its value is not shown"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (quote it); its value is not shown"))
            }
        }
        d.deserialize_any(Visit)
    }
}

fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | ')' | ']' | '}' | ',' | ';')
}

/// Replaces the user-info part of every URL in `text` (`http://user:pass@host` becomes
/// `http://***@host`), and every value read from a secret backend
/// ([`crate::secrets::register`]) with `***`. Applied to every error message, reason and log
/// field that may carry a URL or an option's value, so credentials never leave them.
pub fn redact(text: &str) -> Cow<'_, str> {
    match crate::secrets::hide(text) {
        Cow::Borrowed(t) => redact_urls(t),
        Cow::Owned(t) => Cow::Owned(redact_urls(&t).into_owned()),
    }
}

fn redact_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority runs to the first character that ends it; user-info is what precedes
        // its last `@`.
        let end = tail.char_indices().find(|(_, c)| ends_url(*c)).map(|(i, _)| i).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) if at > 0 => {
                out.push_str("***");
                out.push_str(&authority[at..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// Implements `Debug` for an error type as its name and its `Display` text, which the type
/// already redacts, so `{:?}` (a `dbg!`, an `expect`, a log field) cannot show what `Display`
/// hides.
#[macro_export]
macro_rules! debug_as_display {
    ($t:ty) => {
        impl ::std::fmt::Debug for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.to_string())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn userinfo_is_redacted_everywhere_in_a_text() {
        assert_eq!(redact("GET http://admin:s3cr3t@host:3000/api failed"), "GET http://***@host:3000/api failed");
        assert_eq!(redact("a https://u@h b http://x:y@z/p?q=1"), "a https://***@h b http://***@z/p?q=1");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("mailto at http://host/path@x"), "mailto at http://host/path@x");
        assert_eq!(redact("\"http://a:b@c\""), "\"http://***@c\"");
        assert_eq!(redact("http://p@ss@host/"), "http://***@host/");
        assert_eq!(redact("s3://bucket/key"), "s3://bucket/key");
    }
}
