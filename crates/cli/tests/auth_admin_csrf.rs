//! The admin API refuses what a browser could be made to send from another site: a body not
//! declared `application/json` (415), a foreign `Origin` (403, before any login is tried),
//! and its 401 never asks for Basic (a browser would prompt, then replay the login for other
//! sites' requests); it names the token endpoint and `registry:admin:*` instead.
//!
//! Who may use the API is in `auth_admin_scope.rs`; the CLI through `--server` in
//! `auth_admin.rs`.

mod common;

use common::auth::*;
use common::*;
use reqwest::Method;
use serde_json::json;

/// POST a new user as the administrator with this `Content-Type` (None: no header).
async fn post_user(reg: &AuthReg, name: &str, content_type: Option<&str>) -> Resp {
    let body = json!({"name": name, "password": "some-password-1"}).to_string();
    let mut rb = reg.req(Method::POST, "/admin/v1/users").body(body);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    reg.send_as(&Who::admin(), rb).await
}

/// Whether a user of that name exists (per the store).
fn user_exists(reg: &AuthReg, name: &str) -> bool {
    let out = reg.cli(&["user", "list"], "");
    out.expect_ok();
    out.stdout
        .lines()
        .any(|l| l.split('\t').next() == Some(name))
}

/// The 401s of the admin API carry a Bearer challenge for `registry:admin:*` with the realm,
/// never a Basic one; the token that challenge leads to works.
#[tokio::test]
async fn admin_401_does_not_invite_a_browser_login() {
    let reg = AuthReg::start("", &[]);
    let wrong = Who::basic(ADMIN, "wrong-password");
    for (who, what) in [(Who::Anon, "no credentials"), (wrong, "a wrong password")] {
        for (method, path) in [
            (Method::GET, "/admin/v1/users"),
            (Method::DELETE, "/admin/v1/tokens/0123456789abcdef"),
        ] {
            let r = reg.send_as(&who, reg.req(method, path)).await;
            r.expect_error(401, "UNAUTHORIZED");
            for v in r.headers.get_all("www-authenticate") {
                let v = v.to_str().unwrap_or_default();
                assert!(
                    !v.trim_start().to_ascii_lowercase().starts_with("basic"),
                    "{what}: a Basic challenge:\n{r}"
                );
            }
            let c = challenge(&r);
            let realm = format!("realm=\"{}/auth/token\"", reg.base);
            assert!(c.starts_with("Bearer "), "{what}:\n{r}");
            assert!(c.contains(&realm), "{what}: {realm} missing:\n{r}");
            assert!(c.contains("service=\"stowage\""), "{what}:\n{r}");
            assert!(c.contains("scope=\"registry:admin:*\""), "{what}:\n{r}");
        }
    }
    // Following the challenge gets a token the API takes.
    let jwt = reg.jwt(&Who::admin(), &["registry:admin:*"]).await;
    reg.get_as(&Who::bearer(&jwt), "/admin/v1/users")
        .await
        .expect_status(200);
}

/// Bodies must be declared JSON: text/plain, forms, multipart and a missing type get 415 and
/// change nothing; `application/json` with parameters or in another case is fine.
#[tokio::test]
async fn admin_bodies_must_be_json() {
    let reg = AuthReg::start("", &[]);
    for (i, ct) in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/json-seq"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("csrf{i}");
        let r = post_user(&reg, &name, ct).await;
        r.expect_error(415, "UNSUPPORTED");
        assert!(r.text().contains("application/json"), "{ct:?}:\n{r}");
        assert!(!user_exists(&reg, &name), "{ct:?}: the user was created");
    }
    // PATCH too (a password change by form).
    let r = reg
        .send_as(
            &Who::admin(),
            reg.req(Method::PATCH, "/admin/v1/users/admin")
                .header("content-type", "text/plain")
                .body(json!({"password": "changed-password-1"}).to_string()),
        )
        .await;
    r.expect_error(415, "UNSUPPORTED");
    reg.get_as(&Who::admin(), "/v2/").await.expect_status(200);
    // A body on a DELETE must be JSON as well.
    let r = reg
        .send_as(
            &Who::admin(),
            reg.req(Method::DELETE, "/admin/v1/users/nobody")
                .header("content-type", "text/plain")
                .body("x"),
        )
        .await;
    r.expect_error(415, "UNSUPPORTED");

    for (name, ct) in [
        ("json1", "application/json"),
        ("json2", "application/json; charset=utf-8"),
        ("json3", "Application/JSON"),
    ] {
        post_user(&reg, name, Some(ct)).await.expect_status(201);
        assert!(user_exists(&reg, name), "{ct}");
    }
    // Bodiless requests need no type.
    reg.get_as(&Who::admin(), "/admin/v1/tokens")
        .await
        .expect_status(200);
}

/// A present `Origin` must be the request's own origin or `auth.external_url`'s; others (and
/// `null`) get 403 before any login is tried, whatever the method.
#[tokio::test]
async fn admin_refuses_foreign_origins() {
    let reg = AuthReg::start("external_url = \"https://registry.example.com/\"", &[]);
    let own = reg.base.clone();
    let admin = Who::admin();
    let send = |origin: &str, method: Method| {
        let rb = reg
            .req(method.clone(), "/admin/v1/users")
            .header("origin", origin);
        let rb = if method == Method::POST {
            rb.header("content-type", "application/json").body(
                json!({"name": format!("o{}", origin.len()), "password": "some-password-1"})
                    .to_string(),
            )
        } else {
            rb
        };
        reg.send_as(&admin, rb)
    };
    for origin in [
        "https://evil.example",
        "http://registry.example.com",
        "https://registry.example.com.evil.example",
        "null",
        "http://127.0.0.1",
    ] {
        for method in [Method::GET, Method::POST] {
            let r = send(origin, method).await;
            r.expect_error(403, "DENIED");
            assert!(r.text().contains("cross-origin"), "{origin}:\n{r}");
        }
        assert!(
            !user_exists(&reg, &format!("o{}", origin.len())),
            "{origin}"
        );
    }
    // Refused before the login: a wrong password does not get a 401 (nor count).
    let r = reg
        .send_as(
            &Who::basic(ADMIN, "wrong-password"),
            reg.req(Method::GET, "/admin/v1/users")
                .header("origin", "https://evil.example"),
        )
        .await;
    r.expect_error(403, "DENIED");

    for origin in [
        "https://registry.example.com",
        "HTTPS://Registry.Example.com:443",
    ] {
        send(origin, Method::GET).await.expect_status(200);
    }
    send(&own, Method::GET).await.expect_status(200);
    send(&own, Method::POST).await.expect_status(201);
    // No Origin at all (CLI, curl): fine.
    reg.get_as(&Who::admin(), "/admin/v1/users")
        .await
        .expect_status(200);
}
