//! Random bearer secrets: personal access tokens (`stw_…`) and refresh tokens (`stwr_…`), plus
//! the small primitives around them (randomness, SHA-256, constant-time comparison, base64url).
//!
//! A secret is `PREFIX{id}_{43 base64url chars}`: the 16-hex-digit id is the lookup key, and only
//! the SHA-256 of the whole string is ever stored. A fast hash is right here, unlike for
//! passwords: the secret carries 256 random bits, so there is nothing to guess offline and a
//! slow hash would only burn CPU on every request. This module must not store, look up or
//! expire tokens; that is the caller's.

use aws_lc_rs::{constant_time, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Prefix of personal access tokens.
pub const ACCESS_PREFIX: &str = "stw_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "stwr_";
/// Length of the hex id.
const ID_LEN: usize = 16;
/// Length of the base64url encoding of 32 bytes, unpadded.
const KEY_LEN: usize = 43;

/// A freshly minted secret: show `secret` to the user once, store `id` and `hash`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSecret {
    /// Public lookup id (16 lowercase hex digits).
    pub id: String,
    /// The whole bearer secret.
    pub secret: String,
    /// SHA-256 of `secret`.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The system random generator failed: nothing secret can be made until it works again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random generator failed")]
pub struct RandomError;

/// Mint a personal access token (`stw_{id}_{key}`).
pub fn new_access_token() -> Result<NewSecret, RandomError> {
    new_secret(ACCESS_PREFIX)
}

/// Mint a refresh token (`stwr_{id}_{key}`).
pub fn new_refresh_token() -> Result<NewSecret, RandomError> {
    new_secret(REFRESH_PREFIX)
}

fn new_secret(prefix: &str) -> Result<NewSecret, RandomError> {
    let id = hex(&random_bytes::<{ ID_LEN / 2 }>()?);
    let secret = format!("{prefix}{id}_{}", b64url(random_bytes::<32>()?));
    let hash = hash_secret(&secret);
    Ok(NewSecret { id, secret, hash })
}

/// The id of a well-formed access token, or `None`.
pub fn split_access_token(s: &str) -> Option<&str> {
    split(s, ACCESS_PREFIX)
}

/// The id of a well-formed refresh token, or `None`.
pub fn split_refresh_token(s: &str) -> Option<&str> {
    split(s, REFRESH_PREFIX)
}

/// Strict recognition: prefix, 16 lowercase hex digits, `_`, and 43 base64url characters that
/// decode canonically to 32 bytes.
fn split<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(prefix)?;
    if rest.len() != ID_LEN + 1 + KEY_LEN || !rest.is_ascii() {
        return None;
    }
    let (id, key) = rest.split_at(ID_LEN);
    let key = key.strip_prefix('_')?;
    let hex_ok = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let key_ok = b64url_decode(key).is_some_and(|k| k.len() == 32);
    (hex_ok && key_ok).then_some(id)
}

/// SHA-256 of a secret string.
pub fn hash_secret(s: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `a == b`, in time independent of the contents when the lengths are equal.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `N` bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| RandomError)?;
    Ok(out)
}

/// Unpadded base64url (RFC 4648 §5).
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode unpadded base64url, strictly: padding, other alphabets and non-canonical trailing
/// bits are rejected.
pub fn b64url_decode(s: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Lowercase hex.
pub use stowage_oci::hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_shape() {
        let t = new_access_token().unwrap();
        assert_eq!(t.id.len(), 16);
        assert!(
            t.id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(t.secret.len(), 4 + 16 + 1 + 43);
        assert!(t.secret.starts_with(&format!("stw_{}_", t.id)));
        assert_eq!(t.hash, hash_secret(&t.secret));
        assert_eq!(split_access_token(&t.secret), Some(t.id.as_str()));
        assert_eq!(split_refresh_token(&t.secret), None);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn refresh_token_shape() {
        let t = new_refresh_token().unwrap();
        assert!(t.secret.starts_with(&format!("stwr_{}_", t.id)));
        assert_eq!(split_refresh_token(&t.secret), Some(t.id.as_str()));
        assert_eq!(split_access_token(&t.secret), None);
    }

    #[test]
    fn tokens_are_unique() {
        let a = new_access_token().unwrap();
        let b = new_access_token().unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn strict_recognition() {
        let good = new_access_token().unwrap().secret;
        let key = &good[21..];
        let rejects = [
            String::new(),
            "stw_".to_string(),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            good.replacen("stw_", "STW_", 1),
            good.replacen("stw_", "stx_", 1),
            format!("stw_0123456789ABCDEF_{key}"),
            format!("stw_0123456789abcdeg_{key}"),
            format!("stw_0123456789abcdef-{key}"),
            format!("stw_0123456789abcdef_{}+", &key[..42]),
            format!("stw_0123456789abcdef_{}=", &key[..42]),
            // 43 characters whose last one carries non-zero trailing bits.
            format!("stw_0123456789abcdef_{}B", "A".repeat(42)),
            format!("stw_0123456789abcdef_{}é", &key[..41]),
            format!(" {good}"),
        ];
        for s in &rejects {
            assert_eq!(split_access_token(s), None, "{s:?}");
        }
        let canonical = format!("stw_0123456789abcdef_{}A", "A".repeat(42));
        assert_eq!(split_access_token(&canonical), Some("0123456789abcdef"));
    }

    #[test]
    fn primitives() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(b64url([0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(b64url_decode("-_8="), None);
        assert_eq!(b64url_decode("+/8"), None);
        assert_eq!(b64url_decode("-_9"), None, "non-canonical trailing bits");
        assert_eq!(b64url_decode(""), Some(vec![]));
        let r: [u8; 32] = random_bytes().unwrap();
        assert_ne!(r, random_bytes::<32>().unwrap());
        // SHA-256("abc")
        assert_eq!(
            hex(&hash_secret("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
