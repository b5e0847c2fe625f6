//! The `stowage` client commands end to end against a real `stowage serve`: push, pull, copy,
//! inspect, tags, digest and delete over plain HTTP; login, logout, stored and explicit
//! credentials, CA trust and permission errors over HTTPS with authentication; clear errors
//! for invalid references; and resuming an interrupted blob download (cut for real by a
//! loopback relay, or left as a partial file) without ever publishing a corrupt blob. Images
//! are the testkit's real OCI layouts; every digest is checked against what the layout holds
//! and what the registry serves. Each test has its own server and its own `$DOCKER_CONFIG`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use stowage_testkit::client::{StowageCli, TapProxy, add_user, last_line, run_cmd};
use stowage_testkit::image::{self, ImageSpec, LayoutInfo, OCI_MANIFEST, REF_NAME, sha256_digest};
use stowage_testkit::server::Server;
use stowage_testkit::tools::Output;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn cli() -> StowageCli {
    StowageCli::new(BIN)
}

fn plain_server() -> Server {
    Server::spawn(Path::new(BIN), &[])
}

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    let p = image::layout_blob_path(dir, digest);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `index.json` entry for `tag` in the layout at `dir`.
fn index_entry(dir: &Path, tag: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"))
        .clone()
}

/// Digests of the config and layers a manifest references.
fn manifest_blob_digests(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).unwrap();
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_string()];
    for l in v["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

/// Every blob of the image `manifest_digest` is in `dst`, byte-identical to `src`'s.
#[track_caller]
fn assert_same_image(src: &Path, dst: &Path, manifest_digest: &str) {
    let manifest = blob(src, manifest_digest);
    assert_eq!(blob(dst, manifest_digest), manifest, "manifest differs");
    for d in manifest_blob_digests(&manifest) {
        let got = blob(dst, &d);
        assert_eq!(sha256_digest(&got), d, "blob {d} in {}", dst.display());
        assert_eq!(got, blob(src, &d), "blob {d}");
    }
}

/// Files in the layout's blob directory (names only, hidden partial files included).
fn blob_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[track_caller]
fn assert_failed_cleanly(out: &Output) {
    assert_failed_with(out, 1);
}

/// Invalid usage (docs/CLI.md): exit status 2, with a clean `error:` line.
#[track_caller]
fn assert_usage_error(out: &Output) {
    assert_failed_with(out, 2);
}

#[track_caller]
fn assert_failed_with(out: &Output, code: i32) {
    assert!(!out.success(), "{}", out.describe("unexpectedly succeeded"));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        out.describe("exit code")
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{}",
        out.describe("panicked")
    );
    assert!(
        out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: "),
        "{}",
        out.describe("no `error:` line")
    );
}

/// Push the layout's tag to `reference`; returns the printed digest.
fn push(c: &StowageCli, info: &LayoutInfo, reference: &str, extra: &[&str]) -> String {
    let src = oci(&info.dir, &info.tag);
    let mut args = vec!["push", src.as_str(), reference];
    args.extend_from_slice(extra);
    c.ok_line(&args)
}

