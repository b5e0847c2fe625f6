//! Interop with skopeo (containers/image, the library behind podman and buildah).
//!
//! Each test starts its own registry (stowage, or the reference registry with
//! `STOWAGE_INTEROP_TARGET=distribution`), builds real images as OCI layouts with the testkit,
//! and checks what skopeo sees: byte-exact manifests, preserved digests for single images and
//! multi-arch indexes, platform selection, Docker schema 2 conversion, a 16 MiB streamed layer,
//! zstd layers, registry-to-registry copies, tag listing and deletion. A missing skopeo fails
//! the tests: CI installs it.

use std::path::Path;

use serde_json::Value;
use stowage_testkit::image::{self, ImageSpec, layout_blob, oci, sha256_digest};
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::target::Registry;

fn registry() -> Registry {
    Registry::start(env!("CARGO_BIN_EXE_stowage"))
}

fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn skopeo_round_trips_an_image_with_digests_preserved() {
    let reg = registry();
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("skopeo-single").with_layers(2));
    let manifest_bytes = layout_blob(&src, &info.manifest_digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();

    // skopeo itself accepts the testkit's layout.
    let local = sk.inspect(&oci(&src, "v1"));
    assert_eq!(local["Digest"], info.manifest_digest.as_str());

    let remote = reg.docker_ref("interop/single", "v1");
    sk.copy(&oci(&src, "v1"), &remote, &["--preserve-digests"]);

    let raw = sk.inspect_raw(&remote);
    assert_eq!(
        raw, manifest_bytes,
        "the registry must serve the manifest byte-exact"
    );
    let inspected = sk.inspect(&remote);
    assert_eq!(inspected["Digest"], info.manifest_digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Os"], "linux");
    let layers: Vec<String> = inspected["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, layer_digests(&manifest));
    let config = sk.inspect_config(&remote);
    let want_config: Value =
        serde_json::from_slice(&layout_blob(&src, &info.config_digests[0])).unwrap();
    assert_eq!(config, want_config);

    // Pull by digest, out to a fresh layout: the same manifest and blobs come back.
    let out = tmp.path().join("out");
    let by_digest = reg.docker_ref("interop/single", &info.manifest_digest);
    sk.copy(&by_digest, &oci(&out, "copied"), &["--preserve-digests"]);
    assert_eq!(
        image::layout_ref_digest(&out, "copied"),
        Some(info.manifest_digest.clone())
    );
    for d in layer_digests(&manifest)
        .iter()
        .chain([&info.config_digests[0]])
    {
        assert_eq!(
            layout_blob(&out, d),
            layout_blob(&src, d),
            "blob {d} differs after the round trip"
        );
    }
}

#[test]
fn skopeo_copies_a_multi_arch_index_with_all() {
    let reg = registry();
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_multi_arch_layout(&src, "multi", "skopeo-multi");
    let index_digest = info.index_digest.clone().unwrap();

    let remote = reg.docker_ref("interop/multi", "v1");
    sk.copy(
        &oci(&src, "multi"),
        &remote,
        &["--all", "--preserve-digests"],
    );

    let raw = sk.inspect_raw(&remote);
    assert_eq!(
        sha256_digest(&raw),
        index_digest,
        "index digest must be preserved"
    );
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], image::OCI_INDEX);
    for d in &info.manifest_digests {
        let m = sk.inspect_raw(&reg.docker_ref("interop/multi", d));
        assert_eq!(&sha256_digest(&m), d);
    }

    // Platform resolution through the index picks the right child manifest. (`Digest` is the
    // top-level manifest's, so the index's; `Layers` are the chosen image's.)
    for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let child: Value =
            serde_json::from_slice(&layout_blob(&src, &info.manifest_digests[i])).unwrap();
        let out = stowage_testkit::tools::run(sk.cmd().args([
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            "inspect",
            "--tls-verify=false",
            &remote,
        ]));
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["Digest"], index_digest.as_str(), "platform {arch}");
        assert_eq!(v["Architecture"], arch);
        assert_eq!(
            v["Layers"],
            serde_json::json!(layer_digests(&child)),
            "platform {arch}"
        );
    }

    let out = tmp.path().join("out");
    sk.copy(
        &remote,
        &oci(&out, "back"),
        &["--all", "--preserve-digests"],
    );
    assert_eq!(image::layout_ref_digest(&out, "back"), Some(index_digest));
    for d in &info.manifest_digests {
        assert_eq!(layout_blob(&out, d), layout_blob(&src, d));
    }
}

