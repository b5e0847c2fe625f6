//! Unit tests for `jwt` against hostile tokens: algorithm confusion (`none`, HS256 keyed with our
//! public key), foreign and embedded keys, malformed claims, oversized and random input.

use aws_lc_rs::hmac;

use super::tests::{claims, fixture, payload_json, sign_raw, verify};
use super::*;

fn hs256(key: &[u8], header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64url(header), b64url(payload));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let f = fixture();
    let payload = payload_json();
    for alg in [
        "none", "None", "NONE", "HS256", "RS256", "ES384", "ES512", "es256", "EdDSA",
    ] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{}"}}"#, f.kid);
        let unsigned = format!("{}.{}.", b64url(&header), b64url(&payload));
        assert_eq!(verify(&f, &unsigned), Err(JwtError::Algorithm), "{alg}");
        // Even with a valid ES256 signature over it, the header decides first.
        let signed = sign_raw(&f.pkcs8, &header, &payload);
        assert_eq!(verify(&f, &signed), Err(JwtError::Algorithm), "{alg}");
    }
    let no_alg = format!(r#"{{"typ":"JWT","kid":"{}"}}"#, f.kid);
    let t = sign_raw(&f.pkcs8, &no_alg, &payload);
    assert_eq!(verify(&f, &t), Err(JwtError::Algorithm));
    let null_alg = format!(r#"{{"alg":null,"kid":"{}"}}"#, f.kid);
    let t = sign_raw(&f.pkcs8, &null_alg, &payload);
    assert_eq!(verify(&f, &t), Err(JwtError::Algorithm));
    let crit = format!(
        r#"{{"alg":"ES256","kid":"{}","crit":["exp"],"exp":1}}"#,
        f.kid
    );
    let t = sign_raw(&f.pkcs8, &crit, &payload);
    assert_eq!(verify(&f, &t), Err(JwtError::Algorithm));
}

#[test]
fn hs256_keyed_with_our_public_key_is_refused() {
    let f = fixture();
    let payload = payload_json();
    let header = format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, f.kid);
    let public = f.signer.public_key();
    let jwk = jwks(&[(f.kid.clone(), public.clone())])["keys"][0].to_string();
    let pem_ish = b64url(&public);
    for key in [public.as_slice(), jwk.as_bytes(), pem_ish.as_bytes()] {
        let t = hs256(key, &header, &payload);
        assert_eq!(verify(&f, &t), Err(JwtError::Algorithm));
    }
    // The same MAC under an ES256 header fails on the signature instead.
    let es_header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, f.kid);
    let t = hs256(&public, &es_header, &payload);
    assert_eq!(verify(&f, &t), Err(JwtError::Signature));
}