#[test]
fn push_inspect_pull_round_trip_over_plain_http() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("client-cli").with_layers(2));
    let manifest_bytes = blob(&src, &info.manifest_digest);
    let reference = format!("{}/team/app:v1", server.addr);

    let pushed = push(&c, &info, &reference, &[]);
    assert_eq!(
        pushed, info.manifest_digest,
        "push prints the manifest digest"
    );
    assert_eq!(c.ok_line(&["digest", &reference]), info.manifest_digest);

    // What the registry itself serves.
    let raw = stowage_testkit::wire::get_blocking(
        &server.addr,
        "/v2/team/app/manifests/v1",
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, manifest_bytes);
    assert_eq!(
        raw.header("Docker-Content-Digest"),
        Some(info.manifest_digest.as_str())
    );

    let tags = c.ok(&["tags", &format!("{}/team/app", server.addr)]);
    assert_eq!(tags.stdout.lines().collect::<Vec<_>>(), ["v1"]);

    // inspect: platform, layers, environment of the config.
    let text = c.ok(&["inspect", &reference]).stdout;
    assert!(text.contains(&info.manifest_digest), "{text}");
    assert!(text.contains("linux/amd64"), "{text}");
    assert!(text.contains("STOWAGE_TESTKIT_SEED=client-cli"), "{text}");
    assert!(text.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{text}");
    for d in &manifest_blob_digests(&manifest_bytes)[1..] {
        assert!(text.contains(d.as_str()), "layer {d} missing:\n{text}");
    }
    assert!(text.contains("layers:     2"), "{text}");

    let raw_out = c
        .cmd(&["inspect", "--raw", &reference])
        .output()
        .expect("inspect --raw");
    assert!(raw_out.status.success());
    assert_eq!(
        raw_out.stdout, manifest_bytes,
        "--raw is the manifest, exactly"
    );

    let json: Value = serde_json::from_str(&c.ok(&["inspect", "--json", &reference]).stdout)
        .expect("inspect --json is JSON");
    assert_eq!(json["digest"], info.manifest_digest.as_str());
    assert_eq!(json["mediaType"], OCI_MANIFEST);
    assert_eq!(json["config"]["architecture"], "amd64");
    assert_eq!(json["config"]["os"], "linux");
    assert_eq!(
        json["config"]["config"]["Env"][1],
        "STOWAGE_TESTKIT_SEED=client-cli"
    );
    assert_eq!(json["manifest"]["layers"].as_array().unwrap().len(), 2);

    // pull into a new layout: the same blobs and the same index entry.
    let out = tmp.path().join("pulled");
    let pulled = c.ok_line(&["pull", &reference, &oci(&out, "v1")]);
    assert_eq!(pulled, info.manifest_digest);
    assert_same_image(&src, &out, &info.manifest_digest);
    let (want, got) = (index_entry(&src, "v1"), index_entry(&out, "v1"));
    for k in ["digest", "mediaType", "size"] {
        assert_eq!(got[k], want[k], "index.json {k}");
    }
    assert!(
        !blob_files(&out).iter().any(|f| f.starts_with('.')),
        "temporary files left: {:?}",
        blob_files(&out)
    );

    // The default destination is ./NAME, tagged as the reference.
    let cwd = tmp.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = run_cmd(c.cmd(&["pull", "-q", &reference]).current_dir(&cwd), None).ok();
    assert_eq!(last_line(&o), info.manifest_digest);
    assert!(o.stderr.is_empty(), "--quiet: {}", o.stderr);
    assert_eq!(
        image::layout_ref_digest(&cwd.join("app"), "v1").as_deref(),
        Some(info.manifest_digest.as_str())
    );
}

