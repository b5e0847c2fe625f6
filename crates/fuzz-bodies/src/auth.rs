//! Targets over `stowage-auth`: token scopes and stored grants, bearer JWTs and the key set
//! behind them, htpasswd files.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use stowage_auth::{
    Grant, HtpasswdError, JwtError, PatternError, ScopeError, Verifier, generate_key, jwks,
    parse_htpasswd, parse_scope, parse_scopes, valid_username,
};

use crate::Target;
use crate::input::{Input, text};

pub const SCOPE: Target = Target {
    name: "scope",
    body: scope,
    outcomes: &[
        "ok",
        "shape",
        "unknown-type",
        "class",
        "invalid-name",
        "unknown-registry-resource",
        "catalog-actions",
        "admin-actions",
        "unknown-action",
        "grant-ok",
        "grant-empty",
        "grant-too-long",
        "grant-character",
        "grant-triple-star",
        "grant-shape",
        "grant-catalog",
        "grant-no-actions",
        "grant-actions",
    ],
};

/// `grant <grant>` (a stored right, as `--grant` and the admin API take it), or a token
/// endpoint's space-separated `scope` list. What parses prints back to itself.
pub fn scope(data: &[u8]) -> &'static str {
    let s = text(data);
    if let Some(g) = s.strip_prefix("grant ") {
        return match Grant::parse(g) {
            Ok(grant) => {
                let again = Grant::parse(&grant.to_string()).expect("a printed grant parses");
                assert_eq!(again, grant);
                "grant-ok"
            }
            Err(PatternError::Empty) => "grant-empty",
            Err(PatternError::TooLong(_)) => "grant-too-long",
            Err(PatternError::Character { .. }) => "grant-character",
            Err(PatternError::TripleStar(_)) => "grant-triple-star",
            Err(PatternError::Shape(_)) => "grant-shape",
            Err(PatternError::Catalog(_)) => "grant-catalog",
            Err(PatternError::NoActions(_)) => "grant-no-actions",
            Err(PatternError::Actions(_)) => "grant-actions",
        };
    }
    match parse_scopes(&s) {
        Ok(scopes) => {
            for sc in scopes {
                assert_eq!(parse_scope(&sc.to_string()).as_ref(), Ok(&sc));
            }
            "ok"
        }
        Err(ScopeError::Shape(_)) => "shape",
        Err(ScopeError::UnknownType(_)) => "unknown-type",
        Err(ScopeError::Class(_)) => "class",
        Err(ScopeError::InvalidName(_)) => "invalid-name",
        Err(ScopeError::UnknownRegistryResource(_)) => "unknown-registry-resource",
        Err(ScopeError::CatalogActions(_)) => "catalog-actions",
        Err(ScopeError::AdminActions(_)) => "admin-actions",
        Err(ScopeError::UnknownAction(_)) => "unknown-action",
    }
}

pub const JWT: Target = Target {
    name: "jwt",
    body: jwt,
    outcomes: &[
        "ok",
        "malformed",
        "algorithm",
        "embedded-key",
        "unknown-key",
        "signature",
        "issuer",
        "audience",
        "not-yet-valid",
        "expired",
        "keys-ok",
        "key",
    ],
};

/// The key id the verifier knows the fuzz key by.
pub const KID: &str = "fuzz-key";
pub const ISSUER: &str = "fuzz-issuer";
pub const AUDIENCE: &str = "fuzz-audience";
/// The verifier's clock, and its leeway.
pub const NOW: i64 = 1_000_000;
pub const LEEWAY: i64 = 30;

/// A P-256 key made once per process, and the verifier that knows it as [`KID`].
fn key() -> &'static (EcdsaKeyPair, Verifier) {
    static KEY: OnceLock<(EcdsaKeyPair, Verifier)> = OnceLock::new();
    KEY.get_or_init(|| {
        let (_, pkcs8) = generate_key().expect("a key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .expect("its own key");
        let point = pair.public_key().as_ref().to_vec();
        (pair, Verifier::new(vec![(KID.to_string(), point)]))
    })
}