#[test]
fn only_configured_keys_count() {
    let f = fixture();
    let (other_kid, other_pkcs8) = generate_key().unwrap();
    let other = Signer::from_pkcs8(&other_kid, &other_pkcs8).unwrap();
    assert_eq!(
        verify(&f, &other.sign(&claims()).unwrap()),
        Err(JwtError::UnknownKey)
    );

    // Another key claiming our kid.
    let impostor = Signer::from_pkcs8(&f.kid, &other_pkcs8).unwrap();
    assert_eq!(
        verify(&f, &impostor.sign(&claims()).unwrap()),
        Err(JwtError::Signature)
    );

    // A header carrying a key or a pointer to one is refused, whoever signed it: by the
    // embedded key, or even by ours.
    let other_jwk = jwks(&[(f.kid.clone(), other.public_key())])["keys"][0].clone();
    let all = json!({
        "alg": "ES256", "kid": f.kid, "jwk": other_jwk,
        "jku": "https://evil.example/jwks", "x5u": "https://evil.example/c", "x5c": ["AAAA"],
    });
    let mut headers = vec![all.to_string()];
    for (field, value) in [
        ("jwk", other_jwk.clone()),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("jwk", json!(null)),
        ("x5c", json!([])),
    ] {
        let mut h = json!({"alg": "ES256", "typ": "JWT", "kid": f.kid});
        h[field] = value;
        headers.push(h.to_string());
    }
    for header in &headers {
        for key in [&other_pkcs8, &f.pkcs8] {
            let t = sign_raw(key, header, &payload_json());
            assert_eq!(verify(&f, &t), Err(JwtError::EmbeddedKey), "{header}");
        }
    }
    // Other unknown header fields stay harmless.
    let t = sign_raw(
        &f.pkcs8,
        &json!({"alg": "ES256", "typ": "JWT", "kid": f.kid, "cty": "x", "foo": 1}).to_string(),
        &payload_json(),
    );
    assert_eq!(verify(&f, &t), Ok(claims()));
    let crit_null = json!({"alg": "ES256", "kid": f.kid, "crit": null}).to_string();
    let t = sign_raw(&f.pkcs8, &crit_null, &payload_json());
    assert_eq!(
        verify(&f, &t),
        Err(JwtError::Algorithm),
        "crit counts even when null"
    );

    let no_kid = sign_raw(&f.pkcs8, r#"{"alg":"ES256"}"#, &payload_json());
    assert_eq!(verify(&f, &no_kid), Err(JwtError::UnknownKey));
}

#[test]
fn claims_shape_and_defaults() {
    let f = fixture();
    let minimal = r#"{"iss":"stowage","sub":"s","aud":"registry.example","exp":1700000300,
        "nbf":0,"iat":0,"jti":"j"}"#;
    let t = sign_raw(
        &f.pkcs8,
        &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, f.kid),
        minimal,
    );
    let c = verify(&f, &t).unwrap();
    assert!(c.access.is_empty() && c.cred.is_empty());

    let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, f.kid);
    for bad in ["{}", "[]", "null", r#"{"exp":"soon"}"#, "not json"] {
        let t = sign_raw(&f.pkcs8, &header, bad);
        assert_eq!(verify(&f, &t), Err(JwtError::Malformed), "{bad}");
    }
    let dup_alg = format!(r#"{{"alg":"none","alg":"ES256","kid":"{}"}}"#, f.kid);
    let t = sign_raw(&f.pkcs8, &dup_alg, &payload_json());
    assert_eq!(verify(&f, &t), Err(JwtError::Malformed));
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let f = fixture();
    let mut big = claims();
    big.jti = "x".repeat(MAX_TOKEN_LEN);
    let token = f.signer.sign(&big).unwrap();
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(verify(&f, &token), Err(JwtError::Malformed));
    let huge = "a".repeat(10 * 1024 * 1024);
    assert_eq!(verify(&f, &huge), Err(JwtError::Malformed));
}

#[test]
fn garbage_never_panics() {
    let f = fixture();
    let token = f.signer.sign(&claims()).unwrap();
    let mut inputs: Vec<String> = [
        "",
        ".",
        "..",
        "...",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "====.====.====",
        "e30.e30.",
        "e30..",
        ".e30.",
        "eyJhbGciOiJFUzI1NiJ9.e30.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for cut in (0..token.len()).step_by(3) {
        inputs.push(token[..cut].to_string());
    }
    inputs.push(format!("{token}."));
    inputs.push(format!(".{token}"));
    inputs.push(token.replace('.', ".."));
    // Pseudo-random byte strings (xorshift), with and without dots, ASCII and not.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let len = (round * 7) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let b = (state >> 24) as u8;
                if round % 2 == 0 {
                    b
                } else {
                    b"eyJ0.-_AZaz09"[usize::from(b) % 13]
                }
            })
            .collect();
        inputs.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for s in &inputs {
        assert!(verify(&f, s).is_err(), "{s:?} accepted");
    }
    let err = JwtError::Expired(Box::new(claims()));
    assert_eq!(err.to_string(), "token expired");
}
