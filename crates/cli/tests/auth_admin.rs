//! Account administration: `stowage user`/`token` through a running server's admin API
//! (`--server URL --username U --server-password-stdin`, two passwords on one stdin for
//! `user add`/`passwd`), what administrators and ordinary users may do there, the raw
//! `/admin/v1/` answers, and htpasswd users (`auth.htpasswd`, re-read when the file changes,
//! and `stowage user import`).
//!
//! Registry-side decisions are in `auth_http.rs`; credential lifecycles on the store in
//! `auth_tokens.rs`.

mod common;

use common::auth::*;
use common::*;
use stowage_testkit::tools::htpasswd_line;

const BOB_PW: &str = "bob-password-1";

/// An administrator manages users and tokens through the server; changes apply at once.
/// A non-admin user manages its own tokens and password with its password, but cannot
/// create tokens for others or list users.
#[tokio::test]
async fn admin_api_through_the_cli() {
    let reg = AuthReg::start("", &[]);
    let img = reg.push_image_as(&Who::admin(), "team/app", "v1").await;
    let admin = |args: &[&str], more: &str| reg.cli_remote(ADMIN, ADMIN_PW, args, more);

    let out = admin(
        &[
            "user",
            "add",
            "bob",
            "--grant",
            "team/**:pull",
            "--password-stdin",
        ],
        &format!("{BOB_PW}\n"),
    );
    out.expect_ok();
    assert!(out.stdout.contains("created user bob"), "{out}");
    let bob = Who::basic("bob", BOB_PW);
    reg.expect_pull(&bob, &img).await;
    expect_denied(&reg.start_upload_as(&bob, "team/app", "").await);

    let out = admin(&["user", "list"], "");
    out.expect_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.contains(&"admin\tadmin\t-"), "{out}");
    assert!(lines.contains(&"bob\t-\trepository:team/**:pull"), "{out}");

    expect_denied(&reg.get_as(&bob, "/v2/_catalog").await);
    admin(&["user", "grant", "bob", "registry:catalog:*"], "").expect_ok();
    reg.get_as(&bob, "/v2/_catalog").await.expect_status(200);

    let out = admin(
        &[
            "token",
            "create",
            "--user",
            "bob",
            "--scope",
            "repository:team/**:pull",
            "--name",
            "from-admin",
        ],
        "",
    );
    out.expect_ok();
    let secret = out.last_line();
    let tok = Who::basic("bob", &secret);
    reg.expect_pull(&tok, &img).await;
    let id = token_id_in(&admin(&["token", "list"], ""), &secret);
    let id_bob = token_id_in(&admin(&["token", "list", "--user", "bob"], ""), &secret);
    assert_eq!(id, id_bob);
    let out = admin(&["token", "revoke", &id], "");
    out.expect_ok();
    reg.get_as(&tok, "/v2/").await.expect_status(401);

    // Bob, with his own password.
    let as_bob = |args: &[&str], more: &str| reg.cli_remote("bob", BOB_PW, args, more);
    let out = as_bob(
        &["token", "create", "--scope", "repository:team/**:pull"],
        "",
    );
    out.expect_ok();
    let own = out.last_line();
    reg.expect_pull(&Who::basic("bob", &own), &img).await;
    let listed = as_bob(&["token", "list"], "");
    token_id_in(&listed, &own);
    assert!(
        listed
            .stdout
            .lines()
            .all(|l| l.split('\t').nth(1) == Some("bob")),
        "bob sees tokens of others:\n{listed}"
    );
    let out = as_bob(
        &[
            "token",
            "create",
            "--user",
            "admin",
            "--scope",
            "repository:**:pull",
        ],
        "",
    );
    out.expect_fail();
    assert!(out.stderr.contains("DENIED"), "{out}");
    let out = as_bob(&["user", "list"], "");
    out.expect_fail();
    assert!(out.stderr.contains("DENIED"), "{out}");
    as_bob(&["user", "grant", "bob", "team/**:push"], "").expect_fail();
    as_bob(&["token", "list", "--user", "admin"], "").expect_fail();
    // Nor revoke another user's token, or change his own password with a token.
    let out = admin(
        &[
            "token",
            "create",
            "--user",
            ADMIN,
            "--scope",
            "repository:x/**:pull",
        ],
        "",
    );
    out.expect_ok();
    let admins = token_id_in(
        &admin(&["token", "list", "--user", ADMIN], ""),
        &out.last_line(),
    );
    as_bob(&["token", "revoke", &admins], "").expect_fail();
    token_id_in(
        &admin(&["token", "list", "--user", ADMIN], ""),
        &out.last_line(),
    );
    reg.cli_remote(
        "bob",
        &own,
        &["user", "passwd", "bob", "--password-stdin"],
        "bob-password-3\n",
    )
    .expect_fail();
    // A token cannot mint tokens (it carries no `admin` scope).
    reg.cli_remote(
        "bob",
        &own,
        &["token", "create", "--scope", "repository:team/**:pull"],
        "",
    )
    .expect_fail();

    // Two lines on one stdin: bob's password, then his new one.
    let new_pw = "bob-password-2";
    let out = as_bob(
        &["user", "passwd", "bob", "--password-stdin"],
        &format!("{new_pw}\n"),
    );
    out.expect_ok();
    reg.get_as(&bob, "/v2/").await.expect_status(401);
    reg.get_as(&Who::basic("bob", new_pw), "/v2/")
        .await
        .expect_status(200);

    // An administrator's token with the `admin` scope administers; without it, it does not.
    let out = reg.cli(
        &[
            "token",
            "create",
            "--user",
            ADMIN,
            "--scope",
            "admin",
            "--scope",
            "repository:**:pull",
        ],
        "",
    );
    out.expect_ok();
    let admin_token = out.last_line();
    let out = reg.cli(
        &[
            "token",
            "create",
            "--user",
            ADMIN,
            "--scope",
            "repository:**:pull",
        ],
        "",
    );
    out.expect_ok();
    let pull_token = out.last_line();
    wait_until("the admin's new tokens are known", || async {
        reg.get_as(&Who::basic(ADMIN, &pull_token), "/v2/")
            .await
            .status
            == 200
    })
    .await;
    let out = reg.cli_remote(ADMIN, &admin_token, &["user", "list"], "");
    out.expect_ok();
    assert!(out.stdout.contains("bob\t"), "{out}");
    let out = reg.cli_remote(ADMIN, &pull_token, &["user", "list"], "");
    out.expect_fail();
    assert!(out.stderr.contains("DENIED"), "{out}");

    admin(&["user", "remove", "bob"], "").expect_ok();
    reg.get_as(&Who::basic("bob", new_pw), "/v2/")
        .await
        .expect_status(401);
    reg.get_as(&Who::basic("bob", &own), "/v2/")
        .await
        .expect_status(401);
}