#[test]
fn skopeo_pushes_docker_schema2_and_reads_it_back() {
    let reg = registry();
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("skopeo-docker"));

    let remote = reg.docker_ref("interop/docker-format", "v1");
    sk.copy(&oci(&src, "v1"), &remote, &["--format", "v2s2"]);
    let raw = sk.inspect_raw(&remote);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let inspected = sk.inspect(&remote);
    assert_eq!(inspected["Digest"], sha256_digest(&raw).as_str());

    // Converting back to OCI keeps the layer bytes; skopeo re-serializes the config, so compare
    // what it says rather than its bytes.
    let out = tmp.path().join("out");
    sk.copy(&remote, &oci(&out, "v1"), &[]);
    let out_digest = image::layout_ref_digest(&out, "v1").expect("tag in layout");
    let out_manifest: Value = serde_json::from_slice(&layout_blob(&out, &out_digest)).unwrap();
    let src_manifest: Value =
        serde_json::from_slice(&layout_blob(&src, &info.manifest_digest)).unwrap();
    assert_eq!(layer_digests(&out_manifest), layer_digests(&src_manifest));
    for d in layer_digests(&src_manifest) {
        assert_eq!(layout_blob(&out, &d), layout_blob(&src, &d));
    }
    let config_of = |dir: &Path, m: &Value| -> Value {
        serde_json::from_slice(&layout_blob(dir, m["config"]["digest"].as_str().unwrap())).unwrap()
    };
    let (a, b) = (
        config_of(&out, &out_manifest),
        config_of(&src, &src_manifest),
    );
    assert_eq!(a["rootfs"], b["rootfs"]);
    assert_eq!(a["config"]["Cmd"], b["config"]["Cmd"]);
}

#[test]
fn skopeo_lists_tags_copies_between_repos_and_deletes() {
    let reg = registry();
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let info = image::write_oci_layout(&src, "v1", &ImageSpec::new("skopeo-tags").with_layers(2));

    for tag in ["v1", "v2", "latest"] {
        sk.copy(&oci(&src, "v1"), &reg.docker_ref("interop/tags", tag), &[]);
    }
    let repo = format!("docker://{}/interop/tags", reg.addr);
    assert_eq!(sk.list_tags(&repo), ["latest", "v1", "v2"]);

    // Registry to registry: blobs already on the registry (possibly mounted across repos).
    let copied = reg.docker_ref("interop/copied", "v1");
    sk.copy(
        &reg.docker_ref("interop/tags", "v1"),
        &copied,
        &["--preserve-digests"],
    );
    assert_eq!(
        sha256_digest(&sk.inspect_raw(&copied)),
        info.manifest_digest
    );
    assert_eq!(
        sk.list_tags(&format!("docker://{}/interop/copied", reg.addr)),
        ["v1"]
    );

    // skopeo delete resolves the tag and deletes the manifest by digest.
    sk.delete(&copied);
    for gone in [
        copied.clone(),
        reg.docker_ref("interop/copied", &info.manifest_digest),
    ] {
        let out = sk.try_inspect_raw(&gone);
        assert!(
            !out.success(),
            "{}",
            out.describe("manifest should be gone after delete")
        );
        assert!(
            out.stderr.contains("manifest unknown") || out.stderr.contains("not found"),
            "{}",
            out.describe("expected MANIFEST_UNKNOWN after delete")
        );
    }

    // The other repository still has its manifest and every blob.
    let out = tmp.path().join("out");
    sk.copy(
        &reg.docker_ref("interop/tags", "v2"),
        &oci(&out, "v2"),
        &["--preserve-digests"],
    );
    assert_eq!(
        image::layout_ref_digest(&out, "v2"),
        Some(info.manifest_digest.clone())
    );
    assert_eq!(sk.list_tags(&repo), ["latest", "v1", "v2"]);
}

#[test]
fn skopeo_pushes_a_large_layer_and_a_zstd_image() {
    let reg = registry();
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");

    // 16 MiB of incompressible data: skopeo streams it in one PATCH with chunked encoding.
    let big = image::write_oci_layout(
        &src,
        "big",
        &ImageSpec::new("skopeo-big").with_payload(16 << 20),
    );
    let remote = reg.docker_ref("interop/big", "v1");
    sk.copy(&oci(&src, "big"), &remote, &["--preserve-digests"]);
    assert_eq!(sha256_digest(&sk.inspect_raw(&remote)), big.manifest_digest);
    let out = tmp.path().join("out");
    sk.copy(&remote, &oci(&out, "big"), &["--preserve-digests"]);
    let manifest: Value = serde_json::from_slice(&layout_blob(&src, &big.manifest_digest)).unwrap();
    for d in layer_digests(&manifest) {
        assert!(
            layout_blob(&out, &d) == layout_blob(&src, &d),
            "large layer {d} differs after the round trip"
        );
    }

    // zstd layers: a media type other than gzip must be stored and served as pushed.
    image::write_oci_layout(&src, "small", &ImageSpec::new("skopeo-zstd").with_layers(2));
    let zstd = reg.docker_ref("interop/zstd", "v1");
    sk.copy(
        &oci(&src, "small"),
        &zstd,
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    let raw = sk.inspect_raw(&zstd);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{m}"
        );
    }
    let zout = tmp.path().join("zout");
    sk.copy(&zstd, &oci(&zout, "v1"), &["--preserve-digests"]);
    assert_eq!(
        image::layout_ref_digest(&zout, "v1"),
        Some(sha256_digest(&raw))
    );
    for d in layer_digests(&m) {
        assert_eq!(sha256_digest(&layout_blob(&zout, &d)), d);
    }
}
