//! Authentication over HTTP (`stowage serve --auth`), seen from a registry client: with auth
//! off everything stays open; anonymous callers get the Bearer challenge (identical for a
//! private repository and a missing one) and anonymous tokens for public repositories only;
//! administrators and scoped users push and pull with Basic and Bearer, get 403 DENIED or 401
//! `insufficient_scope` as the token spec says; the catalog shows only readable repositories;
//! mounts and upload sessions respect who may read and who opened them.
//!
//! Forged, foreign and expired JWTs are in `auth_jwt.rs`; login limits and the realm behind a
//! proxy in `auth_login_limits.rs`; token lifecycles (access tokens, refresh tokens, rights
//! changes) in `auth_tokens.rs`; the admin API, the CLI through `--server` and htpasswd in
//! `auth_admin.rs`.

mod common;

use common::auth::*;
use common::*;
use reqwest::Method;
use serde_json::json;

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
