//! Repository names: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
//!
//! The grammar is checked by hand (no regex engine) because it sits on every request. Names are
//! capped at 255 bytes, the limit clients apply to `host/name`.

use std::fmt;

/// Maximum name length in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A validated repository name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validate and wrap a repository name.
    pub fn parse(s: &str) -> Option<RepoName> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return None;
        }
        s.split('/')
            .all(valid_component)
            .then(|| RepoName(s.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or `-+`.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b/c_d/e__f/g--h",
            "0",
            "team/app/sub/deeper",
            "my-app",
            "a-----b",
        ] {
            assert!(RepoName::parse(ok).is_some(), "{ok}");
        }
        assert!(RepoName::parse(&"a".repeat(255)).is_some());
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "A",
            "Library/ubuntu",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            ".a",
            "a.",
            "a_.b",
            "a/../b",
            "..",
            "a b",
            "a%2fb",
            "a:b",
            "ü",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad:?}");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_none());
    }
}
