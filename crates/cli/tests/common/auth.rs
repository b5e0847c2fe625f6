//! Helpers for the authentication tests (`tests/auth_*.rs`).
//!
//! Owns: starting a `stowage serve` with `[auth]` turned on and its users created *before* the
//! server starts (so no test polls a login that would count as a failed one), running the
//! `stowage user`/`token` commands on the store or through `--server`, asking the token
//! endpoint for JWTs and refresh tokens, and pushing/pulling a blob or a small image as a
//! given caller. Nothing here knows stowage internals beyond the documented CLI, config keys
//! and HTTP endpoints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use stowage_testkit::server::Server;

use super::{
    OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Reg, Resp, bin, client, descriptor, encode_query,
    image_manifest, random_bytes, sha256_digest, unique_config, with_query,
};

/// The administrator every auth server starts with.
pub const ADMIN: &str = "admin";
pub const ADMIN_PW: &str = "admin-password-1";

/// The users most auth tests create: alice and bob, with these passwords.
pub const ALICE_PW: &str = "alice-password-1";
pub const BOB_PW: &str = "bob-password-12";
/// Grants to pull and push under `team/`.
pub const TEAM_RW: &[&str] = &["team/**:pull,push"];

pub fn alice() -> Who {
    Who::basic("alice", ALICE_PW)
}

pub fn bob() -> Who {
    Who::basic("bob", BOB_PW)
}

/// How long a change made on the store may take to reach the server (reload is 200 ms).
pub const PROPAGATION: Duration = Duration::from_secs(5);

/// Who sends a request.
#[derive(Clone, Debug)]
pub enum Who {
    Anon,
    Basic(String, String),
    Bearer(String),
}

impl Who {
    pub fn basic(user: &str, password: &str) -> Who {
        Who::Basic(user.to_string(), password.to_string())
    }

    pub fn bearer(token: &str) -> Who {
        Who::Bearer(token.to_string())
    }

    pub fn admin() -> Who {
        Who::basic(ADMIN, ADMIN_PW)
    }

    /// Add the `Authorization` header, if any.
    pub fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Who::Anon => rb,
            Who::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Who::Bearer(t) => rb.bearer_auth(t),
        }
    }
}

/// A user to create on the store before the server starts.
pub struct NewUser<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub grants: &'a [&'a str],
}

/// `NewUser` shorthand for a non-administrator.
pub fn user<'a>(name: &'a str, password: &'a str, grants: &'a [&'a str]) -> NewUser<'a> {
    NewUser {
        name,
        password,
        admin: false,
        grants,
    }
}

/// What a finished `stowage` CLI run printed.
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl CliOut {
    #[track_caller]
    pub fn expect_ok(&self) -> &CliOut {
        assert!(self.ok, "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn expect_fail(&self) -> &CliOut {
        assert!(!self.ok, "command unexpectedly succeeded:\n{self}");
        self
    }

    /// The last non-empty stdout line (`token create` prints the secret there).
    pub fn last_line(&self) -> String {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_else(|| panic!("no output:\n{self}"))
            .trim()
            .to_string()
    }
}

impl std::fmt::Display for CliOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  $ {}\n  ok: {}\n  stdout: {}\n  stderr: {}",
            self.command, self.ok, self.stdout, self.stderr
        )
    }
}

/// Run the `stowage` binary with `args`, feeding `stdin`.
pub fn run_cli(args: &[&str], stdin: &str) -> CliOut {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_DATA")
        .env_remove("STOWAGE_SERVER")
        .env_remove("STOWAGE_PASSWORD")
        // No stored docker/podman logins may stand in for missing credentials.
        .env("DOCKER_CONFIG", "/nonexistent-stowage-test")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stowage CLI");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let out = child.wait_with_output().expect("CLI output");
    CliOut {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: args.join(" "),
    }
}

/// `user add` on the store of `data`.
pub fn add_user_on_store(data: &Path, u: &NewUser) {
    let data = data.display().to_string();
    let mut args = vec!["user", "add", u.name, "--password-stdin", "--data", &data];
    if u.admin {
        args.push("--admin");
    }
    for g in u.grants {
        args.push("--grant");
        args.push(g);
    }
    run_cli(&args, &format!("{}\n", u.password)).expect_ok();
}

