//! Key and tag rules of ModelDB v2.

use std::collections::HashSet;

/// Maps a key to what ModelDB accepts (`[A-Za-z0-9_-/]`); anything else becomes `_`.
pub fn sanitize_key(k: &str) -> String {
    let s: String = k.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/' { c } else { '_' }).collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// Assigns sanitised keys, keeping them unique (`_2`, `_3`... on collision). Returns
/// (sanitised, original) pairs in input order.
pub fn unique_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for k in keys {
        let base = sanitize_key(k);
        let mut cand = base.clone();
        let mut n = 2;
        while !used.insert(cand.clone()) {
            cand = format!("{base}_{n}");
            n += 1;
        }
        out.push((cand, k.to_string()));
    }
    out
}

/// The longest tag ModelDB accepts.
pub const MAX_TAG: usize = 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(sanitize_key("validation:auc"), "validation_auc");
        assert_eq!(sanitize_key("ndcg@10"), "ndcg_10");
        assert_eq!(sanitize_key("a/b-c_D9"), "a/b-c_D9");
        assert_eq!(sanitize_key(""), "_");
        assert_eq!(sanitize_key("é"), "_");
        let u = unique_keys(["a:b", "a_b", "a.b"]);
        assert_eq!(u.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["a_b", "a_b_2", "a_b_3"]);
    }
}
