//! OCI conformance, manifest formats: which manifests are accepted, that they are stored and
//! served byte-exact with their pushed media type, and which are refused (schema 1, media type
//! contradictions, invalid JSON, size limits).
//!
//! Reference checks (blobs, subject, urls, index children) and tagging are in
//! `conformance_manifest_refs.rs`.

mod common;

use common::*;
use serde_json::json;

/// Spec: "The registry **MUST** store the manifest exactly as provided, without modification
/// of its byte representation." Issue: "stored and served byte-exact (send unusual
/// whitespace/field order and compare bytes)".
#[tokio::test]
async fn manifest_stored_byte_exact() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("man/exact", &config).await;
    let body = format!(
        "{{\n\t\"layers\" :[ ],   \"config\":{{ \"size\": {},\"digest\":\"{}\",\r\n \"mediaType\":\"{}\"}},\
         \"schemaVersion\"  :  2 , \"mediaType\":\"{}\",\"annotations\":{{\"z\":\"\\u00e9\\n\",\"a\":\"é\"}}  }}\n\n",
        config.len(),
        sha256_digest(&config),
        OCI_CONFIG,
        OCI_MANIFEST
    );
    let digest = reg
        .push_manifest("man/exact", "odd", OCI_MANIFEST, body.as_bytes())
        .await;
    for reference in ["odd", digest.as_str()] {
        let r = reg.get_manifest("man/exact", reference).await;
        r.expect_status(200)
            .expect_header("docker-content-digest", &digest);
        assert!(
            r.body == body.as_bytes(),
            "manifest was not served byte-exact:\n{r}"
        );
    }
}

/// Issue: "Docker schema 2 manifest and manifest list ... accepted".
#[tokio::test]
async fn docker_schema2_manifest_and_list() {
    let reg = Reg::start();
    let config = unique_config();
    let layer = random_bytes(400);
    reg.push_blob("man/docker", &config).await;
    reg.push_blob("man/docker", &layer).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap();
    reg.push_manifest("man/docker", "amd64", DOCKER_MANIFEST, &manifest)
        .await;
    let mut child = manifest_descriptor(DOCKER_MANIFEST, &manifest);
    child["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let list = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child]}),
    )
    .unwrap();
    let digest = reg
        .push_manifest("man/docker", "multi", DOCKER_LIST, &list)
        .await;
    let r = reg.get_manifest("man/docker", "multi").await;
    r.expect_status(200)
        .expect_header("content-type", DOCKER_LIST)
        .expect_header("docker-content-digest", &digest);
    assert!(r.body == list);
}

/// Issue: "OCI image manifest and index ... accepted", including an index of indexes (v1.2
/// suite data set "index list") and served with the index media type.
#[tokio::test]
async fn oci_manifest_index_and_nested_index() {
    let reg = Reg::start();
    let a = reg.push_image("man/oci", "a").await;
    let b = reg.push_image("man/oci", "b").await;
    let mut da = manifest_descriptor(OCI_MANIFEST, &a.manifest);
    da["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut db = manifest_descriptor(OCI_MANIFEST, &b.manifest);
    db["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = image_index(&[da, db]);
    let idx_digest = reg
        .push_manifest("man/oci", "index", OCI_INDEX, &index)
        .await;
    let outer = image_index(&[manifest_descriptor(OCI_INDEX, &index)]);
    reg.push_manifest("man/oci", "outer", OCI_INDEX, &outer)
        .await;
    let r = reg.get_manifest("man/oci", "index").await;
    r.expect_status(200)
        .expect_header("content-type", OCI_INDEX)
        .expect_header("docker-content-digest", &idx_digest);
    assert!(r.body == index);
}

/// Issue: "OCI artifacts (`artifactType`, empty config `application/vnd.oci.empty.v1+json`
/// `{}`) ... the `data` field all accepted" (image-spec: the empty descriptor may carry
/// `"data": "e30="`).
#[tokio::test]
async fn oci_artifact_with_empty_config_and_data_field() {
    let reg = Reg::start();
    reg.push_blob("man/artifact", b"{}").await;
    let payload = random_bytes(256);
    reg.push_blob("man/artifact", &payload).await;
    let mut config = empty_descriptor();
    config["data"] = json!("e30=");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing.v1",
        "config": config,
        "layers": [descriptor("application/vnd.example.thing.layer.v1+tar", &payload)],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    }))
    .unwrap();
    reg.push_manifest("man/artifact", "art", OCI_MANIFEST, &manifest)
        .await;
    assert!(reg.get_manifest("man/artifact", "art").await.body == manifest);
}