/// The `[auth]` configuration every test starts from, plus `extra` lines inside `[auth]`.
/// Failed logins are limited generously unless `extra` says otherwise.
pub fn auth_toml(extra: &str) -> String {
    let mut toml = String::from("[auth]\nenabled = true\nreload_interval = \"200ms\"\n");
    if !extra.contains("login_failures") {
        toml.push_str("login_failures = 1000\n");
    }
    toml.push_str(extra);
    toml.push('\n');
    toml
}

/// A registry with authentication on.
pub struct AuthReg {
    pub reg: Reg,
    /// The data directory (its store is what `stowage user --data` changes).
    pub data: PathBuf,
    /// The configuration file the server was started with.
    pub config: PathBuf,
}

impl std::ops::Deref for AuthReg {
    type Target = Reg;
    fn deref(&self) -> &Reg {
        &self.reg
    }
}

impl AuthReg {
    /// Start with `[auth]` plus `extra` (lines inside `[auth]`), the administrator
    /// `ADMIN`/`ADMIN_PW` and `users`, all created on the store before the server starts.
    pub fn start(extra: &str, users: &[NewUser]) -> AuthReg {
        AuthReg::start_toml(&auth_toml(extra), users)
    }

    /// Like `start` with a whole configuration file.
    pub fn start_toml(toml: &str, users: &[NewUser]) -> AuthReg {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let config = dir.path().join("stowage.toml");
        std::fs::write(&config, toml).expect("write config");
        add_user_on_store(
            &data,
            &NewUser {
                name: ADMIN,
                password: ADMIN_PW,
                admin: true,
                grants: &[],
            },
        );
        for u in users {
            add_user_on_store(&data, u);
        }
        let args = vec!["--config".to_string(), config.display().to_string()];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::spawn_with_data(bin(), &data, &argv);
        let base = server.url.trim_end_matches('/').to_string();
        let reg = Reg {
            server,
            base,
            client: client(),
            args,
            data_dir: data.clone(),
            _keep: vec![dir],
        };
        AuthReg { reg, data, config }
    }

    /// A second server on a copy of this data directory, with its own configuration `toml`.
    pub fn spawn_sibling(&self, toml: &str) -> Server {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.config.with_file_name(format!("sibling-{stamp}.toml"));
        std::fs::write(&path, toml).expect("write sibling config");
        // One `serve` per data directory: the sibling runs on a consistent copy of this store
        // (same users, tokens and signing keys as of now).
        let copy = self.data.with_file_name(format!("sibling-data-{stamp}"));
        let data = self.data.display().to_string();
        let dest = copy.display().to_string();
        run_cli(&["backup", "--data", &data, &dest], "").expect_ok();
        let p = path.display().to_string();
        Server::spawn_with_data(bin(), &copy, &["--config", &p])
    }

    /// Run `stowage ARGS --data DIR` on this server's store.
    pub fn cli(&self, args: &[&str], stdin: &str) -> CliOut {
        let data = self.data.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data", &data]);
        run_cli(&all, stdin)
    }

