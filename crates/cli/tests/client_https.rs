//! The `stowage` client commands against an HTTPS registry with authentication (`serve --auth
//! --tls-self-signed`): login, logout, stored and explicit credentials, permission errors, and
//! trust that comes from `--ca-file` alone. Each test has its own server and its own
//! `$DOCKER_CONFIG`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stowage_testkit::client::{StowageCli, add_user, assert_failed_cleanly};
use stowage_testkit::image::{self, ImageSpec, assert_same_image, oci};
use stowage_testkit::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn cli() -> StowageCli {
    StowageCli::new(BIN)
}

/// An HTTPS registry with authentication and users made before it started.
struct Secure {
    server: Server,
    ca: PathBuf,
    _tmp: tempfile::TempDir,
}

const ALICE: (&str, &str) = ("alice", "alice-password-1");
const BOB: (&str, &str) = ("bob", "bob-password-1");

fn secure_server() -> Secure {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_user(BIN, &data, ALICE.0, ALICE.1, &["team/**:pull,push,delete"]);
    add_user(BIN, &data, BOB.0, BOB.1, &["team/**:pull"]);
    let server = Server::spawn_with_data(Path::new(BIN), &data, &["--auth", "--tls-self-signed"]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = server.ca_cert();
    Secure {
        server,
        ca,
        _tmp: tmp,
    }
}

fn creds((u, p): (&str, &str)) -> String {
    format!("{u}:{p}")
}

#[test]
fn https_login_logout_and_stored_credentials() {
    let s = secure_server();
    let c = cli();
    let ca = s.ca.display().to_string();
    let addr = s.server.addr.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-login"),
    );
    let reference = format!("{addr}/team/app:v1");

    // A wrong password: refused, nothing stored.
    let bad = c.run_stdin(
        &[
            "login",
            addr,
            "-u",
            ALICE.0,
            "--password-stdin",
            "--ca-file",
            &ca,
        ],
        "not-the-password\n",
    );
    assert!(
        !bad.success(),
        "{}",
        bad.describe("wrong password accepted")
    );
    assert_ne!(bad.status.code(), Some(0));
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("401") || bad.stderr.to_lowercase().contains("password"),
        "{}",
        bad.stderr
    );
    assert!(
        !c.config_json().exists()
            || !std::fs::read_to_string(c.config_json())
                .unwrap()
                .contains(addr),
        "a failed login stored something"
    );

    let ok = c.run_stdin(
        &[
            "login",
            addr,
            "-u",
            ALICE.0,
            "--password-stdin",
            "--ca-file",
            &ca,
        ],
        &format!("{}\n", ALICE.1),
    );
    let ok = ok.ok();
    assert!(ok.stdout.contains("Login Succeeded"), "{}", ok.stdout);
    let meta = std::fs::metadata(c.config_json()).expect("config.json written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "config.json mode");
    let config: Value = serde_json::from_slice(&std::fs::read(c.config_json()).unwrap()).unwrap();
    let entry = &config["auths"][addr];
    let token = entry["identitytoken"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "an identity token is stored: {config}");
    // docker's form: the user name with an empty password beside the token, never the password.
    let auth = entry["auth"].as_str().unwrap_or_default();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        format!("{}:", ALICE.0),
        "no password is stored: {config}"
    );
    assert!(!token.contains(ALICE.1));

    // Later commands use the stored login.
    assert_eq!(
        c.push_layout(&info, &reference, &["--ca-file", &ca]),
        info.manifest_digest
    );
    let tags = c.ok(&["tags", "--ca-file", &ca, &format!("{addr}/team/app")]);
    assert_eq!(tags.stdout.trim(), "v1");
    let pulled = tmp.path().join("pulled");
    assert_eq!(
        c.ok_line(&["pull", "--ca-file", &ca, &reference, &oci(&pulled, "v1")]),
        info.manifest_digest
    );
    assert_same_image(&info.dir, &pulled, &info.manifest_digest);

    let out = c.ok(&["logout", addr]);
    assert!(out.stdout.contains("Removed"), "{}", out.stdout);
    let config: Value = serde_json::from_slice(&std::fs::read(c.config_json()).unwrap()).unwrap();
    assert!(config["auths"].get(addr).is_none(), "{config}");
    let anon = c.run(&["tags", "--ca-file", &ca, &format!("{addr}/team/app")]);
    assert_failed_cleanly(&anon);
    assert!(anon.stderr.contains("401"), "{}", anon.stderr);
    let again = c.ok(&["logout", addr]);
    assert!(again.stdout.contains("Not logged in"), "{}", again.stdout);
}

