//! docs/config.md is checked against the code, so that the reference cannot drift: every
//! component of the reference (a heading naming `[pipeline]`, `[[sinks]] type = "mlflow"`...)
//! has a table `| key | default | range | meaning |`, and
//!
//! - its keys are exactly the keys of the component's config (every registered plugin and
//!   section is documented, and every documented key exists);
//! - each documented default is the config's own (`Default`, serialised): `unset` for an unset
//!   optional key, `(required)` for a key without a default, else the TOML value;
//! - each documented range `a–b` (or `0 or a–b`, or with a bound that is another key) is the
//!   one the config check enforces: both ends are accepted, a step outside each is refused at
//!   that key.
//!
//! Vector generates its reference from its config schema; a test that fails on drift does the
//! same job here.

use std::collections::{BTreeMap, BTreeSet};

use sagesync_core::config::{Config, PipelineSettings};
use sagesync_core::registry::{self, BuildContext, Factory, PluginDescriptor, PluginKind};
use sagesync_runner_settings::{DaemonSettings, LambdaSettings};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Component {
    Section(String),
    Plugin(PluginKind, String),
}

#[derive(Debug)]
struct Row {
    key: String,
    default: String,
    range: String,
    line: usize,
}

#[derive(Debug)]
struct Table {
    component: Component,
    line: usize,
    rows: Vec<Row>,
}

/// The component a heading names, from its first code span.
fn component_of(heading: &str) -> Option<Component> {
    let span = heading.split('`').nth(1)?.trim();
    let plugin = |prefix: &str, kind: PluginKind| -> Option<Component> {
        let rest = span.strip_prefix(prefix)?.trim();
        let name = rest.strip_prefix("type = \"")?.strip_suffix('"')?;
        Some(Component::Plugin(kind, name.to_string()))
    };
    plugin("[source]", PluginKind::Source)
        .or_else(|| plugin("[[validators]]", PluginKind::Validator))
        .or_else(|| plugin("[mapper]", PluginKind::Mapper))
        .or_else(|| plugin("[[sinks]]", PluginKind::Sink))
        .or_else(|| plugin("[state]", PluginKind::State))
        .or_else(|| {
            let name = span.strip_prefix('[')?.strip_suffix(']')?;
            (!name.contains([' ', '[', ']'])).then(|| Component::Section(name.to_string()))
        })
}

fn cells(line: &str) -> Vec<String> {
    line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
}

fn parse(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut current: Option<(Component, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with('#') {
            current = component_of(l).map(|c| (c, i + 1));
        } else if let Some((c, at)) = current.clone() {
            if cells(l) == ["key", "default", "range", "meaning"] {
                let mut rows = Vec::new();
                i += 2;
                while i < lines.len() && lines[i].trim_start().starts_with('|') {
                    let c = cells(lines[i]);
                    assert!(c.len() >= 4, "docs/config.md:{}: a row needs 4 cells", i + 1);
                    let key = c[0].trim_matches('`').to_string();
                    rows.push(Row { key, default: c[1].clone(), range: c[2].clone(), line: i + 1 });
                    i += 1;
                }
                out.push(Table { component: c, line: at, rows });
                current = None;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn descriptor(kind: PluginKind, name: &str) -> &'static PluginDescriptor {
    registry::find(kind, name).unwrap_or_else(|e| panic!("{e}"))
}

/// The component's defaults, every key.
fn defaults(c: &Component) -> serde_json::Map<String, Value> {
    let v = match c {
        Component::Section(s) => match s.as_str() {
            "pipeline" => serde_json::to_value(PipelineSettings::default()).unwrap(),
            "daemon" => serde_json::to_value(DaemonSettings::default()).unwrap(),
            "lambda" => serde_json::to_value(LambdaSettings::default()).unwrap(),
            other => {
                (registry::sections().into_iter().find(|d| d.name == other).unwrap_or_else(|| panic!("no section [{other}]")).defaults)()
            }
        },
        Component::Plugin(k, n) => (descriptor(*k, n).defaults)(),
    };
    match v {
        Value::Object(m) => m,
        other => panic!("{c:?}: defaults are not a table: {other}"),
    }
}

/// A documented default as JSON (`None` for `(required)`).
fn documented_default(cell: &str) -> Result<Option<Value>, String> {
    match cell {
        "(required)" => Ok(None),
        "unset" => Ok(Some(Value::Null)),
        _ => {
            let inner = cell
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .ok_or_else(|| format!("`{cell}` is not `unset`, `(required)` or a `value`"))?;
            let t: toml::Table = toml::from_str(&format!("v = {inner}")).map_err(|e| format!("`{inner}` is not a TOML value: {e}"))?;
            Ok(Some(serde_json::to_value(&t["v"]).map_err(|e| e.to_string())?))
        }
    }
}

fn same(doc: &Value, code: &Value) -> bool {
    match (doc, code) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Value::Object(b)) => a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w))),
        _ => doc == code,
    }
}

/// The base table a component is built from: a plugin's example, a section's defaults.
fn base(c: &Component) -> toml::Table {
    match c {
        Component::Section(_) => toml::Table::new(),
        Component::Plugin(k, n) => {
            let d = descriptor(*k, n);
            let cfg = Config::parse(d.example_toml, "example", &|_| None).unwrap_or_else(|e| panic!("{n}: {e}"));
            let comp = match k {
                PluginKind::Source => cfg.source,
                PluginKind::Validator => cfg.validators.into_iter().next(),
                PluginKind::Mapper => cfg.mapper,
                PluginKind::Sink => cfg.sinks.into_iter().next(),
                PluginKind::State => cfg.state,
            };
            comp.map(|c| c.options.0).unwrap_or_default()
        }
    }
}

