//! Authentication over HTTP (`stowage serve --auth`), seen from a registry client: with auth
//! off everything stays open; anonymous callers get the Bearer challenge (identical for a
//! private repository and a missing one) and anonymous tokens for public repositories only;
//! administrators and scoped users push and pull with Basic and Bearer, get 403 DENIED or 401
//! `insufficient_scope` as the token spec says; the catalog shows only readable repositories;
//! mounts and upload sessions respect who may read and who opened them; forged, foreign and
//! expired JWTs are refused with `invalid_token` (except on the expired token's own upload
//! session); and failed logins are limited per address and user with a fast 429.
//!
//! Token lifecycles (access tokens, refresh tokens, rights changes) are in `auth_tokens.rs`;
//! the admin API, the CLI through `--server` and htpasswd in `auth_admin.rs`.

mod common;

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use common::auth::*;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use stowage_auth::jwt::{Claims, Signer, generate_key};
use stowage_auth::secret::{b64url, b64url_decode};

const ALICE_PW: &str = "alice-password-1";
const BOB_PW: &str = "bob-password-12";
const TEAM_RW: &[&str] = &["team/**:pull,push"];

fn alice() -> Who {
    Who::basic("alice", ALICE_PW)
}

fn bob() -> Who {
    Who::basic("bob", BOB_PW)
}

/// With auth off, anyone pushes and pulls, and there is no token endpoint.
#[tokio::test]
async fn auth_off_everything_is_open() {
    let reg = Reg::start();
    reg.get("/v2/").await.expect_status(200);
    let data = random_bytes(300);
    let digest = reg.push_blob("open/repo", &data).await;
    let pulled = reg.get(&format!("/v2/open/repo/blobs/{digest}")).await;
    pulled.expect_status(200);
    assert!(pulled.body == data, "pulled blob differs:\n{pulled}");
    reg.get("/v2/_catalog").await.expect_status(200);
    reg.get("/auth/token?service=stowage&scope=repository:open/repo:pull")
        .await
        .expect_status(404);
    reg.get("/auth/jwks").await.expect_status(404);
}

/// No credentials: `/v2/` and a private repository answer 401 with the Bearer challenge
/// (realm from the request, service, and the scope naming the repository); an existing
/// private repository and a missing one get byte-identical answers.
#[tokio::test]
async fn anonymous_gets_the_bearer_challenge() {
    let reg = AuthReg::start("", &[]);
    let img = reg.push_image_as(&Who::admin(), "secret/app", "v1").await;
    let realm = format!("{}/auth/token", reg.base);

    let base = reg.get("/v2/").await;
    base.expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        challenge(&base),
        format!("Bearer realm=\"{realm}\",service=\"stowage\""),
        "challenge on /v2/:\n{base}"
    );

    // HTTP/2 names the host in `:authority`, not `Host`: the realm must still be ours.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(format!("{}/v2/", reg.base)).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        format!("Bearer realm=\"{realm}\",service=\"stowage\""),
        "challenge over HTTP/2"
    );

    let pull = reg.get("/v2/secret/app/manifests/v1").await;
    pull.expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        challenge(&pull),
        format!(
            "Bearer realm=\"{realm}\",service=\"stowage\",scope=\"repository:secret/app:pull\""
        ),
        "challenge on a private pull:\n{pull}"
    );

    // Same-length names so that only the name differs; the missing one's answer with its name
    // swapped must equal the existing one's byte for byte.
    for (method, suffix) in [
        (Method::GET, "tags/list".to_string()),
        (Method::GET, "manifests/v1".to_string()),
        (Method::HEAD, "manifests/v1".to_string()),
        (Method::GET, format!("blobs/{}", img.layer_digest)),
        (Method::HEAD, format!("blobs/{}", img.layer_digest)),
        (Method::DELETE, format!("manifests/{}", img.manifest_digest)),
    ] {
        let existing = reg
            .send(reg.req(method.clone(), &format!("/v2/secret/app/{suffix}")))
            .await;
        let missing = reg
            .send(reg.req(method.clone(), &format!("/v2/secret/zzz/{suffix}")))
            .await;
        existing.expect_status(401);
        let swap = |s: &str| s.replace("secret/zzz", "secret/app");
        assert_eq!(existing.status, missing.status, "{existing}\n{missing}");
        assert_eq!(
            challenge(&existing),
            swap(&challenge(&missing)),
            "challenges differ:\n{existing}\n{missing}"
        );
        assert_eq!(
            existing.header("content-type"),
            missing.header("content-type")
        );
        assert_eq!(
            existing.header("content-length"),
            missing.header("content-length")
        );
        assert_eq!(
            existing.text(),
            swap(&missing.text()),
            "bodies differ:\n{existing}\n{missing}"
        );
    }
}

