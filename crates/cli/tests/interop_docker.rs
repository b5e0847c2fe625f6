//! Interop with the Docker engine: `docker` pushing to and pulling from stowage through a
//! private `dockerd` (20.10, Debian's docker.io; vfs storage, no networking, its own temp dir).
//!
//! Each test starts its own registry and its own daemon (about a second), builds an image with
//! `docker import` of a small root filesystem tarball, and covers one scenario: push then pull
//! back with the image id and the manifest digest kept (and the manifest the registry serves is
//! byte for byte the one docker printed the digest of); pull by digest; `docker manifest
//! inspect`; `docker login`/`logout` with a password and with access tokens on `--auth`, a
//! pull-only token refused on push, anonymous pulls refused after logout except from a public
//! repository; and HTTPS with the development CA in `/etc/docker/certs.d`.
//!
//! HTTPS caveat, pinned by `docker_does_not_verify_loopback_registries`: dockerd counts
//! 127.0.0.0/8 as an insecure registry, always (it appends that range to
//! `--insecure-registry` itself). For such a registry it still tries HTTPS first, but with
//! certificate verification off, and does not even read `certs.d` (only secure registries' CA
//! files are loaded); `localhost` resolves into the same range and behaves the same. So with a
//! loopback registry these tests can show that docker spoke TLS to an HTTPS-only server, not
//! that it verified the certificate. The same holds for the CLI's own `docker manifest inspect`.
//! Verified HTTPS is covered by the skopeo, podman and ctr tests (`interop_auth.rs`).
//!
//! Seen along the way: at login docker asks for an offline token, so it stores stowage's
//! refresh token (`identitytoken`), not the password, and redeems it on each push; and a 403
//! DENIED must carry a detail, or docker retries a refused blob upload for 50 seconds (both are
//! asserted).
//!
//! The plain-HTTP scenarios honour `STOWAGE_INTEROP_TARGET=distribution`; `STOWAGE_DOCKER_CLI`
//! picks another docker CLI (by default the one of dockerd's release). A missing `dockerd` or
//! `docker` fails the tests: CI installs them.

use std::path::{Path, PathBuf};

use base64::Engine;

use stowage_testkit::docker::{CertsD, Docker, write_rootfs_tarball};
use stowage_testkit::image::sha256_digest;
use stowage_testkit::server::Server;
use stowage_testkit::target::Registry;
use stowage_testkit::tools::{ADMIN, DEV, Output, add_admin_and_dev, create_store_token};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A manifest as the registry serves it.
struct Served {
    status: u16,
    content_type: String,
    digest_header: String,
    body: Vec<u8>,
}

impl Served {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("manifest is JSON")
    }
}

/// `GET {base}/v2/{repo}/manifests/{reference}` with every manifest type accepted, as `creds`
/// (Basic) or anonymously, trusting the PEM CA `ca` for HTTPS.
fn fetch_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    creds: Option<(&str, &str)>,
    ca: Option<&Path>,
) -> Served {
    fetch(
        &format!("{base}/v2/{repo}/manifests/{reference}"),
        creds,
        ca,
    )
}

/// `GET url` (manifest types accepted), as `creds` (Basic) or anonymously, trusting the PEM
/// CA `ca` for HTTPS; redirects are followed.
fn fetch(url: &str, creds: Option<(&str, &str)>, ca: Option<&Path>) -> Served {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).expect("CA file");
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM CA"));
        }
        let mut rb = b.build().expect("client").get(url).header("Accept", ACCEPT);
        if let Some((u, p)) = creds {
            rb = rb.basic_auth(u, Some(p));
        }
        let r = rb.send().await.expect("GET");
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (status, content_type, digest_header) = (
            r.status().as_u16(),
            header("content-type"),
            header("docker-content-digest"),
        );
        let body = r.bytes().await.expect("body").to_vec();
        Served {
            status,
            content_type,
            digest_header,
            body,
        }
    })
}

