//! Short content digests (SHA-256, first 16 bytes in hex): what the ledger compares to decide
//! whether anything changed.

use sha2::{Digest, Sha256};

use crate::model::Tags;

/// The digest of some bytes.
pub fn of_bytes(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The digest of a value's JSON form (key order as serialised, so deterministic for one type).
pub fn of_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    of_bytes(&serde_json::to_vec(value).unwrap_or_default())
}

/// The digest of a tag set, independent of order (last value wins for a repeated key, as
/// [`Tags::get`] reads it).
pub fn of_tags(tags: &Tags) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(tags.len());
    for t in tags.iter() {
        match pairs.iter_mut().find(|(k, _)| *k == t.key) {
            Some(p) => p.1 = &t.value,
            None => pairs.push((&t.key, &t.value)),
        }
    }
    pairs.sort_unstable();
    of_json(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_digest_ignores_order_but_not_values() {
        let a: Tags = [("a", "1"), ("b", "2")].into_iter().collect();
        let b: Tags = [("b", "2"), ("a", "1")].into_iter().collect();
        let c: Tags = [("a", "1"), ("b", "3")].into_iter().collect();
        assert_eq!(of_tags(&a), of_tags(&b));
        assert_ne!(of_tags(&a), of_tags(&c));
        assert_ne!(of_tags(&a), of_tags(&Tags::default()));
    }
}