#[test]
fn copy_between_repositories_mounts_blobs_and_keeps_digests() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-copy").with_layers(3),
    );
    let from = format!("{}/team/app:v1", server.addr);
    push(&c, &info, &from, &[]);

    let to = format!("{}/other/app:copied", server.addr);
    let out = c.ok(&["copy", &from, &to]);
    assert_eq!(last_line(&out), info.manifest_digest);
    let mounted = out.stderr.matches("mounted").count();
    assert_eq!(
        mounted, 4,
        "config and 3 layers are mounted:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("copied ("), "{}", out.stderr);
    assert_eq!(c.ok_line(&["digest", &to]), info.manifest_digest);

    // Copying again finds everything there.
    let again = c.ok(&["copy", &from, &to]);
    assert_eq!(last_line(&again), info.manifest_digest);
    assert_eq!(
        again.stderr.matches("exists").count(),
        4,
        "{}",
        again.stderr
    );

    // A multi-arch index keeps its digest through push and copy.
    let multi = image::write_multi_arch_layout(&tmp.path().join("multi"), "m1", "client-multi");
    let index_digest = multi.index_digest.clone().unwrap();
    let multi_ref = format!("{}/team/multi:m1", server.addr);
    assert_eq!(push(&c, &multi, &multi_ref, &[]), index_digest);
    let copied_ref = format!("{}/other/multi:m1", server.addr);
    assert_eq!(c.ok_line(&["copy", &multi_ref, &copied_ref]), index_digest);
    assert_eq!(c.ok_line(&["digest", &copied_ref]), index_digest);
    for (d, arch) in multi.manifest_digests.iter().zip(["amd64", "arm64"]) {
        let by_digest = format!("{}/other/multi@{d}", server.addr);
        let j: Value =
            serde_json::from_str(&c.ok(&["inspect", "--json", &by_digest]).stdout).unwrap();
        assert_eq!(j["config"]["architecture"], arch);
    }
}

#[test]
fn multi_arch_pulls_pick_a_platform_or_keep_the_index() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let multi = image::write_multi_arch_layout(&tmp.path().join("src"), "v1", "client-platforms");
    let reference = format!("{}/team/multi:v1", server.addr);
    push(&c, &multi, &reference, &[]);

    let listing = c.ok(&["inspect", &reference]).stdout;
    assert!(
        listing.contains("linux/amd64") && listing.contains("linux/arm64"),
        "{listing}"
    );
    let json: Value =
        serde_json::from_str(&c.ok(&["inspect", "--json", &reference]).stdout).unwrap();
    assert_eq!(json["digest"], multi.index_digest.as_deref().unwrap());
    let arm: Value = serde_json::from_str(
        &c.ok(&["inspect", "--json", "--platform", "linux/arm64", &reference])
            .stdout,
    )
    .unwrap();
    assert_eq!(arm["digest"], multi.manifest_digests[1].as_str());

    // One platform: only that image lands in the layout, tagged directly.
    let arm_dir = tmp.path().join("arm");
    let got = c.ok_line(&[
        "pull",
        "--platform",
        "linux/arm64",
        &reference,
        &oci(&arm_dir, "v1"),
    ]);
    assert_eq!(got, multi.manifest_digests[1]);
    assert_eq!(
        image::layout_ref_digest(&arm_dir, "v1").as_deref(),
        Some(multi.manifest_digests[1].as_str())
    );
    assert_same_image(&multi.dir, &arm_dir, &multi.manifest_digests[1]);
    let amd_blobs = manifest_blob_digests(&blob(&multi.dir, &multi.manifest_digests[0]));
    for d in amd_blobs.iter().chain([&multi.manifest_digests[0]]) {
        assert!(
            !image::layout_blob_path(&arm_dir, d).exists(),
            "the amd64 image's {d} was pulled too"
        );
    }
    assert!(
        !image::layout_blob_path(&arm_dir, multi.index_digest.as_deref().unwrap()).exists(),
        "the index itself is not kept for one platform"
    );

    // A platform the index lacks: a clear error that lists what it has.
    let none = c.run(&[
        "pull",
        "--platform",
        "linux/s390x",
        &reference,
        &oci(&tmp.path().join("none"), "v1"),
    ]);
    assert_failed_cleanly(&none);
    assert!(
        none.stderr.contains("linux/s390x")
            && none.stderr.contains("linux/amd64")
            && none.stderr.contains("linux/arm64"),
        "{}",
        none.describe("the error should list the available platforms")
    );
    let bad = c.run(&["pull", "--platform", "linux", &reference]);
    assert_usage_error(&bad);
    assert!(bad.stderr.contains("os/arch"), "{}", bad.stderr);

    // Every platform: the index keeps its digest.
    let all_dir = tmp.path().join("all");
    let got = c.ok_line(&["pull", "--all-platforms", &reference, &oci(&all_dir, "v1")]);
    assert_eq!(got, multi.index_digest.clone().unwrap());
    for d in &multi.manifest_digests {
        assert_same_image(&multi.dir, &all_dir, d);
    }
}