/// Assert the registry serves, for `repo:reference`, exactly the manifest docker pushed: its
/// bytes hash to `digest` (what `docker push` printed), the headers agree, it is a Docker
/// schema 2 manifest whose config is the image `image_id` with one layer.
fn assert_served(served: &Served, digest: &str, image_id: &str) {
    assert_eq!(
        served.status,
        200,
        "{}",
        String::from_utf8_lossy(&served.body)
    );
    assert_eq!(
        sha256_digest(&served.body),
        digest,
        "the served manifest is not the one docker pushed"
    );
    assert_eq!(served.digest_header, digest);
    assert_eq!(served.content_type, DOCKER_MANIFEST);
    let m = served.json();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(
        m["config"]["digest"], image_id,
        "config digest is the image id"
    );
    assert_eq!(m["layers"].as_array().map(Vec::len), Some(1), "{m}");
}

/// `docker import` a fresh root filesystem (with `label` in it) as `reference`; the image id.
fn import_image(docker: &Docker, label: &str, reference: &str) -> String {
    import_image_with(docker, label, reference, 0)
}

/// [`import_image`] with `payload` incompressible bytes in the layer.
fn import_image_with(docker: &Docker, label: &str, reference: &str, payload: usize) -> String {
    let tarball = docker.work_dir().join(format!("{label}.tar"));
    write_rootfs_tarball(&tarball, label, payload);
    docker.import(&tarball, reference)
}

/// Everything a client printed, for matching error words.
fn all_output(out: &Output) -> String {
    format!("{}\n{}", out.stdout, out.stderr).to_lowercase()
}

/// Assert a docker command failed, saying one of `words` (lowercase).
fn assert_refused(out: &Output, words: &[&str], docker: &Docker) {
    let text = all_output(out);
    assert!(
        !out.success() && words.iter().any(|w| text.contains(w)),
        "{}\nexpected a failure saying one of {words:?}\n--- dockerd log (tail) ---\n{}",
        out.describe("docker was not refused as expected"),
        docker.log_tail()
    );
}

/// A stowage server with `--auth` (plus `extra` flags) and its accounts, made on the store
/// before the server starts: `admin`; `dev`, who may pull and push `team/**`; and two tokens
/// of dev's, one scoped `repository:team/**:pull`, one `repository:team/**:pull,push`.
struct AuthEnv {
    server: Server,
    /// The secret of dev's pull-only token.
    pull_token: String,
    /// The secret of dev's pull-and-push token.
    push_token: String,
    _tmp: tempfile::TempDir,
}

impl AuthEnv {
    fn start(extra: &[&str]) -> AuthEnv {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let bin = Path::new(BIN);
        add_admin_and_dev(bin, &data);
        let token = |scope: &str| create_store_token(bin, &data, DEV.0, scope);
        let pull_token = token("repository:team/**:pull");
        let push_token = token("repository:team/**:pull,push");
        let mut args = vec!["--auth"];
        args.extend_from_slice(extra);
        let server = Server::spawn_with_data(Path::new(BIN), &data, &args);
        AuthEnv {
            server,
            pull_token,
            push_token,
            _tmp: tmp,
        }
    }

    fn addr(&self) -> &str {
        &self.server.addr
    }

    /// The manifest served for `repo:reference`, read as the administrator.
    fn served(&self, repo: &str, reference: &str, ca: Option<&Path>) -> Served {
        fetch_manifest(&self.server.url, repo, reference, Some(ADMIN), ca)
    }

    /// Log `user` in with `secret`; panics unless docker says it succeeded and stored it.
    fn login(&self, docker: &Docker, user: &str, secret: &str) {
        let out = docker.try_login(self.addr(), user, secret);
        assert!(
            out.success() && out.stdout.contains("Login Succeeded"),
            "{}\n--- dockerd log (tail) ---\n{}",
            out.describe("docker login failed"),
            docker.log_tail()
        );
        assert!(
            docker.has_login(self.addr()),
            "no credentials for {} in config.json: {}",
            self.addr(),
            docker.cli_config()
        );
    }

