//! Deterministic builders for small but real container images, and OCI image layouts on disk.
//!
//! Owns: layer tarballs (a directory, a text file, an executable, a symlink, an optional
//! incompressible payload), their gzip blobs, diff_ids and digests, the OCI image config, the
//! image manifest, multi-platform image indexes, and writing all of it as an OCI image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/...`) that skopeo, umoci and friends
//! read. Everything is derived from an [`ImageSpec`] with fixed timestamps and owners, so the
//! same spec always gives the same digests. It never touches the network or a registry.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation an OCI layout's `index.json` uses to name a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What to build. Different seeds give different layer contents (and so different digests).
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub seed: String,
    pub os: String,
    pub architecture: String,
    /// Number of layers, at least 1. Layer 0 holds the base files; later layers add one file each.
    pub layers: usize,
    /// Size of an extra pseudo-random (incompressible) file in layer 0; 0 for none.
    pub payload_size: usize,
}

impl ImageSpec {
    /// A one-layer linux/amd64 image whose contents depend on `seed`.
    pub fn new(seed: &str) -> ImageSpec {
        ImageSpec {
            seed: seed.to_string(),
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            layers: 1,
            payload_size: 0,
        }
    }

    pub fn with_architecture(mut self, arch: &str) -> ImageSpec {
        self.architecture = arch.to_string();
        self
    }

    pub fn with_layers(mut self, layers: usize) -> ImageSpec {
        self.layers = layers.max(1);
        self
    }

    pub fn with_payload(mut self, bytes: usize) -> ImageSpec {
        self.payload_size = bytes;
        self
    }
}

/// A content-addressed blob: bytes plus their digest and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, data: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&data),
            data,
        }
    }

    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The OCI descriptor (`mediaType`, `digest`, `size`) pointing at this blob.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.data.len() })
    }
}

/// One gzip-compressed layer and the digest of its uncompressed tar.
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

/// A complete single-platform image: layers, config and manifest.
#[derive(Clone, Debug)]
pub struct Image {
    pub spec: ImageSpec,
    pub layers: Vec<Layer>,
    pub config: Blob,
    pub manifest: Blob,
}

impl Image {
    pub fn build(spec: &ImageSpec) -> Image {
        let layers: Vec<Layer> = (0..spec.layers.max(1))
            .map(|i| {
                let tar = layer_tar(spec, i);
                let diff_id = sha256_digest(&tar);
                Layer {
                    blob: Blob::new(OCI_LAYER_GZIP, gzip(&tar)),
                    diff_id,
                }
            })
            .collect();
        let config = Blob::new(OCI_CONFIG, config_json(spec, &layers));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
            "annotations": {
                "org.opencontainers.image.title": format!("stowage-testkit {}", spec.seed),
            },
        });
        let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
        Image {
            spec: spec.clone(),
            layers,
            config,
            manifest,
        }
    }

    /// Config and layer blobs, in upload order (everything the manifest references).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.config];
        v.extend(self.layers.iter().map(|l| &l.blob));
        v
    }

    /// The `platform` object an image index uses for this image.
    pub fn platform(&self) -> Value {
        json!({ "architecture": self.spec.architecture, "os": self.spec.os })
    }
}

/// Several images under one OCI image index.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    pub images: Vec<Image>,
    pub index: Blob,
}

impl ImageIndex {
    pub fn build(specs: &[ImageSpec]) -> ImageIndex {
        let images: Vec<Image> = specs.iter().map(Image::build).collect();
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let mut d = img.manifest.descriptor();
                d["platform"] = img.platform();
                d
            })
            .collect();
        let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        let index = Blob::new(OCI_INDEX, serde_json::to_vec(&index).expect("json"));
        ImageIndex { images, index }
    }

    /// linux/amd64 and linux/arm64 images with distinct layer contents.
    pub fn multi_arch(seed: &str) -> ImageIndex {
        ImageIndex::build(&[
            ImageSpec::new(seed).with_architecture("amd64"),
            ImageSpec::new(seed).with_architecture("arm64"),
        ])
    }
}

/// What a layout writer put on disk, for the assertions of a test.
#[derive(Clone, Debug)]
pub struct LayoutInfo {
    pub dir: PathBuf,
    pub tag: String,
    /// Digest the tag points at: the image manifest, or the image index for multi-arch.
    pub tag_digest: String,
    /// Digest of the (first, or only) image manifest.
    pub manifest_digest: String,
    /// Digests of all image manifests, in index order.
    pub manifest_digests: Vec<String>,
    /// Digest of the image index, for a multi-arch layout.
    pub index_digest: Option<String>,
    /// Config digest of each image, in the order of `manifest_digests`.
    pub config_digests: Vec<String>,
}

