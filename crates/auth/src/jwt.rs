//! Docker registry bearer tokens: JWS compact serialization, ES256 (P-256, SHA-256) only.
//!
//! This module owns the token format: minting (`Signer`), checking (`Verifier`) and publishing
//! the keys (`jwks`). The algorithm is pinned: a header naming anything but `ES256` is refused,
//! keys are only ever the configured ones (a header carrying its own key or a pointer to one,
//! `jwk`, `jku`, `x5u` or `x5c`, is refused), the signature is checked before any claim is
//! looked at, the issuer and audience must be ours, and size limits apply before decoding.
//! It must not decide what a token grants beyond carrying `access`, nor read keys from disk.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    ParsedPublicKey,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::pattern::Access;
use crate::secret::{b64url, b64url_decode};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The only accepted `alg`.
pub const ALG: &str = "ES256";
/// Length of an uncompressed P-256 point (`0x04 || x || y`).
const POINT_LEN: usize = 65;
/// Length of a JWS ES256 signature (`r || s`).
const SIG_LEN: usize = 64;

/// The claims of a registry bearer token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user (or token owner) the token speaks for.
    pub sub: String,
    /// Audience: the registry service name.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// What the token grants.
    #[serde(default)]
    pub access: Vec<Access>,
    /// The credential that minted it, e.g. `pw:alice:3`, `tok:0123abcd…`, `anon`.
    #[serde(default)]
    pub cred: String,
}

