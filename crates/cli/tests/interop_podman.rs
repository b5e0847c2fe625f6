//! Interop with podman: pull from and push to the registry over plain HTTP.
//!
//! The test starts its own registry, seeds it with skopeo, then lets podman (with throwaway vfs
//! storage, as root) pull by tag, by digest and by platform from an index, and push the image
//! back under new names in OCI and Docker formats. Results are checked with skopeo. A missing
//! podman or skopeo fails the test: CI installs them.

use serde_json::Value;
use stowage_testkit::image::{self, ImageSpec, sha256_digest};
use stowage_testkit::podman::Podman;
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::target::Registry;

fn diff_ids(config: &Value) -> Vec<Value> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .clone()
}

#[test]
fn podman_pulls_and_pushes() {
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let podman = Podman::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("podman").with_layers(2));
    let want_config: Value = serde_json::from_slice(
        &std::fs::read(image::layout_blob_path(&src, &info.config_digests[0])).unwrap(),
    )
    .unwrap();
    sk.copy(
        &format!("oci:{}:v1", src.display()),
        &reg.docker_ref("interop/podman-src", "v1"),
        &[],
    );

    // Pull by tag: podman records the manifest digest, and the image id is the config digest.
    let by_tag = reg.reference("interop/podman-src", "v1");
    podman.pull(&by_tag, &[]);
    assert_eq!(
        podman.image_format(&by_tag, "{{.Digest}}"),
        info.manifest_digest
    );
    let config_hex = info.config_digests[0].trim_start_matches("sha256:");
    assert_eq!(podman.image_format(&by_tag, "{{.Id}}"), config_hex);

    // Push to another repository (OCI, the image's own format), then check it with skopeo.
    let dst = reg.reference("interop/podman-dst", "v1");
    podman.push(&by_tag, &dst, &[]);
    let docker_dst = format!("docker://{dst}");
    let pushed: Value = serde_json::from_slice(&sk.inspect_raw(&docker_dst)).unwrap();
    assert_eq!(pushed["mediaType"], image::OCI_MANIFEST);
    assert_eq!(
        diff_ids(&sk.inspect_config(&docker_dst)),
        diff_ids(&want_config)
    );

    // Push as Docker schema 2 to a third repository.
    let dst_docker = reg.reference("interop/podman-docker", "v1");
    podman.push(&by_tag, &dst_docker, &["--format", "v2s2"]);
    let raw = sk.inspect_raw(&format!("docker://{dst_docker}"));
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        diff_ids(&sk.inspect_config(&format!("docker://{dst_docker}"))),
        diff_ids(&want_config)
    );

    // Pull the pushed Docker image by digest. It is the same image (same config), so podman
    // adds the digest to the image it already has.
    let by_digest = reg.reference("interop/podman-docker", &sha256_digest(&raw));
    podman.pull(&by_digest, &[]);
    let repo_digests = podman.image_format(&by_digest, "{{json .RepoDigests}}");
    assert!(
        repo_digests.contains(&by_digest),
        "{by_digest} not in {repo_digests}"
    );
    assert_eq!(podman.image_format(&by_digest, "{{.Id}}"), config_hex);
}

#[test]
fn podman_pulls_one_platform_from_an_index() {
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let podman = Podman::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_multi_arch_layout(&src, "multi", "podman-multi");
    sk.copy(
        &format!("oci:{}:multi", src.display()),
        &reg.docker_ref("interop/podman-multi", "v1"),
        &["--all"],
    );

    let reference = reg.reference("interop/podman-multi", "v1");
    podman.pull(&reference, &["--arch", "arm64", "--os", "linux"]);
    assert_eq!(
        podman.image_format(&reference, "{{.Architecture}}"),
        "arm64"
    );
    assert_eq!(
        podman.image_format(&reference, "{{.Id}}"),
        info.config_digests[1].trim_start_matches("sha256:")
    );
}
