//! Interop with containerd through `ctr`, over plain HTTP.
//!
//! Each test starts its own registry and a private containerd daemon (temp root, state and
//! socket; native snapshotter), seeds the registry with skopeo, then has ctr pull and unpack an
//! OCI image, a Docker schema 2 image and a whole multi-arch index, and push each to a new
//! repository (which lets containerd try cross-repository blob mounts). ctr pushes content
//! byte-exact, so digests must survive. A missing containerd, ctr or skopeo fails the test: CI
//! installs them.

use std::path::{Path, PathBuf};

use stowage_testkit::containerd::Containerd;
use stowage_testkit::image::{self, ImageSpec, sha256_digest};
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::target::Registry;
use stowage_testkit::tools::run;

/// Files named `rel` in any snapshot of the native snapshotter.
fn find_in_snapshots(root: &Path, rel: &str) -> Vec<PathBuf> {
    let snaps = root.join("io.containerd.snapshotter.v1.native/snapshots");
    let Ok(entries) = std::fs::read_dir(&snaps) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(rel))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn ctr_pulls_unpacks_and_pushes_an_image() {
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let ctrd = Containerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("containerd").with_layers(2));
    sk.copy(
        &format!("oci:{}:v1", src.display()),
        &reg.docker_ref("interop/ctr-src", "v1"),
        &[],
    );

    let reference = reg.reference("interop/ctr-src", "v1");
    let pulled = run(ctrd.ctr().args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        "--platform",
        "linux/amd64",
        &reference,
    ]));
    assert!(
        pulled.stdout.contains("unpacking linux/amd64"),
        "{}",
        pulled.describe("no unpack")
    );
    let listed = run(ctrd.ctr().args(["images", "ls"])).stdout;
    assert!(
        listed.contains(&reference) && listed.contains(&info.manifest_digest),
        "images ls:\n{listed}"
    );

    // The unpacked root filesystem has the layer's files, symlink included.
    let motd = find_in_snapshots(&ctrd.root(), "etc/motd");
    assert!(
        !motd.is_empty(),
        "etc/motd not unpacked; containerd log:\n{}",
        ctrd.log()
    );
    let text = std::fs::read_to_string(&motd[0]).unwrap();
    assert!(text.contains("containerd linux/amd64"), "{text}");
    let link = motd[0].with_file_name("greeting");
    assert_eq!(std::fs::read_link(&link).unwrap().to_str(), Some("motd"));

    // Push under a new name: containerd knows the blobs came from interop/ctr-src.
    let dst = reg.reference("interop/ctr-dst", "v1");
    run(ctrd
        .ctr()
        .args(["images", "push", "--plain-http", &dst, &reference]));
    let raw = sk.inspect_raw(&format!("docker://{dst}"));
    assert_eq!(sha256_digest(&raw), info.manifest_digest);
    let config = sk.inspect_config(&format!("docker://{dst}"));
    assert_eq!(config["config"]["Cmd"][0], "/usr/bin/hello");
}

#[test]
fn ctr_pulls_and_pushes_a_multi_arch_index() {
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let ctrd = Containerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_multi_arch_layout(&src, "multi", "containerd-multi");
    let index_digest = info.index_digest.clone().unwrap();
    sk.copy(
        &format!("oci:{}:multi", src.display()),
        &reg.docker_ref("interop/ctr-multi", "v1"),
        &["--all"],
    );

    let reference = reg.reference("interop/ctr-multi", "v1");
    run(ctrd.ctr().args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        "--all-platforms",
        &reference,
    ]));
    let listed = run(ctrd.ctr().args(["images", "ls"])).stdout;
    assert!(listed.contains(&index_digest), "images ls:\n{listed}");

    let dst = reg.reference("interop/ctr-multi-dst", "v1");
    run(ctrd
        .ctr()
        .args(["images", "push", "--plain-http", &dst, &reference]));
    let raw = sk.inspect_raw(&format!("docker://{dst}"));
    assert_eq!(
        sha256_digest(&raw),
        index_digest,
        "index digest must survive a ctr push"
    );
    for d in &info.manifest_digests {
        let m = sk.inspect_raw(&reg.docker_ref("interop/ctr-multi-dst", d));
        assert_eq!(&sha256_digest(&m), d);
    }

    // Pull by digest from the pushed copy.
    let by_digest = reg.reference("interop/ctr-multi-dst", &index_digest);
    run(ctrd.ctr().args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &by_digest,
    ]));
}

#[test]
fn ctr_round_trips_a_docker_schema2_image() {
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let ctrd = Containerd::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    image::write_oci_layout(&src, "v1", &ImageSpec::new("containerd-docker"));
    let docker_src = reg.docker_ref("interop/ctr-docker", "v1");
    sk.copy(
        &format!("oci:{}:v1", src.display()),
        &docker_src,
        &["--format", "v2s2"],
    );
    let digest = sha256_digest(&sk.inspect_raw(&docker_src));

    let reference = reg.reference("interop/ctr-docker", "v1");
    let pulled = run(ctrd.ctr().args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        "--platform",
        "linux/amd64",
        &reference,
    ]));
    assert!(
        pulled.stdout.contains("unpacking linux/amd64"),
        "{}",
        pulled.describe("no unpack")
    );
    let listed = run(ctrd.ctr().args(["images", "ls"])).stdout;
    assert!(
        listed.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "images ls:\n{listed}"
    );
    assert!(listed.contains(&digest), "images ls:\n{listed}");

    let dst = reg.reference("interop/ctr-docker-dst", "v1");
    run(ctrd
        .ctr()
        .args(["images", "push", "--plain-http", &dst, &reference]));
    assert_eq!(
        sha256_digest(&sk.inspect_raw(&format!("docker://{dst}"))),
        digest
    );
}