#[test]
fn https_explicit_credentials_and_permissions() {
    let s = secure_server();
    let c = cli();
    let ca = s.ca.display().to_string();
    let addr = s.server.addr.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-perm"),
    );
    let other = image::write_oci_layout(
        &tmp.path().join("other"),
        "v1",
        &ImageSpec::new("client-perm-2"),
    );
    let reference = format!("{addr}/team/app:v1");
    let alice = creds(ALICE);
    let bob = creds(BOB);

    // Anonymous push: refused as unauthenticated.
    let anon = c.run(&["push", "--ca-file", &ca, &oci(&info.dir, "v1"), &reference]);
    assert_failed_cleanly(&anon);
    let low = anon.stderr.to_lowercase();
    assert!(
        anon.stderr.contains("401") || low.contains("authentication"),
        "{}",
        anon.describe("should mention 401/authentication")
    );

    // --creds without any login.
    assert_eq!(
        c.push_layout(&info, &reference, &["--ca-file", &ca, "--creds", &alice]),
        info.manifest_digest
    );
    assert!(!c.config_json().exists(), "--creds stores nothing");

    // Pull-only bob: pulls fine, pushes are denied (existing blobs and new ones alike).
    let pulled = tmp.path().join("bob");
    assert_eq!(
        c.ok_line(&[
            "pull",
            "--ca-file",
            &ca,
            "--creds",
            &bob,
            &reference,
            &oci(&pulled, "v1")
        ]),
        info.manifest_digest
    );
    assert_same_image(&info.dir, &pulled, &info.manifest_digest);
    for (layout, tag) in [(&info, "v2"), (&other, "v3")] {
        let out = c.run(&[
            "push",
            "--ca-file",
            &ca,
            "--creds",
            &bob,
            &oci(&layout.dir, "v1"),
            &format!("{addr}/team/app:{tag}"),
        ]);
        assert_failed_cleanly(&out);
        assert!(
            out.stderr.contains("403") || out.stderr.contains("DENIED"),
            "{}",
            out.describe("should mention 403/DENIED")
        );
    }
    // --token: a password given as a token, with the user from --creds.
    let tok = c.ok(&[
        "tags",
        "--ca-file",
        &ca,
        "--creds",
        ALICE.0,
        "--token",
        ALICE.1,
        &format!("{addr}/team/app"),
    ]);
    assert_eq!(tok.stdout.trim(), "v1");
    let wrong = c.run(&[
        "tags",
        "--ca-file",
        &ca,
        "--creds",
        "alice:nope",
        &format!("{addr}/team/app"),
    ]);
    assert_failed_cleanly(&wrong);
}

#[test]
fn https_trust_comes_from_the_ca_file() {
    let s = secure_server();
    let c = cli();
    let ca = s.ca.display().to_string();
    let addr = s.server.addr.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(&tmp.path().join("src"), "v1", &ImageSpec::new("client-ca"));
    let alice = creds(ALICE);
    let reference = format!("{addr}/team/app:v1");
    assert_eq!(
        c.push_layout(&info, &reference, &["--ca-file", &ca, "--creds", &alice]),
        info.manifest_digest
    );
    // --insecure skips verification altogether.
    assert_eq!(
        c.ok_line(&["digest", "--insecure", "--creds", &alice, &reference]),
        info.manifest_digest
    );
    // A CA file that is not a certificate.
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = c.run(&["digest", "--ca-file", junk.to_str().unwrap(), &reference]);
    assert_failed_cleanly(&out);
}

#[test]
fn https_without_trust_fails_with_a_certificate_error() {
    let s = secure_server();
    let c = cli();
    let addr = s.server.addr.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-noca"),
    );
    let out = c.run(&[
        "push",
        "--creds",
        &creds(ALICE),
        &oci(&info.dir, "v1"),
        &format!("{addr}/team/app:v1"),
    ]);
    assert_failed_cleanly(&out);
    let low = out.stderr.to_lowercase();
    assert!(
        low.contains("certificate") || low.contains("unknownissuer"),
        "{}",
        out.describe("should be a certificate error")
    );
    assert!(
        out.stderr.contains("--ca-file FILE") && out.stderr.contains("--insecure"),
        "{}",
        out.describe("should say how to trust the registry")
    );
    let login = c.run_stdin(
        &["login", addr, "-u", ALICE.0, "--password-stdin"],
        &format!("{}\n", ALICE.1),
    );
    assert!(!login.success());
    assert!(
        login.stderr.to_lowercase().contains("certificate"),
        "{}",
        login.stderr
    );
    assert!(login.stderr.contains("--ca-file"), "{}", login.stderr);
}
