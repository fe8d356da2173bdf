//! Property tests (proptest) of invariants that are easy to state: the keyset cursor, secret
//! redaction through every core error type, and config round-trips.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use sagesync_core::config::{Config, OnIneligible};
use sagesync_core::state::StateError;
use sagesync_core::{Cursor, PipelineSettings, SyncError};

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_780_000_000 + secs, 0).unwrap_or_default()
}

/// Jobs with distinct ARNs and a few distinct times (so that many share one).
fn jobs() -> impl Strategy<Value = Jobs> {
    prop::collection::btree_map(0u32..500, 0i64..6, 1..40)
        .prop_map(|m| m.into_iter().map(|(arn, secs)| (secs, format!("arn:aws:sagemaker:us-east-1:1:training-job/j{arn}"))).collect())
}

/// Jobs as (seconds, ARN).
type Jobs = Vec<(i64, String)>;

/// A permutation of the jobs cut into pages.
fn listing() -> impl Strategy<Value = (Jobs, Jobs, Vec<usize>)> {
    jobs().prop_flat_map(|j| {
        let n = j.len();
        (Just(j.clone()), Just(j).prop_shuffle(), prop::collection::vec(1usize..8, 1..n.max(2)))
    })
}

proptest! {
    /// Advancing over the jobs in any order, in pages of any size (the cursor carried from
    /// page to page, as the engine stores it), gives the same cursor as one sorted pass; every
    /// job advanced over is covered, and a job it never saw (newer, or at the same time with
    /// another ARN) is not: a pass restarted from the cursor loses nothing.
    #[test]
    fn the_cursor_is_independent_of_page_order((sorted, shuffled, cuts) in listing()) {
        let mut reference = Cursor::default();
        let mut by_time = sorted.clone();
        by_time.sort();
        for (s, a) in &by_time {
            reference.advance(Some(t(*s)), a);
        }
        let mut cursor = Cursor::default();
        let mut rest: &[(i64, String)] = &shuffled;
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(1).min(rest.len());
            let (page, tail) = rest.split_at(n);
            let mut next = cursor.clone();
            for (s, a) in page {
                next.advance(Some(t(*s)), a);
            }
            // What the store keeps between pages: a serialised cursor.
            cursor = serde_json::from_str(&serde_json::to_string(&next).unwrap()).unwrap();
            rest = tail;
        }
        prop_assert_eq!(&cursor, &reference);
        for (s, a) in &sorted {
            prop_assert!(cursor.covers(Some(t(*s)), a), "{} at {} not covered", a, s);
        }
        let max = sorted.iter().map(|(s, _)| *s).max().unwrap_or(0);
        prop_assert!(!cursor.covers(Some(t(max)), "arn:aws:sagemaker:us-east-1:1:training-job/unseen"));
        prop_assert!(!cursor.covers(Some(t(max) + Duration::milliseconds(1)), &sorted[0].1));
        prop_assert!(!cursor.covers(None, &sorted[0].1), "a job without a time is never skipped");
    }
}

/// A URL with credentials, and the password alone (which carries a marker no other part of the
/// text can hold).
fn url_with_secret() -> impl Strategy<Value = (String, String)> {
    (
        prop::sample::select(vec!["http", "https", "postgres", "thrift", "s3"]),
        "[a-z][a-z0-9._-]{0,10}",
        "[A-Za-z0-9._~!$&*+=%-]{6,14}",
        "[a-z]{1,10}\\.example(:[0-9]{2,5})?",
        "(/[a-z0-9]{0,6}){0,3}",
    )
        .prop_map(|(scheme, user, pass, host, path)| {
            let pass = format!("S3CR{pass}");
            (format!("{scheme}://{user}:{pass}@{host}{path}"), pass)
        })
}

fn text_around(url: &str, pre: &str, post: &str) -> String {
    format!("{pre}{url}{post}")
}

fn rendered(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string(), format!("{e:?}")];
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