/// Write a single-platform image built from `spec` into the OCI layout at `dir` under `tag`.
/// The layout is created if needed; an existing layout keeps its other tags.
pub fn write_oci_layout(dir: &Path, tag: &str, spec: &ImageSpec) -> LayoutInfo {
    write_image_layout(dir, tag, &Image::build(spec))
}

/// Write the linux/amd64 + linux/arm64 index from [`ImageIndex::multi_arch`] under `tag`.
pub fn write_multi_arch_layout(dir: &Path, tag: &str, seed: &str) -> LayoutInfo {
    write_index_layout(dir, tag, &ImageIndex::multi_arch(seed))
}

/// Write an already-built image into the OCI layout at `dir` under `tag`.
pub fn write_image_layout(dir: &Path, tag: &str, image: &Image) -> LayoutInfo {
    write_blobs(dir, image.blobs().into_iter().chain([&image.manifest]));
    add_ref(dir, tag, &image.manifest);
    LayoutInfo {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        tag_digest: image.manifest.digest.clone(),
        manifest_digest: image.manifest.digest.clone(),
        manifest_digests: vec![image.manifest.digest.clone()],
        index_digest: None,
        config_digests: vec![image.config.digest.clone()],
    }
}

/// Write an already-built image index (and all its images) into the OCI layout at `dir`.
pub fn write_index_layout(dir: &Path, tag: &str, index: &ImageIndex) -> LayoutInfo {
    for img in &index.images {
        write_blobs(dir, img.blobs().into_iter().chain([&img.manifest]));
    }
    write_blobs(dir, [&index.index]);
    add_ref(dir, tag, &index.index);
    LayoutInfo {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        tag_digest: index.index.digest.clone(),
        manifest_digest: index.images[0].manifest.digest.clone(),
        manifest_digests: index
            .images
            .iter()
            .map(|i| i.manifest.digest.clone())
            .collect(),
        index_digest: Some(index.index.digest.clone()),
        config_digests: index
            .images
            .iter()
            .map(|i| i.config.digest.clone())
            .collect(),
    }
}

/// The digest that `tag` names in the `index.json` of the OCI layout at `dir`, if any.
pub fn layout_ref_digest(dir: &Path, tag: &str) -> Option<String> {
    let index = read_layout_index(dir)?;
    index["manifests"].as_array()?.iter().find_map(|m| {
        (m["annotations"][REF_NAME].as_str() == Some(tag))
            .then(|| m["digest"].as_str().map(str::to_string))
            .flatten()
    })
}

/// Path of a blob inside the OCI layout at `dir`.
pub fn layout_blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest has an algorithm");
    dir.join("blobs").join(alg).join(hex)
}

/// The skopeo/`stowage` reference of `tag` in the OCI layout at `dir`: `oci:DIR:TAG`.
pub fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// The bytes of a blob inside the OCI layout at `dir`; panics naming the path if it is missing.
pub fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let p = layout_blob_path(dir, digest);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Digests of the config and layers an image manifest references.
pub fn manifest_blob_digests(manifest: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(manifest).expect("manifest is JSON");
    std::iter::once(&v["config"])
        .chain(v["layers"].as_array().expect("manifest layers"))
        .map(|d| d["digest"].as_str().expect("descriptor digest").to_string())
        .collect()
}

/// Every blob of the image `manifest_digest` is in the layout `dst`, byte-identical to the
/// layout `src`'s and matching its sha256 name.
#[track_caller]
pub fn assert_same_image(src: &Path, dst: &Path, manifest_digest: &str) {
    let manifest = layout_blob(src, manifest_digest);
    assert_eq!(
        layout_blob(dst, manifest_digest),
        manifest,
        "manifest differs"
    );
    for d in manifest_blob_digests(&manifest) {
        let got = layout_blob(dst, &d);
        assert_eq!(sha256_digest(&got), d, "blob {d} in {}", dst.display());
        assert_eq!(got, layout_blob(src, &d), "blob {d}");
    }
}