#[test]
fn delete_a_tag_then_the_manifest() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-delete"),
    );
    let repo = format!("{}/team/app", server.addr);
    push(&c, &info, &format!("{repo}:v1"), &[]);
    push(&c, &info, &format!("{repo}:v2"), &[]);
    push(&c, &info, &format!("{repo}:v3"), &[]);
    let tags = |c: &StowageCli| -> Vec<String> {
        let mut t: Vec<String> = c
            .ok(&["tags", &repo])
            .stdout
            .lines()
            .map(str::to_string)
            .collect();
        t.sort();
        t
    };
    assert_eq!(tags(&c), ["v1", "v2", "v3"]);

    c.ok(&["delete", &format!("{repo}:v1")]);
    assert_eq!(tags(&c), ["v2", "v3"]);
    let by_digest = format!("{repo}@{}", info.manifest_digest);
    assert_eq!(
        c.ok_line(&["digest", &by_digest]),
        info.manifest_digest,
        "deleting a tag leaves the manifest"
    );
    let gone = c.run(&["digest", &format!("{repo}:v1")]);
    assert_failed_cleanly(&gone);

    // Without a tag, `delete` refuses and points at --manifest.
    let no_tag = c.run(&["delete", &by_digest]);
    assert_usage_error(&no_tag);
    assert!(no_tag.stderr.contains("--manifest"), "{}", no_tag.stderr);

    let out = c.ok(&["delete", "--manifest", &by_digest]);
    assert!(
        out.stderr.contains("v2") && out.stderr.contains("v3"),
        "{}",
        out.describe("the tags going with the manifest are listed")
    );
    assert!(out.stdout.contains(&info.manifest_digest), "{}", out.stdout);
    assert_failed_cleanly(&c.run(&["digest", &by_digest]));
    assert!(tags(&c).is_empty());
}

