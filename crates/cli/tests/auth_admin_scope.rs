//! Who may use the admin API (`/admin/v1/`), over real HTTP: it needs `registry:admin:*`.
//! A JWT minted for pulling (or with no access at all) is refused there, whoever's it is; a
//! JWT asked for with `registry:admin:*` (GET or OAuth2 POST, from a password or a refresh
//! token made with one) carries its caller's standing: an administrator manages users, a
//! user its own password and tokens. Access tokens keep their own scopes, also as Basic, and
//! whatever comes from an access token (Basic, its JWTs, its refresh tokens) creates only
//! tokens within that token's scopes and lifetime.
//!
//! The CLI paths and plain answers are in `auth_admin.rs`; cross-site refusals in
//! `auth_admin_csrf.rs`.

mod common;

use common::auth::*;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN_SCOPE: &str = "registry:admin:*";

/// Send an admin-API request as `who`, with `body` as JSON.
async fn call(reg: &AuthReg, who: &Who, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut rb = reg.req(method, path);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    reg.send_as(who, rb).await
}

/// Whether the JWT's `access` lists `registry:admin:*`.
fn has_admin_access(jwt: &str) -> bool {
    jwt_payload(jwt)["access"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["type"] == "registry" && a["name"] == "admin" && a["actions"] == json!(["*"]))
}

/// A JWT from the OAuth2 POST with `pairs`, asserting 200.
async fn posted_jwt(reg: &AuthReg, pairs: &[(&str, &str)]) -> (String, Value) {
    let r = reg.token_post(pairs).await;
    r.expect_status(200);
    let v = r.json();
    let jwt = v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token:\n{r}"))
        .to_string();
    (jwt, v)
}

/// Assert the admin API refused: 401 (with a Bearer challenge, never Basic) or 403.
#[track_caller]
fn expect_refused(r: &Resp, what: &str) {
    assert!(
        r.status == 401 || r.status == 403,
        "{what}: not refused:\n{r}"
    );
    if r.status == 401 {
        assert!(challenge(r).starts_with("Bearer "), "{what}:\n{r}");
    }
}

/// Pull-scoped JWTs, a JWT with `access: []`, and an administrator's pull-only JWT (GET and
/// OAuth2 POST) can neither change a password, nor create tokens, nor create users; nothing
/// changed afterwards.
#[tokio::test]
async fn jwts_without_the_admin_scope_are_refused() {
    let reg = AuthReg::start(
        "public = [\"pub/**\"]",
        &[user("alice", ALICE_PW, &["team/**:pull"])],
    );
    let pull = reg.jwt(&alice(), &["repository:pub/x:pull"]).await;
    let empty = reg.jwt(&alice(), &[]).await;
    assert_eq!(jwt_payload(&empty)["access"], json!([]), "{empty}");
    let admin_pull = reg.jwt(&Who::admin(), &["repository:pub/x:pull"]).await;
    let (admin_posted, _) = posted_jwt(
        &reg,
        &[
            ("grant_type", "password"),
            ("username", ADMIN),
            ("password", ADMIN_PW),
            ("service", "stowage"),
            ("scope", "repository:pub/x:pull"),
        ],
    )
    .await;
    for jwt in [&pull, &empty, &admin_pull, &admin_posted] {
        assert!(!has_admin_access(jwt), "granted unasked: {jwt}");
    }

    let cases = [
        ("alice's pull JWT", &pull),
        ("alice's JWT with access []", &empty),
        ("the admin's pull JWT", &admin_pull),
        ("the admin's pull JWT (POST)", &admin_posted),
    ];
    for (what, jwt) in cases {
        let who = Who::bearer(jwt);
        let r = call(
            &reg,
            &who,
            Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"password": "stolen-password-1"})),
        )
        .await;
        expect_bearer_error(&r, "insufficient_scope");
        let r = call(
            &reg,
            &who,
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"scopes": ["repository:**:pull,push,delete"]})),
        )
        .await;
        expect_bearer_error(&r, "insufficient_scope");
        let r = call(
            &reg,
            &who,
            Method::POST,
            "/admin/v1/users",
            Some(json!({"name": "mallory", "password": "mallory-password-1", "admin": true})),
        )
        .await;
        expect_refused(&r, what);
        let r = call(&reg, &who, Method::GET, "/admin/v1/tokens", None).await;
        expect_refused(&r, what);
        let r = call(&reg, &who, Method::DELETE, "/admin/v1/users/alice", None).await;
        expect_refused(&r, what);
        let c = challenge(&r);
        assert!(c.contains("scope=\"registry:admin:*\""), "{what}:\n{r}");
    }

    // Nothing happened: alice's password, no tokens, no mallory.
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    let tokens = reg.cli(&["token", "list"], "");
    tokens.expect_ok();
    assert!(tokens.stdout.trim().is_empty(), "{tokens}");
    let users = reg.cli(&["user", "list"], "");
    assert!(!users.stdout.contains("mallory"), "{users}");
    reg.get_as(&Who::basic("mallory", "mallory-password-1"), "/v2/")
        .await
        .expect_status(401);
}