/// `/admin/v1/` over plain HTTP: 401 with a Bearer challenge for `registry:admin:*` (never a
/// Basic one, which would make browsers prompt) without credentials, 403 for a non-admin,
/// JSON for an administrator; 403 when authentication is off.
#[tokio::test]
async fn admin_http_answers() {
    let reg = AuthReg::start("", &[user("bob", BOB_PW, &["team/**:pull"])]);
    let r = reg.get("/admin/v1/users").await;
    r.expect_status(401);
    let c = challenge(&r);
    assert!(
        c.starts_with("Bearer ") && c.contains("scope=\"registry:admin:*\""),
        "no Bearer challenge for the admin scope:\n{r}"
    );
    let r = reg
        .get_as(&Who::basic("bob", "wrong-password"), "/admin/v1/users")
        .await;
    r.expect_status(401);
    let r = reg
        .get_as(&Who::basic("bob", BOB_PW), "/admin/v1/users")
        .await;
    r.expect_status(403);
    assert_eq!(r.json()["errors"][0]["code"], "DENIED", "{r}");
    let r = reg.get_as(&Who::admin(), "/admin/v1/users").await;
    r.expect_status(200);
    let names: Vec<String> = r
        .json()
        .as_array()
        .expect("a JSON array of users")
        .iter()
        .map(|u| u["name"].as_str().expect("name").to_string())
        .collect();
    assert!(names.contains(&"bob".to_string()), "{r}");
    assert!(
        !r.text().contains("argon2"),
        "password hashes are listed:\n{r}"
    );

    let open = Reg::start();
    open.get("/admin/v1/users").await.expect_status(403);
}

/// htpasswd users (bcrypt `$2y$`) log in and, by default, push and pull everywhere; a user
/// appended to the file can log in soon after; `stowage user import` copies them into the
/// store with the given grants, which then take precedence.
#[tokio::test]
async fn htpasswd_users_and_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd_line("hank", "hank-password-1")).expect("write htpasswd");
    let reg = AuthReg::start(&format!("htpasswd = {:?}", file.display().to_string()), &[]);
    let hank = Who::basic("hank", "hank-password-1");

    let img = reg.push_image_as(&hank, "anything/x", "v1").await;
    reg.get_as(&hank, "/v2/_catalog").await.expect_status(200);
    let jwt = reg
        .jwt(&hank, &["repository:anything/x:pull,push,delete"])
        .await;
    assert_eq!(jwt_actions(&jwt, "anything/x"), ["delete", "pull", "push"]);
    reg.get_as(&Who::basic("hank", "wrong-password"), "/v2/")
        .await
        .expect_status(401);

    let mut text = std::fs::read_to_string(&file).expect("read htpasswd");
    text.push_str(&htpasswd_line("ivy", "ivy-password-1"));
    std::fs::write(&file, text).expect("rewrite htpasswd");
    let ivy = Who::basic("ivy", "ivy-password-1");
    wait_until("a user added to the htpasswd file logs in", || async {
        reg.get_as(&ivy, "/v2/").await.status == 200
    })
    .await;

    let path = file.display().to_string();
    let out = reg.cli(&["user", "import", &path, "--grant", "x/**:pull"], "");
    out.expect_ok();
    assert!(out.stdout.contains("imported 2 users"), "{out}");
    let out = reg.cli(&["user", "list"], "");
    out.expect_ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "hank\t-\trepository:x/**:pull"),
        "{out}"
    );
    let again = reg.cli(&["user", "import", &path], "");
    again.expect_ok();
    assert!(again.stdout.contains("imported 0 users"), "{again}");

    // The store's hank (pull on x/** only) now wins over the file's.
    wait_until("the imported rights apply", || async {
        reg.start_upload_as(&hank, "anything/y", "").await.status == 403
    })
    .await;
    expect_denied(&reg.get_manifest_as(&hank, "anything/x", "v1").await);
    reg.get_as(&hank, "/v2/").await.expect_status(200);
    reg.expect_pull(&Who::admin(), &img).await;
}