    /// Run `stowage ARGS --server URL --username USER --server-password-stdin`; stdin is the
    /// caller's password, then `more` (e.g. a new user's password).
    pub fn cli_remote(&self, user: &str, password: &str, args: &[&str], more: &str) -> CliOut {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--server",
            &self.base,
            "--username",
            user,
            "--server-password-stdin",
        ]);
        run_cli(&all, &format!("{password}\n{more}"))
    }

    /// `user add` on the store while the server runs.
    pub fn add_user(&self, name: &str, password: &str, grants: &[&str]) {
        add_user_on_store(&self.data, &user(name, password, grants));
    }

    /// `token create --user USER --scope S... [extra]` on the store, then wait until the
    /// server knows the token (it logs in on `/v2/`); returns (id, secret).
    pub async fn create_token(
        &self,
        user: &str,
        scopes: &[&str],
        extra: &[&str],
    ) -> (String, String) {
        let (id, secret) = self.create_token_on_store(user, scopes, extra);
        let who = Who::basic(user, &secret);
        wait_until(
            "a token created on the store reaches the server",
            || async { self.get_as(&who, "/v2/").await.status == 200 },
        )
        .await;
        (id, secret)
    }

    /// `token create --user USER --scope S... [extra]` on the store; returns (id, secret) at
    /// once (the server learns of it within its reload interval).
    pub fn create_token_on_store(
        &self,
        user: &str,
        scopes: &[&str],
        extra: &[&str],
    ) -> (String, String) {
        let mut args = vec!["token", "create", "--user", user];
        for s in scopes {
            args.push("--scope");
            args.push(s);
        }
        args.extend(extra);
        let out = self.cli(&args, "");
        out.expect_ok();
        let secret = out.last_line();
        let id = token_id_in(&self.cli(&["token", "list", "--user", user], ""), &secret);
        (id, secret)
    }

    /// Send `rb` as `who`.
    pub async fn send_as(&self, who: &Who, rb: reqwest::RequestBuilder) -> Resp {
        self.send(who.apply(rb)).await
    }

    pub async fn get_as(&self, who: &Who, path: &str) -> Resp {
        self.send_as(who, self.req(Method::GET, path)).await
    }

    /// `GET /auth/token?service=stowage&scope=...` (plus `query`, e.g. `offline_token=true`).
    pub async fn token_request(&self, who: &Who, scopes: &[&str], query: &str) -> Resp {
        let mut q = vec!["service=stowage".to_string()];
        q.extend(scopes.iter().map(|s| format!("scope={}", encode_query(s))));
        if !query.is_empty() {
            q.push(query.to_string());
        }
        self.get_as(who, &format!("/auth/token?{}", q.join("&")))
            .await
    }

    /// A JWT for `scopes` (asserts 200).
    pub async fn jwt(&self, who: &Who, scopes: &[&str]) -> String {
        let r = self.token_request(who, scopes, "").await;
        r.expect_status(200);
        r.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in the answer:\n{r}"))
            .to_string()
    }

    /// `POST /auth/token` with a form of `pairs`.
    pub async fn token_post(&self, pairs: &[(&str, &str)]) -> Resp {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            self.req(Method::POST, "/auth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// POST the opening of an upload as `who` (no assertion).
    pub async fn start_upload_as(&self, who: &Who, repo: &str, query: &str) -> Resp {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        self.send_as(
            who,
            self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/{q}"))
                .header("content-length", "0"),
        )
        .await
    }

    /// PATCH `chunk` at `start` to an upload location as `who`.
    pub async fn patch_as(&self, who: &Who, location: &str, start: u64, chunk: &[u8]) -> Resp {
        let end = start + chunk.len() as u64 - 1;
        self.send_as(
            who,
            self.req(Method::PATCH, location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{end}"))
                .body(chunk.to_vec()),
        )
        .await
    }

    /// The closing PUT of an upload as `who`, with `body` as the last chunk.
    pub async fn put_upload_as(
        &self,
        who: &Who,
        location: &str,
        digest: &str,
        body: &[u8],
    ) -> Resp {
        let url = with_query(location, &format!("digest={digest}"));
        self.send_as(
            who,
            self.req(Method::PUT, &url)
                .header("content-type", "application/octet-stream")
                .body(body.to_vec()),
        )
        .await
    }

    /// Push `data` as a blob (POST + PUT) as `who`; the POST's answer when it is not 202,
    /// else the PUT's.
    pub async fn push_blob_as(&self, who: &Who, repo: &str, data: &[u8]) -> Resp {
        let started = self.start_upload_as(who, repo, "").await;
        if started.status != 202 {
            return started;
        }
        self.put_upload_as(who, &started.location(), &sha256_digest(data), data)
            .await
    }

    /// PUT a manifest as `who`.
    pub async fn put_manifest_as(
        &self,
        who: &Who,
        repo: &str,
        reference: &str,
        body: &[u8],
    ) -> Resp {
        self.send_as(
            who,
            self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", OCI_MANIFEST)
                .body(body.to_vec()),
        )
        .await
    }

    /// GET a manifest as `who`.
    pub async fn get_manifest_as(&self, who: &Who, repo: &str, reference: &str) -> Resp {
        self.send_as(
            who,
            self.req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
                .header("accept", super::ACCEPT_ALL),
        )
        .await
    }

    /// Push a config, one layer and a manifest tagged `tag` as `who`, asserting each step, and
    /// pull all three back; returns the image.
    pub async fn push_image_as(&self, who: &Who, repo: &str, tag: &str) -> PushedImage {
        let config = unique_config();
        let layer = random_bytes(700);
        for blob in [&config, &layer] {
            self.push_blob_as(who, repo, blob).await.expect_status(201);
        }
        let manifest = image_manifest(
            &descriptor(OCI_CONFIG, &config),
            &[descriptor(OCI_LAYER, &layer)],
        );
        self.put_manifest_as(who, repo, tag, &manifest)
            .await
            .expect_status(201);
        let img = PushedImage {
            repo: repo.to_string(),
            tag: tag.to_string(),
            manifest_digest: sha256_digest(&manifest),
            layer_digest: sha256_digest(&layer),
            manifest,
            layer,
        };
        self.expect_pull(who, &img).await;
        img
    }

    /// Pull `img` (manifest by tag, then its layer) as `who` and compare the bytes.
    pub async fn expect_pull(&self, who: &Who, img: &PushedImage) {
        let m = self.get_manifest_as(who, &img.repo, &img.tag).await;
        m.expect_status(200);
        assert!(m.body == img.manifest, "manifest differs:\n{m}");
        let b = self
            .get_as(who, &format!("/v2/{}/blobs/{}", img.repo, img.layer_digest))
            .await;
        b.expect_status(200);
        assert!(b.body == img.layer, "layer differs:\n{b}");
    }
}

/// An image pushed by `push_image_as`.
pub struct PushedImage {
    pub repo: String,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

/// The id of the token whose secret is `secret` in a `token list` output: the first
/// tab-separated field of the line whose id the secret embeds (`stw_{id}_...`).
pub fn token_id_in(list: &CliOut, secret: &str) -> String {
    list.expect_ok();
    assert!(
        !list.stdout.contains(secret),
        "token list shows a secret:\n{list}"
    );
    list.stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .find(|id| !id.is_empty() && secret.contains(&format!("_{id}_")))
        .unwrap_or_else(|| panic!("no listed token matches the new secret:\n{list}"))
        .to_string()
}

/// The `WWW-Authenticate` value, asserting there is one.
#[track_caller]
pub fn challenge(r: &Resp) -> String {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate:\n{r}"))
        .to_string()
}

/// Assert a 401 with a Bearer challenge carrying `error="{error}"`.
#[track_caller]
pub fn expect_bearer_error(r: &Resp, error: &str) {
    r.expect_error(401, "UNAUTHORIZED");
    let c = challenge(r);
    assert!(
        c.starts_with("Bearer ") && c.contains(&format!("error=\"{error}\"")),
        "expected a Bearer challenge with error=\"{error}\":\n{r}"
    );
}

/// Assert 403 DENIED.
#[track_caller]
pub fn expect_denied(r: &Resp) {
    r.expect_error(403, "DENIED");
}

/// The decoded payload of a JWT.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT payload part");
    let bytes = stowage_auth::secret::b64url_decode(part).expect("payload is base64url");
    serde_json::from_slice(&bytes).expect("payload is JSON")
}

/// The decoded header of a JWT.
pub fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().expect("JWT header part");
    let bytes = stowage_auth::secret::b64url_decode(part).expect("header is base64url");
    serde_json::from_slice(&bytes).expect("header is JSON")
}

/// The actions a JWT's `access` claim grants on `repo`.
pub fn jwt_actions(token: &str, repo: &str) -> Vec<String> {
    let p = jwt_payload(token);
    let mut out: Vec<String> = p["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "repository" && a["name"] == repo)
        .flat_map(|a| {
            a["actions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// Poll `f` (every 100 ms) until it returns true or `PROPAGATION` passes; panics with `what`.
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + PROPAGATION;
    loop {
        if f().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {PROPAGATION:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