/// An anonymous token (GET /auth/token without credentials) pulls a public repository, but
/// cannot push there (401 insufficient_scope) nor read a private one.
#[tokio::test]
async fn anonymous_token_pulls_public_repositories_only() {
    let reg = AuthReg::start("public = [\"library/**\"]", &[]);
    let public = reg.push_image_as(&Who::admin(), "library/pub", "v1").await;
    reg.push_image_as(&Who::admin(), "secret/app", "v1").await;

    // Public pull works even without a token.
    reg.expect_pull(&Who::Anon, &public).await;

    let r = reg
        .token_request(
            &Who::Anon,
            &[
                "repository:library/pub:pull,push",
                "repository:secret/app:pull",
            ],
            "offline_token=true",
        )
        .await;
    r.expect_status(200);
    let v = r.json();
    assert!(
        v.get("refresh_token").is_none(),
        "anonymous callers must not get a refresh token:\n{r}"
    );
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(jwt_actions(&token, "library/pub"), ["pull"]);
    assert!(jwt_actions(&token, "secret/app").is_empty());
    let anon = Who::bearer(&token);
    reg.expect_pull(&anon, &public).await;

    let push = reg.start_upload_as(&anon, "library/x", "").await;
    expect_bearer_error(&push, "insufficient_scope");
    assert!(
        challenge(&push).contains("scope=\"repository:library/x:pull,push\""),
        "{push}"
    );
    let private = reg.get_as(&anon, "/v2/secret/app/tags/list").await;
    private.expect_error(401, "UNAUTHORIZED");
    let private = reg.get_as(&anon, "/v2/secret/app/manifests/v1").await;
    private.expect_error(401, "UNAUTHORIZED");
}

/// An administrator pushes and pulls with Basic and with a bearer token; the token is bound
/// to the repository it names.
#[tokio::test]
async fn admin_pushes_and_pulls_with_basic_and_bearer() {
    let reg = AuthReg::start("", &[]);
    let basic = reg.push_image_as(&Who::admin(), "adm/basic", "v1").await;
    reg.get_as(&Who::admin(), "/v2/").await.expect_status(200);

    let token = reg
        .jwt(&Who::admin(), &["repository:adm/bearer:pull,push"])
        .await;
    assert_eq!(jwt_actions(&token, "adm/bearer"), ["pull", "push"]);
    let bearer = Who::bearer(&token);
    reg.get_as(&bearer, "/v2/").await.expect_status(200);
    reg.push_image_as(&bearer, "adm/bearer", "v1").await;

    // The token names adm/bearer only: the admin could get more, so 401 insufficient_scope.
    let other = reg.get_manifest_as(&bearer, "adm/basic", "v1").await;
    expect_bearer_error(&other, "insufficient_scope");
    reg.expect_pull(&Who::admin(), &basic).await;
}

