//! Property tests of the key sanitiser and of error redaction.

use proptest::prelude::*;
use sagesync_sink_mlflow::keys::{assign_keys, is_valid_key, mlflow_key, MAX_KEY_CHARS};
use sagesync_sink_mlflow::MlflowError;

/// Names as they occur in training jobs: mostly ordinary, with the characters MLflow refuses
/// (`@`, `[`, `%`, unicode, `//`, `..`), and some very long.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:_./-]{1,30}",
        "[a-zA-Z0-9:@\\[\\]%#()/.é漢 -]{0,40}",
        "[a-z/.]{0,6}(//|/\\.\\./|/\\./)[a-z]{0,6}",
        "[a-z]{240,300}",
        ".*",
    ]
}

proptest! {
    /// Every key is valid, a valid name is its own key, and applying the sanitiser twice
    /// changes nothing.
    #[test]
    fn keys_are_valid_and_idempotent(n in name()) {
        let k = mlflow_key(&n);
        prop_assert!(is_valid_key(&k), "{:?} -> {:?}", n, k);
        prop_assert!(k.chars().count() <= MAX_KEY_CHARS);
        prop_assert_eq!(mlflow_key(&k), k.clone());
        if is_valid_key(&n) {
            prop_assert_eq!(k, n);
        }
    }

    /// Different names get different keys, and a set of names gets distinct keys in input
    /// order (repeats kept once).
    #[test]
    fn keys_are_injective(a in name(), b in name(), more in prop::collection::vec(name(), 0..20)) {
        if a != b {
            prop_assert_ne!(mlflow_key(&a), mlflow_key(&b), "{:?} and {:?}", a, b);
        }
        let mut names = vec![a.clone(), b.clone()];
        names.extend(more);
        let assigned = assign_keys("metric", names.iter().map(String::as_str)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let keys: std::collections::BTreeSet<&str> = assigned.iter().map(|(k, _)| k.as_str()).collect();
        prop_assert_eq!(keys.len(), assigned.len());
        let distinct: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        prop_assert_eq!(assigned.len(), distinct.len());
        for (k, original) in &assigned {
            prop_assert_eq!(k, &mlflow_key(original));
        }
    }

    /// Credentials in a URL never come out of an MLflow error's `Display` or `Debug`.
    #[test]
    fn errors_redact_urls(user in "[a-z]{1,8}", pass in "[A-Za-z0-9._~-]{4,12}", host in "[a-z]{1,8}") {
        let url = format!("https://{user}:S3CR{pass}@{host}.example/api");
        let errors = [
            MlflowError::Status { op: "runs/search", status: 500, error_code: "INTERNAL_ERROR".into(), message: format!("see {url}") },
            MlflowError::Connection { op: "runs/create", message: format!("error sending request for url ({url})") },
            MlflowError::Decode { op: "runs/get", message: url.clone() },
        ];
        for e in &errors {
            for s in [e.to_string(), format!("{e:?}"), sagesync_core::error_chain(e)] {
                prop_assert!(!s.contains("S3CR"), "{}", s);
            }
        }
    }
}

/// The one collision the hash suffix cannot rule out by itself: a valid name that spells
/// another name's rewritten key. `assign_keys` refuses it rather than overwrite one value with
/// the other.
#[test]
fn a_name_spelling_another_names_key_is_refused() {
    let rewritten = mlflow_key("acc@1");
    assert_ne!(rewritten, "acc@1");
    let err = assign_keys("metric", ["acc@1", rewritten.as_str()]).expect_err("a collision");
    assert_eq!(err.key, rewritten);
}
