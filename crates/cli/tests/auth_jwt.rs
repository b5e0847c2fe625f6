//! JWTs the server must refuse with 401 `invalid_token`: forged (changed signature, widened
//! payload, `alg: none`, HS256 keyed with the server's public key, ES256 by another key under
//! the server's kid, embedded keys), signed by the server's key but for another issuer or
//! service, and expired (except on the expired token's own upload session).

mod common;

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use common::auth::*;
use common::*;
use serde_json::{Value, json};
use stowage_auth::jwt::{Claims, Signer, generate_key};
use stowage_auth::secret::{b64url, b64url_decode};

fn encode_jwt(header: &Value, payload: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64url(serde_json::to_vec(header).expect("header")),
        b64url(serde_json::to_vec(payload).expect("payload"))
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64url(sig))
}

fn hs256(key: &[u8]) -> impl Fn(&[u8]) -> Vec<u8> + '_ {
    move |msg| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg)
            .as_ref()
            .to_vec()
    }
}

/// Forged JWTs get 401 `invalid_token`: a changed signature, a widened payload under the
/// original signature, `alg: none`, HS256 keyed with the server's public key (raw point, JWK
/// text, JWKS document), ES256 by a key of our own under the server's kid, and one carrying
/// its own key in a `jwk` header.
#[tokio::test]
async fn forged_jwts_are_invalid_tokens() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let path = "/v2/team/app/tags/list";
    let real = reg.jwt(&alice(), &["repository:team/app:pull"]).await;
    reg.get_as(&Who::bearer(&real), path)
        .await
        .expect_status(200);

    let header = jwt_header(&real);
    assert_eq!(header["alg"], "ES256", "{header}");
    let kid = header["kid"].as_str().expect("kid").to_string();
    let mut widened = jwt_payload(&real);
    widened["access"] = json!([
        {"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]},
        {"type": "repository", "name": "secret/x", "actions": ["pull", "push", "delete"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]);
    widened["exp"] = json!(widened["exp"].as_i64().expect("exp") + 3600);
    let [h, p, s]: [&str; 3] = real
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three parts");

    let jwks_resp = reg.get("/auth/jwks").await;
    jwks_resp.expect_status(200);
    let jwks = jwks_resp.json();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("the token's kid {kid} is not in the JWKS:\n{jwks_resp}"))
        .clone();
    let mut point = vec![0x04];
    point.extend(b64url_decode(jwk["x"].as_str().expect("x")).expect("x b64"));
    point.extend(b64url_decode(jwk["y"].as_str().expect("y")).expect("y b64"));
    assert_eq!(point.len(), 65);
    let jwk_text = serde_json::to_string(&jwk).expect("jwk text");

    let mut forged: Vec<(&str, String)> = Vec::new();
    let mut sig = b64url_decode(s).expect("signature b64");
    sig[10] ^= 0x01;
    forged.push(("signature changed", format!("{h}.{p}.{}", b64url(&sig))));
    forged.push((
        "payload widened, original signature",
        format!(
            "{h}.{}.{s}",
            b64url(serde_json::to_vec(&widened).expect("json"))
        ),
    ));
    forged.push((
        "alg none, empty signature",
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(serde_json::to_vec(&widened).expect("json"))
        ),
    ));
    forged.push((
        "alg none with kid, empty signature",
        format!(
            "{}.{}.",
            b64url(serde_json::to_vec(&json!({"alg": "none", "typ": "JWT", "kid": kid})).unwrap()),
            b64url(serde_json::to_vec(&widened).expect("json"))
        ),
    ));
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    forged.push((
        "HS256 keyed by the raw public point",
        encode_jwt(&hs_header, &widened, hs256(&point)),
    ));
    forged.push((
        "HS256 keyed by the JWK text",
        encode_jwt(&hs_header, &widened, hs256(jwk_text.as_bytes())),
    ));
    forged.push((
        "HS256 keyed by the JWKS document",
        encode_jwt(&hs_header, &widened, hs256(&jwks_resp.body)),
    ));

    // ES256 with a key of our own, under the server's kid.
    let (own_kid, pkcs8) = generate_key().expect("a key");
    let claims: Claims = serde_json::from_value(widened.clone()).expect("claims shape");
    let signer = Signer::from_pkcs8(&kid, &pkcs8).expect("own key");
    forged.push((
        "ES256 by our own key under the server's kid",
        signer.sign(&claims).expect("signed"),
    ));
    let signer = Signer::from_pkcs8(&own_kid, &pkcs8).expect("own key");
    forged.push((
        "ES256 by our own key under its own kid",
        signer.sign(&claims).expect("signed"),
    ));
    // ... carrying its public key in the header, for servers that would trust it.
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).expect("pair");
    let own_point = aws_lc_rs::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let jwk_header = json!({
        "alg": "ES256", "typ": "JWT", "kid": kid,
        "jwk": {"kty": "EC", "crv": "P-256", "x": b64url(&own_point[1..33]), "y": b64url(&own_point[33..])},
    });
    forged.push((
        "ES256 by our own key, key embedded as jwk",
        encode_jwt(&jwk_header, &widened, |msg| {
            pair.sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
                .expect("sign")
                .as_ref()
                .to_vec()
        }),
    ));

    for (what, token) in &forged {
        let r = reg.get_as(&Who::bearer(token), path).await;
        assert_eq!(r.status, 401, "{what}: not refused:\n{r}");
        expect_bearer_error(&r, "invalid_token");
        let r = reg
            .get_as(&Who::bearer(token), "/v2/secret/x/tags/list")
            .await;
        assert_eq!(r.status, 401, "{what}: not refused:\n{r}");
    }
    // The real token still works.
    reg.get_as(&Who::bearer(&real), path)
        .await
        .expect_status(200);
}