/// A user with `team/**:pull,push` pushes under team/, gets 403 elsewhere (the same answer for
/// an existing and a missing repository), and its JWT for team/app gets 401
/// insufficient_scope on team/other (it could get that) but 403 on other/x.
#[tokio::test]
async fn scoped_user_push_pull_and_denials() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, TEAM_RW)]);
    reg.push_image_as(&alice(), "team/app", "v1").await;
    reg.push_image_as(&alice(), "team/a/b", "v1").await;
    reg.push_image_as(&Who::admin(), "other/x", "v1").await;

    let existing = reg.get_manifest_as(&alice(), "other/x", "v1").await;
    let missing = reg.get_manifest_as(&alice(), "other/y", "v1").await;
    expect_denied(&existing);
    expect_denied(&missing);
    // The detail names the repository asked for (docker needs a detail: see
    // `pull_only_credential_denied_with_a_detail`); nothing else differs.
    assert_eq!(
        String::from_utf8_lossy(&existing.body).replace("other/x", "other/y"),
        String::from_utf8_lossy(&missing.body),
        "{existing}\n{missing}"
    );
    assert_eq!(
        existing.header("www-authenticate"),
        missing.header("www-authenticate")
    );
    expect_denied(&reg.get_as(&alice(), "/v2/other/x/tags/list").await);
    expect_denied(&reg.get_as(&alice(), "/v2/other/y/tags/list").await);
    expect_denied(&reg.start_upload_as(&alice(), "other/x", "").await);
    // Push is not delete.
    let app = reg.get_manifest_as(&alice(), "team/app", "v1").await;
    app.expect_status(200);
    let digest = sha256_digest(&app.body);
    expect_denied(
        &reg.send_as(
            &alice(),
            reg.req(Method::DELETE, &format!("/v2/team/app/manifests/{digest}")),
        )
        .await,
    );
    let all = reg.jwt(&alice(), &["repository:team/app:*"]).await;
    assert_eq!(jwt_actions(&all, "team/app"), ["pull", "push"]);

    let token = reg.jwt(&alice(), &["repository:team/app:pull,push"]).await;
    let jwt = Who::bearer(&token);
    reg.push_blob_as(&jwt, "team/app", &random_bytes(100))
        .await
        .expect_status(201);
    reg.get_as(&jwt, "/v2/team/app/tags/list")
        .await
        .expect_status(200);
    let wider = reg.get_as(&jwt, "/v2/team/other/tags/list").await;
    expect_bearer_error(&wider, "insufficient_scope");
    assert!(
        challenge(&wider).contains("scope=\"repository:team/other:pull\""),
        "{wider}"
    );
    expect_denied(&reg.get_as(&jwt, "/v2/other/x/tags/list").await);
}

/// A credential without the right gets 403 DENIED whose detail names the access, like the
/// 401's: docker's client reads an error with the stock message and a null detail as a bare
/// code that its retry filter misses, and retried a denied blob upload for 50 seconds.
#[tokio::test]
async fn pull_only_credential_denied_with_a_detail() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    let token = reg.jwt(&alice(), &["repository:team/app:pull,push"]).await;
    assert_eq!(jwt_actions(&token, "team/app"), ["pull"]);
    for who in [alice(), Who::bearer(&token)] {
        let r = reg.start_upload_as(&who, "team/app", "").await;
        expect_denied(&r);
        let e = &r.json()["errors"][0];
        assert_eq!(
            e["message"], "requested access to the resource is denied",
            "{r}"
        );
        assert_eq!(
            e["detail"],
            json!([{"Type": "repository", "Name": "team/app", "Action": "pull,push"}]),
            "{r}"
        );
    }
    let r = reg.get_manifest_as(&alice(), "other/x", "v1").await;
    expect_denied(&r);
    assert_eq!(
        r.json()["errors"][0]["detail"],
        json!([{"Type": "repository", "Name": "other/x", "Action": "pull"}]),
        "{r}"
    );
}

