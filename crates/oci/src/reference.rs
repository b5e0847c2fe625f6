//! Manifest references: a tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`) or a digest.

use std::fmt;

use crate::digest::Digest;

/// The spec's longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// A validated tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validate a tag.
    pub fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let first_ok = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let rest_ok = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-';
        (!b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && first_ok(b[0])
            && b[1..].iter().all(|&x| rest_ok(x)))
        .then(|| Tag(s.to_string()))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `<reference>` of `/v2/<name>/manifests/<reference>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

/// Why a reference was refused; the two cases map to different OCI codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// Contains `:` so it was meant as a digest, but is not a valid one.
    Digest(crate::digest::DigestError),
    /// Not a valid tag.
    Tag,
}

impl Reference {
    /// A string with `:` is a digest (tags cannot contain `:`), anything else a tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag).ok_or(ReferenceError::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", ".a", "-a", "a/b", "a:b", "a b", "ü", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(matches!(
            Reference::parse("sha256:totallywrong"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("bad tag"),
            Err(ReferenceError::Tag)
        ));
    }
}
