//! The `stowage` client against other implementations: CNCF distribution with htpasswd Basic
//! auth (login stores base64 credentials, push/pull/copy keep digests, tag listing, deletes,
//! refused passwords); OCI layouts written by `stowage pull` read by skopeo and unpacked by
//! umoci, and layouts written by skopeo pushed by `stowage push` with their digests; and
//! credentials shared both ways with skopeo through containers auth files and docker's
//! config.json over verified HTTPS. Every process gets its own credential files; nothing
//! leaves 127.0.0.1. A missing skopeo, umoci or docker-registry fails the tests: CI installs
//! them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use serde_json::Value;
use stowage_testkit::client::{StowageCli, add_user, last_line, run_cmd};
use stowage_testkit::distribution::Distribution;
use stowage_testkit::image::{self, ImageSpec, LayoutInfo, assert_same_image, layout_blob, oci};
use stowage_testkit::server::Server;
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::tls::Trust;
use stowage_testkit::tools::{Output, htpasswd_line, require_tool, run, try_run};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn sorted_lines(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

const ALICE: (&str, &str) = ("alice", "alice-password-1");

#[test]
fn distribution_with_basic_auth_round_trips() {
    let reg = Distribution::spawn_with_htpasswd(&htpasswd_line(ALICE.0, ALICE.1));
    let addr = reg.addr.as_str();
    let c = StowageCli::new(BIN);
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("interop-basic").with_layers(2),
    );

    // A wrong password: refused, nothing stored.
    let bad = c.run_stdin(
        &["login", addr, "-u", ALICE.0, "--password-stdin"],
        "wrong-password\n",
    );
    assert!(
        !bad.success(),
        "{}",
        bad.describe("wrong password accepted")
    );
    assert!(!bad.stderr.contains("panicked"), "{}", bad.stderr);
    assert!(bad.stderr.contains("401"), "{}", bad.stderr);
    assert!(!c.config_json().exists(), "a failed login stored something");

    // Distribution has no token server: login stores base64 user:password.
    let ok = c
        .run_stdin(
            &["login", addr, "-u", ALICE.0, "--password-stdin"],
            &format!("{}\n", ALICE.1),
        )
        .ok();
    assert!(ok.stdout.contains("Login Succeeded"), "{}", ok.stdout);
    let config = read_json(&c.config_json());
    assert_eq!(
        config["auths"][addr]["auth"],
        b64(&format!("{}:{}", ALICE.0, ALICE.1)).as_str(),
        "{config}"
    );
    assert!(config["auths"][addr].get("identitytoken").is_none());
    let mode = std::fs::metadata(c.config_json())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Anonymous clients are refused.
    let anon = StowageCli::new(BIN).run(&[
        "push",
        &oci(&info.dir, "v1"),
        &format!("{addr}/team/app:v1"),
    ]);
    assert!(!anon.success());
    assert!(anon.stderr.contains("401"), "{}", anon.stderr);
    let wrong = c.run(&["tags", "--creds", "alice:nope", &format!("{addr}/team/app")]);
    assert!(!wrong.success());
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);

    // push / tags / pull with the stored login.
    let reference = format!("{addr}/team/app:v1");
    assert_eq!(c.push_layout(&info, &reference, &[]), info.manifest_digest);
    assert_eq!(c.ok_line(&["digest", &reference]), info.manifest_digest);
    assert_eq!(
        sorted_lines(&c.ok(&["tags", &format!("{addr}/team/app")])),
        ["v1"]
    );
    let raw = c.cmd(&["inspect", "--raw", &reference]).output().unwrap();
    assert_eq!(raw.stdout, layout_blob(&info.dir, &info.manifest_digest));
    let pulled = tmp.path().join("pulled");
    assert_eq!(
        c.ok_line(&["pull", &reference, &oci(&pulled, "v1")]),
        info.manifest_digest
    );
    assert_same_image(&info.dir, &pulled, &info.manifest_digest);

    // copy between repositories: distribution mounts the blobs.
    let copied = format!("{addr}/other/app:v2");
    let out = c.ok(&["copy", &reference, &copied]);
    assert_eq!(last_line(&out), info.manifest_digest);
    assert_eq!(out.stderr.matches("mounted").count(), 3, "{}", out.stderr);
    assert_eq!(c.ok_line(&["digest", &copied]), info.manifest_digest);

    // A multi-arch index keeps its digest; one platform can be pulled.
    let multi =
        image::write_multi_arch_layout(&tmp.path().join("multi"), "m1", "interop-basic-multi");
    let index_digest = multi.index_digest.clone().unwrap();
    let multi_ref = format!("{addr}/team/multi:m1");
    assert_eq!(c.push_layout(&multi, &multi_ref, &[]), index_digest);
    let multi_copy = format!("{addr}/other/multi:m1");
    assert_eq!(c.ok_line(&["copy", &multi_ref, &multi_copy]), index_digest);
    let arm = tmp.path().join("arm");
    assert_eq!(
        c.ok_line(&[
            "pull",
            "--platform",
            "linux/arm64",
            &multi_copy,
            &oci(&arm, "v1")
        ]),
        multi.manifest_digests[1]
    );
    assert_same_image(&multi.dir, &arm, &multi.manifest_digests[1]);

    // Distribution cannot delete a tag alone: the error says what to do instead.
    let tag_delete = c.run(&["delete", &copied]);
    assert!(!tag_delete.success());
    assert!(
        tag_delete.stderr.contains("--manifest"),
        "{}",
        tag_delete.describe("should point at --manifest")
    );
    let by_digest = format!("{addr}/other/app@{}", info.manifest_digest);
    let del = c.ok(&["delete", "--manifest", &by_digest]);
    assert!(del.stderr.contains("v2"), "{}", del.stderr);
    assert!(!c.run(&["digest", &by_digest]).success());

    // logout forgets the password.
    c.ok(&["logout", addr]);
    assert!(read_json(&c.config_json())["auths"].get(addr).is_none());
    assert!(!c.run(&["tags", &format!("{addr}/team/app")]).success());
}