/// JWTs signed with the server's own key are still refused when they name another issuer, or
/// none, or carry a key of their own in the header (`jwk`, `jku`, `x5c`, `x5u`): on the
/// registry API (401 `invalid_token`) and on the admin API alike. The same claims re-signed
/// unchanged work, so the refusals are about `iss` and the header alone.
#[tokio::test]
async fn jwt_with_a_foreign_issuer_or_embedded_key_is_refused() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let path = "/v2/team/app/tags/list";
    let real = reg.jwt(&alice(), &["repository:team/app:pull"]).await;
    let admin_jwt = reg.jwt(&Who::admin(), &["registry:admin:*"]).await;
    let kid = jwt_header(&real)["kid"].as_str().expect("kid").to_string();
    let store = stowage_server::open_auth_store(&reg.data).expect("open the store");
    let keys = store.signing_keys().await.expect("signing keys");
    let pkcs8 = keys
        .iter()
        .find(|k| k.kid == kid)
        .expect("the key that signed the JWT")
        .pkcs8
        .clone();
    let signer = Signer::from_pkcs8(&kid, &pkcs8).expect("the server's key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).expect("pair");
    let sign = |msg: &[u8]| {
        pair.sign(&aws_lc_rs::rand::SystemRandom::new(), msg)
            .expect("sign")
            .as_ref()
            .to_vec()
    };

    for (token, target) in [(&real, path), (&admin_jwt, "/admin/v1/users")] {
        let claims: Claims = serde_json::from_value(jwt_payload(token)).expect("claims");
        assert_eq!(claims.iss, "stowage", "the issuer the server signs with");
        reg.get_as(&Who::bearer(&signer.sign(&claims).expect("signed")), target)
            .await
            .expect_status(200);

        let mut forged: Vec<(String, String)> = Vec::new();
        for iss in ["", "other", "https://evil.example", "Stowage"] {
            let mut c = claims.clone();
            c.iss = iss.to_string();
            forged.push((format!("iss {iss:?}"), signer.sign(&c).expect("signed")));
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let mut no_iss = jwt_payload(token);
        no_iss.as_object_mut().expect("object").remove("iss");
        forged.push(("no iss".into(), encode_jwt(&header, &no_iss, sign)));
        let payload = jwt_payload(token);
        for (field, value) in [
            ("jwk", jwt_header_jwk(&reg).await),
            ("jku", json!("https://evil.example/jwks.json")),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("x5c", json!(["MIIBAA=="])),
        ] {
            let mut h = header.clone();
            h[field] = value;
            forged.push((format!("header {field}"), encode_jwt(&h, &payload, sign)));
        }
        for (what, t) in &forged {
            let r = reg.get_as(&Who::bearer(t), target).await;
            expect_bearer_error(&r, "invalid_token");
            assert!(r.status == 401, "{what}: not refused on {target}:\n{r}");
        }
    }
}

/// The server's own current public key as a JWK (what an attacker would embed).
async fn jwt_header_jwk(reg: &AuthReg) -> Value {
    reg.get("/auth/jwks").await.json()["keys"][0].clone()
}

/// A correctly signed JWT for another audience is refused: a second server on the same data
/// directory (so the same signing keys) with `auth.service = "other"` mints it.
#[tokio::test]
async fn jwt_for_another_service_is_refused() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let other = reg.spawn_sibling(&auth_toml("service = \"other\""));
    let http = reqwest::Client::new();
    let res = http
        .get(format!(
            "{}/auth/token?service=other&scope={}",
            other.url,
            encode_query("repository:team/app:pull")
        ))
        .basic_auth("alice", Some(ALICE_PW))
        .send()
        .await
        .expect("token from the sibling");
    assert_eq!(res.status().as_u16(), 200);
    let v: Value = serde_json::from_slice(&res.bytes().await.expect("body")).expect("JSON");
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(jwt_payload(&token)["aud"], "other");

    // It is good on its own server ...
    let res = http
        .get(format!("{}/v2/team/app/tags/list", other.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sibling pull");
    assert_eq!(res.status().as_u16(), 200);
    // ... signed by a key this server publishes too ...
    let kid = jwt_header(&token)["kid"].as_str().expect("kid").to_string();
    let jwks = reg.get("/auth/jwks").await.json();
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == kid.as_str()),
        "the sibling signed with a key this server does not know, the test proves nothing"
    );
    // ... and refused here.
    let r = reg
        .get_as(&Who::bearer(&token), "/v2/team/app/tags/list")
        .await;
    expect_bearer_error(&r, "invalid_token");
}

