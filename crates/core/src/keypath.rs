//! [`KeyPath`]: where a value sits in a config file (`sinks[0].dir`).

use std::fmt;

/// A path to a key: `sinks[0].dir`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(pub Vec<PathSeg>);

/// One segment of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl KeyPath {
    /// The empty path.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }
    /// This path with a key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Key(k.to_string()));
        KeyPath(v)
    }
    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(PathSeg::Index(i));
        KeyPath(v)
    }
    /// This path followed by `other`.
    pub fn join(&self, other: &KeyPath) -> Self {
        let mut v = self.0.clone();
        v.extend(other.0.iter().cloned());
        KeyPath(v)
    }
    /// Converts a `serde_path_to_error` path.
    pub fn from_serde_path(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut v = Vec::new();
        for seg in p.iter() {
            match seg {
                Segment::Map { key } => v.push(PathSeg::Key(key.clone())),
                Segment::Seq { index } => v.push(PathSeg::Index(*index)),
                Segment::Enum { variant } => v.push(PathSeg::Key(variant.clone())),
                Segment::Unknown => {}
            }
        }
        KeyPath(v)
    }
    /// Whether the path is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{:?}", k)?;
                    }
                }
                PathSeg::Index(i) => write!(f, "[{}]", i)?,
            }
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_display() {
        let p = KeyPath::root().key("sinks").index(0).key("dir");
        assert_eq!(p.to_string(), "sinks[0].dir");
        assert_eq!(KeyPath::root().key("tags").key("a b").to_string(), "tags.\"a b\"");
    }
}