/// The catalog: an administrator sees everything; a user with `team/**:pull` and
/// `registry:catalog:*` sees only team/ repositories, also page by page, and no `Link` names a
/// hidden one; a user without the catalog grant gets 403 (and a JWT without the catalog scope
/// 401 insufficient_scope when its user could get it).
#[tokio::test]
async fn catalog_shows_only_readable_repositories() {
    let reg = AuthReg::start(
        "",
        &[
            user(
                "carol",
                "carol-password-1",
                &["team/**:pull", "registry:catalog:*"],
            ),
            user("dave", "dave-password-1", &["team/**:pull"]),
        ],
    );
    let carol = Who::basic("carol", "carol-password-1");
    let dave = Who::basic("dave", "dave-password-1");
    for repo in [
        "other/x", "secret/y", "team/a", "team/b", "team/c", "zz/last",
    ] {
        reg.push_image_as(&Who::admin(), repo, "v1").await;
    }

    let all = reg.get_as(&Who::admin(), "/v2/_catalog").await;
    all.expect_status(200);
    assert_eq!(
        string_list(&all.json()["repositories"]),
        [
            "other/x", "secret/y", "team/a", "team/b", "team/c", "zz/last"
        ]
    );

    let mine = reg.get_as(&carol, "/v2/_catalog").await;
    mine.expect_status(200);
    assert_eq!(
        string_list(&mine.json()["repositories"]),
        ["team/a", "team/b", "team/c"]
    );

    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=1".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        pages += 1;
        assert!(pages <= 5, "too many pages");
        let page = reg.get_as(&carol, &path).await;
        page.expect_status(200);
        let names = string_list(&page.json()["repositories"]);
        assert_eq!(names.len(), 1, "a page of n=1 holds one name:\n{page}");
        seen.extend(names);
        if let Some(link) = page.header("link") {
            assert!(
                !link.contains("other") && !link.contains("secret") && !link.contains("zz"),
                "Link names a hidden repository:\n{page}"
            );
        }
        next = next_link(&page);
    }
    assert_eq!(seen, ["team/a", "team/b", "team/c"]);

    expect_denied(&reg.get_as(&dave, "/v2/_catalog").await);
    let dave_jwt = reg.jwt(&dave, &["registry:catalog:*"]).await;
    expect_denied(&reg.get_as(&Who::bearer(&dave_jwt), "/v2/_catalog").await);
    let carol_pull_only = reg.jwt(&carol, &["repository:team/a:pull"]).await;
    let r = reg
        .get_as(&Who::bearer(&carol_pull_only), "/v2/_catalog")
        .await;
    expect_bearer_error(&r, "insufficient_scope");
    assert!(
        challenge(&r).contains("scope=\"registry:catalog:*\""),
        "{r}"
    );
    let anon = reg.get("/v2/_catalog").await;
    anon.expect_error(401, "UNAUTHORIZED");
    assert!(
        challenge(&anon).contains("scope=\"registry:catalog:*\""),
        "{anon}"
    );
}

/// The catalog through a bearer token that carries `registry:catalog:*` (what docker-style
/// clients ask for) lists what the token's user may pull, like Basic does.
#[tokio::test]
async fn catalog_with_a_catalog_scoped_jwt() {
    let reg = AuthReg::start(
        "",
        &[user(
            "carol",
            "carol-password-1",
            &["team/**:pull", "registry:catalog:*"],
        )],
    );
    let carol = Who::basic("carol", "carol-password-1");
    for repo in ["other/x", "team/a", "team/b"] {
        reg.push_image_as(&Who::admin(), repo, "v1").await;
    }
    let token = reg.jwt(&carol, &["registry:catalog:*"]).await;
    let r = reg.get_as(&Who::bearer(&token), "/v2/_catalog").await;
    r.expect_status(200);
    assert_eq!(
        string_list(&r.json()["repositories"]),
        ["team/a", "team/b"],
        "catalog through a catalog-scoped JWT:\n{r}"
    );
}

/// Mounting needs read access to the source: alice (team/**) mounting a blob that only
/// secret/x holds gets a plain upload session (202), with and without `from`, and the blob
/// stays invisible to her; an administrator mounting it gets 201.
#[tokio::test]
async fn mount_from_an_unreadable_repository_is_a_plain_upload() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, TEAM_RW)]);
    let data = random_bytes(500);
    let digest = sha256_digest(&data);
    reg.push_blob_as(&Who::admin(), "secret/x", &data)
        .await
        .expect_status(201);

    for query in [
        format!("mount={digest}&from=secret/x"),
        format!("mount={digest}"),
    ] {
        let r = reg.start_upload_as(&alice(), "team/app", &query).await;
        r.expect_status(202);
        assert!(
            r.location().contains("/v2/team/app/blobs/uploads/"),
            "202 without an upload Location:\n{r}"
        );
    }
    reg.get_as(&alice(), &format!("/v2/team/app/blobs/{digest}"))
        .await
        .expect_status(404);

    let r = reg
        .start_upload_as(
            &Who::admin(),
            "team/app",
            &format!("mount={digest}&from=secret/x"),
        )
        .await;
    r.expect_status(201);
    let r = reg
        .start_upload_as(&Who::admin(), "team/other", &format!("mount={digest}"))
        .await;
    r.expect_status(201);
    // Now team/app holds it, so alice may read it there.
    let pulled = reg
        .get_as(&alice(), &format!("/v2/team/app/blobs/{digest}"))
        .await;
    pulled.expect_status(200);
    assert!(pulled.body == data);
}

