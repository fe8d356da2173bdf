//! MLflow's key rules and an injective, idempotent sanitiser.
//!
//! A tracking server accepts a param, metric or tag key when it matches `^[/\w.\- :]*$`, is at
//! most 250 characters long, and is a normalised relative path (no leading or trailing `/`, no
//! `//`, no `.` or `..` segment, and does not start with `..` at all: MLflow's
//! `path_not_unique`). Python's `\w` is Unicode-aware, but other MLflow-compatible
//! servers are stricter, so this module only lets ASCII letters and digits through.
//!
//! [`mlflow_key`] maps any name to a valid key:
//! - a name that is already valid is its own key (so `train:loss` stays `train:loss`);
//! - any other name is rewritten (each disallowed character becomes `_`, empty or dot-only path
//!   segments become `_`, the result is cut to fit) and gets `_` plus 8 hex digits of the SHA-256
//!   of the original name, so two names that rewrite alike (`a@b`, `a#b`) get distinct keys.
//!
//! The result is always valid, so applying it twice changes nothing. [`assign_keys`] checks a
//! whole set of names for the one residual case, a collision between two keys, and fails loudly
//! instead of letting one value overwrite another.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The longest key a tracking server accepts, in characters.
pub const MAX_KEY_CHARS: usize = 250;
/// The longest param value a tracking server stores (longer ones are cut server-side).
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// The longest tag value a tracking server stores (longer ones are cut server-side).
pub const MAX_TAG_VALUE_CHARS: usize = 8000;

/// Hex digits of the hash suffix.
const SUFFIX_HEX: usize = 8;

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':')
}

/// Whether `key` is a key every MLflow server accepts as it is.
pub fn is_valid_key(key: &str) -> bool {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || !key.chars().all(allowed_char) {
        return false;
    }
    // MLflow's `path_not_unique`: posixpath.normpath(key) must be the key itself, and must not
    // be "." or start with ".." or "/". normpath leaves a key unchanged exactly when it has no
    // leading or trailing `/`, no `//`, and no `.` or `..` segment; `..lr` or `...` survive
    // normpath but still start with "..".
    if key.starts_with('/') || key.ends_with('/') || key.starts_with("..") {
        return false;
    }
    key.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// 8 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    hex_prefix(s.as_bytes(), SUFFIX_HEX)
}

/// The first `n` hex digits of the SHA-256 of `bytes`.
pub fn hex_prefix(bytes: &[u8], n: usize) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(n);
    for b in digest.iter() {
        if out.len() >= n {
            break;
        }
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(n);
    out
}

/// The MLflow key for `name` (see the module documentation).
pub fn mlflow_key(name: &str) -> String {
    if is_valid_key(name) {
        return name.to_string();
    }
    let replaced: String = name.chars().map(|c| if allowed_char(c) { c } else { '_' }).collect();
    let segments: Vec<String> = replaced
        .split('/')
        .map(|seg| if seg.is_empty() || seg.chars().all(|c| c == '.') { "_".to_string() } else { seg.to_string() })
        .collect();
    let mut base = segments.join("/");
    // A leading ".." (`..lr`) is refused even where it is not a segment of its own.
    if base.starts_with("..") {
        base.replace_range(..1, "_");
    }
    // Room for "_" + suffix; the base is ASCII now, so bytes are characters.
    base.truncate(MAX_KEY_CHARS - SUFFIX_HEX - 1);
    while base.ends_with('/') {
        base.pop();
    }
    if base.is_empty() {
        base.push('_');
    }
    format!("{base}_{}", short_hash(name))
}

/// Two different names that would share a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} names `{first}` and `{second}` both map to the MLflow key `{key}`; rename one of them")]
pub struct KeyCollision {
    /// What the names are (`param`, `metric`, `tag`).
    pub kind: &'static str,
    /// The shared key.
    pub key: String,
    /// One name.
    pub first: String,
    /// The other.
    pub second: String,
}

