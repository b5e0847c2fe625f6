//! Unit tests for `jwt`: round trips, the thumbprint, tampering, claim validity, key handling and
//! the JWK Set. Hostile-token tests live in `jwt_attack_tests.rs` and share these fixtures.

use aws_lc_rs::rand::SystemRandom;

use super::*;
use crate::scope::{Action, Actions, Resource};

pub(super) const AUD: &str = "registry.example";
pub(super) const ISS: &str = "stowage";
pub(super) const NOW: i64 = 1_700_000_000;

pub(super) struct Fixture {
    pub(super) kid: String,
    pub(super) pkcs8: Vec<u8>,
    pub(super) signer: Signer,
    pub(super) verifier: Verifier,
}

pub(super) fn fixture() -> Fixture {
    let (kid, pkcs8) = generate_key().unwrap();
    let signer = Signer::from_pkcs8(&kid, &pkcs8).unwrap();
    let verifier = Verifier::new(vec![(kid.clone(), signer.public_key())]);
    Fixture {
        kid,
        pkcs8,
        signer,
        verifier,
    }
}

pub(super) fn claims() -> Claims {
    Claims {
        iss: ISS.into(),
        sub: "alice".into(),
        aud: AUD.into(),
        exp: NOW + 300,
        nbf: NOW - 5,
        iat: NOW - 5,
        jti: "j1".into(),
        access: vec![Access::new(
            &Resource::Repository("team/app".into()),
            Actions::from_action(Action::Pull),
        )],
        cred: "pw:alice:3".into(),
    }
}

/// A compact JWS over arbitrary header and payload JSON, signed with `pkcs8`'s key.
pub(super) fn sign_raw(pkcs8: &[u8], header: &str, payload: &str) -> String {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64url(sig.as_ref()))
}

pub(super) fn payload_json() -> String {
    serde_json::to_string(&claims()).unwrap()
}

pub(super) fn verify(f: &Fixture, token: &str) -> Result<Claims, JwtError> {
    f.verifier.verify(token, ISS, AUD, NOW, 0)
}

#[test]
fn round_trip() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    assert_eq!(verify(&f, &token), Ok(claims()));
    assert_eq!(f.signer.kid(), f.kid);

    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = String::from_utf8(b64url_decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, f.kid)
    );
    assert_eq!(b64url_decode(parts[2]).unwrap().len(), 64);
    assert!(!token.contains('='));
}

#[test]
fn kid_is_rfc7638_thumbprint() {
    let f = fixture();
    let point = f.signer.public_key();
    assert_eq!(point.len(), 65);
    assert_eq!(point[0], 4);
    // serde_json sorts object keys, which is exactly RFC 7638's member order.
    let canonical = serde_json::to_string(&json!({
        "kty": "EC", "crv": "P-256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
    }))
    .unwrap();
    let expected = b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    );
    assert_eq!(f.kid, expected);
    assert_eq!(f.kid.len(), 43);
    assert_eq!(thumbprint(&point).unwrap(), expected);
    assert!(thumbprint(&point[1..]).is_err());
}

#[test]
fn tampering_is_detected() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    let mut evil = claims();
    evil.sub = "root".into();
    let evil_payload = b64url(serde_json::to_vec(&evil).unwrap());
    let t = format!("{}.{evil_payload}.{}", parts[0], parts[2]);
    assert_eq!(verify(&f, &t), Err(JwtError::Signature));

    let header = format!(r#"{{"alg":"ES256","typ":"JWS","kid":"{}"}}"#, f.kid);
    let t = format!("{}.{}.{}", b64url(header), parts[1], parts[2]);
    assert_eq!(verify(&f, &t), Err(JwtError::Signature));

    let mut sig = b64url_decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let t = format!("{}.{}.{}", parts[0], parts[1], b64url(&sig));
    assert_eq!(verify(&f, &t), Err(JwtError::Signature));

    for len in [0, 63, 65, 72] {
        let t = format!("{}.{}.{}", parts[0], parts[1], b64url(vec![1u8; len]));
        assert_eq!(verify(&f, &t), Err(JwtError::Signature), "len {len}");
    }
}

#[test]
fn every_single_character_change_is_refused() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    for i in 0..token.len() {
        for replacement in ['A', '_', '.'] {
            let mut t = token.clone().into_bytes();
            if t[i] == replacement as u8 {
                continue;
            }
            t[i] = replacement as u8;
            let t = String::from_utf8(t).unwrap();
            assert!(verify(&f, &t).is_err(), "position {i} -> {replacement}");
        }
    }
}

