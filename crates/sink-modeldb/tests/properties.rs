//! Property tests of ModelDB v2's key rules and of error redaction in both clients.

use proptest::prelude::*;
use sagesync_sink_modeldb::v1::V1Error;
use sagesync_sink_modeldb::v2::keys::{sanitize_key, unique_keys};
use sagesync_sink_modeldb::v2::V2Error;

fn allowed(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
}

proptest! {
    /// Sanitised keys are in ModelDB's alphabet, and sanitising twice changes nothing.
    #[test]
    fn sanitised_keys_are_allowed_and_idempotent(k in ".*") {
        let s = sanitize_key(&k);
        prop_assert!(allowed(&s), "{:?} -> {:?}", k, s);
        prop_assert_eq!(sanitize_key(&s), s.clone());
    }

    /// A set of keys gets pairwise distinct sanitised keys, in input order, each original kept:
    /// no two values land on one key.
    #[test]
    fn unique_keys_never_collide(keys in prop::collection::vec("[a-z_:@.2-]{0,6}", 0..30)) {
        let out = unique_keys(keys.iter().map(String::as_str));
        prop_assert_eq!(out.len(), keys.len());
        let distinct: std::collections::BTreeSet<&str> = out.iter().map(|(s, _)| s.as_str()).collect();
        prop_assert_eq!(distinct.len(), out.len(), "{:?}", out);
        for ((s, original), k) in out.iter().zip(&keys) {
            prop_assert_eq!(original, k);
            prop_assert!(allowed(s));
            prop_assert!(s.starts_with(&sanitize_key(k)));
        }
    }

    /// Credentials in a URL never come out of a v1 or v2 error's `Display` or `Debug`.
    #[test]
    fn errors_redact_urls(user in "[a-z]{1,8}", pass in "[A-Za-z0-9._~-]{4,12}", host in "[a-z]{1,8}") {
        let url = format!("http://{user}:S3CR{pass}@{host}.example:8080/v1");
        let v2 = [
            V2Error::Status { op: url.clone(), status: 503, code: 14, message: format!("upstream {url}") },
            V2Error::Connection { op: "getProject".into(), message: format!("error sending request for url ({url})") },
            V2Error::Decode { op: "getProject".into(), message: url.clone() },
        ];
        let v1 = [
            V1Error::Connect { addr: url.clone(), source: std::io::Error::other(url.clone()) },
            V1Error::Io { method: "storeExperimentRun".into(), source: std::io::Error::other(format!("reset by {url}")) },
            V1Error::Timeout { what: url.clone(), secs: 5 },
        ];
        let mut texts = Vec::new();
        for e in &v2 {
            texts.extend([e.to_string(), format!("{e:?}"), sagesync_core::error_chain(e)]);
        }
        for e in &v1 {
            texts.extend([e.to_string(), format!("{e:?}"), sagesync_core::error_chain(e)]);
        }
        for s in texts {
            prop_assert!(!s.contains("S3CR"), "{}", s);
        }
    }
}
