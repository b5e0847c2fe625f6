//! Self-verifying upload session ids.
//!
//! Opening an upload session writes nothing: the id carries 128 random bits, the digest
//! algorithm and the creation time, bound to the repository by an HMAC under a key kept in the
//! metadata store (so every instance can check ids any other issued). A session gets a metadata
//! row only when its first bytes arrive. Ids are path-safe (`[0-9a-z-]`), unguessable, refused
//! for any other repository or owner (the authenticated subject that opened the session), and
//! refused once older than the purge age.

use aws_lc_rs::hmac;
use stowage_oci::{Algorithm, hex};

pub use stowage_oci::UploadId;

/// Name of the key in the metadata store's secrets.
pub const KEY_NAME: &str = "upload-session-hmac";

/// What a valid id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClaims {
    pub algorithm: Algorithm,
    /// Unix seconds.
    pub created: i64,
}

fn alg_tag(a: Algorithm) -> char {
    match a {
        Algorithm::Sha256 => 'a',
        Algorithm::Sha512 => 'b',
    }
}

fn tag_alg(c: char) -> Option<Algorithm> {
    match c {
        'a' => Some(Algorithm::Sha256),
        'b' => Some(Algorithm::Sha512),
        _ => None,
    }
}

fn signed_part(body: &str, repo: &str, owner: &str) -> Vec<u8> {
    let mut m = body.as_bytes().to_vec();
    m.push(0);
    m.extend_from_slice(repo.as_bytes());
    // Without authentication there is no owner, and the MAC stays what it was before owners
    // existed, so sessions survive an upgrade.
    if !owner.is_empty() {
        m.push(0);
        m.extend_from_slice(owner.as_bytes());
    }
    m
}

/// Issue an id for a new session of `repo` opened by `owner` (the authenticated subject, or
/// empty without authentication).
pub fn issue(
    key: &hmac::Key,
    random: &[u8; 16],
    repo: &str,
    owner: &str,
    claims: SessionClaims,
) -> UploadId {
    let body = format!(
        "{}-{}{:x}",
        hex(random),
        alg_tag(claims.algorithm),
        claims.created.max(0)
    );
    let tag = hmac::sign(key, &signed_part(&body, repo, owner));
    UploadId::issued(format!("{body}-{}", hex(&tag.as_ref()[..16])))
}

/// Check an id against `repo` and `owner`; None when it was not issued for both (or is
/// malformed).
pub fn verify(key: &hmac::Key, id: &str, repo: &str, owner: &str) -> Option<SessionClaims> {
    let (body, mac_hex) = id.rsplit_once('-')?;
    let (random, meta) = body.split_once('-')?;
    if random.len() != 32 || mac_hex.len() != 32 || meta.len() < 2 || meta.len() > 17 {
        return None;
    }
    let mut chars = meta.chars();
    let algorithm = tag_alg(chars.next()?)?;
    let created = i64::from_str_radix(chars.as_str(), 16).ok()?;
    let mac: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(mac_hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let full = hmac::sign(key, &signed_part(body, repo, owner));
    // Constant-time comparison of the truncated tag.
    let diff = full.as_ref()[..16]
        .iter()
        .zip(&mac)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (diff == 0).then_some(SessionClaims { algorithm, created })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[b; 32])
    }

    #[test]
    fn round_trip_and_binding() {
        let claims = SessionClaims {
            algorithm: Algorithm::Sha512,
            created: 1_700_000_000,
        };
        let id = issue(&key(1), &[7; 16], "team/app", "", claims);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-'),
            "{id}"
        );
        assert_eq!(verify(&key(1), &id, "team/app", ""), Some(claims));
        assert_eq!(
            verify(&key(1), &id, "team/other", ""),
            None,
            "bound to its repository"
        );
        assert_eq!(
            verify(&key(2), &id, "team/app", ""),
            None,
            "bound to the key"
        );
        assert_eq!(
            verify(&key(1), &id, "team/app", "eve"),
            None,
            "bound to no owner"
        );
        let owned = issue(&key(1), &[7; 16], "team/app", "alice", claims);
        assert_eq!(verify(&key(1), &owned, "team/app", "alice"), Some(claims));
        assert_eq!(
            verify(&key(1), &owned, "team/app", "bob"),
            None,
            "bound to its owner"
        );
        assert_eq!(verify(&key(1), &owned, "team/app", ""), None);
    }

    #[test]
    fn tampering_is_refused() {
        let id = issue(
            &key(1),
            &[9; 16],
            "r",
            "",
            SessionClaims {
                algorithm: Algorithm::Sha256,
                created: 100,
            },
        );
        for i in 0..id.len() {
            for c in ['0', 'f', 'a', 'b', '-', 'z'] {
                let mut t: Vec<char> = id.chars().collect();
                if t[i] == c {
                    continue;
                }
                t[i] = c;
                let t: String = t.into_iter().collect();
                assert_eq!(verify(&key(1), &t, "r", ""), None, "{t}");
            }
        }
        for junk in [
            "",
            "-",
            "--",
            "a-b-c",
            "x".repeat(200).as_str(),
            "../../etc",
        ] {
            assert_eq!(verify(&key(1), junk, "r", ""), None);
        }
    }
}
