//! This crate's own test helper: its `bootstrap` started against the Runtime API emulation.

use sagesync_test_support::lambda::{Function, Runtime};

/// Starts the `bootstrap` these tests were built with against `rt`, with the given extra
/// environment (see [`sagesync_test_support::lambda::start_function`]).
pub fn start_function(rt: &Runtime, env: &[(&str, String)]) -> Function {
    sagesync_test_support::lambda::start_function(env!("CARGO_BIN_EXE_bootstrap").as_ref(), rt, env)
}

/// One metric directive of an EMF line: namespace, dimensions (name, value), metrics (name, value).
#[allow(dead_code)]
pub type Emf = (String, Vec<(String, String)>, std::collections::BTreeMap<String, f64>);

/// The Embedded Metric Format lines among `lines`, each read as CloudWatch reads one: the `_aws`
/// block (an integer `Timestamp` in milliseconds, `CloudWatchMetrics` directives with a
/// namespace that is not `AWS/`, dimension sets whose names are string members of the root,
/// metrics whose names are number members of the root, with a CloudWatch unit). Returns, per
/// line, the namespace, the dimensions' values and the metrics' values; panics on a line
/// CloudWatch would not turn into metrics.
#[allow(dead_code)]
pub fn emf(lines: &[String]) -> Vec<Emf> {
    const UNITS: [&str; 27] = [
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let mut out = Vec::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(aws) = v.get("_aws") else { continue };
        let ts = aws["Timestamp"].as_i64().unwrap_or_else(|| panic!("Timestamp is not an integer: {line}"));
        let now = chrono::Utc::now().timestamp_millis();
        assert!((now - ts).abs() < 2 * 3600 * 1000, "Timestamp {ts} is not now (ms): {line}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap_or_else(|| panic!("no CloudWatchMetrics: {line}"));
        assert!(!directives.is_empty(), "{line}");
        for d in directives {
            let ns = d["Namespace"].as_str().unwrap_or_else(|| panic!("no Namespace: {line}"));
            assert!((1..=255).contains(&ns.len()) && !ns.starts_with("AWS/"), "{ns}");
            let mut dims = Vec::new();
            for set in d["Dimensions"].as_array().unwrap_or_else(|| panic!("no Dimensions: {line}")) {
                let set = set.as_array().unwrap_or_else(|| panic!("a dimension set is a list: {line}"));
                assert!(set.len() <= 30, "{line}");
                for name in set {
                    let name = name.as_str().unwrap_or_else(|| panic!("a dimension name is a string: {line}"));
                    let value = v[name].as_str().unwrap_or_else(|| panic!("dimension {name} is not a string member of the root: {line}"));
                    dims.push((name.to_string(), value.to_string()));
                }
            }
            let metrics = d["Metrics"].as_array().unwrap_or_else(|| panic!("no Metrics: {line}"));
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{line}");
            let mut values = std::collections::BTreeMap::new();
            for m in metrics {
                let name = m["Name"].as_str().unwrap_or_else(|| panic!("a metric without Name: {line}"));
                if let Some(u) = m.get("Unit") {
                    assert!(u.as_str().is_some_and(|u| UNITS.contains(&u)), "unit {u} is not CloudWatch's: {line}");
                }
                let value = v[name].as_f64().unwrap_or_else(|| panic!("metric {name} is not a number member of the root: {line}"));
                values.insert(name.to_string(), value);
            }
            out.push((ns.to_string(), dims, values));
        }
    }
    out
}