/// Why a key could not be used or a token was refused.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON, too long, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm other than ES256 (or none), or demands extensions (`crit`).
    #[error("token algorithm not accepted (only ES256)")]
    Algorithm,
    /// The header carries a key or points at one (`jwk`, `jku`, `x5u`, `x5c`): only the
    /// configured keys verify, so such a token is a forgery attempt or another issuer's.
    #[error("token header carries its own key (jwk, jku, x5u or x5c)")]
    EmbeddedKey,
    /// No `kid`, or one that names no configured key.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature is not 64 bytes or does not verify.
    #[error("token signature invalid")]
    Signature,
    /// `iss` is not the issuer this registry signs as.
    #[error("token issuer mismatch")]
    Issuer,
    /// `aud` is not this registry.
    #[error("token audience mismatch")]
    Audience,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp` has passed; carries the signature-verified claims, so the caller may waive expiry
    /// (e.g. for an upload session the same subject started).
    #[error("token expired")]
    Expired(Box<Claims>),
    /// A key could not be generated, parsed or used.
    #[error("key error: {0}")]
    Key(String),
}

/// The header fields we read. `crit` and the key-carrying fields count as present whatever
/// their value (even `null`); everything else (`typ`, …) is ignored. Duplicate fields are a
/// deserialization error, so no parser-differential on `alg` or `kid`.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

impl Header {
    /// Whether the header brings a key of its own, or a place to fetch one from.
    fn carries_key(&self) -> bool {
        self.jwk || self.jku || self.x5u || self.x5c
    }
}

/// A header field that is there, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The header we write, in this field order.
#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Generate a P-256 signing key: its `kid` (RFC 7638 thumbprint) and PKCS#8 v1 DER. Fails
/// (`JwtError::Key`) only if the random generator or the crypto library fails.
pub fn generate_key() -> Result<(String, Vec<u8>), JwtError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| JwtError::Key(format!("P-256 key generation failed: {e}")))?;
    let pkcs8 = doc.as_ref().to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
        .map_err(|e| JwtError::Key(format!("a freshly generated key does not parse: {e}")))?;
    let kid = thumbprint(pair.public_key().as_ref())?;
    Ok((kid, pkcs8))
}

/// The RFC 7638 JWK thumbprint of an uncompressed P-256 point: base64url of the SHA-256 of
/// `{"crv":"P-256","kty":"EC","x":…,"y":…}` (members in that order, no whitespace).
pub fn thumbprint(point: &[u8]) -> Result<String, JwtError> {
    let (x, y) = split_point(point)?;
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    Ok(b64url(digest.as_ref()))
}

/// The base64url `x` and `y` coordinates of an uncompressed P-256 point.
fn split_point(point: &[u8]) -> Result<(String, String), JwtError> {
    if point.len() != POINT_LEN || point[0] != 0x04 {
        return Err(JwtError::Key(
            "expected an uncompressed P-256 point (65 bytes starting 0x04)".to_string(),
        ));
    }
    Ok((b64url(&point[1..33]), b64url(&point[33..])))
}

/// Parse one verification key, insisting on the uncompressed form.
fn parse_point(kid: &str, point: &[u8]) -> Result<ParsedPublicKey, JwtError> {
    split_point(point).map_err(|e| JwtError::Key(format!("key {kid:?}: {e}")))?;
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|e| JwtError::Key(format!("key {kid:?}: {e}")))
}

/// Mints tokens with one private key.
pub struct Signer {
    kid: String,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Load a P-256 key from PKCS#8 DER; `kid` is what tokens will name it.
    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Signer, JwtError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Signer {
            kid: kid.to_string(),
            pair,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as an uncompressed point (65 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Sign `claims` as a compact JWS with header `{"alg":"ES256","typ":"JWT","kid":…}`. Fails
    /// (`JwtError::Key`) only if the random generator or the crypto library fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = OutHeader {
            alg: ALG,
            typ: "JWT",
            kid: &self.kid,
        };
        let header = serde_json::to_vec(&header).expect("header serializes");
        let payload = serde_json::to_vec(claims).expect("claims serialize");
        let mut token = format!("{}.{}", b64url(header), b64url(payload));
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .pair
            .sign(&rng, token.as_bytes())
            .map_err(|e| JwtError::Key(format!("ECDSA signing failed: {e}")))?;
        token.push('.');
        token.push_str(&b64url(sig.as_ref()));
        Ok(token)
    }
}

/// Checks tokens against a fixed set of public keys.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<(String, ParsedPublicKey)>,
}

impl Verifier {
    /// Build from `(kid, uncompressed P-256 point)` pairs. A key that is not a valid
    /// uncompressed P-256 point is left out (tokens naming it then fail with
    /// [`JwtError::UnknownKey`]), and on a repeated kid the first key wins; use
    /// [`Verifier::try_new`] to have either reported instead.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Verifier {
        let mut parsed: Vec<(String, ParsedPublicKey)> = Vec::with_capacity(keys.len());
        for (kid, point) in keys {
            if let Ok(key) = parse_point(&kid, &point)
                && !parsed.iter().any(|(k, _)| *k == kid)
            {
                parsed.push((kid, key));
            }
        }
        Verifier { keys: parsed }
    }

    /// Like [`Verifier::new`], but a malformed point, a point not on the curve, or a repeated
    /// kid is an error.
    pub fn try_new(keys: Vec<(String, Vec<u8>)>) -> Result<Verifier, JwtError> {
        let mut parsed: Vec<(String, ParsedPublicKey)> = Vec::with_capacity(keys.len());
        for (kid, point) in keys {
            let key = parse_point(&kid, &point)?;
            if parsed.iter().any(|(k, _)| *k == kid) {
                return Err(JwtError::Key(format!("key id {kid:?} appears twice")));
            }
            parsed.push((kid, key));
        }
        Ok(Verifier { keys: parsed })
    }

    /// The kids of the usable keys, in configuration order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// Verify `token`, minted by `issuer` for `audience`, at time `now` (seconds), allowing
    /// `leeway` seconds of clock skew on `nbf` and `exp`. Order: size, shape, header policy
    /// (algorithm, `crit`, embedded keys), key, signature, then claims (issuer, audience,
    /// not-before, expiry).
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
        leeway: i64,
    ) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };

        let header_json = b64url_decode(header_b64).ok_or(JwtError::Malformed)?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
        if header.alg.as_deref() != Some(ALG) || header.crit {
            return Err(JwtError::Algorithm);
        }
        if header.carries_key() {
            return Err(JwtError::EmbeddedKey);
        }
        let kid = header.kid.ok_or(JwtError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(JwtError::UnknownKey)?;

        let sig = b64url_decode(sig_b64).ok_or(JwtError::Signature)?;
        if sig.len() != SIG_LEN {
            return Err(JwtError::Signature);
        }
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify_sig(signed.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;

        let payload = b64url_decode(payload_b64).ok_or(JwtError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
        let leeway = leeway.max(0);
        if claims.iss != issuer {
            return Err(JwtError::Issuer);
        }
        if claims.aud != audience {
            return Err(JwtError::Audience);
        }
        if claims.nbf.saturating_sub(leeway) > now {
            return Err(JwtError::NotYetValid);
        }
        if now >= claims.exp.saturating_add(leeway) {
            return Err(JwtError::Expired(Box::new(claims)));
        }
        Ok(claims)
    }
}

/// The JWK Set publishing `(kid, uncompressed point)` keys. Entries whose point is not a
/// 65-byte uncompressed point are left out ([`Verifier::new`] reports those).
pub fn jwks(keys: &[(String, Vec<u8>)]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = keys
        .iter()
        .filter_map(|(kid, point)| {
            let (x, y) = split_point(point).ok()?;
            Some(json!({
                "kty": "EC",
                "crv": "P-256",
                "x": x,
                "y": y,
                "kid": kid,
                "use": "sig",
                "alg": ALG,
            }))
        })
        .collect();
    json!({ "keys": entries })
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "jwt_attack_tests.rs"]
mod attack_tests;