/// Issue: "custom fields, empty layer lists" accepted; spec: "the list of blobs **MAY** be
/// empty"; v1.1.1 suite pushes a config descriptor with a `data` field and an unknown field.
#[tokio::test]
async fn custom_fields_and_no_layers() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("man/custom", &config).await;
    let mut cdesc = descriptor(OCI_CONFIG, &config);
    cdesc["data"] = json!(encode_base64(&config));
    cdesc["com.example.unknown"] = json!({"nested": [1, 2, 3]});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cdesc,
        "layers": [],
        "x-custom-top-level": true
    }))
    .unwrap();
    reg.push_manifest("man/custom", "custom", OCI_MANIFEST, &manifest)
        .await;
    assert!(reg.get_manifest("man/custom", "custom").await.body == manifest);

    // A manifest without the optional `mediaType` field, typed only by Content-Type.
    let bare = serde_json::to_vec(
        &json!({"schemaVersion": 2, "config": descriptor(OCI_CONFIG, &config), "layers": []}),
    )
    .unwrap();
    reg.push_manifest("man/custom", "bare", OCI_MANIFEST, &bare)
        .await;
    reg.get_manifest("man/custom", "bare")
        .await
        .expect_status(200)
        .expect_header("content-type", OCI_MANIFEST);
}

/// Spec: "Registries **SHOULD** ignore any parameters if they are present" (on the PUT
/// Content-Type) and "Registries should not include parameters" on GET.
#[tokio::test]
async fn content_type_parameters_ignored() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("man/params", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    reg.push_manifest(
        "man/params",
        "p",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
        &manifest,
    )
    .await;
    reg.get_manifest("man/params", "p")
        .await
        .expect_status(200)
        .expect_header("content-type", OCI_MANIFEST);
}

/// Issue: "A body whose `mediaType` contradicts its Content-Type is MANIFEST_INVALID (400)."
/// (Spec: "If a manifest includes a `mediaType` field, clients **MUST** set `Content-Type` to
/// exactly that value.")
#[tokio::test]
async fn media_type_contradicting_content_type() {
    let reg = Reg::start();
    let img = reg.push_image("man/contra", "ok").await;
    reg.put_manifest("man/contra", "bad", OCI_INDEX, &img.manifest)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    reg.put_manifest("man/contra", "bad", DOCKER_MANIFEST, &img.manifest)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    let index = image_index(&[manifest_descriptor(OCI_MANIFEST, &img.manifest)]);
    reg.put_manifest("man/contra", "bad", OCI_MANIFEST, &index)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    reg.get_manifest("man/contra", "bad")
        .await
        .expect_status(404);
}

/// Issue: "Docker schema 1 (`application/vnd.docker.distribution.manifest.v1+prettyjws` or
/// schemaVersion 1) refused with 400 MANIFEST_INVALID and a message mentioning schema 1."
#[tokio::test]
async fn docker_schema1_refused() {
    let reg = Reg::start();
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": "man/schema1",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256_digest(b"x")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": []
    }))
    .unwrap();
    for ct in [DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1, OCI_MANIFEST] {
        let r = reg.put_manifest("man/schema1", "latest", ct, &body).await;
        r.expect_error(400, "MANIFEST_INVALID");
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            [
                "schema 1",
                "schema1",
                "schema version 1",
                "schemaversion 1",
                "schemaversion: 1"
            ]
            .iter()
            .any(|s| msg.contains(s)),
            "schema 1 refusal message should mention schema 1 (Content-Type {ct}):\n{r}"
        );
    }
}

