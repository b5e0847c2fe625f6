//! OCI conformance, category "Pull": the API version check, GET/HEAD of blobs and manifests by
//! tag and by digest, and the per-repository visibility of blobs.
//!
//! Each test starts its own `stowage` process on a fresh data directory and talks to it over
//! real TCP. Range requests on blobs are in `conformance_ranges.rs`.

mod common;

use common::*;

/// Spec (Determining Support): "perform a `GET` request to the following endpoint: `/v2/`. If
/// the response is `200 OK`, then the registry implements this specification."
/// Issue: "`Docker-Distribution-API-Version: registry/2.0` on every response (including errors
/// and /v2/)" and "Pull: GET/HEAD `/v2/`".
#[tokio::test]
async fn api_version_check_get_and_head() {
    let reg = Reg::start();
    reg.get("/v2/")
        .await
        .expect_status(200)
        .expect_header("docker-distribution-api-version", "registry/2.0");
    reg.head("/v2/")
        .await
        .expect_status(200)
        .expect_header("docker-distribution-api-version", "registry/2.0");
    // Without the trailing slash clients still probe `/v2`; it must not be a server error.
    let r = reg.get("/v2").await;
    assert!(
        r.status == 200 || (300..400).contains(&r.status) || r.status == 404,
        "GET /v2:\n{r}"
    );
}

/// Spec (Pulling blobs): "A request for an existing blob **must** return 200 OK, Body: the
/// blob's raw bytes, Headers: `Docker-Content-Digest: <digest>` ... **must** match the digest of
/// the returned blob". HEAD: "`Content-Length: <size in bytes>` The exact size of the stored
/// object. A `HEAD` response **must not** include a response body."
/// Issue: "`Content-Length` on HEAD equal to GET".
#[tokio::test]
async fn blob_get_and_head() {
    let reg = Reg::start();
    let data = random_bytes(70_000);
    let digest = reg.push_blob("pull/blob", &data).await;
    let path = format!("/v2/pull/blob/blobs/{digest}");

    let get = reg.get(&path).await;
    get.expect_status(200)
        .expect_header("docker-content-digest", &digest);
    assert!(
        get.body == data,
        "blob body differs from what was pushed:\n{get}"
    );
    assert_eq!(
        get.header("content-length"),
        Some(data.len().to_string().as_str()),
        "GET Content-Length:\n{get}"
    );

    let head = reg.head(&path).await;
    head.expect_status(200)
        .expect_header("docker-content-digest", &digest);
    assert_eq!(
        head.header("content-length"),
        get.header("content-length"),
        "HEAD vs GET Content-Length:\n{head}"
    );
}