#[test]
fn skopeo_and_umoci_read_a_layout_pulled_by_stowage() {
    let umoci = require_tool("umoci");
    let server = Server::spawn(Path::new(BIN), &[]);
    let addr = server.addr.as_str();
    let c = StowageCli::new(BIN);
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new("interop-layout")
        .with_layers(3)
        .with_payload(200_000);
    let info = image::write_oci_layout(&tmp.path().join("src"), "v1", &spec);
    let reference = format!("{addr}/team/app:v1");
    c.push_layout(&info, &reference, &[]);

    let pulled = tmp.path().join("pulled");
    assert_eq!(
        c.ok_line(&["pull", &reference, &oci(&pulled, "v1")]),
        info.manifest_digest
    );

    // skopeo reads it and copies it to a registry with the digest unchanged.
    let inspected = sk.inspect(&oci(&pulled, "v1"));
    assert_eq!(inspected["Digest"], info.manifest_digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
    sk.copy(
        &oci(&pulled, "v1"),
        &format!("docker://{addr}/other/app:v1"),
        &[],
    );
    assert_eq!(
        c.ok_line(&["digest", &format!("{addr}/other/app:v1")]),
        info.manifest_digest
    );

    // umoci validates and unpacks it.
    let bundle = tmp.path().join("bundle");
    run(std::process::Command::new(&umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", pulled.display()))
        .arg(&bundle));
    image::assert_rootfs(&bundle.join("rootfs"), &spec);

    // A multi-platform pull keeps the index, which skopeo serves byte-exact.
    let multi =
        image::write_multi_arch_layout(&tmp.path().join("multi"), "m1", "interop-layout-multi");
    let multi_ref = format!("{addr}/team/multi:m1");
    c.push_layout(&multi, &multi_ref, &[]);
    let all = tmp.path().join("all");
    c.ok(&["pull", "--all-platforms", &multi_ref, &oci(&all, "m1")]);
    let raw = run(sk.cmd().args(["inspect", "--raw", &oci(&all, "m1")]));
    assert_eq!(
        raw.stdout.as_bytes(),
        layout_blob(&multi.dir, multi.index_digest.as_deref().unwrap())
    );
    sk.copy(
        &oci(&all, "m1"),
        &format!("docker://{addr}/other/multi:m1"),
        &["--all"],
    );
    assert_eq!(
        c.ok_line(&["digest", &format!("{addr}/other/multi:m1")]),
        multi.index_digest.clone().unwrap()
    );
}

#[test]
fn stowage_pushes_layouts_written_by_skopeo() {
    let server = Server::spawn(Path::new(BIN), &[]);
    let addr = server.addr.as_str();
    let c = StowageCli::new(BIN);
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("interop-skopeo-layout").with_layers(2),
    );
    c.push_layout(&info, &format!("{addr}/team/app:v1"), &[]);

    let written = tmp.path().join("by-skopeo");
    sk.copy(
        &format!("docker://{addr}/team/app:v1"),
        &oci(&written, "v1"),
        &[],
    );
    let again = format!("{addr}/team/again:v1");
    assert_eq!(
        c.ok_line(&["push", &oci(&written, "v1"), &again]),
        info.manifest_digest
    );
    assert_eq!(c.ok_line(&["digest", &again]), info.manifest_digest);
    // Also read back by stowage as a layout.
    let j: Value =
        serde_json::from_str(&c.ok(&["inspect", "--json", &oci(&written, "v1")]).stdout).unwrap();
    assert_eq!(j["digest"], info.manifest_digest.as_str());

    // A multi-arch index written by `skopeo copy --all`.
    let multi =
        image::write_multi_arch_layout(&tmp.path().join("multi"), "m1", "interop-skopeo-multi");
    let index_digest = multi.index_digest.clone().unwrap();
    c.push_layout(&multi, &format!("{addr}/team/multi:m1"), &[]);
    let written_multi = tmp.path().join("by-skopeo-multi");
    sk.copy(
        &format!("docker://{addr}/team/multi:m1"),
        &oci(&written_multi, "m1"),
        &["--all"],
    );
    assert_eq!(
        c.ok_line(&[
            "push",
            &oci(&written_multi, "m1"),
            &format!("{addr}/team/multi-again:m1")
        ]),
        index_digest
    );
}

/// An HTTPS stowage with authentication, alice able to pull and push `team/**`, and one image.
struct Secure {
    server: Server,
    ca: std::path::PathBuf,
    trust: Trust,
    info: LayoutInfo,
    _tmp: tempfile::TempDir,
}

fn secure_server() -> Secure {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_user(BIN, &data, ALICE.0, ALICE.1, &["team/**:pull,push"]);
    let server = Server::spawn_with_data(Path::new(BIN), &data, &["--auth", "--tls-self-signed"]);
    let ca = server.ca_cert();
    let trust = Trust::ca(&server.addr, &ca);
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("interop-creds"),
    );
    let c = StowageCli::new(BIN);
    c.push_layout(
        &info,
        &format!("{}/team/app:v1", server.addr),
        &[
            "--ca-file",
            ca.to_str().unwrap(),
            "--creds",
            &format!("{}:{}", ALICE.0, ALICE.1),
        ],
    );
    Secure {
        server,
        ca,
        trust,
        info,
        _tmp: tmp,
    }
}