/// `docker login`-style token requests by an htpasswd user (GET `offline_token=true`, POST
/// `grant_type=password` with `access_type=offline`) succeed; a refresh token, if one is
/// handed out, works.
#[tokio::test]
async fn htpasswd_user_offline_token_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd_line("hank", "hank-password-1")).expect("write htpasswd");
    let reg = AuthReg::start(&format!("htpasswd = {:?}", file.display().to_string()), &[]);
    let hank = Who::basic("hank", "hank-password-1");
    let img = reg.push_image_as(&hank, "anything/x", "v1").await;
    let scope = "repository:anything/x:pull";
    let get = reg
        .token_request(&hank, &[scope], "offline_token=true")
        .await;
    let post = reg
        .token_post(&[
            ("grant_type", "password"),
            ("username", "hank"),
            ("password", "hank-password-1"),
            ("service", "stowage"),
            ("access_type", "offline"),
            ("scope", scope),
        ])
        .await;
    for r in [&get, &post] {
        r.expect_status(200);
        let v = r.json();
        let jwt = v["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token:\n{r}"));
        reg.expect_pull(&Who::bearer(jwt), &img).await;
        if let Some(refresh) = v["refresh_token"].as_str() {
            reg.token_post(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("service", "stowage"),
                ("scope", scope),
            ])
            .await
            .expect_status(200);
        }
    }
}

/// Changing an htpasswd user's password in the file retires the old password and the JWTs
/// minted with it, as `user passwd` does for store users.
#[tokio::test]
async fn htpasswd_password_change_retires_old_credentials() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd_line("hank", "hank-password-1")).expect("write htpasswd");
    let reg = AuthReg::start(&format!("htpasswd = {:?}", file.display().to_string()), &[]);
    let old = Who::basic("hank", "hank-password-1");
    reg.push_image_as(&old, "anything/x", "v1").await;
    let jwt = Who::bearer(&reg.jwt(&old, &["repository:anything/x:pull"]).await);

    std::fs::write(&file, htpasswd_line("hank", "hank-password-2")).expect("rewrite htpasswd");
    let new = Who::basic("hank", "hank-password-2");
    wait_until("the new htpasswd password logs in", || async {
        reg.get_as(&new, "/v2/").await.status == 200
    })
    .await;

    let old_password = reg.get_as(&old, "/v2/").await;
    let old_jwt = reg.get_as(&jwt, "/v2/anything/x/tags/list").await;
    let mut failures = Vec::new();
    for (what, r) in [
        ("the old password", &old_password),
        ("a JWT minted with the old password", &old_jwt),
    ] {
        if r.status != 401 {
            failures.push(format!("{what} still works:\n{r}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--server` with no password given uses the login stored by `stowage login` (a refresh
/// token, redeemed for a JWT the admin API accepts); the database holding keys and hashes is
/// private to the server's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_commands_use_the_stored_login_and_the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let reg = AuthReg::start("", &[]);
    let docker = tempfile::tempdir().unwrap();
    let base = reg.reg.base.clone();
    let host = base.trim_start_matches("http://").to_string();
    let login = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["login", &host, "-u", "admin", "--password-stdin"])
        .env("DOCKER_CONFIG", docker.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    let mut login = login;
    login
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ADMIN_PW}\n").as_bytes())
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["user", "list", "--server", &base])
        .env("DOCKER_CONFIG", docker.path())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("STOWAGE_DATA")
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).starts_with("admin\tadmin"));
    // The stored login (redeemed for `registry:admin:*`) also makes tokens and users.
    for args in [
        &["token", "create", "--scope", "repository:x/**:pull"][..],
        &["user", "add", "dora", "--password-stdin"][..],
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"));
        let mut child = cmd
            .args(args)
            .args(["--server", &base])
            .env("DOCKER_CONFIG", docker.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("STOWAGE_DATA")
            .env_remove("STOWAGE_PASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"dora-password-1\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    reg.get_as(&Who::basic("dora", "dora-password-1"), "/v2/")
        .await
        .expect_status(200);
    for name in ["metadata.db", "metadata.db-wal"] {
        let mode = std::fs::metadata(reg.data.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is private: {mode:o}");
    }
    let dir_mode = std::fs::metadata(&reg.data).unwrap().permissions().mode();
    assert_eq!(
        dir_mode & 0o077,
        0,
        "the data directory is private: {dir_mode:o}"
    );
}