/// Spec: "If the blob does not exist in the repository, the registry **must** return 404 Not
/// Found" (code-1 `BLOB_UNKNOWN`), for GET and HEAD, in a repository that exists and one that
/// does not.
#[tokio::test]
async fn blob_missing_is_404() {
    let reg = Reg::start();
    reg.push_blob("pull/exists", b"some blob").await;
    let missing = sha256_digest(b"never pushed");
    for repo in ["pull/exists", "pull/never-created"] {
        reg.get(&format!("/v2/{repo}/blobs/{missing}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        reg.head(&format!("/v2/{repo}/blobs/{missing}"))
            .await
            .expect_status(404);
    }
}

/// Issue: "A blob stored once is shared, but readable only through repositories that link it:
/// blob pushed to repo a is 404 BLOB_UNKNOWN via repo b."
#[tokio::test]
async fn blob_readable_only_through_linking_repository() {
    let reg = Reg::start();
    let data = random_bytes(512);
    let digest = reg.push_blob("team/a", &data).await;
    reg.push_blob("team/b", b"b has something else").await;
    reg.get(&format!("/v2/team/a/blobs/{digest}"))
        .await
        .expect_status(200);
    reg.get(&format!("/v2/team/b/blobs/{digest}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/team/b/blobs/{digest}"))
        .await
        .expect_status(404);
    reg.get(&format!("/v2/team/c/blobs/{digest}"))
        .await
        .expect_status(404);

    // Pushing the same bytes to b links them there too (dedup must not skip the link).
    reg.push_blob("team/b", &data).await;
    let r = reg.get(&format!("/v2/team/b/blobs/{digest}")).await;
    r.expect_status(200);
    assert!(r.body == data);
}

/// Spec (Pulling manifests): "A successful response **must** include `Content-Type: <manifest
/// media type>` ... should match the `Content-Type` used when the manifest was pushed" and
/// "`Docker-Content-Digest`"; "Body: the manifest, byte-for-byte as stored."
/// Issue: "`Docker-Content-Digest` ... for a tag the digest the manifest was pushed under.
/// `Content-Length` on HEAD equal to GET; manifest `Content-Type` as pushed."
#[tokio::test]
async fn manifest_get_and_head_by_tag_and_digest() {
    let reg = Reg::start();
    let img = reg.push_image("pull/manifest", "v1").await;
    for reference in ["v1", img.digest.as_str()] {
        let get = reg.get_manifest("pull/manifest", reference).await;
        get.expect_status(200)
            .expect_header("docker-content-digest", &img.digest)
            .expect_header("content-type", OCI_MANIFEST);
        assert!(get.body == img.manifest, "manifest not byte-exact:\n{get}");
        let len = img.manifest.len().to_string();
        assert_eq!(
            get.header("content-length"),
            Some(len.as_str()),
            "GET Content-Length:\n{get}"
        );

        let head = reg.head_manifest("pull/manifest", reference).await;
        head.expect_status(200)
            .expect_header("docker-content-digest", &img.digest)
            .expect_header("content-type", OCI_MANIFEST);
        assert_eq!(
            head.header("content-length"),
            Some(len.as_str()),
            "HEAD Content-Length:\n{head}"
        );
    }
}

/// Spec: "If the manifest is not found in the registry, the response code MUST be 404 Not
/// Found" (code-7 `MANIFEST_UNKNOWN`), by tag and by digest, GET and HEAD.
#[tokio::test]
async fn manifest_missing_is_404() {
    let reg = Reg::start();
    reg.push_image("pull/m", "present").await;
    let missing = sha256_digest(b"no such manifest");
    for reference in ["absent", missing.as_str()] {
        reg.get_manifest("pull/m", reference)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        reg.head_manifest("pull/m", reference)
            .await
            .expect_status(404);
    }
    // A repository that does not exist at all.
    let r = reg.get_manifest("pull/nothing-here", "latest").await;
    r.expect_error_any(404, &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
}

/// A reference that is neither a valid tag nor a valid digest names a manifest that cannot exist:
/// GET and HEAD answer 404 `MANIFEST_UNKNOWN`, as the spec's released conformance suite (its
/// `.INVALID_MANIFEST_NAME` probe) and distribution do; a PUT under such a tag stays 400
/// `TAG_INVALID` and stores nothing.
#[tokio::test]
async fn manifest_reference_that_cannot_exist_is_404() {
    let reg = Reg::start();
    let image = reg.push_image("pull/inv", "present").await;
    for reference in [".INVALID_MANIFEST_NAME", "-dash", "sha256:notadigest"] {
        reg.get_manifest("pull/inv", reference)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        reg.head_manifest("pull/inv", reference)
            .await
            .expect_status(404);
    }
    let r = reg
        .put_manifest(
            "pull/inv",
            ".INVALID_MANIFEST_NAME",
            OCI_MANIFEST,
            &image.manifest,
        )
        .await;
    r.expect_error(400, "TAG_INVALID");
    let tags = reg.get("/v2/pull/inv/tags/list").await;
    tags.expect_status(200);
    let listed: serde_json::Value = serde_json::from_slice(&tags.body).expect("tags JSON");
    assert_eq!(listed["tags"], serde_json::json!(["present"]), "{tags}");
}

/// Spec: a manifest pushed under a Docker media type is served with that media type; issue:
/// "Docker schema 2 manifest and manifest list ... stored and served byte-exact" and
/// "manifest `Content-Type` as pushed".
#[tokio::test]
async fn docker_manifest_served_with_pushed_content_type() {
    let reg = Reg::start();
    let config = unique_config();
    let layer = random_bytes(300);
    reg.push_blob("pull/docker", &config).await;
    reg.push_blob("pull/docker", &layer).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap();
    let digest = reg
        .push_manifest("pull/docker", "d1", DOCKER_MANIFEST, &manifest)
        .await;
    let get = reg.get_manifest("pull/docker", "d1").await;
    get.expect_status(200)
        .expect_header("content-type", DOCKER_MANIFEST)
        .expect_header("docker-content-digest", &digest);
    assert!(get.body == manifest);
}

/// Spec: manifests are content-addressed; pulling by digest works in every repository that
/// holds it and in no other (a manifest in repo a is not visible through repo b).
#[tokio::test]
async fn manifest_visible_only_in_its_repository() {
    let reg = Reg::start();
    let img = reg.push_image("scope/a", "t").await;
    reg.push_image("scope/b", "t").await;
    reg.get_manifest("scope/a", &img.digest)
        .await
        .expect_status(200);
    reg.get_manifest("scope/b", &img.digest)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Spec (Pushing Manifests): the PUT response "**MUST** include `Location: <location>` where
/// `<location>` is a pullable URL for the manifest".
#[tokio::test]
async fn manifest_put_location_is_pullable() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("pull/loc", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let r = reg
        .put_manifest("pull/loc", "v1", OCI_MANIFEST, &manifest)
        .await;
    r.expect_status(201);
    let pulled = reg
        .send(
            reg.req(reqwest::Method::GET, &r.location())
                .header("accept", ACCEPT_ALL),
        )
        .await;
    pulled.expect_status(200);
    assert!(
        pulled.body == manifest,
        "manifest at the PUT Location differs:\n{pulled}"
    );
}

/// Spec (Registry Proxying): "A `ns` query parameter on pull operations is OPTIONAL ... A
/// registry MAY choose to ignore the `ns` query parameter." containerd sends it to mirrors;
/// pulls with it must still work.
#[tokio::test]
async fn pull_with_ns_parameter() {
    let reg = Reg::start();
    let img = reg.push_image("pull/ns", "v1").await;
    let r = reg.get_manifest("pull/ns", "v1?ns=docker.io").await;
    r.expect_status(200)
        .expect_header("docker-content-digest", &img.digest);
    let layer = img.layer["digest"].as_str().unwrap();
    let r = reg
        .get(&format!("/v2/pull/ns/blobs/{layer}?ns=docker.io"))
        .await;
    r.expect_status(200);
    assert!(r.body == img.layer_bytes);
}