/// The root filesystem at `rootfs` (unpacked by umoci, `stowage unpack`...) holds what
/// `spec`'s layers put there: the text file naming the image, the symlink to it, the executable
/// with its mode, the payload at its size, and one file per later layer.
#[track_caller]
pub fn assert_rootfs(rootfs: &Path, spec: &ImageSpec) {
    use std::os::unix::fs::PermissionsExt;
    let who = format!("{} {}/{}", spec.seed, spec.os, spec.architecture);
    let motd = std::fs::read_to_string(rootfs.join("etc/motd")).expect("etc/motd");
    assert!(motd.contains(&who), "{motd}");
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/greeting")).expect("etc/greeting"),
        Path::new("motd")
    );
    let mode = std::fs::metadata(rootfs.join("usr/bin/hello"))
        .expect("usr/bin/hello")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    if spec.payload_size > 0 {
        assert_eq!(
            std::fs::metadata(rootfs.join("data/payload.bin"))
                .expect("data/payload.bin")
                .len(),
            spec.payload_size as u64
        );
    }
    for i in 1..spec.layers {
        assert!(
            rootfs.join(format!("data/layer-{i}.txt")).is_file(),
            "layer {i} missing"
        );
    }
}

/// Files in the layout's `blobs/sha256` directory (names only, hidden partial files included),
/// sorted.
pub fn layout_blob_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read_layout_index(dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(dir.join("index.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_blobs<'a>(dir: &Path, blobs: impl IntoIterator<Item = &'a Blob>) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    for b in blobs {
        std::fs::write(layout_blob_path(dir, &b.digest), &b.data).expect("write blob");
    }
}

fn add_ref(dir: &Path, tag: &str, target: &Blob) {
    let mut manifests: Vec<Value> = read_layout_index(dir)
        .and_then(|i| i["manifests"].as_array().cloned())
        .unwrap_or_default();
    manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
    let mut desc = target.descriptor();
    desc["annotations"] = json!({ REF_NAME: tag });
    manifests.push(desc);
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec_pretty(&index).expect("json"),
    )
    .expect("write index.json");
}

fn config_json(spec: &ImageSpec, layers: &[Layer]) -> Vec<u8> {
    let epoch = "1970-01-01T00:00:00Z";
    let history: Vec<Value> = (0..layers.len())
        .map(|i| json!({ "created": epoch, "created_by": format!("stowage-testkit layer {i}") }))
        .collect();
    let config = json!({
        "created": epoch,
        "architecture": spec.architecture,
        "os": spec.os,
        "config": {
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                format!("STOWAGE_TESTKIT_SEED={}", spec.seed),
            ],
            "Cmd": ["/usr/bin/hello"],
            "WorkingDir": "/",
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    serde_json::to_vec(&config).expect("json")
}

/// The uncompressed tar of layer `i`: fixed owners, modes and timestamps.
fn layer_tar(spec: &ImageSpec, i: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let who = format!("{} {}/{}", spec.seed, spec.os, spec.architecture);
    if i == 0 {
        for d in ["etc/", "usr/", "usr/bin/", "data/"] {
            append(&mut b, tar::EntryType::Directory, d, 0o755, b"");
        }
        let text = format!("hello from stowage-testkit: {who}\n");
        append(
            &mut b,
            tar::EntryType::Regular,
            "etc/motd",
            0o644,
            text.as_bytes(),
        );
        // Not a script: the image has no shell, and runtimes only need the mode bit here.
        let exe = format!("\x7fSTOWAGE-TESTKIT-EXECUTABLE {who}\n");
        append(
            &mut b,
            tar::EntryType::Regular,
            "usr/bin/hello",
            0o755,
            exe.as_bytes(),
        );
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "etc/greeting", "motd")
            .expect("tar symlink");
        if spec.payload_size > 0 {
            let payload = pseudo_random(&who, spec.payload_size);
            append(
                &mut b,
                tar::EntryType::Regular,
                "data/payload.bin",
                0o644,
                &payload,
            );
        }
    } else {
        let text = format!("layer {i} of {who}\n");
        append(
            &mut b,
            tar::EntryType::Regular,
            &format!("data/layer-{i}.txt"),
            0o644,
            text.as_bytes(),
        );
    }
    b.into_inner().expect("finish tar")
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

fn append(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, mode: u32, data: &[u8]) {
    let mut h = header(kind, mode, data.len() as u64);
    b.append_data(&mut h, path, data).expect("tar entry");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip finish")
}

/// Incompressible but reproducible bytes (xorshift64*, seeded from the digest of `seed`).
pub(crate) fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let mut s = u64::from_le_bytes(d.as_ref()[..8].try_into().expect("8 bytes")) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
