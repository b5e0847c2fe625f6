//! Unit tests for the image builders: digests, determinism, tar contents and layout files.

use std::io::Read;

use super::*;

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn json_of(blob: &Blob) -> Value {
    serde_json::from_slice(&blob.data).expect("blob is json")
}

#[test]
fn sha256_digest_matches_known_vectors() {
    assert_eq!(
        sha256_digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_digest(b"abc"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn same_spec_gives_same_digests() {
    let spec = ImageSpec::new("det").with_layers(2).with_payload(5000);
    let (a, b) = (Image::build(&spec), Image::build(&spec));
    assert_eq!(a.manifest, b.manifest);
    assert_eq!(a.config, b.config);
    assert_eq!(a.layers[1].blob, b.layers[1].blob);
}

#[test]
fn seed_and_architecture_change_the_layers() {
    let a = Image::build(&ImageSpec::new("one"));
    let b = Image::build(&ImageSpec::new("two"));
    let c = Image::build(&ImageSpec::new("one").with_architecture("arm64"));
    assert_ne!(a.layers[0].diff_id, b.layers[0].diff_id);
    assert_ne!(a.layers[0].diff_id, c.layers[0].diff_id);
    assert_ne!(a.manifest.digest, c.manifest.digest);
}

#[test]
fn blob_digests_and_diff_ids_are_correct() {
    let img = Image::build(&ImageSpec::new("digests").with_layers(3));
    assert_eq!(img.layers.len(), 3);
    for l in &img.layers {
        assert_eq!(l.blob.digest, sha256_digest(&l.blob.data));
        assert_eq!(l.diff_id, sha256_digest(&gunzip(&l.blob.data)));
        assert_eq!(l.blob.media_type, OCI_LAYER_GZIP);
    }
    assert_eq!(img.config.digest, sha256_digest(&img.config.data));
    assert_eq!(img.manifest.digest, sha256_digest(&img.manifest.data));
}

#[test]
fn layer_tar_has_dir_file_executable_and_symlink() {
    let img = Image::build(&ImageSpec::new("tar").with_payload(1234));
    let tar = gunzip(&img.layers[0].blob.data);
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let h = e.header().clone();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, 0)
        );
        match path.as_str() {
            "etc/" => assert_eq!(h.entry_type(), tar::EntryType::Directory),
            "etc/motd" => {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                assert!(s.contains("tar linux/amd64"), "{s}");
            }
            "usr/bin/hello" => assert_eq!(h.mode().unwrap() & 0o777, 0o755),
            "etc/greeting" => {
                assert_eq!(h.entry_type(), tar::EntryType::Symlink);
                assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("motd"));
            }
            "data/payload.bin" => assert_eq!(h.size().unwrap(), 1234),
            _ => {}
        }
        seen.push(path);
    }
    for want in [
        "etc/",
        "etc/motd",
        "usr/bin/hello",
        "etc/greeting",
        "data/payload.bin",
    ] {
        assert!(
            seen.iter().any(|p| p == want),
            "{want} missing from {seen:?}"
        );
    }
}

#[test]
fn payload_is_incompressible() {
    let img = Image::build(&ImageSpec::new("big").with_payload(256 * 1024));
    assert!(
        img.layers[0].blob.size() > 256 * 1024,
        "gzip should not shrink random bytes"
    );
}

#[test]
fn config_and_manifest_reference_each_other() {
    let img = Image::build(
        &ImageSpec::new("refs")
            .with_layers(2)
            .with_architecture("arm64"),
    );
    let config = json_of(&img.config);
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["Cmd"][0], "/usr/bin/hello");
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        diff_ids,
        [
            img.layers[0].diff_id.as_str(),
            img.layers[1].diff_id.as_str()
        ]
    );

    let m = json_of(&img.manifest);
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["digest"], img.config.digest.as_str());
    assert_eq!(m["config"]["size"], img.config.size());
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(m["layers"][1]["digest"], img.layers[1].blob.digest.as_str());
    assert_eq!(m["layers"][1]["size"], img.layers[1].blob.size());
}

#[test]
fn multi_arch_index_lists_both_platforms() {
    let idx = ImageIndex::multi_arch("multi");
    let v = json_of(&idx.index);
    assert_eq!(v["mediaType"], OCI_INDEX);
    let ms = v["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0]["platform"]["architecture"], "amd64");
    assert_eq!(ms[1]["platform"]["architecture"], "arm64");
    assert_eq!(ms[1]["digest"], idx.images[1].manifest.digest.as_str());
    assert_ne!(
        idx.images[0].layers[0].blob.digest,
        idx.images[1].layers[0].blob.digest
    );
}

fn assert_layout_consistent(dir: &Path) {
    let layout: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(
            sha256_digest(&data),
            format!("sha256:{}", entry.file_name().to_string_lossy())
        );
    }
}

#[test]
fn single_image_layout_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let info = write_oci_layout(tmp.path(), "v1", &ImageSpec::new("layout").with_layers(2));
    assert_layout_consistent(tmp.path());
    assert_eq!(
        layout_ref_digest(tmp.path(), "v1").as_deref(),
        Some(info.manifest_digest.as_str())
    );
    assert_eq!(info.tag_digest, info.manifest_digest);
    assert!(info.index_digest.is_none());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(layout_blob_path(tmp.path(), &info.manifest_digest)).unwrap(),
    )
    .unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        assert!(layout_blob_path(tmp.path(), l["digest"].as_str().unwrap()).is_file());
    }
    assert!(layout_blob_path(tmp.path(), &info.config_digests[0]).is_file());
}

#[test]
fn layout_keeps_other_tags_and_replaces_same_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_oci_layout(tmp.path(), "a", &ImageSpec::new("first"));
    let b = write_oci_layout(tmp.path(), "b", &ImageSpec::new("second"));
    let b2 = write_oci_layout(tmp.path(), "b", &ImageSpec::new("third"));
    assert_layout_consistent(tmp.path());
    assert_eq!(layout_ref_digest(tmp.path(), "a"), Some(a.manifest_digest));
    assert_ne!(b.manifest_digest, b2.manifest_digest);
    assert_eq!(layout_ref_digest(tmp.path(), "b"), Some(b2.manifest_digest));
    let index: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn multi_arch_layout_points_tag_at_index() {
    let tmp = tempfile::tempdir().unwrap();
    let info = write_multi_arch_layout(tmp.path(), "multi", "ma");
    assert_layout_consistent(tmp.path());
    let index_digest = info.index_digest.clone().unwrap();
    assert_eq!(info.tag_digest, index_digest);
    assert_eq!(
        layout_ref_digest(tmp.path(), "multi"),
        Some(index_digest.clone())
    );
    assert_eq!(info.manifest_digests.len(), 2);
    for d in &info.manifest_digests {
        assert!(layout_blob_path(tmp.path(), d).is_file());
    }
    let index: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["mediaType"], OCI_INDEX);
}