/// `registry:admin:*` is granted only when asked for (GET and POST), to passwords and to
/// refresh tokens made with one; such a JWT lets an administrator manage users and a user
/// change its own password and make its own tokens, and nothing more.
#[tokio::test]
async fn admin_scoped_jwts_carry_the_callers_standing() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);

    // An administrator, GET: users are managed.
    let admin_jwt = reg.jwt(&Who::admin(), &[ADMIN_SCOPE]).await;
    assert!(has_admin_access(&admin_jwt), "{admin_jwt}");
    let admin = Who::bearer(&admin_jwt);
    call(&reg, &admin, Method::GET, "/admin/v1/users", None)
        .await
        .expect_status(200);
    call(
        &reg,
        &admin,
        Method::POST,
        "/admin/v1/users",
        Some(json!({"name": "carol", "password": "carol-password-1", "grants": ["team/**:pull"]})),
    )
    .await
    .expect_status(201);
    reg.get_as(&Who::basic("carol", "carol-password-1"), "/v2/")
        .await
        .expect_status(200);

    // An administrator, OAuth2 POST with a refresh token made by a password login.
    let r = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", ADMIN),
            ("password", ADMIN_PW),
            ("service", "stowage"),
            ("access_type", "offline"),
        ])
        .await;
    r.expect_status(200);
    let refresh = r.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token:\n{r}"))
        .to_string();
    assert!(!has_admin_access(
        r.json()["access_token"].as_str().unwrap()
    ));
    let (jwt, v) = posted_jwt(
        &reg,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "stowage"),
            ("scope", ADMIN_SCOPE),
        ],
    )
    .await;
    assert_eq!(v["scope"], ADMIN_SCOPE, "{v}");
    call(
        &reg,
        &Who::bearer(&jwt),
        Method::PATCH,
        "/admin/v1/users/carol",
        Some(json!({"grant": ["registry:catalog:*"]})),
    )
    .await
    .expect_status(200);

    // A user: its own password and tokens, nothing else.
    let alice_jwt = reg.jwt(&alice(), &[ADMIN_SCOPE]).await;
    assert!(has_admin_access(&alice_jwt), "{alice_jwt}");
    let as_alice = Who::bearer(&alice_jwt);
    call(
        &reg,
        &as_alice,
        Method::POST,
        "/admin/v1/tokens",
        Some(json!({"scopes": ["repository:team/**:pull"]})),
    )
    .await
    .expect_status(201);
    for (method, path, body) in [
        (Method::GET, "/admin/v1/users", None),
        (
            Method::POST,
            "/admin/v1/users",
            Some(json!({"name": "eve", "password": "eve-password-1"})),
        ),
        (
            Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"grant": ["**:push"]})),
        ),
        (
            Method::PATCH,
            "/admin/v1/users/carol",
            Some(json!({"password": "carol-password-2"})),
        ),
        (
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"user": "carol", "scopes": ["repository:team/**:pull"]})),
        ),
    ] {
        let r = call(&reg, &as_alice, method, path, body).await;
        expect_denied(&r);
    }
    call(
        &reg,
        &as_alice,
        Method::PATCH,
        "/admin/v1/users/alice",
        Some(json!({"password": "alice-password-2"})),
    )
    .await
    .expect_status(200);
    reg.get_as(&Who::basic("alice", "alice-password-2"), "/v2/")
        .await
        .expect_status(200);
    // The password change retired the JWT that made it.
    let r = call(&reg, &as_alice, Method::GET, "/admin/v1/tokens", None).await;
    expect_bearer_error(&r, "invalid_token");
}