/// An upload session belongs to whoever opened it: another user with the same push rights
/// gets 404 BLOB_UPLOAD_UNKNOWN for every request on its Location; the opener finishes it.
#[tokio::test]
async fn upload_session_is_bound_to_its_opener() {
    let reg = AuthReg::start(
        "",
        &[
            user("alice", ALICE_PW, TEAM_RW),
            user("bob", BOB_PW, TEAM_RW),
        ],
    );
    let data = random_bytes(2000);
    let digest = sha256_digest(&data);
    let opened = reg.start_upload_as(&alice(), "team/app", "").await;
    opened.expect_status(202);
    let loc = opened.location();

    let r = reg.patch_as(&bob(), &loc, 0, &data[..1000]).await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let r = reg.put_upload_as(&bob(), &loc, &digest, &data).await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let r = reg.get_as(&bob(), &loc).await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let r = reg.send_as(&bob(), reg.req(Method::DELETE, &loc)).await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    // A bearer token of bob's is no better.
    let bob_jwt = reg.jwt(&bob(), &["repository:team/app:pull,push"]).await;
    let r = reg
        .patch_as(&Who::bearer(&bob_jwt), &loc, 0, &data[..1000])
        .await;
    r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");

    // The session is bound to its repository too.
    let moved = loc.replace("/v2/team/app/", "/v2/team/other/");
    reg.patch_as(&alice(), &moved, 0, &data[..1000])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");

    reg.patch_as(&alice(), &loc, 0, &data[..1000])
        .await
        .expect_status(202);
    let status = reg.get_as(&alice(), &loc).await;
    status.expect_status(204);
    status.expect_header("range", "0-999");
    reg.put_upload_as(&alice(), &loc, &digest, &data[1000..])
        .await
        .expect_status(201);
    let pulled = reg
        .get_as(&bob(), &format!("/v2/team/app/blobs/{digest}"))
        .await;
    pulled.expect_status(200);
    assert!(pulled.body == data);
}

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
    let (own_kid, pkcs8) = generate_key().unwrap();
    let claims: Claims = serde_json::from_value(widened.clone()).expect("claims shape");
    let signer = Signer::from_pkcs8(&kid, &pkcs8).expect("own key");
    forged.push((
        "ES256 by our own key under the server's kid",
        signer.sign(&claims).unwrap(),
    ));
    let signer = Signer::from_pkcs8(&own_kid, &pkcs8).expect("own key");
    forged.push((
        "ES256 by our own key under its own kid",
        signer.sign(&claims).unwrap(),
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
        reg.get_as(&Who::bearer(&signer.sign(&claims).unwrap()), target)
            .await
            .expect_status(200);

        let mut forged: Vec<(String, String)> = Vec::new();
        for iss in ["", "other", "https://evil.example", "Stowage"] {
            let mut c = claims.clone();
            c.iss = iss.to_string();
            forged.push((format!("iss {iss:?}"), signer.sign(&c).unwrap()));
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

/// Wrong passwords sent all at once cannot slip past the limit while the first ones are still
/// being checked: attempts in flight count against it. The right password sent on many
/// connections at once is checked once and all of them pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_sent_at_once_are_limited_too() {
    let reg = AuthReg::start("login_failures = 5", &[user("alice", ALICE_PW, TEAM_RW)]);
    // Distinct guesses: identical ones share a single check, so they cannot add up.
    let guesses: Vec<Who> = (0..40)
        .map(|i| Who::basic("alice", &format!("wrong-password-{i}")))
        .collect();
    let answers =
        futures_util::future::join_all(guesses.iter().map(|w| reg.get_as(w, "/v2/"))).await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + refused, 40);
    assert!(
        checked <= 5,
        "{checked} wrong passwords were checked, the limit is 5"
    );
    let bob = AuthReg::start("login_failures = 5", &[user("bob", BOB_PW, TEAM_RW)]);
    let right = Who::basic("bob", BOB_PW);
    let answers = futures_util::future::join_all((0..40).map(|_| bob.get_as(&right, "/v2/"))).await;
    assert!(
        answers.iter().all(|r| r.status == 200),
        "a burst of correct logins was refused: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

/// After `login_failures` wrong passwords for one user from one address, the next login (even
/// with the right password) gets 429 TOOMANYREQUESTS with Retry-After at once, on every
/// endpoint that takes a password; another user from the same address is unaffected.
#[tokio::test]
async fn failed_logins_are_limited_per_address_and_user() {
    let reg = AuthReg::start(
        "login_failures = 3",
        &[
            user("alice", ALICE_PW, TEAM_RW),
            user("bob", BOB_PW, TEAM_RW),
        ],
    );
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    let wrong = Who::basic("alice", "not-the-password");
    for _ in 0..3 {
        reg.get_as(&wrong, "/v2/")
            .await
            .expect_error(401, "UNAUTHORIZED");
    }
    let started = Instant::now();
    let r = reg.get_as(&alice(), "/v2/").await;
    let took = started.elapsed();
    r.expect_error(429, "TOOMANYREQUESTS");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After:\n{r}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not a number of seconds:\n{r}"));
    assert!(retry >= 1, "{r}");
    assert!(
        took < Duration::from_millis(100),
        "the refusal took {took:?}: was a hash computed?"
    );

    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let spoofed = reg
        .send_as(
            &alice(),
            reg.req(Method::GET, "/v2/")
                .header("x-forwarded-for", "10.9.8.7"),
        )
        .await;
    spoofed.expect_error(429, "TOOMANYREQUESTS");

    // The token endpoint and the admin API refuse it too.
    let t = reg
        .token_request(&alice(), &["repository:team/app:pull"], "")
        .await;
    assert_eq!(t.status, 429, "token endpoint:\n{t}");
    assert!(t.header("retry-after").is_some(), "{t}");
    let form = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("service", "stowage"),
        ])
        .await;
    assert_eq!(form.status, 429, "token endpoint (POST):\n{form}");
    let admin_api = reg.get_as(&alice(), "/admin/v1/tokens").await;
    assert_eq!(admin_api.status, 429, "admin API:\n{admin_api}");

    // Bob, from the same address, is unaffected.
    reg.get_as(&bob(), "/v2/").await.expect_status(200);
    reg.jwt(&bob(), &["repository:team/app:pull"]).await;
}

/// The realm and the client address: `X-Forwarded-*` headers are ignored from untrusted
/// peers; from `auth.trusted_proxies` the realm follows `X-Forwarded-Proto/Host` and failed
/// logins are counted per the last untrusted `X-Forwarded-For` address; `auth.external_url`
/// fixes the realm.
#[tokio::test]
async fn realm_and_client_address_behind_a_trusted_proxy() {
    let forwarded = |rb: reqwest::RequestBuilder, xff: &str| {
        rb.header("x-forwarded-for", xff)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "registry.example.com")
    };

    let direct = AuthReg::start("", &[]);
    let r = direct
        .send(forwarded(direct.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert!(
        challenge(&r).starts_with(&format!("Bearer realm=\"{}/auth/token\"", direct.base)),
        "forwarded headers believed from an untrusted peer:\n{r}"
    );

    let reg = AuthReg::start(
        "login_failures = 2\ntrusted_proxies = [\"127.0.0.1/32\"]",
        &[user("alice", ALICE_PW, TEAM_RW)],
    );
    let r = reg
        .send(forwarded(reg.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert!(
        challenge(&r).starts_with("Bearer realm=\"https://registry.example.com/auth/token\""),
        "forwarded headers ignored from a trusted proxy:\n{r}"
    );
    let wrong = Who::basic("alice", "not-the-password");
    for _ in 0..2 {
        reg.send_as(
            &wrong,
            reg.req(Method::GET, "/v2/")
                .header("x-forwarded-for", "10.0.0.1"),
        )
        .await
        .expect_status(401);
    }
    for xff in ["10.0.0.1", "5.5.5.5, 10.0.0.1"] {
        reg.send_as(
            &alice(),
            reg.req(Method::GET, "/v2/").header("x-forwarded-for", xff),
        )
        .await
        .expect_error(429, "TOOMANYREQUESTS");
    }
    reg.send_as(
        &alice(),
        reg.req(Method::GET, "/v2/")
            .header("x-forwarded-for", "10.0.0.2"),
    )
    .await
    .expect_status(200);

    let fixed = AuthReg::start("external_url = \"https://cr.example.org/\"", &[]);
    let r = fixed
        .send(forwarded(fixed.req(Method::GET, "/v2/"), "10.0.0.1"))
        .await;
    assert_eq!(
        challenge(&r),
        "Bearer realm=\"https://cr.example.org/auth/token\",service=\"stowage\"",
        "{r}"
    );
}