/// Three forms, by the first byte:
/// - `s<header JSON>\n<claims JSON>`: a token correctly signed with the verifier's key, so the
///   header policy and every claim check are reached; its signature is never the problem.
/// - `k` then (kid, point) pairs, each a length byte and bytes: a key set for
///   `Verifier::try_new`; an accepted set is published by `jwks` with the same points.
/// - anything else: a token as a client would present it. Nobody but the key holder can make
///   a valid signature, so it is refused before any claim is looked at.
pub fn jwt(data: &[u8]) -> &'static str {
    match data.split_first() {
        Some((b's', rest)) => {
            let mut input = Input::new(rest);
            let header = input.line();
            let claims = input.rest();
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let (pair, verifier) = key();
            let sig = pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .expect("signing");
            let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            let result = verifier.verify(&token, ISSUER, AUDIENCE, NOW, LEEWAY);
            assert!(
                !matches!(result, Err(JwtError::Signature)),
                "a correct signature was refused"
            );
            if token.len() > stowage_auth::jwt::MAX_TOKEN_LEN {
                assert_eq!(result.as_ref().err(), Some(&JwtError::Malformed));
            }
            jwt_outcome(result)
        }
        Some((b'k', rest)) => {
            let mut input = Input::new(rest);
            let mut keys = Vec::new();
            while !input.is_empty() {
                let kid = text(input.short()).into_owned();
                keys.push((kid, input.short().to_vec()));
            }
            match Verifier::try_new(keys.clone()) {
                Ok(v) => {
                    assert_eq!(v.kids().count(), keys.len());
                    let set = jwks(&keys);
                    let entries = set["keys"].as_array().expect("a keys array");
                    assert_eq!(entries.len(), keys.len());
                    for (entry, (kid, point)) in entries.iter().zip(&keys) {
                        assert_eq!(entry["kid"].as_str(), Some(kid.as_str()));
                        let coord = |k: &str| {
                            URL_SAFE_NO_PAD
                                .decode(entry[k].as_str().expect("a coordinate"))
                                .expect("base64url")
                        };
                        let mut again = vec![4u8];
                        again.extend(coord("x"));
                        again.extend(coord("y"));
                        assert_eq!(&again, point);
                    }
                    "keys-ok"
                }
                Err(JwtError::Key(_)) => {
                    assert!(Verifier::new(keys.clone()).kids().count() < keys.len());
                    "key"
                }
                Err(e) => panic!("a key set failed with {e:?}"),
            }
        }
        _ => {
            let token = text(data);
            let result = key().1.verify(&token, ISSUER, AUDIENCE, NOW, LEEWAY);
            assert!(
                !matches!(
                    result,
                    Ok(_)
                        | Err(JwtError::Issuer
                            | JwtError::Audience
                            | JwtError::NotYetValid
                            | JwtError::Expired(_))
                ),
                "a token nobody signed got past the signature check: {result:?}"
            );
            jwt_outcome(result)
        }
    }
}

fn jwt_outcome(result: Result<stowage_auth::Claims, JwtError>) -> &'static str {
    match result {
        Ok(c) => {
            assert_eq!((c.iss.as_str(), c.aud.as_str()), (ISSUER, AUDIENCE));
            assert!(c.nbf.saturating_sub(LEEWAY) <= NOW && NOW < c.exp.saturating_add(LEEWAY));
            "ok"
        }
        Err(JwtError::Malformed) => "malformed",
        Err(JwtError::Algorithm) => "algorithm",
        Err(JwtError::EmbeddedKey) => "embedded-key",
        Err(JwtError::UnknownKey) => "unknown-key",
        Err(JwtError::Signature) => "signature",
        Err(JwtError::Issuer) => "issuer",
        Err(JwtError::Audience) => "audience",
        Err(JwtError::NotYetValid) => "not-yet-valid",
        Err(JwtError::Expired(_)) => "expired",
        Err(JwtError::Key(_)) => "key",
    }
}

pub const HTPASSWD: Target = Target {
    name: "htpasswd",
    body: htpasswd,
    outcomes: &["ok", "shape", "username", "not-bcrypt", "cost", "duplicate"],
};

/// An htpasswd file: what it accepts are distinct valid user names with bcrypt hashes.
pub fn htpasswd(data: &[u8]) -> &'static str {
    let s = text(data);
    match parse_htpasswd(&s) {
        Ok(entries) => {
            let mut users: Vec<&str> = entries.iter().map(|(u, _)| u.as_str()).collect();
            assert!(users.iter().all(|u| valid_username(u)));
            assert!(entries.iter().all(|(_, h)| h.starts_with("$2")));
            users.sort_unstable();
            let n = users.len();
            users.dedup();
            assert_eq!(users.len(), n, "a user appears twice");
            "ok"
        }
        Err(e) => {
            let line = match &e {
                HtpasswdError::Shape { line }
                | HtpasswdError::Username { line, .. }
                | HtpasswdError::NotBcrypt { line }
                | HtpasswdError::Cost { line, .. }
                | HtpasswdError::Duplicate { line, .. } => *line,
            };
            assert!((1..=s.lines().count()).contains(&line), "{e}");
            match e {
                HtpasswdError::Shape { .. } => "shape",
                HtpasswdError::Username { .. } => "username",
                HtpasswdError::NotBcrypt { .. } => "not-bcrypt",
                HtpasswdError::Cost { .. } => "cost",
                HtpasswdError::Duplicate { .. } => "duplicate",
            }
        }
    }
}
