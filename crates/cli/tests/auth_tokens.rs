//! Credential lifecycles on a running `stowage serve --auth`, driven by `stowage user`/`token`
//! on the store while the server runs: personal access tokens (used as a password in Basic and
//! at the token endpoint, scoped, listed without their secret, last use recorded, revoked and
//! expiring, with everything minted from them dying too), rights lowered and users removed,
//! password changes killing JWTs and refresh tokens, and the refresh-token grants of the token
//! endpoint (GET `offline_token=true`, POST `grant_type=refresh_token|password`).
//!
//! HTTP decisions (challenges, denials) are in `auth_http.rs`, forged JWTs in `auth_jwt.rs`;
//! the admin API in `auth_admin.rs`.

mod common;

use common::auth::*;
use common::*;

/// The refresh token in a token-endpoint answer.
fn refresh_token_of(r: &Resp) -> String {
    r.expect_status(200);
    let v = r.json();
    let t = v["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token:\n{r}"))
        .to_string();
    assert!(t.starts_with("stwr_"), "{r}");
    t
}

/// Redeem a refresh token at the OAuth2 POST endpoint.
async fn redeem(reg: &AuthReg, refresh: &str, scope: &str) -> Resp {
    reg.token_post(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("service", "stowage"),
        ("client_id", "stowage-tests"),
        ("scope", scope),
    ])
    .await
}

/// The `token list` line of token `id`.
fn list_line(reg: &AuthReg, id: &str) -> Option<String> {
    let out = reg.cli(&["token", "list"], "");
    out.expect_ok();
    out.stdout
        .lines()
        .find(|l| l.split('\t').next() == Some(id))
        .map(str::to_string)
}

/// A token for `repository:team/**:pull`: the secret is a password for Basic and for the
/// token endpoint; it pulls but cannot push, and a push scope is not granted; `token list`
/// shows its id first, never its secret, and its last use; `token revoke` on the store kills
/// it, the JWTs and the refresh tokens minted from it, within a few seconds.
#[tokio::test]
async fn access_token_lifecycle() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull,push"])]);
    let img = reg.push_image_as(&alice(), "team/app", "v1").await;
    let (id, secret) = reg
        .create_token("alice", &["repository:team/**:pull"], &["--name", "ci"])
        .await;
    assert!(
        secret.starts_with("stw_"),
        "unexpected secret shape {secret}"
    );
    let line = list_line(&reg, &id).expect("the new token is listed");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        fields[..4],
        [id.as_str(), "alice", "ci", "repository:team/**:pull"]
    );
    assert!(line.contains("last_used=-"), "used before any use: {line}");

    // `docker login -u alice -p <secret>`, then pulls.
    let tok = Who::basic("alice", &secret);
    reg.get_as(&tok, "/v2/").await.expect_status(200);
    reg.expect_pull(&tok, &img).await;
    expect_denied(&reg.start_upload_as(&tok, "team/app", "").await);

    let jwt = reg.jwt(&tok, &["repository:team/app:pull,push"]).await;
    assert_eq!(jwt_actions(&jwt, "team/app"), ["pull"], "push was granted");
    let bearer = Who::bearer(&jwt);
    reg.expect_pull(&bearer, &img).await;
    let push = reg.start_upload_as(&bearer, "team/app", "").await;
    assert!(
        push.status == 401 || push.status == 403,
        "a pull-only JWT pushed:\n{push}"
    );
    let refresh = refresh_token_of(
        &reg.token_request(&tok, &["repository:team/app:pull"], "offline_token=true")
            .await,
    );
    redeem(&reg, &refresh, "repository:team/app:pull")
        .await
        .expect_status(200);

    wait_until("token list shows the token's last use", || async {
        list_line(&reg, &id).is_some_and(|l| !l.contains("last_used=-"))
    })
    .await;
    let line = list_line(&reg, &id).expect("listed");
    assert!(
        !line.contains(&secret),
        "token list shows the secret: {line}"
    );

    reg.cli(&["token", "revoke", &id], "").expect_ok();
    wait_until("the revoked token stops working in Basic", || async {
        reg.get_as(&tok, "/v2/").await.status == 401
    })
    .await;
    expect_bearer_error(
        &reg.get_manifest_as(&bearer, "team/app", "v1").await,
        "invalid_token",
    );
    redeem(&reg, &refresh, "repository:team/app:pull")
        .await
        .expect_status(401);
    reg.token_request(&tok, &["repository:team/app:pull"], "")
        .await
        .expect_status(401);
    assert!(
        list_line(&reg, &id).is_none(),
        "a revoked token is still listed"
    );
    // The password still works.
    reg.expect_pull(&alice(), &img).await;
}

