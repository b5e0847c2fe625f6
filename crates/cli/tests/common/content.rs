//! Test content: digests, media types, descriptors and manifest builders.
//!
//! Digests are computed with the system's coreutils (`sha256sum`, `sha512sum`), deliberately
//! not with stowage's own hasher, so a hashing bug in the server cannot hide itself in the tests.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Every manifest type, for `Accept` on manifest GETs.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

fn hash_hex(tool: &str, data: &[u8]) -> String {
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).expect("write to hasher"));
    let out = child.wait_with_output().expect("hasher output");
    writer.join().expect("writer thread");
    assert!(out.status.success(), "{tool} failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .split_whitespace()
        .next()
        .expect("hex")
        .to_string()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hash_hex("sha256sum", data)
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

pub fn sha512_digest(data: &[u8]) -> String {
    format!("sha512:{}", hash_hex("sha512sum", data))
}

static SEED: AtomicU64 = AtomicU64::new(0);

/// A per-process increasing number mixed with the pid, so test content is unique.
pub fn next_seed() -> u64 {
    let n = SEED.fetch_add(1, Ordering::Relaxed);
    (u64::from(std::process::id()) << 20) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n
}

/// Deterministic-per-call pseudo-random bytes (xorshift), unique across calls in a process.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut x = next_seed() | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small, unique image config blob.
pub fn unique_config() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [format!("SEED={}", next_seed())]},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .expect("config json")
}

/// A descriptor for `data` with the given media type.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(data), "size": data.len()})
}

/// The OCI empty descriptor (`{}`, `application/vnd.oci.empty.v1+json`).
pub fn empty_descriptor() -> Value {
    descriptor(OCI_EMPTY, b"{}")
}

/// An OCI image manifest with `mediaType` set.
pub fn image_manifest(config: &Value, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .expect("manifest json")
}

/// An OCI image index over `manifests`.
pub fn image_index(manifests: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index json")
}

/// A descriptor for a manifest body (OCI manifest unless `media_type` says otherwise).
pub fn manifest_descriptor(media_type: &str, body: &[u8]) -> Value {
    descriptor(media_type, body)
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass through).
pub fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
