//! Content digests: parsing `algorithm:encoded`, the algorithms Stowage verifies, and hashing.
//!
//! Only `sha256` and `sha512` are accepted, with lowercase hex of the exact length; anything else
//! is rejected here so that no unverifiable digest ever reaches storage. Hashing uses aws-lc's
//! assembly SHA-2 (SHA-NI where present, AVX2/SSSE3 otherwise, where pure-Rust SHA-256 falls
//! behind), and the running state can be saved and restored so a chunked upload survives a
//! restart without re-reading what it stored.
//!
//! Submodules:
//! - `ffi`: the only `unsafe` code, aws-lc's SHA-2 contexts behind a safe type.
//! - `state`: the versioned byte format of a saved hasher.
//!
//! This module does no I/O; where a saved state is kept is the caller's business.

mod ffi;
mod state;

use std::fmt;
use std::str::FromStr;

use ffi::Sha2Ctx;

/// A digest algorithm Stowage can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in digest strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// Parse an algorithm name (as in `?digest-algorithm=`).
    pub fn parse(s: &str) -> Result<Algorithm, DigestError> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if valid_algorithm_component(other) => {
                Err(DigestError::Unsupported(other.to_string()))
            }
            other => Err(DigestError::Malformed(other.to_string())),
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed digest {0:?}: expected algorithm:hex, e.g. sha256:<64 lowercase hex>")]
    Malformed(String),
    #[error("unsupported digest algorithm {0:?}: only sha256 and sha512 are supported")]
    Unsupported(String),
}

/// A parsed, validated digest such as `sha256:e3b0c4...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

fn valid_algorithm_component(s: &str) -> bool {
    // algorithm-component ::= [a-z0-9]+ (separated by [+._-])
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        if enc.is_empty()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(DigestError::Malformed(s.to_string()));
        }
        let algorithm = Algorithm::parse(alg).map_err(|e| match e {
            DigestError::Malformed(_) => DigestError::Malformed(s.to_string()),
            other => other,
        })?;
        if enc.len() != algorithm.hex_len()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_string(),
        })
    }
}

/// An incremental hasher for one algorithm. Cloneable, so an upload can keep its state between
/// requests in memory, and savable (`save_state`), so it can keep it across restarts too.
#[derive(Clone)]
pub struct Hasher {
    ctx: Sha2Ctx,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Hasher {
        Hasher {
            ctx: Sha2Ctx::new(algorithm),
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.ctx.len()
    }

    /// True when nothing has been hashed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> Algorithm {
        self.ctx.algorithm()
    }

    /// Finish and return the digest.
    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let (out, n) = self.ctx.finish();
        Digest {
            algorithm,
            hex: hex(&out[..n]),
        }
    }

    /// The running state as a small self-describing byte string (56-119 bytes for sha256, 88-215
    /// for sha512), to persist after each chunk of an upload. It holds up to one block of the
    /// hashed content in clear, so store it with the same care as the upload itself.
    pub fn save_state(&self) -> Vec<u8> {
        state::save(&self.ctx)
    }

    /// Rebuild a hasher from `save_state` output. None when the bytes are damaged, truncated, or
    /// were written by a format or backend this build does not know; the caller then re-hashes
    /// the stored bytes. Any input is safe to pass.
    pub fn restore_state(bytes: &[u8]) -> Option<Hasher> {
        state::restore(bytes).map(|ctx| Hasher { ctx })
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The chaining value and tail are derived from content; keep them out of logs.
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_known_vectors() {
        assert_eq!(Digest::of(Algorithm::Sha256, b"").to_string(), EMPTY256);
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d.hex().len(), 128);
    }

    #[test]
    fn incremental_equals_oneshot_and_clone_continues() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(&data[..33_333]);
        let mut h2 = h.clone();
        h.update(&data[33_333..]);
        h2.update(&data[33_333..]);
        let oneshot = Digest::of(Algorithm::Sha256, &data);
        assert_eq!(h.len(), data.len() as u64);
        assert_eq!(h.finish(), oneshot);
        assert_eq!(h2.finish(), oneshot);
    }

    #[test]
    fn parses_valid() {
        let d: Digest = EMPTY256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY256);
        let s512 = format!("sha512:{}", "a".repeat(128));
        assert!(s512.parse::<Digest>().is_ok());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
            "sha512:abcd",
            "totallywrong",
            "sha256:../../etc/passwd",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Algorithm::parse("blake3"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Algorithm::parse("Bad!"),
            Err(DigestError::Malformed(_))
        ));
    }
}