/// `token create --expires 2s`: works at once, refused once expired (and so are its JWTs).
#[tokio::test]
async fn expiring_token_stops_working() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    let (id, secret) = reg
        .create_token("alice", &["repository:team/**:pull"], &["--expires", "2s"])
        .await;
    let tok = Who::basic("alice", &secret);
    reg.get_as(&tok, "/v2/").await.expect_status(200);
    let jwt = reg.jwt(&tok, &["repository:team/app:pull"]).await;
    let line = list_line(&reg, &id).expect("listed");
    assert!(!line.contains("expires=-"), "no expiry listed: {line}");

    wait_until("the expired token is refused", || async {
        reg.get_as(&tok, "/v2/").await.status == 401
    })
    .await;
    expect_bearer_error(
        &reg.get_as(&Who::bearer(&jwt), "/v2/team/app/tags/list")
            .await,
        "invalid_token",
    );
    reg.token_request(&tok, &["repository:team/app:pull"], "")
        .await
        .expect_status(401);
}

/// Lowering a user's rights lowers its token and the JWTs minted before (push gone, pull
/// kept); removing the user kills everything.
#[tokio::test]
async fn lowered_rights_and_removed_user() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull,push"])]);
    let img = reg.push_image_as(&alice(), "team/app", "v1").await;
    let (_, secret) = reg
        .create_token("alice", &["repository:team/**:pull,push"], &[])
        .await;
    let tok = Who::basic("alice", &secret);
    let scope = ["repository:team/app:pull,push"];
    let jwt_pw = Who::bearer(&reg.jwt(&alice(), &scope).await);
    let jwt_tok = Who::bearer(&reg.jwt(&tok, &scope).await);
    for who in [&tok, &jwt_pw, &jwt_tok] {
        reg.push_blob_as(who, "team/app", &random_bytes(64))
            .await
            .expect_status(201);
    }

    reg.cli(&["user", "ungrant", "alice", "team/**:pull,push"], "")
        .expect_ok();
    reg.cli(&["user", "grant", "alice", "team/**:pull"], "")
        .expect_ok();
    // Two commands, so the server may see the first (no rights at all) before the second:
    // wait for the state after both, not just for push to be gone.
    wait_until("the token loses push and keeps pull", || async {
        reg.start_upload_as(&tok, "team/app", "").await.status == 403
            && reg.get_manifest_as(&tok, "team/app", "v1").await.status == 200
    })
    .await;
    for who in [&alice(), &tok, &jwt_pw, &jwt_tok] {
        let r = reg.start_upload_as(who, "team/app", "").await;
        expect_denied(&r);
        reg.expect_pull(who, &img).await;
    }
    let fresh = reg.jwt(&alice(), &scope).await;
    assert_eq!(jwt_actions(&fresh, "team/app"), ["pull"]);

    reg.cli(&["user", "remove", "alice"], "").expect_ok();
    wait_until("the removed user's token stops working", || async {
        reg.get_as(&tok, "/v2/").await.status == 401
    })
    .await;
    for who in [&jwt_pw, &jwt_tok] {
        expect_bearer_error(
            &reg.get_manifest_as(who, "team/app", "v1").await,
            "invalid_token",
        );
    }
    reg.get_as(&alice(), "/v2/").await.expect_status(401);
    reg.token_request(&alice(), &scope, "")
        .await
        .expect_status(401);
    reg.token_request(&tok, &scope, "").await.expect_status(401);
}

/// `user passwd` (on the store) kills the JWTs and refresh tokens minted with the old
/// password; the new password works.
#[tokio::test]
async fn password_change_kills_jwts_and_refresh_tokens() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let scope = ["repository:team/app:pull"];
    let jwt = Who::bearer(&reg.jwt(&alice(), &scope).await);
    let refresh_get = refresh_token_of(
        &reg.token_request(&alice(), &scope, "offline_token=true")
            .await,
    );
    let refresh_post = refresh_token_of(
        &reg.token_post(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("service", "stowage"),
            ("access_type", "offline"),
            ("scope", scope[0]),
        ])
        .await,
    );
    reg.get_as(&jwt, "/v2/team/app/tags/list")
        .await
        .expect_status(200);

    let new_pw = "alice-password-2";
    reg.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        &format!("{new_pw}\n"),
    )
    .expect_ok();
    wait_until("the old password's JWT is refused", || async {
        reg.get_as(&jwt, "/v2/team/app/tags/list").await.status == 401
    })
    .await;
    expect_bearer_error(
        &reg.get_as(&jwt, "/v2/team/app/tags/list").await,
        "invalid_token",
    );
    for r in [&refresh_get, &refresh_post] {
        redeem(&reg, r, scope[0]).await.expect_status(401);
    }
    reg.get_as(&alice(), "/v2/").await.expect_status(401);
    let new = Who::basic("alice", new_pw);
    reg.get_as(&new, "/v2/").await.expect_status(200);
    let fresh = reg.jwt(&new, &scope).await;
    reg.get_as(&Who::bearer(&fresh), "/v2/team/app/tags/list")
        .await
        .expect_status(200);
}