proptest! {
    /// Credentials in a URL never come out of an error: not in `Display`, `Debug`, the chain of
    /// causes or `SyncError::chain`, whichever variant carries them and wherever they sit.
    #[test]
    fn secrets_never_leave_an_error((url, pass) in url_with_secret(), pre in "[ a-z:]{0,12}", post in "[ a-z:,;)]{0,12}") {
        let msg = text_around(&url, &pre, &post);
        let cause = std::io::Error::other(msg.clone());
        let errors: Vec<SyncError> = vec![
            SyncError::transient(msg.clone()),
            SyncError::permanent(msg.clone()),
            SyncError::NotFound(msg.clone()),
            SyncError::Malformed { origin: msg.clone(), message: msg.clone() },
            SyncError::transient_with("sending", std::io::Error::other(msg.clone())),
            SyncError::permanent_with(msg.clone(), cause),
            SyncError::transient_with("outer", SyncError::permanent_with("inner", std::io::Error::other(msg.clone()))),
        ];
        for e in &errors {
            let mut texts = rendered(e);
            texts.push(e.chain());
            for s in texts {
                prop_assert!(!s.contains(&pass), "leaked in {:?}", s);
                prop_assert!(!s.contains("S3CR"), "leaked in {:?}", s);
            }
        }
        let state = [
            StateError::Unusable { location: url.clone(), message: msg.clone() },
            StateError::Backend { location: url.clone(), message: msg.clone(), retryable: true },
            StateError::Decode { location: url.clone(), message: msg.clone() },
        ];
        for e in &state {
            for s in rendered(e) {
                prop_assert!(!s.contains("S3CR"), "leaked in {:?}", s);
            }
        }
    }
}

fn pipeline() -> impl Strategy<Value = PipelineSettings> {
    (
        1usize..=256,
        1u32..=100,
        (1u64..=3_600_000).prop_flat_map(|a| (Just(a), a..=3_600_000)),
        any::<bool>(),
        1u32..=1000,
        (1u64..=86_400).prop_flat_map(|a| (Just(a), a..=30 * 86_400)),
        prop::sample::select(vec![OnIneligible::Retract, OnIneligible::Keep]),
        1u64..=3600,
        0u64..=3600,
    )
        .prop_map(|(concurrency, max_attempts, (ib, mb), dry_run, mja, (rb, mrb), oi, ttl, wait)| PipelineSettings {
            concurrency,
            max_attempts,
            initial_backoff_ms: ib,
            max_backoff_ms: mb,
            dry_run,
            max_job_attempts: mja,
            retry_backoff_secs: rb,
            max_retry_backoff_secs: mrb,
            on_ineligible: oi,
            lease_ttl_secs: ttl,
            lease_wait_secs: wait,
        })
}

const BODY: &str = "[source]\ntype = \"recorded\"\npath = \"jobs\"\n\n[[sinks]]\ntype = \"stdout\"\n";

proptest! {
    /// Any valid `[pipeline]` written as TOML reads back as the same settings.
    #[test]
    fn pipeline_settings_round_trip(p in pipeline()) {
        let text = format!("[pipeline]\n{}\n{BODY}", toml::to_string(&p).unwrap());
        let c = Config::parse(&text, "prop.toml", &|_| None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let errors: Vec<String> = c.problems().iter().filter(|e| e.key.starts_with("pipeline")).map(|e| e.to_string()).collect();
        prop_assert!(errors.is_empty(), "{:?}", errors);
        prop_assert_eq!(c.pipeline, p);
    }

    /// An out-of-range value is reported with its key, line and column, whatever the others.
    #[test]
    fn out_of_range_values_are_located(p in pipeline(), bad in 257usize..100_000) {
        let mut table: toml::Table = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        table.insert("concurrency".into(), toml::Value::Integer(bad as i64));
        let keys: Vec<String> = table.keys().cloned().collect();
        let line = 2 + keys.iter().position(|k| k == "concurrency").unwrap_or(0);
        let text = format!("[pipeline]\n{}\n{BODY}", toml::to_string(&table).unwrap());
        let c = Config::parse(&text, "prop.toml", &|_| None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let errors = c.problems().to_vec();
        let e = errors.iter().find(|e| e.key == "pipeline.concurrency");
        prop_assert!(e.is_some(), "{:?}", errors);
        let e = e.unwrap();
        prop_assert_eq!((e.file.as_str(), e.line), ("prop.toml", line));
        prop_assert!(e.column >= 1);
    }
}