#[test]
fn credentials_are_shared_with_skopeo() {
    let s = secure_server();
    let addr = s.server.addr.as_str();
    let ca = s.ca.to_str().unwrap();
    let cert_dir = s.trust.cert_dir().display().to_string();
    let sk = Skopeo::new();
    let c = StowageCli::new(BIN);
    let docker_ref = format!("docker://{addr}/team/app:v1");

    // stowage login --authfile F, then skopeo uses F.
    let f = c.path("stowage-auth.json");
    let f_str = f.to_str().unwrap();
    let out = c
        .run_stdin(
            &[
                "login",
                addr,
                "-u",
                ALICE.0,
                "--password-stdin",
                "--ca-file",
                ca,
                "--authfile",
                f_str,
            ],
            &format!("{}\n", ALICE.1),
        )
        .ok();
    assert!(out.stdout.contains(f_str), "{}", out.stdout);
    let auth = read_json(&f);
    assert_eq!(
        auth["auths"][addr]["auth"],
        b64(&format!("{}:{}", ALICE.0, ALICE.1)).as_str(),
        "an auth file gets the password, as podman stores it: {auth}"
    );
    assert!(!c.config_json().exists(), "docker's config is left alone");
    let inspected = run(sk.cmd().args([
        "inspect",
        "--authfile",
        f_str,
        "--tls-verify=true",
        "--cert-dir",
        &cert_dir,
        &docker_ref,
    ]));
    let v: Value = serde_json::from_str(&inspected.stdout).unwrap();
    assert_eq!(v["Digest"], s.info.manifest_digest.as_str());
    // Without the file skopeo is refused, so the file is what made it work.
    let anon = try_run(sk.cmd().args([
        "inspect",
        "--tls-verify=true",
        "--cert-dir",
        &cert_dir,
        &docker_ref,
    ]));
    assert!(
        !anon.success(),
        "{}",
        anon.describe("anonymous inspect worked")
    );

    // skopeo login --authfile F2, then stowage uses F2 (flag and $REGISTRY_AUTH_FILE).
    let f2 = c.path("skopeo-auth.json");
    let f2_str = f2.to_str().unwrap();
    run_cmd(
        sk.cmd().args([
            "login",
            "--authfile",
            f2_str,
            "--tls-verify=true",
            "--cert-dir",
            &cert_dir,
            "-u",
            ALICE.0,
            "--password-stdin",
            addr,
        ]),
        Some(&format!("{}\n", ALICE.1)),
    )
    .ok();
    let tags = c.ok(&[
        "tags",
        "--authfile",
        f2_str,
        "--ca-file",
        ca,
        &format!("{addr}/team/app"),
    ]);
    assert_eq!(sorted_lines(&tags), ["v1"]);
    let env_tags = run_cmd(
        c.cmd(&["tags", "--ca-file", ca, &format!("{addr}/team/app")])
            .env("REGISTRY_AUTH_FILE", &f2),
        None,
    )
    .ok();
    assert_eq!(sorted_lines(&env_tags), ["v1"]);
    let pushed = c.ok_line(&[
        "push",
        "--authfile",
        f2_str,
        "--ca-file",
        ca,
        &oci(&s.info.dir, "v1"),
        &format!("{addr}/team/by-skopeo-login:v1"),
    ]);
    assert_eq!(pushed, s.info.manifest_digest);
    assert!(
        !c.run(&["tags", "--ca-file", ca, &format!("{addr}/team/app")])
            .success()
    );
}

#[test]
fn skopeo_uses_the_identity_token_stowage_login_stores() {
    let s = secure_server();
    let addr = s.server.addr.as_str();
    let ca = s.ca.to_str().unwrap();
    let cert_dir = s.trust.cert_dir().display().to_string();
    let sk = Skopeo::new();
    let c = StowageCli::new(BIN);
    c.run_stdin(
        &[
            "login",
            addr,
            "-u",
            ALICE.0,
            "--password-stdin",
            "--ca-file",
            ca,
        ],
        &format!("{}\n", ALICE.1),
    )
    .ok();
    let config = read_json(&c.config_json());
    assert!(
        config["auths"][addr]["identitytoken"].is_string(),
        "{config}"
    );
    // containers/image reads $DOCKER_CONFIG/config.json after its own (empty) auth file, and
    // trades an identity token for access tokens with an OAuth2 POST.
    let out = run(sk.cmd().env("DOCKER_CONFIG", c.docker_config_dir()).args([
        "inspect",
        "--tls-verify=true",
        "--cert-dir",
        &cert_dir,
        &format!("docker://{addr}/team/app:v1"),
    ]));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["Digest"], s.info.manifest_digest.as_str());
}