/// Whether setting `key` to `value` (on the base table) gives a problem at that key.
fn refused(c: &Component, key: &str, value: toml::Value) -> bool {
    match c {
        Component::Section(s) => {
            let mut t = toml::Table::new();
            t.insert(key.into(), value);
            let text = format!("[{s}]\n{}", toml::to_string(&t).unwrap());
            let cfg = Config::parse(&text, "t.toml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
            cfg.problems().iter().any(|p| p.key == format!("{s}.{key}"))
        }
        Component::Plugin(k, n) => {
            let mut t = base(c);
            t.insert(key.into(), value);
            let ctx = BuildContext::default();
            let problems = match descriptor(*k, n).factory {
                Factory::Source(f) => f(t, &ctx).err(),
                Factory::Validator(f) => f(t, &ctx).err(),
                Factory::Mapper(f) => f(t, &ctx).err(),
                Factory::Sink(f) => f(t, &ctx).err(),
                Factory::State(f) => f(t, &ctx).err(),
            };
            problems.unwrap_or_default().iter().any(|p| p.path.to_string() == key || p.path.to_string().starts_with(&format!("{key}.")))
        }
    }
}

/// Checks a documented range against the config check. `a–b`, `0 or a–b`; a bound may be
/// another key (`` `initial_backoff_ms` ``), read from the base table or the defaults.
fn check_range(c: &Component, key: &str, range: &str, default: &Value, all: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let (special, span) = match range.split_once(" or ") {
        Some((s, rest)) => (Some(s.trim().parse::<f64>().unwrap_or(f64::NAN)), rest.trim()),
        None => (None, range.trim()),
    };
    let Some((lo, hi)) = span.split_once('–') else {
        return vec![format!("range `{range}` is not `a–b`")];
    };
    let base_table = base(c);
    let bound = |s: &str| -> Option<f64> {
        let s = s.trim();
        match s.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
            Some(other) => {
                base_table.get(other).and_then(|v| v.as_integer().map(|i| i as f64).or(v.as_float())).or(all.get(other)?.as_f64())
            }
            None => s.replace(',', "").parse().ok(),
        }
    };
    let (Some(lo), Some(hi)) = (bound(lo), bound(hi)) else {
        return vec![format!("range `{range}`: unreadable bound")];
    };
    let integer =
        default.is_u64() || default.is_i64() || (default.is_null() && lo.fract() == 0.0 && hi.fract() == 0.0 && !range.contains('.'));
    let value = |x: f64| if integer { toml::Value::Integer(x as i64) } else { toml::Value::Float(x) };
    let step = |x: f64| if integer { 1.0 } else { (x.abs() * 0.01).max(1e-6) };
    for (x, want_refused, what) in [
        (lo, false, "the low end"),
        (hi, false, "the high end"),
        (lo - step(lo), true, "below the range"),
        (hi + step(hi), true, "above the range"),
    ] {
        if want_refused && special == Some(x) {
            continue;
        }
        let got = refused(c, key, value(x));
        if got != want_refused {
            errors.push(format!("{key} = {x} ({what}) is {} by the config check", if got { "refused" } else { "accepted" }));
        }
    }
    errors
}

#[test]
fn the_config_reference_matches_the_code() {
    // Links every plugin crate (their registrations are what is checked).
    assert!(!sagesync_cli::registered().is_empty());
    let path = sagesync_test_support::locate::repo_root().join("docs/config.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let tables = parse(&text);
    let mut problems = Vec::new();
    let mut seen: Vec<Component> = Vec::new();
    for t in &tables {
        let defaults = defaults(&t.component);
        let keys: BTreeSet<&str> = t.rows.iter().map(|r| r.key.as_str()).collect();
        let code: BTreeSet<&str> = defaults.keys().map(String::as_str).collect();
        for k in code.difference(&keys) {
            problems.push(format!("docs/config.md:{}: {:?}: the key `{k}` is not documented", t.line, t.component));
        }
        for r in &t.rows {
            let Some(default) = defaults.get(&r.key) else {
                problems.push(format!("docs/config.md:{}: {:?}: `{}` is not a key of the config", r.line, t.component, r.key));
                continue;
            };
            match documented_default(&r.default) {
                Ok(Some(doc)) if !same(&doc, default) => {
                    problems.push(format!("docs/config.md:{}: `{}`: documented default {doc}, the code's {default}", r.line, r.key))
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("docs/config.md:{}: `{}`: {e}", r.line, r.key)),
            }
            if !r.range.is_empty() {
                for e in check_range(&t.component, &r.key, &r.range, default, &defaults) {
                    problems.push(format!("docs/config.md:{}: {:?}: {e}", r.line, t.component));
                }
            }
        }
        seen.push(t.component.clone());
    }
    // Every registered plugin and section has its table (plugins without keys too).
    let mut want: Vec<Component> = registry::all()
        .into_iter()
        .filter(|d| !["stdout_lines", "tsv_index"].contains(&d.type_name))
        .map(|d| Component::Plugin(d.kind(), d.type_name.to_string()))
        .collect();
    want.extend(["pipeline", "daemon", "lambda"].iter().map(|s| Component::Section(s.to_string())));
    want.extend(registry::sections().into_iter().map(|s| Component::Section(s.name.to_string())));
    for w in &want {
        if !seen.contains(w) {
            problems.push(format!("docs/config.md: {w:?} has no `| key | default | range | meaning |` table"));
        }
    }
    let counts: BTreeMap<String, usize> = seen.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(format!("{c:?}")).or_default() += 1;
        m
    });
    for (c, n) in counts {
        if n > 1 {
            problems.push(format!("docs/config.md: {c} is documented {n} times"));
        }
    }
    assert!(problems.is_empty(), "docs/config.md disagrees with the code:\n{}", problems.join("\n"));
}
