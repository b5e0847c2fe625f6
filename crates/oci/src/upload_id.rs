//! Upload session ids as they appear in URLs.

/// An upload id: 1 to 128 characters of `[0-9a-z-]`. Every id Stowage issues has that form (a
/// signed session id, or 32 hex digits for a single-request upload), so anything else names no
/// upload; being path-safe, it can name a file or an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// The id, if `s` has the form of one.
    pub fn parse(s: &str) -> Option<UploadId> {
        let ok = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
        ok.then(|| UploadId(s.to_string()))
    }

    /// An id built by its issuer, already of the right form (checked in debug builds).
    pub fn issued(s: String) -> UploadId {
        debug_assert!(UploadId::parse(&s).is_some(), "{s:?}");
        UploadId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for UploadId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_path_safe() {
        assert!(UploadId::parse("0123abcdef-a1-ff").is_some());
        for bad in ["", "ABC", "a/b", "..", "a b", "a%2f", &"a".repeat(129)] {
            assert!(UploadId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