/// Access tokens keep their scopes on the admin API, also when sent as Basic: without
/// `admin` they are refused (an administrator's too); with it they manage tokens but not
/// users nor passwords; at the token endpoint `registry:admin:*` is granted only to a token
/// that carries `admin`, and a refresh token inherits exactly that.
#[tokio::test]
async fn access_tokens_keep_their_scopes() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    let (_, alice_pull) = reg
        .create_token("alice", &["repository:team/**:pull"], &[])
        .await;
    let (_, admin_pull) = reg.create_token(ADMIN, &["repository:**:pull"], &[]).await;
    let (_, admin_tok) = reg
        .create_token(ADMIN, &["admin", "repository:**:pull"], &[])
        .await;

    for (who, what) in [
        (Who::basic("alice", &alice_pull), "alice's pull token"),
        (Who::basic(ADMIN, &admin_pull), "the admin's pull token"),
    ] {
        for (method, path, body) in [
            (
                Method::PATCH,
                "/admin/v1/users/alice",
                Some(json!({"password": "stolen-password-1"})),
            ),
            (
                Method::POST,
                "/admin/v1/tokens",
                Some(json!({"scopes": ["repository:team/**:pull"]})),
            ),
            (Method::GET, "/admin/v1/tokens", None),
            (
                Method::POST,
                "/admin/v1/users",
                Some(json!({"name": "mallory", "password": "mallory-password-1", "admin": true})),
            ),
        ] {
            let r = call(&reg, &who, method, path, body).await;
            expect_denied(&r);
            assert!(r.text().contains("registry:admin:*"), "{what}:\n{r}");
        }
        // Its JWTs do not get the admin scope either.
        let jwt = reg.jwt(&who, &[ADMIN_SCOPE]).await;
        assert!(!has_admin_access(&jwt), "{what}: {jwt}");
        let r = call(
            &reg,
            &Who::bearer(&jwt),
            Method::GET,
            "/admin/v1/tokens",
            None,
        )
        .await;
        expect_denied(&r);
    }

    // With `admin`: tokens yes, users and passwords no.
    let tok = Who::basic(ADMIN, &admin_tok);
    call(&reg, &tok, Method::GET, "/admin/v1/users", None)
        .await
        .expect_status(200);
    call(&reg, &tok, Method::GET, "/admin/v1/tokens", None)
        .await
        .expect_status(200);
    for (method, path, body) in [
        (
            Method::POST,
            "/admin/v1/users",
            Some(json!({"name": "mallory", "password": "mallory-password-1", "admin": true})),
        ),
        (
            Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"password": "stolen-password-1"})),
        ),
        (
            Method::PATCH,
            "/admin/v1/users/admin",
            Some(json!({"password": "stolen-password-1"})),
        ),
        (
            Method::PATCH,
            "/admin/v1/users/alice",
            Some(json!({"admin": true})),
        ),
        (Method::DELETE, "/admin/v1/users/alice", None),
    ] {
        let r = call(&reg, &tok, method, path, body).await;
        expect_denied(&r);
        assert!(r.text().contains("not an access token"), "{r}");
    }
    // Its JWT and its refresh token hold what it holds.
    let r = reg
        .token_request(&tok, &[ADMIN_SCOPE], "offline_token=true")
        .await;
    r.expect_status(200);
    assert!(has_admin_access(r.json()["token"].as_str().unwrap()), "{r}");
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let (jwt, _) = posted_jwt(
        &reg,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "stowage"),
            ("scope", ADMIN_SCOPE),
        ],
    )
    .await;
    let r = call(
        &reg,
        &Who::bearer(&jwt),
        Method::POST,
        "/admin/v1/users",
        Some(json!({"name": "mallory", "password": "mallory-password-1", "admin": true})),
    )
    .await;
    expect_denied(&r);
    call(
        &reg,
        &Who::bearer(&jwt),
        Method::GET,
        "/admin/v1/users",
        None,
    )
    .await
    .expect_status(200);
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    reg.get_as(&Who::admin(), "/v2/").await.expect_status(200);
}