/// Poll `path` with `token` until it answers 401 `invalid_token`; returns how long it took.
async fn wait_for_expiry(reg: &AuthReg, token: &str, path: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let r = reg.get_as(&Who::bearer(token), path).await;
        if r.status == 401 {
            expect_bearer_error(&r, "invalid_token");
            return;
        }
        r.expect_status(200);
        assert!(
            start.elapsed() < limit,
            "token still accepted after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Expired JWTs (`token_ttl = "1s"`) are refused with invalid_token, except on an upload
/// session their subject opened: it can still be patched and finished with the same token.
/// Another user's token gets 404 on that session.
#[tokio::test]
async fn expired_jwt_is_refused_except_on_its_own_upload() {
    let reg = AuthReg::start(
        "token_ttl = \"1s\"",
        &[
            user("alice", ALICE_PW, TEAM_RW),
            user("bob", BOB_PW, TEAM_RW),
        ],
    );
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let token = reg.jwt(&alice(), &["repository:team/app:pull,push"]).await;
    let issued = Instant::now();
    let jwt = Who::bearer(&token);
    reg.get_as(&jwt, "/v2/team/app/tags/list")
        .await
        .expect_status(200);

    let data = random_bytes(3000);
    let digest = sha256_digest(&data);
    let opened = reg.start_upload_as(&jwt, "team/app", "").await;
    opened.expect_status(202);
    let loc = opened.location();
    reg.patch_as(&jwt, &loc, 0, &data[..1000])
        .await
        .expect_status(202);
    let bob_token = reg.jwt(&bob(), &["repository:team/app:pull,push"]).await;
    reg.patch_as(&Who::bearer(&bob_token), &loc, 1000, &data[1000..2000])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");

    wait_for_expiry(
        &reg,
        &token,
        "/v2/team/app/tags/list",
        Duration::from_secs(15),
    )
    .await;
    eprintln!(
        "a 1s JWT was first refused {:?} after it was issued",
        issued.elapsed()
    );

    // Not usable to start anything new or read anything ...
    expect_bearer_error(
        &reg.start_upload_as(&jwt, "team/app", "").await,
        "invalid_token",
    );
    expect_bearer_error(
        &reg.get_manifest_as(&jwt, "team/app", "v1").await,
        "invalid_token",
    );
    // ... bob's expired token is not good on alice's session either ...
    let r = reg
        .patch_as(&Who::bearer(&bob_token), &loc, 1000, &data[1000..2000])
        .await;
    assert!(
        r.status == 401 || r.status == 404,
        "bob's expired token on alice's session:\n{r}"
    );
    // ... but alice's finishes the upload it started.
    reg.patch_as(&jwt, &loc, 1000, &data[1000..2000])
        .await
        .expect_status(202);
    reg.put_upload_as(&jwt, &loc, &digest, &data[2000..])
        .await
        .expect_status(201);
    expect_bearer_error(
        &reg.get_as(&jwt, &format!("/v2/team/app/blobs/{digest}"))
            .await,
        "invalid_token",
    );
    let pulled = reg
        .get_as(&alice(), &format!("/v2/team/app/blobs/{digest}"))
        .await;
    pulled.expect_status(200);
    assert!(pulled.body == data);

    // A session opened (with Basic) after the JWT expired does not accept it: the waiver is
    // for uploads the token itself could have started.
    let fresh = reg.start_upload_as(&alice(), "team/app", "").await;
    fresh.expect_status(202);
    let r = reg.patch_as(&jwt, &fresh.location(), 0, &data[..10]).await;
    expect_bearer_error(&r, "invalid_token");
}
