//! The `stowage` client commands end to end against a real `stowage serve` over plain HTTP:
//! push, pull, copy, inspect, tags, digest and delete, multi-arch platform choice, clear errors
//! for invalid references and a closed stdout. HTTPS with authentication is in
//! `client_https.rs`, resumed downloads in `client_pull_resume.rs`. Images are the testkit's
//! real OCI layouts; every digest is checked against what the layout holds and what the
//! registry serves. Each test has its own server and its own `$DOCKER_CONFIG`.

use std::path::Path;

use serde_json::Value;
use stowage_testkit::client::{
    StowageCli, assert_failed_cleanly, assert_usage_error, last_line, run_cmd,
};
use stowage_testkit::image::{
    self, ImageSpec, OCI_MANIFEST, REF_NAME, assert_same_image, layout_blob, layout_blob_files,
    manifest_blob_digests, oci,
};
use stowage_testkit::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn cli() -> StowageCli {
    StowageCli::new(BIN)
}

fn plain_server() -> Server {
    Server::spawn(Path::new(BIN), &[])
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

#[test]
fn push_inspect_pull_round_trip_over_plain_http() {
    let server = plain_server();
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("client-cli").with_layers(2));
    let manifest_bytes = layout_blob(&src, &info.manifest_digest);
    let reference = format!("{}/team/app:v1", server.addr);

    let pushed = c.push_layout(&info, &reference, &[]);
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
        !layout_blob_files(&out).iter().any(|f| f.starts_with('.')),
        "temporary files left: {:?}",
        layout_blob_files(&out)
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
    c.push_layout(&info, &from, &[]);

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
    assert_eq!(c.push_layout(&multi, &multi_ref, &[]), index_digest);
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
    c.push_layout(&multi, &reference, &[]);

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
    let amd_blobs = manifest_blob_digests(&layout_blob(&multi.dir, &multi.manifest_digests[0]));
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
    c.push_layout(&info, &format!("{repo}:v1"), &[]);
    c.push_layout(&info, &format!("{repo}:v2"), &[]);
    c.push_layout(&info, &format!("{repo}:v3"), &[]);
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
        c.push_layout(&info, &format!("{}/team/app:{t}", server.addr), &["-q"]);
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
    c.push_layout(&info, &reference, &["-q"]);
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