#[test]
fn tags_follows_every_page() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("stowage.toml");
    std::fs::write(&config, "[listing]\npage_size = 2\n").unwrap();
    let server = Server::spawn(Path::new(BIN), &["--config", config.to_str().unwrap()]);
    let c = cli();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-pages"),
    );
    let mut want: Vec<String> = (1..=7).map(|i| format!("t{i}")).collect();
    for t in &want {
        push(&c, &info, &format!("{}/team/app:{t}", server.addr), &["-q"]);
    }
    // The registry does page: a request without `n` gets 2 tags and a Link.
    let first =
        stowage_testkit::wire::get_blocking(&server.addr, "/v2/team/app/tags/list", &[]).unwrap();
    assert_eq!(first.json()["tags"].as_array().unwrap().len(), 2);
    assert!(first.header("Link").is_some());
    let mut got: Vec<String> = c
        .ok(&["tags", &format!("{}/team/app", server.addr)])
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn invalid_references_are_refused_clearly() {
    let c = cli();
    let target = c.path("unpack-target").display().to_string();
    let out = c.run(&["pull", "Ubuntu"]);
    assert_usage_error(&out);
    assert!(out.stderr.contains("lowercase"), "{}", out.stderr);
    assert!(
        out.stderr.contains("\"Ubuntu\""),
        "names the reference: {}",
        out.stderr
    );

    for (args, says) in [
        (vec!["pull", "127.0.0.1:1/Team/app:v1"], "lowercase"),
        (vec!["pull", "127.0.0.1:1/team/app:bad!tag"], "tags are"),
        (vec!["pull", "127.0.0.1:1/team/app@sha256:abc"], "digest"),
        (vec!["pull", "127.0.0.1:1/team//app"], "repository name"),
        (vec!["tags", ""], "empty"),
        (vec!["digest", "127.0.0.1:1/A"], "lowercase"),
        (vec!["delete", "127.0.0.1:1/A:v1"], "lowercase"),
        (vec!["inspect", "127.0.0.1:1/-app"], "repository name"),
        (vec!["unpack", "127.0.0.1:1/A:v1", &target], "lowercase"),
        (
            vec!["push", "oci:/nonexistent-layout:v1", "127.0.0.1:1/UP"],
            "lowercase",
        ),
        (vec!["copy", "oci:", "127.0.0.1:1/a"], "needs a directory"),
        (vec!["copy", "dir:/x", "127.0.0.1:1/a"], "not supported"),
        // Other usage errors: flag values and argument combinations.
        (
            vec!["pull", "--platform", "linux", "127.0.0.1:1/a:v1"],
            "platform",
        ),
        (
            vec![
                "pull",
                "--platform",
                "linux/amd64",
                "--all-platforms",
                "127.0.0.1:1/a:v1",
            ],
            "exclude",
        ),
        (
            vec!["tags", "--creds", "no-colon", "127.0.0.1:1/a"],
            "USER:PASSWORD",
        ),
        (vec!["tags", "--jobs", "0", "127.0.0.1:1/a"], "--jobs"),
        (
            vec!["push", "127.0.0.1:1/a:v1", "127.0.0.1:1/b:v1"],
            "local image",
        ),
        (
            vec![
                "delete",
                "127.0.0.1:1/a@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            "name the tag",
        ),
    ] {
        let out = c.run(&args);
        assert_usage_error(&out);
        assert!(
            out.stderr.contains(says),
            "{}",
            out.describe(&format!("should say {says:?}"))
        );
    }
    // A valid command line whose work fails is a failure (1), not a usage error.
    let missing = format!("oci:{}:v1", c.path("no-such-layout").display());
    let out = c.run(&["inspect", &missing]);
    assert_failed_cleanly(&out);
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
        push(&c, &info, &reference, &["--ca-file", &ca]),
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
        push(
            &c,
            &info,
            &reference,
            &["--ca-file", &ca, "--creds", &alice]
        ),
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
        push(
            &c,
            &info,
            &reference,
            &["--ca-file", &ca, "--creds", &alice]
        ),
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

/// A registry holding one image with an 8 MiB (incompressible) layer, reached through a relay.
struct Big {
    server: Server,
    proxy: TapProxy,
    info: LayoutInfo,
    /// The big layer's digest and size.
    layer: String,
    size: u64,
    _tmp: tempfile::TempDir,
}

const PAYLOAD: usize = 8 << 20;

fn big_image(seed: &str) -> Big {
    let server = plain_server();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new(seed).with_payload(PAYLOAD),
    );
    let c = cli();
    push(&c, &info, &format!("{}/team/big:v1", server.addr), &["-q"]);
    let manifest = blob(&info.dir, &info.manifest_digest);
    let layer = manifest_blob_digests(&manifest)[1].clone();
    let size = blob(&info.dir, &layer).len() as u64;
    assert!(size > PAYLOAD as u64, "the payload is incompressible");
    let proxy = TapProxy::start(&server.addr);
    Big {
        server,
        proxy,
        info,
        layer,
        size,
        _tmp: tmp,
    }
}

impl Big {
    fn reference(&self) -> String {
        format!("{}/team/big:v1", self.proxy.addr)
    }

    fn partial(&self, dir: &Path) -> PathBuf {
        let hex = self.layer.strip_prefix("sha256:").unwrap();
        dir.join("blobs/sha256").join(format!(".{hex}.partial"))
    }

    fn layer_bytes(&self) -> Vec<u8> {
        blob(&self.info.dir, &self.layer)
    }

    /// The `Range` headers clients sent through the relay (lowercased).
    fn ranges(&self) -> Vec<String> {
        self.proxy
            .sent_text()
            .to_lowercase()
            .lines()
            .filter(|l| l.starts_with("range:"))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    let big = big_image("client-resume-cut");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");

    // Every connection is cut after 1 MiB towards the client. The pull resumes within the run
    // (a few times, each from what it holds), then gives up with the bytes kept.
    big.proxy.cut_after(Some(1 << 20));
    let first = c.run(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert!(
        !first.success(),
        "{}",
        first.describe("the cut pull succeeded")
    );
    assert!(
        big.ranges().iter().any(|r| r.starts_with("range: bytes=")),
        "the pull resumed with Range requests within the run: {:?}",
        big.ranges()
    );
    assert!(first.stderr.contains("resuming"), "{}", first.stderr);
    assert!(!first.stderr.contains("panicked"), "{}", first.stderr);
    assert!(
        !image::layout_blob_path(&dest, &big.layer).exists(),
        "an incomplete blob was published"
    );
    let held = std::fs::metadata(big.partial(&dest))
        .unwrap_or_else(|e| {
            panic!(
                "no partial file after the cut ({e}): {:?}",
                blob_files(&dest)
            )
        })
        .len();
    assert!(
        held > 0 && held < big.size,
        "partial file holds {held} of {} bytes",
        big.size
    );
    assert_eq!(
        std::fs::read(big.partial(&dest)).unwrap(),
        big.layer_bytes()[..held as usize],
        "the partial file holds a prefix of the blob"
    );

    big.proxy.cut_after(None);
    big.proxy.clear();
    let second = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&second), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    assert!(!big.partial(&dest).exists());
    let want = format!("range: bytes={held}-{}", big.size - 1);
    assert!(
        big.ranges().contains(&want),
        "expected `{want}` among {:?}",
        big.ranges()
    );
    drop(big.server);
}

#[test]
fn a_pull_resumes_from_a_partial_file() {
    let big = big_image("client-resume-half");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    let half = big.size / 2;
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    std::fs::write(big.partial(&dest), &big.layer_bytes()[..half as usize]).unwrap();

    let out = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&out), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    assert!(!big.partial(&dest).exists());
    let want = format!("range: bytes={half}-{}", big.size - 1);
    assert!(
        big.ranges().contains(&want),
        "expected `{want}` among {:?}",
        big.ranges()
    );
}

#[test]
fn a_corrupt_partial_file_never_becomes_a_blob() {
    let big = big_image("client-resume-corrupt");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    let half = (big.size / 2) as usize;
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    let mut wrong = big.layer_bytes()[..half].to_vec();
    for b in wrong.iter_mut().step_by(4096) {
        *b ^= 0xff;
    }
    std::fs::write(big.partial(&dest), &wrong).unwrap();

    let first = c.run(&["pull", &big.reference(), &oci(&dest, "v1")]);
    let layer_path = image::layout_blob_path(&dest, &big.layer);
    if first.success() {
        // Restarted cleanly: the content must be right.
        assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    } else {
        // Refused: with a digest error, nothing published, the bad partial file gone.
        assert_failed_cleanly(&first);
        assert!(
            first.stderr.contains("wrong content") || first.stderr.contains("digest"),
            "{}",
            first.describe("should be a digest error")
        );
        assert!(!layer_path.exists(), "a corrupt blob was published");
        assert!(
            !big.partial(&dest).exists(),
            "the corrupt partial file is kept"
        );
        assert!(
            image::layout_ref_digest(&dest, "v1").is_none(),
            "the tag points at an incomplete image"
        );
        // A second try starts over and succeeds.
        let second = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
        assert_eq!(last_line(&second), big.info.manifest_digest);
        assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    }
    assert!(!big.partial(&dest).exists());
}

#[test]
fn a_corrupt_partial_file_is_restarted_in_the_same_run() {
    let big = big_image("client-resume-restart");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    std::fs::write(big.partial(&dest), vec![0u8; (big.size / 2) as usize]).unwrap();
    let out = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&out), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new("client-pipe"),
    );
    let reference = format!("{}/team/app:v1", server.addr);
    push(&c, &info, &reference, &["-q"]);
    let mut child = c
        .cmd(&["inspect", &reference])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