/// A token with `admin` creates only tokens its scopes cover, living no longer than itself,
/// whether it is sent as Basic, traded for a JWT or for a refresh token; broader requests get
/// 403 with the reason. An administrator's admin token is bound the same way.
#[tokio::test]
async fn token_derived_credentials_cannot_mint_broader_tokens() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull,push"])]);
    let (_, secret) = reg
        .create_token(
            "alice",
            &["admin", "repository:team/app/**:pull"],
            &["--expires", "1h"],
        )
        .await;
    let basic = Who::basic("alice", &secret);
    let r = reg
        .token_request(&basic, &[ADMIN_SCOPE], "offline_token=true")
        .await;
    r.expect_status(200);
    let jwt = Who::bearer(r.json()["token"].as_str().unwrap());
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let (refreshed, _) = posted_jwt(
        &reg,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", "stowage"),
            ("scope", ADMIN_SCOPE),
        ],
    )
    .await;
    let refreshed = Who::bearer(&refreshed);

    let broader = [
        json!({"scopes": ["repository:team/**:pull"]}),
        json!({"scopes": ["repository:team/app/**:pull,push"]}),
        json!({"scopes": ["repository:team/app/**:admin"]}),
        json!({"scopes": ["registry:catalog:*"]}),
        json!({"scopes": ["repository:team/app/x:pull"], "expires_in": 7200}),
    ];
    for who in [&basic, &jwt, &refreshed] {
        for body in &broader {
            let r = call(
                &reg,
                who,
                Method::POST,
                "/admin/v1/tokens",
                Some(body.clone()),
            )
            .await;
            expect_denied(&r);
            let text = r.text();
            assert!(
                text.contains("within its own scopes") || text.contains("outlives"),
                "{r}"
            );
        }
        let r = call(
            &reg,
            who,
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"scopes": ["admin", "repository:team/app/x:pull"]})),
        )
        .await;
        r.expect_status(201);
        let made = r.json();
        let expires = made["expires"].as_i64().unwrap_or_else(|| panic!("{r}"));
        let now = made["created"].as_i64().unwrap();
        assert!(expires <= now + 3600, "outlives its maker:\n{r}");
    }
    let list = reg.cli(&["token", "list", "--user", "alice"], "");
    list.expect_ok();
    assert_eq!(list.stdout.lines().count(), 4, "{list}");

    // An administrator's token with `admin` is bound by its scopes too, for any user.
    let (_, admin_tok) = reg
        .create_token(ADMIN, &["admin", "repository:x/**:pull"], &[])
        .await;
    let tok = Who::basic(ADMIN, &admin_tok);
    for body in [
        json!({"user": "alice", "scopes": ["repository:team/**:pull"]}),
        json!({"scopes": ["repository:**:pull"]}),
        json!({"user": ADMIN, "scopes": ["repository:x/**:push"]}),
    ] {
        let r = call(&reg, &tok, Method::POST, "/admin/v1/tokens", Some(body)).await;
        expect_denied(&r);
    }
    call(
        &reg,
        &tok,
        Method::POST,
        "/admin/v1/tokens",
        Some(json!({"user": "alice", "scopes": ["repository:x/y:pull"]})),
    )
    .await
    .expect_status(201);
    // The administrator's password is bound by nothing.
    call(
        &reg,
        &Who::admin(),
        Method::POST,
        "/admin/v1/tokens",
        Some(json!({"user": "alice", "scopes": ["repository:**:pull,push"]})),
    )
    .await
    .expect_status(201);
    // An absurd lifetime is refused as invalid, not a crash.
    for expires_in in [u64::MAX, i64::MAX as u64] {
        call(
            &reg,
            &Who::admin(),
            Method::POST,
            "/admin/v1/tokens",
            Some(json!({"scopes": ["repository:x/**:pull"], "expires_in": expires_in})),
        )
        .await
        .expect_error(400, "NAME_INVALID");
    }
}