/// Refresh tokens: only on request (`offline_token=true`); `grant_type=refresh_token`
/// returns a working access token with the granted `scope`; garbage, a refresh token used as
/// a password, and unknown grant types are refused.
#[tokio::test]
async fn refresh_token_grants() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    let img = reg.push_image_as(&Who::admin(), "team/app", "v1").await;

    let plain = reg
        .token_request(&alice(), &["repository:team/app:pull"], "")
        .await;
    plain.expect_status(200);
    let v = plain.json();
    assert!(
        v.get("refresh_token").is_none(),
        "unasked refresh token:\n{plain}"
    );
    assert!(v["expires_in"].as_i64().is_some_and(|e| e > 0), "{plain}");
    assert!(v["issued_at"].is_string(), "{plain}");
    assert_eq!(v["token"], v["access_token"], "{plain}");

    let refresh = refresh_token_of(
        &reg.token_request(
            &alice(),
            &["repository:team/app:pull"],
            "offline_token=true",
        )
        .await,
    );
    let r = redeem(
        &reg,
        &refresh,
        "repository:team/app:pull repository:team/app:push",
    )
    .await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["scope"], "repository:team/app:pull", "{r}");
    assert!(v.get("refresh_token").is_none(), "{r}");
    let access = v["access_token"].as_str().expect("access_token");
    assert_eq!(jwt_actions(access, "team/app"), ["pull"]);
    reg.expect_pull(&Who::bearer(access), &img).await;
    // It can be redeemed again.
    redeem(&reg, &refresh, "repository:team/app:pull")
        .await
        .expect_status(200);

    for garbage in [
        "garbage".to_string(),
        "stwr_garbage".to_string(),
        format!("stwr_0123456789abcdef_{}", "A".repeat(43)),
        refresh.replacen("stwr_", "stw_", 1),
    ] {
        redeem(&reg, &garbage, "repository:team/app:pull")
            .await
            .expect_status(401);
    }
    // A refresh token is not a password.
    reg.get_as(&Who::basic("alice", &refresh), "/v2/")
        .await
        .expect_status(401);

    let pw = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", ALICE_PW),
            ("service", "stowage"),
            ("scope", "repository:team/app:pull,push"),
        ])
        .await;
    pw.expect_status(200);
    assert_eq!(pw.json()["scope"], "repository:team/app:pull", "{pw}");
    reg.token_post(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "wrong-password"),
    ])
    .await
    .expect_status(401);
    reg.token_post(&[("grant_type", "client_credentials")])
        .await
        .expect_status(400);
}

/// A user removed and created again under the same name (with a new password) inherits
/// nothing from the old account: neither its password (however recently it was checked) nor
/// the JWTs it minted.
#[tokio::test]
async fn recreated_user_inherits_no_old_credentials() {
    let reg = AuthReg::start("", &[user("alice", ALICE_PW, &["team/**:pull"])]);
    reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    let old_jwt = Who::bearer(&reg.jwt(&alice(), &["repository:team/app:pull"]).await);
    reg.get_as(&old_jwt, "/v2/team/app/tags/list")
        .await
        .expect_status(200);

    reg.cli(&["user", "remove", "alice"], "").expect_ok();
    wait_until("the removed user's JWT is refused", || async {
        reg.get_as(&old_jwt, "/v2/team/app/tags/list").await.status == 401
    })
    .await;

    let new_pw = "alice-password-new";
    reg.add_user("alice", new_pw, &["team/**:pull"]);
    wait_until("the re-created user logs in", || async {
        reg.get_as(&Who::basic("alice", new_pw), "/v2/")
            .await
            .status
            == 200
    })
    .await;
    // Both checked before asserting, so a failure reports both.
    let old_password = reg.get_as(&alice(), "/v2/").await;
    let old_token = reg.get_as(&old_jwt, "/v2/team/app/tags/list").await;
    let mut failures = Vec::new();
    if old_password.status != 401 {
        failures.push(format!(
            "the removed account's password logs in to the new account:\n{old_password}"
        ));
    }
    if old_token.status != 401 {
        failures.push(format!(
            "a JWT of the removed account works for the new one:\n{old_token}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