    fn logout(&self, docker: &Docker) {
        docker.logout(self.addr());
        assert!(
            !docker.has_login(self.addr()),
            "credentials left after logout: {}",
            docker.cli_config()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------------

#[test]
fn docker_push_then_pull_keeps_image_id_and_digest() {
    let reg = Registry::start(BIN);
    let docker = Docker::start();
    let reference = reg.reference("team/app", "1.0");
    // A layer of several MiB, so the blob upload and download really stream.
    let id = import_image_with(&docker, "push-pull", &reference, 6 << 20);

    let digest = docker.push(&reference);
    let served = fetch_manifest(&reg.url, "team/app", "1.0", None, None);
    assert_served(&served, &digest, &id);
    let by_digest = fetch_manifest(&reg.url, "team/app", &digest, None, None);
    assert_eq!(by_digest.body, served.body, "by tag and by digest differ");
    // The layer docker uploaded (gzip of the 6 MiB tar) is served whole under its digest.
    let layer = &served.json()["layers"][0];
    let layer_digest = layer["digest"].as_str().expect("layer digest").to_string();
    assert!(layer["size"].as_u64().unwrap_or(0) > 6 << 20, "{layer}");
    let blob = fetch(
        &format!("{}/v2/team/app/blobs/{layer_digest}", reg.url),
        None,
        None,
    );
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body.len() as u64, layer["size"].as_u64().unwrap_or(0));
    assert_eq!(sha256_digest(&blob.body), layer_digest);

    // A second repository on the same registry: docker offers the layer for a cross-repository
    // mount from team/app; either way the same manifest must arrive.
    let mirror = reg.reference("team/mirror", "1.0");
    docker.run(&["tag", &reference, &mirror]);
    let out = docker.run(&["push", &mirror]);
    assert_eq!(
        stowage_testkit::docker::pushed_digest(&out.stdout).as_deref(),
        Some(digest.as_str()),
        "{}",
        out.describe("a different digest in team/mirror")
    );
    assert!(
        out.stdout.contains("Mounted from team/app"),
        "{}",
        out.describe("the layer was uploaded again instead of mounted")
    );
    assert_served(
        &fetch_manifest(&reg.url, "team/mirror", "1.0", None, None),
        &digest,
        &id,
    );

    docker.remove_image(&id);
    assert_eq!(docker.pull(&reference), digest);
    assert_eq!(docker.image_id(&reference).as_deref(), Some(id.as_str()));
    let repo_digests = docker.repo_digests(&reference);
    assert!(
        repo_digests.contains(&format!("{}/team/app@{digest}", reg.addr)),
        "RepoDigests: {repo_digests:?}"
    );
}

#[test]
fn docker_pulls_by_digest() {
    let reg = Registry::start(BIN);
    let docker = Docker::start();
    let reference = reg.reference("team/app", "1.0");
    let id = import_image(&docker, "by-digest", &reference);
    let digest = docker.push(&reference);
    docker.remove_image(&id);

    let by_digest = reg.reference("team/app", &digest);
    assert_eq!(docker.pull(&by_digest), digest);
    assert_eq!(docker.image_id(&by_digest).as_deref(), Some(id.as_str()));
    // Pulled by digest only: docker has no tag for it.
    assert!(
        docker.image_id(&reference).is_none(),
        "{reference} is tagged"
    );

    let unknown = reg.reference("team/app", &format!("sha256:{}", "0".repeat(64)));
    let out = docker.try_pull(&unknown);
    assert_refused(&out, &["manifest unknown", "not found"], &docker);
}

#[test]
fn docker_manifest_inspect_shows_what_was_pushed() {
    let reg = Registry::start(BIN);
    let docker = Docker::start();
    let reference = reg.reference("team/app", "1.0");
    let id = import_image(&docker, "manifest-inspect", &reference);
    let digest = docker.push(&reference);
    let served = fetch_manifest(&reg.url, "team/app", "1.0", None, None);
    assert_served(&served, &digest, &id);

    // The CLI talks to the registry itself here; plain HTTP needs --insecure.
    let out = docker.try_manifest_inspect(&reference, true, &[]);
    assert!(out.success(), "{}", out.describe("manifest inspect failed"));
    let shown: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("manifest inspect prints JSON");
    assert_eq!(shown, served.json());

    let out = docker.try_manifest_inspect(&reference, true, &["--verbose"]);
    assert!(
        out.success(),
        "{}",
        out.describe("manifest inspect -v failed")
    );
    let verbose: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("manifest inspect -v prints JSON");
    assert_eq!(
        verbose["Descriptor"]["digest"],
        digest.as_str(),
        "{verbose}"
    );
    assert_eq!(verbose["Descriptor"]["mediaType"], DOCKER_MANIFEST);
    assert_eq!(verbose["Descriptor"]["size"], served.body.len());
    assert_eq!(verbose["SchemaV2Manifest"], served.json());

    let out = docker.try_manifest_inspect(&reg.reference("team/app", &digest), true, &[]);
    assert!(
        out.success(),
        "{}",
        out.describe("inspect by digest failed")
    );
    let by_digest: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(by_digest, served.json());

    let out = docker.try_manifest_inspect(&reg.reference("team/app", "missing"), true, &[]);
    assert_refused(&out, &["no such manifest", "manifest unknown"], &docker);
}

// ---------------------------------------------------------------------------------------------
// Authentication (plain HTTP on loopback)
// ---------------------------------------------------------------------------------------------

#[test]
fn docker_login_with_password_pushes_and_logout_forgets() {
    let env = AuthEnv::start(&[]);
    let docker = Docker::start();
    let out = docker.try_login(env.addr(), DEV.0, "not-the-password");
    assert_refused(&out, &["unauthorized", "incorrect", "denied"], &docker);
    assert!(!docker.has_login(env.addr()), "{}", docker.cli_config());

    let home_config = || {
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
            .and_then(|p| std::fs::read(p).ok())
    };
    let before = home_config();
    env.login(&docker, DEV.0, DEV.1);
    // Stored in the private config.json. At login docker asks the token endpoint for an
    // offline token and stowage hands out a refresh token: docker keeps that (`identitytoken`,
    // with `auth` = base64 `dev:`) instead of the password, and the push below redeems it
    // (`grant_type=refresh_token`).
    let cfg = docker.cli_config();
    let entry = &cfg["auths"][env.addr()];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str().unwrap_or(""))
        .expect("base64");
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        format!("{}:", DEV.0),
        "{cfg}"
    );
    assert!(
        entry["identitytoken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "no identity token: {cfg}"
    );
    assert!(!cfg.to_string().contains(DEV.1), "password on disk: {cfg}");
    assert_eq!(
        home_config(),
        before,
        "docker login touched ~/.docker/config.json"
    );

    let reference = format!("{}/team/app:1.0", env.addr());
    let id = import_image(&docker, "login-password", &reference);
    let digest = docker.push(&reference);
    assert_served(&env.served("team/app", "1.0", None), &digest, &id);

    env.logout(&docker);
    docker.remove_image(&id);
    let out = docker.try_pull(&reference);
    assert_refused(
        &out,
        &["unauthorized", "denied", "authentication required"],
        &docker,
    );
}

#[test]
fn docker_login_with_an_access_token_pushes_and_pulls() {
    let env = AuthEnv::start(&[]);
    let docker = Docker::start();
    env.login(&docker, DEV.0, &env.push_token);
    let reference = format!("{}/team/app:2.0", env.addr());
    let id = import_image(&docker, "login-token", &reference);
    let digest = docker.push(&reference);
    assert_served(&env.served("team/app", "2.0", None), &digest, &id);

    docker.remove_image(&id);
    assert_eq!(docker.pull(&reference), digest);
    assert_eq!(docker.image_id(&reference).as_deref(), Some(id.as_str()));
    env.logout(&docker);
}

#[test]
fn docker_pull_only_token_is_refused_on_push() {
    let env = AuthEnv::start(&[]);
    let docker = Docker::start();
    // The administrator seeds team/app:1.0.
    env.login(&docker, ADMIN.0, ADMIN.1);
    let reference = format!("{}/team/app:1.0", env.addr());
    let id = import_image(&docker, "pull-only", &reference);
    let digest = docker.push(&reference);
    env.logout(&docker);
    docker.remove_image(&id);

    // The pull-only token pulls it...
    env.login(&docker, DEV.0, &env.pull_token);
    assert_eq!(docker.pull(&reference), digest);

    // ...but cannot push, neither the same layer under a new tag nor a new image.
    let retagged = format!("{}/team/app:3.0", env.addr());
    docker.run(&["tag", &reference, &retagged]);
    let out = docker.try_push(&retagged);
    assert_refused(
        &out,
        &["denied", "unauthorized", "authentication required"],
        &docker,
    );
    let fresh = format!("{}/team/fresh:1.0", env.addr());
    import_image(&docker, "pull-only-fresh", &fresh);
    let out = docker.try_push(&fresh);
    assert_refused(
        &out,
        &["denied", "unauthorized", "authentication required"],
        &docker,
    );
    // Refused at once: a denied blob upload must not look retryable to docker (it used to
    // retry four times with back-off, 50 seconds, before giving up).
    assert!(
        !out.stdout.contains("Retrying in"),
        "{}",
        out.describe("docker retried a denied upload")
    );
    env.logout(&docker);

    for (repo, tag) in [("team/app", "3.0"), ("team/fresh", "1.0")] {
        let served = env.served(repo, tag, None);
        assert_eq!(
            served.status,
            404,
            "{repo}:{tag} exists after a refused push: {}",
            String::from_utf8_lossy(&served.body)
        );
    }
    assert_served(&env.served("team/app", "1.0", None), &digest, &id);
}

#[test]
fn docker_pull_after_logout_is_refused_except_from_a_public_repository() {
    let env = AuthEnv::start(&["--public", "library/**"]);
    let docker = Docker::start();
    env.login(&docker, ADMIN.0, ADMIN.1);
    let private = format!("{}/team/app:1.0", env.addr());
    let public = format!("{}/library/base:1.0", env.addr());
    let id = import_image(&docker, "logout", &private);
    docker.run(&["tag", &private, &public]);
    let digest = docker.push(&private);
    assert_eq!(docker.push(&public), digest);
    env.logout(&docker);
    docker.remove_image(&id);

    let out = docker.try_pull(&private);
    assert_refused(
        &out,
        &["unauthorized", "denied", "authentication required"],
        &docker,
    );
    assert!(docker.image_id(&private).is_none());
    // Anonymous pulls of the public repository still work.
    assert_eq!(docker.pull(&public), digest);
    assert_eq!(docker.image_id(&public).as_deref(), Some(id.as_str()));
    // Anonymous pushes do not, even there.
    let out = docker.try_push(&public);
    assert_refused(
        &out,
        &["unauthorized", "denied", "authentication required"],
        &docker,
    );
}

// ---------------------------------------------------------------------------------------------
// HTTPS
// ---------------------------------------------------------------------------------------------

/// The lines of dockerd's debug log naming the endpoint it pushed to or pulled from.
fn endpoint_lines(docker: &Docker, addr: &str) -> Vec<String> {
    docker
        .log()
        .lines()
        .filter(|l| l.contains("Trying to p") && l.contains(addr))
        .map(str::to_string)
        .collect()
}

#[test]
fn docker_pushes_and_pulls_over_https_with_the_ca_in_certs_d() {
    let env = AuthEnv::start(&["--tls-self-signed"]);
    assert!(
        env.server.url.starts_with("https://"),
        "not an HTTPS-only listener: {}",
        env.server.url
    );
    let ca = env.server.ca_cert();
    let _certs = CertsD::install(env.addr(), &ca);
    let docker = Docker::start();

    env.login(&docker, DEV.0, DEV.1);
    let reference = format!("{}/team/app:1.0", env.addr());
    let id = import_image(&docker, "https", &reference);
    let digest = docker.push(&reference);
    // Read back over HTTPS, verified against the development CA.
    assert_served(&env.served("team/app", "1.0", Some(&ca)), &digest, &id);
    docker.remove_image(&id);
    assert_eq!(docker.pull(&reference), digest);
    assert_eq!(docker.image_id(&reference).as_deref(), Some(id.as_str()));

    // The server speaks nothing but TLS, so these succeeded over HTTPS; dockerd's log says so
    // too, and shows it never fell back to plain HTTP.
    let lines = endpoint_lines(&docker, env.addr());
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("https://{}", env.addr()))),
        "no HTTPS endpoint in dockerd's log:\n{}",
        docker.log_tail()
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&format!("http://{}", env.addr()))),
        "dockerd tried plain HTTP:\n{}",
        lines.join("\n")
    );

    // The CLI's own registry client, over HTTPS: no --insecure needed.
    let out = docker.try_manifest_inspect(&reference, false, &[]);
    assert!(out.success(), "{}", out.describe("manifest inspect failed"));
    let shown: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        sha256_digest(&env.served("team/app", "1.0", Some(&ca)).body),
        digest
    );
    assert_eq!(shown["config"]["digest"], id.as_str());
    env.logout(&docker);
}