/// Keys for a set of names of one kind, in input order, as `(key, original)`; repeated names
/// keep their first position. Fails when two different names would share a key.
pub fn assign_keys<'a>(kind: &'static str, names: impl IntoIterator<Item = &'a str>) -> Result<Vec<(String, String)>, KeyCollision> {
    let mut by_key: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for name in names {
        let key = mlflow_key(name);
        match by_key.get(&key) {
            Some(existing) if existing == name => continue,
            Some(existing) => return Err(KeyCollision { kind, key, first: existing.clone(), second: name.to_string() }),
            None => {
                by_key.insert(key.clone(), name.to_string());
                out.push((key, name.to_string()));
            }
        }
    }
    Ok(out)
}

/// Cuts `s` to at most `max` characters; returns whether it was cut.
pub fn cut_chars(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (s[..at].to_string(), true),
        None => (s.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept() {
        for k in ["train:loss", "validation:auc", "a/b/c", "eta", "x.y-z w", "epoch 3:loss"] {
            assert_eq!(mlflow_key(k), k);
        }
    }

    #[test]
    fn invalid_names_are_rewritten_with_a_hash() {
        let k = mlflow_key("validation:mAP@0.75");
        assert!(k.starts_with("validation:mAP_0.75_"), "{k}");
        assert!(is_valid_key(&k));
        let k = mlflow_key("test:quantile_loss[0.9]");
        assert!(k.starts_with("test:quantile_loss_0.9__"), "{k}");
        for bad in ["", "/abs", "trail/", "a//b", "../x", "./x", ".", "é", "train-error(%)", "日本語", "a\nb"] {
            let k = mlflow_key(bad);
            assert!(is_valid_key(&k), "{bad:?} -> {k:?}");
            assert_ne!(k, bad);
        }
        let long = "x".repeat(300);
        let k = mlflow_key(&long);
        assert_eq!(k.chars().count(), MAX_KEY_CHARS);
        assert!(is_valid_key(&k));
    }

    #[test]
    fn sanitisation_is_idempotent_and_deterministic() {
        for name in ["validation:mAP@0.75", "", "../x", "a//b", &"y".repeat(260), "ünïcödé", "a b"] {
            let once = mlflow_key(name);
            assert_eq!(mlflow_key(&once), once, "{name:?}");
            assert_eq!(mlflow_key(name), once);
        }
    }

    #[test]
    fn names_that_rewrite_alike_get_distinct_keys() {
        let names = ["a@b", "a#b", "a%b", "a_b", "a b", "a[b", "a]b"];
        let keys = assign_keys("metric", names).unwrap();
        let mut distinct: Vec<&String> = keys.iter().map(|(k, _)| k).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len(), "{keys:?}");
        // Repeats are folded, not collisions.
        assert_eq!(assign_keys("param", ["x", "x"]).unwrap().len(), 1);
    }

    #[test]
    fn a_collision_is_an_error() {
        // A valid name that spells out another name's rewritten key.
        let forged = mlflow_key("a@b");
        let err = assign_keys("metric", ["a@b", forged.as_str()]).unwrap_err();
        assert_eq!(err.key, forged);
        assert!(err.to_string().contains("a@b"));
    }

    #[test]
    fn pseudo_random_names_never_collide_silently() {
        let alphabet: Vec<char> = "ab_@ :/.[]é-".chars().collect();
        let mut rng = fastrand::Rng::with_seed(13);
        let names: Vec<String> = (0..3000).map(|_| (0..rng.usize(0..8)).map(|_| alphabet[rng.usize(..alphabet.len())]).collect()).collect();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for n in &names {
            let k = mlflow_key(n);
            assert!(is_valid_key(&k), "{n:?} -> {k:?}");
            assert_eq!(mlflow_key(&k), k);
            if let Some(prev) = seen.insert(k.clone(), n.clone()) {
                assert_eq!(&prev, n, "{prev:?} and {n:?} share {k:?}");
            }
        }
    }

    #[test]
    fn cutting_counts_characters() {
        assert_eq!(cut_chars("héllo", 2), ("hé".to_string(), true));
        assert_eq!(cut_chars("abc", 3), ("abc".to_string(), false));
    }
}