#[test]
fn claim_validity() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    assert_eq!(
        f.verifier.verify(&token, ISS, "other", NOW, 0),
        Err(JwtError::Audience)
    );
    assert_eq!(
        f.verifier.verify(&token, "other", AUD, NOW, 0),
        Err(JwtError::Issuer)
    );

    // Expiry carries the verified claims.
    let exp = NOW + 300;
    assert_eq!(
        f.verifier.verify(&token, ISS, AUD, exp, 0),
        Err(JwtError::Expired(Box::new(claims())))
    );
    assert!(f.verifier.verify(&token, ISS, AUD, exp - 1, 0).is_ok());
    assert!(f.verifier.verify(&token, ISS, AUD, exp + 29, 30).is_ok());
    assert!(matches!(
        f.verifier.verify(&token, ISS, AUD, exp + 30, 30),
        Err(JwtError::Expired(_))
    ));

    let mut early = claims();
    early.nbf = NOW + 60;
    let token = f.signer.sign(&early).unwrap();
    assert_eq!(verify(&f, &token), Err(JwtError::NotYetValid));
    assert!(f.verifier.verify(&token, ISS, AUD, NOW, 60).is_ok());
    assert_eq!(
        f.verifier.verify(&token, ISS, AUD, NOW, -1000),
        Err(JwtError::NotYetValid),
        "negative leeway counts as zero"
    );

    let mut extreme = claims();
    extreme.exp = i64::MAX;
    extreme.nbf = i64::MIN;
    let token = f.signer.sign(&extreme).unwrap();
    assert!(f.verifier.verify(&token, ISS, AUD, NOW, i64::MAX).is_ok());
}

#[test]
fn key_rotation_accepts_each_configured_key() {
    let a = fixture();
    let b = fixture();
    let both = Verifier::try_new(vec![
        (a.kid.clone(), a.signer.public_key()),
        (b.kid.clone(), b.signer.public_key()),
    ])
    .unwrap();
    for f in [&a, &b] {
        let token = f.signer.sign(&claims()).unwrap();
        assert_eq!(both.verify(&token, ISS, AUD, NOW, 0), Ok(claims()));
    }
}

#[test]
fn verifier_and_signer_reject_bad_keys() {
    let f = fixture();
    let public = f.signer.public_key();
    let mut compressed = vec![2u8];
    compressed.extend_from_slice(&public[1..33]);
    let mut off_curve = public.clone();
    off_curve[64] ^= 1;
    let token = f.signer.sign(&claims()).unwrap();
    for bad in [
        vec![],
        public[..64].to_vec(),
        compressed,
        vec![4u8; 65],
        off_curve,
    ] {
        let keys = vec![(f.kid.clone(), bad)];
        assert!(matches!(
            Verifier::try_new(keys.clone()),
            Err(JwtError::Key(_))
        ));
        // The lenient constructor drops the key, so tokens naming it are from an unknown key.
        let lenient = Verifier::new(keys);
        assert_eq!(lenient.kids().count(), 0);
        assert_eq!(
            lenient.verify(&token, ISS, AUD, NOW, 0),
            Err(JwtError::UnknownKey)
        );
    }
    let (_, other_pkcs8) = generate_key().unwrap();
    let other = Signer::from_pkcs8("k", &other_pkcs8).unwrap().public_key();
    let dup = vec![(f.kid.clone(), public.clone()), (f.kid.clone(), other)];
    assert!(matches!(
        Verifier::try_new(dup.clone()),
        Err(JwtError::Key(_))
    ));
    let first_wins = Verifier::new(dup);
    assert_eq!(first_wins.kids().collect::<Vec<_>>(), [f.kid.as_str()]);
    assert_eq!(first_wins.verify(&token, ISS, AUD, NOW, 0), Ok(claims()));
    assert!(matches!(
        Signer::from_pkcs8("k", b"junk"),
        Err(JwtError::Key(_))
    ));
    assert!(Verifier::try_new(vec![]).is_ok());
}

#[test]
fn jwks_shape() {
    let f = fixture();
    let set = jwks(&[
        (f.kid.clone(), f.signer.public_key()),
        ("broken".into(), vec![1, 2, 3]),
    ]);
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    for (field, want) in [
        ("kty", "EC"),
        ("crv", "P-256"),
        ("use", "sig"),
        ("alg", "ES256"),
    ] {
        assert_eq!(k[field], want);
    }
    assert_eq!(k["kid"], f.kid.as_str());
    assert_eq!(b64url_decode(k["x"].as_str().unwrap()).unwrap().len(), 32);
    assert_eq!(b64url_decode(k["y"].as_str().unwrap()).unwrap().len(), 32);
}

#[test]
fn issuer_must_be_ours() {
    let f = fixture();
    for iss in ["", "evil", "Stowage", "stowage ", "registry.example"] {
        let mut c = claims();
        c.iss = iss.into();
        assert_eq!(
            verify(&f, &f.signer.sign(&c).unwrap()),
            Err(JwtError::Issuer),
            "iss {iss:?}"
        );
    }
    // A missing or non-string `iss` is not a token of ours at all.
    let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, f.kid);
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload.as_object_mut().unwrap().remove("iss");
    let t = sign_raw(&f.pkcs8, &header, &payload.to_string());
    assert_eq!(verify(&f, &t), Err(JwtError::Malformed));
    payload["iss"] = serde_json::json!(null);
    let t = sign_raw(&f.pkcs8, &header, &payload.to_string());
    assert_eq!(verify(&f, &t), Err(JwtError::Malformed));
    // The issuer is checked even when the token has expired (nothing is waived on it).
    let mut c = claims();
    c.iss = "evil".into();
    assert_eq!(
        f.verifier
            .verify(&f.signer.sign(&c).unwrap(), ISS, AUD, NOW + 10_000, 0),
        Err(JwtError::Issuer)
    );
}