/// Pins the caveat in the module header: dockerd does not verify an HTTPS registry on a
/// loopback address, whatever `certs.d` holds. If this fails, dockerd started verifying: turn
/// it into a negative check (a wrong CA must be refused) and update the header.
#[test]
fn docker_does_not_verify_loopback_registries() {
    let server = Server::spawn(Path::new(BIN), &["--tls-self-signed"]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    // A CA that did not sign the server's certificate: another server's development CA.
    let other = Server::spawn(Path::new(BIN), &["--tls-self-signed"]);
    let wrong_ca = std::fs::read_to_string(other.ca_cert()).expect("other CA");
    drop(other);
    let _certs = CertsD::install_pem(&server.addr, &wrong_ca);
    let docker = Docker::start();

    let reference = format!("{}/team/app:1.0", server.addr);
    let id = import_image(&docker, "unverified", &reference);
    let out = docker.try_push(&reference);
    assert!(
        out.success(),
        "{}\ndockerd now refuses a wrong CA for a loopback registry: update the caveat\n{}",
        out.describe("push with a wrong CA in certs.d"),
        docker.log_tail()
    );
    let digest = stowage_testkit::docker::pushed_digest(&out.stdout).expect("digest");
    // The CLI's own registry client (no --insecure) does not verify either.
    let out = docker.try_manifest_inspect(&reference, false, &[]);
    assert!(
        out.success(),
        "{}\nthe docker CLI now refuses a wrong CA for a loopback registry: update the caveat",
        out.describe("manifest inspect with a wrong CA in certs.d")
    );
    assert_served(
        &fetch_manifest(
            &server.url,
            "team/app",
            "1.0",
            None,
            Some(&server.ca_cert()),
        ),
        &digest,
        &id,
    );

    // `localhost` resolves into 127.0.0.0/8: no certs.d at all, still no verification.
    let port = server.addr.rsplit_once(':').expect("port").1;
    let by_name = format!("localhost:{port}/team/app:2.0");
    docker.run(&["tag", &reference, &by_name]);
    let out = docker.try_push(&by_name);
    assert!(
        out.success(),
        "{}\ndockerd now verifies `localhost` registries: update the caveat\n{}",
        out.describe("push to localhost without a CA"),
        docker.log_tail()
    );
    let lines = endpoint_lines(&docker, &format!("localhost:{port}"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("https://localhost:{port}"))),
        "no HTTPS endpoint for localhost in dockerd's log:\n{}",
        docker.log_tail()
    );
}
