//! Resolving `SECRET[...]` references: every referenced secret read once from its backend, each
//! reference replaced by its value, every value registered with [`crate::redact`].

use std::collections::BTreeMap;

use super::{Config, ConfigError, ConfigErrors, KeyPath, SecretMode};
use crate::secrets::{self, Reference};

/// What stands for a secret when nothing is read (`sagesync validate`).
const OFFLINE_STAND_IN: &str = "SECRET";

fn substitute_in(v: &mut toml::Value, value: &dyn Fn(&Reference) -> String) {
    match v {
        toml::Value::String(s) if s.contains("SECRET[") => *s = secrets::substitute(s, value),
        toml::Value::Array(a) => a.iter_mut().for_each(|x| substitute_in(x, value)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, x)| substitute_in(x, value)),
        _ => {}
    }
}

impl Config {
    /// The secrets the config refers to, each with the key paths of the values that refer to it.
    pub fn secret_references(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, refs) in &self.secret_refs {
            for r in refs {
                let at = out.entry(r.name.clone()).or_default();
                let p = path.to_string();
                if !at.contains(&p) {
                    at.push(p);
                }
            }
        }
        out
    }

    /// Resolves every `SECRET[...]` in the config's values: with [`SecretMode::Resolve`], each
    /// referenced secret is read once from its backend (all at once, each on a thread of its
    /// own), each reference replaced by the secret (or its JSON key), and each value registered
    /// so that [`crate::redact`] hides it from then on. Every problem at once, located at the
    /// secret's table or at the value that refers to it; no message holds a secret's value.
    pub fn resolve_secrets(&mut self, mode: SecretMode) -> Result<(), ConfigErrors> {
        if self.secrets_resolved.is_some() {
            return Ok(());
        }
        if self.secret_refs.is_empty() {
            self.secrets_resolved = Some(mode);
            return Ok(());
        }
        let values: BTreeMap<String, crate::Secret> = match mode {
            SecretMode::Offline => BTreeMap::new(),
            SecretMode::Resolve => self.read_secrets()?,
        };
        let mut errors: Vec<ConfigError> = Vec::new();
        if mode == SecretMode::Resolve {
            // Each reference must pick something from its secret.
            for (path, refs) in &self.secret_refs {
                for r in refs {
                    if let Some(v) = values.get(&r.name) {
                        if let Err(m) = secrets::pick(v, r.key.as_deref(), &r.name) {
                            errors.push(self.error_at(path, m));
                        }
                    }
                }
            }
            if !errors.is_empty() {
                return Err(ConfigErrors(errors));
            }
            // What each reference is replaced with is what must never show.
            for (_, refs) in &self.secret_refs {
                for r in refs {
                    if let Some(v) = values.get(&r.name).and_then(|v| secrets::pick(v, r.key.as_deref(), &r.name).ok()) {
                        if v.chars().count() < 4 && !self.short_secrets.contains(&r.to_string()) {
                            self.short_secrets.push(r.to_string());
                        }
                        secrets::register(&v);
                    }
                }
            }
        }
        let value = |r: &Reference| match values.get(&r.name) {
            Some(v) => secrets::pick(v, r.key.as_deref(), &r.name).unwrap_or_default(),
            None => OFFLINE_STAND_IN.to_string(),
        };
        let mut tables: Vec<&mut toml::Table> = Vec::new();
        for c in self.source.iter_mut().chain(self.validators.iter_mut()).chain(self.mapper.iter_mut()).chain(self.sinks.iter_mut()) {
            tables.push(&mut c.options.0);
        }
        if let Some(c) = self.state.as_mut() {
            tables.push(&mut c.options.0);
        }
        for t in tables {
            t.iter_mut().for_each(|(_, v)| substitute_in(v, &value));
        }
        self.secrets_resolved = Some(mode);
        Ok(())
    }

    fn read_secrets(&self) -> Result<BTreeMap<String, crate::Secret>, ConfigErrors> {
        let wanted = self.secret_references();
        let mut backends = BTreeMap::new();
        let mut errors = Vec::new();
        for name in wanted.keys() {
            let path = KeyPath::root().key("secret").key(name);
            let Some(table) = self.secrets.get(name) else { continue };
            let mut t = table.0.clone();
            let type_name = t.remove("type").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            match secrets::backend(&type_name).map(|b| (b.build)(&t)) {
                Some(Ok(b)) => {
                    backends.insert(name.clone(), b);
                }
                _ => errors.push(self.error_at(&path, format!("secret `{name}` cannot be read: its table is not valid"))),
            }
        }
        let mut out = BTreeMap::new();
        for (name, r) in secrets::read_all(backends) {
            let path = KeyPath::root().key("secret").key(&name);
            match r {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(m) => {
                    let type_name = self.secrets.get(&name).and_then(|t| t.0.get("type")).and_then(|v| v.as_str()).unwrap_or("?");
                    errors.push(self.error_at(&path, format!("secret `{name}` ({type_name}): {}", crate::redact(&m))));
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Whether build problems at `key` are about an offline stand-in for a secret.
    pub(super) fn stands_in(&self, key: &str) -> bool {
        self.secrets_resolved == Some(SecretMode::Offline)
            && self.secret_refs.iter().any(|(p, _)| {
                let p = p.to_string();
                key == p || key.starts_with(&format!("{p}.")) || key.starts_with(&format!("{p}["))
            })
    }

    /// The references whose values are shorter than 4 characters: too short to be hidden from
    /// messages (they would mask ordinary text), and likely a mistake.
    pub fn short_secrets(&self) -> &[String] {
        &self.short_secrets
    }

    /// Whether the config still holds `SECRET[...]` references nobody resolved.
    pub(super) fn unresolved_secret(&self) -> Option<&KeyPath> {
        if self.secrets_resolved.is_some() {
            return None;
        }
        self.secret_refs.first().map(|(p, _)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn references_are_checked_offline_and_resolved_at_start() {
        let dir = std::env::temp_dir().join(format!("sagesync-cfg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token.json");
        std::fs::write(&f, r#"{"token":"tok-123456","user":"me"}"#).unwrap();
        let text = format!(
            "[source]\ntype = \"x\"\n[[sinks]]\ntype = \"y\"\ntoken = \"SECRET[creds.token]\"\nheader = \"Bearer SECRET[creds.token] by SECRET[creds.user]\"\n[secret.creds]\ntype = \"file\"\npath = {:?}\n",
            f.display().to_string()
        );
        let mut cfg = Config::parse(&text, "f.toml", &env).unwrap();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        assert_eq!(cfg.secret_references()["creds"], ["sinks[0].token", "sinks[0].header"]);
        assert_eq!(cfg.unresolved_secret().map(|p| p.to_string()).as_deref(), Some("sinks[0].token"));
        cfg.resolve_secrets(SecretMode::Resolve).unwrap();
        let o = &cfg.sinks[0].options.0;
        assert_eq!(o["token"].as_str(), Some("tok-123456"));
        assert_eq!(o["header"].as_str(), Some("Bearer tok-123456 by me"));
        assert_eq!(crate::redact("sent tok-123456"), "sent ***");
        assert!(!format!("{cfg:?}").contains("tok-123456"));

        // Offline: nothing read, the stand-in in its place.
        let mut off = Config::parse(&text, "f.toml", &env).unwrap();
        off.resolve_secrets(SecretMode::Offline).unwrap();
        assert_eq!(off.sinks[0].options.0["token"].as_str(), Some(OFFLINE_STAND_IN));
        assert!(off.stands_in("sinks[0].token"));

        // A missing file, a missing key, an undeclared secret, a bad reference: located.
        let bad = text.replace("token.json", "missing.json");
        let mut cfg = Config::parse(&bad, "f.toml", &env).unwrap();
        let e = cfg.resolve_secrets(SecretMode::Resolve).unwrap_err().to_string();
        assert!(e.contains("f.toml:7:") && e.contains("key `secret.creds`: secret `creds` (file): cannot read"), "{e}");
        let mut cfg = Config::parse(&text.replace("creds.user", "creds.nope"), "f.toml", &env).unwrap();
        let e = cfg.resolve_secrets(SecretMode::Resolve).unwrap_err().to_string();
        assert!(e.contains("key `sinks[0].header`: secret `creds` has no key `nope`") && !e.contains("tok-123456"), "{e}");
        let cfg = Config::parse(&text.replace("SECRET[creds.user]", "SECRET[other]"), "f.toml", &env).unwrap();
        assert!(
            cfg.problems().iter().any(|p| p.to_string().contains("SECRET[other] refers to an undeclared secret")),
            "{:?}",
            cfg.problems()
        );
        let cfg = Config::parse(&text.replace("\"file\"", "\"vault\""), "f.toml", &env).unwrap();
        assert!(cfg.problems().iter().any(|p| p.message.contains("unknown secret type `vault`")));
        let _ = std::fs::remove_dir_all(dir);
    }
}