/// Issue: "malformed ... JSON ... get a 4xx with the right code (... MANIFEST_INVALID ...)".
#[tokio::test]
async fn invalid_manifests_are_manifest_invalid() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("man/invalid", &config).await;
    let c = descriptor(OCI_CONFIG, &config);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{this is not json".to_vec()),
        ("empty body", Vec::new()),
        ("json array", b"[1,2,3]".to_vec()),
        ("no schemaVersion", serde_json::to_vec(&json!({"mediaType": OCI_MANIFEST, "config": c, "layers": []})).unwrap()),
        ("schemaVersion 3", serde_json::to_vec(&json!({"schemaVersion": 3, "config": c, "layers": []})).unwrap()),
        ("no config", serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []})).unwrap()),
        ("layers not array", serde_json::to_vec(&json!({"schemaVersion": 2, "config": c, "layers": {}})).unwrap()),
        ("negative size", {
            let mut bad = c.clone();
            bad["size"] = json!(-1);
            serde_json::to_vec(&json!({"schemaVersion": 2, "config": bad, "layers": []})).unwrap()
        }),
        ("descriptor without digest", serde_json::to_vec(
            &json!({"schemaVersion": 2, "config": {"mediaType": OCI_CONFIG, "size": 2}, "layers": []}),
        )
        .unwrap()),
        ("trailing garbage", [image_manifest(&c, &[]), b" x".to_vec()].concat()),
        ("two documents", [image_manifest(&c, &[]), image_manifest(&c, &[])].concat()),
        ("layers with null", serde_json::to_vec(&json!({"schemaVersion": 2, "config": c, "layers": [null]})).unwrap()),
        ("index manifests not array", serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": "x"})).unwrap()),
    ];
    for (what, body) in cases {
        let ct = if what.starts_with("index") {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        };
        let r = reg.put_manifest("man/invalid", "t", ct, &body).await;
        assert_eq!(r.status, 400, "{what}: expected 400:\n{r}");
        let code = r.error_code();
        assert_eq!(
            code, "MANIFEST_INVALID",
            "{what}: expected MANIFEST_INVALID:\n{r}"
        );
    }
    // A descriptor whose digest is malformed: MANIFEST_INVALID or DIGEST_INVALID.
    let mut bad = c.clone();
    bad["digest"] = json!("sha256:nothex");
    let body =
        serde_json::to_vec(&json!({"schemaVersion": 2, "config": bad, "layers": []})).unwrap();
    reg.put_manifest("man/invalid", "t", OCI_MANIFEST, &body)
        .await
        .expect_error_any(400, &["MANIFEST_INVALID", "DIGEST_INVALID"]);
    reg.get_manifest("man/invalid", "t")
        .await
        .expect_status(404);
}

/// Spec: "Clients and registries **SHOULD** expect to support manifest uploads of at least 4
/// MiB" and "If a manifest exceeds this limit, the registry **SHOULD** respond with 413".
/// Issue: "Size limit: 4 MiB accepted, 413 above the configured limit" (default 4194304).
#[tokio::test]
async fn four_mib_manifest_accepted_and_larger_refused() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("man/size", &config).await;
    let exact = padded_manifest(&config, 4 * 1024 * 1024);
    assert_eq!(exact.len(), 4 * 1024 * 1024);
    let digest = reg
        .push_manifest("man/size", "big", OCI_MANIFEST, &exact)
        .await;
    let r = reg.get_manifest("man/size", &digest).await;
    r.expect_status(200);
    assert!(r.body == exact);

    let over = padded_manifest(&config, 4 * 1024 * 1024 + 1);
    let r = reg
        .put_manifest("man/size", "too-big", OCI_MANIFEST, &over)
        .await;
    r.expect_error_any(413, &["SIZE_INVALID", "MANIFEST_INVALID"]);
    reg.get_manifest("man/size", "too-big")
        .await
        .expect_status(404);
}

/// Issue: "413 above the configured limit" with `[manifests] max_size` raised to 5 MiB (the
/// server refuses limits below the 4 MiB the spec asks registries to support).
#[tokio::test]
async fn configured_manifest_limit() {
    const LIMIT: usize = 5 * 1024 * 1024;
    let reg = Reg::start_with_config(&format!("[manifests]\nmax_size = {LIMIT}\n"));
    let config = unique_config();
    reg.push_blob("man/limit", &config).await;
    reg.push_manifest(
        "man/limit",
        "fits",
        OCI_MANIFEST,
        &padded_manifest(&config, LIMIT),
    )
    .await;
    let r = reg
        .put_manifest(
            "man/limit",
            "over",
            OCI_MANIFEST,
            &padded_manifest(&config, LIMIT + 1),
        )
        .await;
    r.expect_error_any(413, &["SIZE_INVALID", "MANIFEST_INVALID"]);
    reg.get_manifest("man/limit", "over")
        .await
        .expect_status(404);
}

/// Spec: a tag may be overwritten; the newest manifest wins and the old stays by digest.
#[tokio::test]
async fn tag_overwrite() {
    let reg = Reg::start();
    let a = reg.push_image("man/overwrite", "latest").await;
    let b = reg.push_image("man/overwrite", "latest").await;
    let r = reg.get_manifest("man/overwrite", "latest").await;
    r.expect_header("docker-content-digest", &b.digest);
    assert!(r.body == b.manifest);
    reg.get_manifest("man/overwrite", &a.digest)
        .await
        .expect_status(200);
}

/// An OCI manifest of exactly `size` bytes (padding in an annotation).
fn padded_manifest(config: &[u8], size: usize) -> Vec<u8> {
    let build = |pad: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [],
            "annotations": {"pad": "p".repeat(pad)}
        }))
        .unwrap()
    };
    let base = build(0).len();
    assert!(
        size >= base,
        "size {size} below the minimal manifest {base}"
    );
    build(size - base)
}

fn encode_base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
