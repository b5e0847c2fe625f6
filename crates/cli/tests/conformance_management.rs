//! OCI conformance, category "Content Management": deleting tags, manifests and blobs, and the
//! `delete_enabled = false` configuration.
//!
//! Spec: tag delete "Upon success, the registry MUST respond with a `202 Accepted` code";
//! manifest delete: "Once deleted, a `GET` to `/v2/<name>/manifests/<digest>` and any tag
//! pointing to that digest will return a 404"; blob delete: "Upon success ... `202 Accepted`. If
//! the blob is not found, a `404 Not Found` code MUST be returned"; "If ... deletion is disabled,
//! the registry MUST respond with either a `400 Bad Request` or a `405 Method Not Allowed`".
//! Issue: "delete a manifest by digest (202; every tag pointing at it goes too); delete a tag
//! (202; the manifest stays reachable by digest); delete a blob from a repository (202, then
//! 404). With `delete_enabled = false` -> 405 with code UNSUPPORTED."

mod common;

use common::*;

/// Spec: "Once deleted, a `GET` to `/v2/<name>/manifests/<digest>` and any tag pointing to that
/// digest will return a 404"; issue: "delete a manifest by digest (202; every tag pointing at it
/// goes too)".
#[tokio::test]
async fn delete_manifest_by_digest_removes_its_tags() {
    let reg = Reg::start();
    let img = reg.push_image("mgmt/m", "t1").await;
    reg.push_manifest("mgmt/m", "t2", OCI_MANIFEST, &img.manifest)
        .await;
    let keep = reg.push_image("mgmt/m", "t3").await;

    reg.delete(&format!("/v2/mgmt/m/manifests/{}", img.digest))
        .await
        .expect_status(202);
    reg.get_manifest("mgmt/m", &img.digest)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest("mgmt/m", &img.digest)
        .await
        .expect_status(404);
    for t in ["t1", "t2"] {
        reg.get_manifest("mgmt/m", t)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    reg.get_manifest("mgmt/m", "t3")
        .await
        .expect_status(200)
        .expect_header("docker-content-digest", &keep.digest);
    assert_eq!(reg.tags("mgmt/m").await, ["t3"]);
}

/// Spec: "To delete a tag ... Upon success, the registry MUST respond with a `202 Accepted`
/// code ... Once deleted, a `GET` to `/v2/<name>/manifests/<tag>` will return a 404"; issue:
/// "delete a tag (202; the manifest stays reachable by digest)".
#[tokio::test]
async fn delete_tag_keeps_manifest() {
    let reg = Reg::start();
    let img = reg.push_image("mgmt/t", "t1").await;
    reg.push_manifest("mgmt/t", "t2", OCI_MANIFEST, &img.manifest)
        .await;

    reg.delete("/v2/mgmt/t/manifests/t1")
        .await
        .expect_status(202);
    reg.get_manifest("mgmt/t", "t1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get_manifest("mgmt/t", "t2").await.expect_status(200);
    let r = reg.get_manifest("mgmt/t", &img.digest).await;
    r.expect_status(200);
    assert!(r.body == img.manifest);
    assert_eq!(reg.tags("mgmt/t").await, ["t2"]);
}

/// Spec: blob DELETE "Upon success, the registry MUST respond with code `202 Accepted`. If the
/// blob is not found, a `404 Not Found` code MUST be returned"; issue: "delete a blob from a
/// repository (202, then 404)" - only from that repository.
#[tokio::test]
async fn delete_blob() {
    let reg = Reg::start();
    let data = random_bytes(300);
    let digest = reg.push_blob("mgmt/b", &data).await;
    reg.push_blob("mgmt/b2", &data).await;

    reg.delete(&format!("/v2/mgmt/b/blobs/{digest}"))
        .await
        .expect_status(202);
    reg.get(&format!("/v2/mgmt/b/blobs/{digest}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/mgmt/b/blobs/{digest}"))
        .await
        .expect_status(404);
    // Another repository linking the same content is unaffected.
    let r = reg.get(&format!("/v2/mgmt/b2/blobs/{digest}")).await;
    r.expect_status(200);
    assert!(r.body == data);
    // Deleting again: the blob is not found.
    reg.delete(&format!("/v2/mgmt/b/blobs/{digest}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

/// After deleting a blob from a repository, a manifest there can no longer reference it.
#[tokio::test]
async fn deleted_blob_no_longer_satisfies_manifests() {
    let reg = Reg::start();
    let img = reg.push_image("mgmt/bm", "v1").await;
    let layer = img.layer["digest"].as_str().unwrap();
    reg.delete(&format!("/v2/mgmt/bm/blobs/{layer}"))
        .await
        .expect_status(202);
    let r = reg
        .put_manifest("mgmt/bm", "v2", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Deleting what does not exist: 404 with the matching code.
#[tokio::test]
async fn delete_unknown_things() {
    let reg = Reg::start();
    reg.push_image("mgmt/u", "v1").await;
    let missing = sha256_digest(b"missing");
    reg.delete(&format!("/v2/mgmt/u/manifests/{missing}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete("/v2/mgmt/u/manifests/no-such-tag")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&format!("/v2/mgmt/u/blobs/{missing}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // Spec: "If the repository does not exist, the response MUST return `404 Not Found`."
    let r = reg
        .delete(&format!("/v2/mgmt/nope/manifests/{missing}"))
        .await;
    r.expect_error_any(404, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let r = reg.delete(&format!("/v2/mgmt/nope/blobs/{missing}")).await;
    r.expect_error_any(404, &["NAME_UNKNOWN", "BLOB_UNKNOWN"]);
    // A malformed digest is a 400, not a 404.
    reg.delete("/v2/mgmt/u/blobs/sha256:xyz")
        .await
        .expect_error(400, "DIGEST_INVALID");
}

/// Issue: "With `delete_enabled = false` -> 405 with code UNSUPPORTED", and nothing is deleted.
#[tokio::test]
async fn delete_disabled_is_405_unsupported() {
    let reg = Reg::start_with_config("delete_enabled = false\n");
    let img = reg.push_image("mgmt/ro", "v1").await;
    let layer = img.layer["digest"].as_str().unwrap().to_string();
    for path in [
        format!("/v2/mgmt/ro/manifests/{}", img.digest),
        "/v2/mgmt/ro/manifests/v1".to_string(),
        format!("/v2/mgmt/ro/blobs/{layer}"),
    ] {
        reg.delete(&path).await.expect_error(405, "UNSUPPORTED");
    }
    reg.get_manifest("mgmt/ro", "v1").await.expect_status(200);
    reg.get_manifest("mgmt/ro", &img.digest)
        .await
        .expect_status(200);
    reg.get(&format!("/v2/mgmt/ro/blobs/{layer}"))
        .await
        .expect_status(200);
    // Cancelling an upload is not content deletion and still works.
    let loc = reg.start_upload("mgmt/ro").await;
    reg.delete(&loc).await.expect_status(204);
}

/// Deleting an index leaves its children; deleting a child referenced by an index is allowed
/// (the spec defines no referential-integrity error for DELETE).
#[tokio::test]
async fn delete_index_keeps_children() {
    let reg = Reg::start();
    let img = reg.push_image("mgmt/idx", "child").await;
    let index = image_index(&[manifest_descriptor(OCI_MANIFEST, &img.manifest)]);
    let idx = reg
        .push_manifest("mgmt/idx", "multi", OCI_INDEX, &index)
        .await;
    reg.delete(&format!("/v2/mgmt/idx/manifests/{idx}"))
        .await
        .expect_status(202);
    reg.get_manifest("mgmt/idx", "multi")
        .await
        .expect_status(404);
    reg.get_manifest("mgmt/idx", "child")
        .await
        .expect_status(200);
}

/// A deleted manifest can be pushed again (and its tags re-created).
#[tokio::test]
async fn repush_after_delete() {
    let reg = Reg::start();
    let img = reg.push_image("mgmt/again", "v1").await;
    reg.delete(&format!("/v2/mgmt/again/manifests/{}", img.digest))
        .await
        .expect_status(202);
    reg.push_manifest("mgmt/again", "v1", OCI_MANIFEST, &img.manifest)
        .await;
    reg.get_manifest("mgmt/again", "v1")
        .await
        .expect_status(200)
        .expect_header("docker-content-digest", &img.digest);
}

/// A manifest reachable by two digests (pushed by sha512, also addressable by sha256) is one
/// manifest: deleting it by either digest removes both addresses and its tags.
#[tokio::test]
async fn delete_manifest_with_two_digests() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("mgmt/two", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let d512 = sha512_digest(&manifest);
    let d256 = sha256_digest(&manifest);
    let r = reg
        .put_manifest(
            "mgmt/two",
            &format!("{d512}?tag=t"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    r.expect_status(201);
    reg.delete(&format!("/v2/mgmt/two/manifests/{d256}"))
        .await
        .expect_status(202);
    for reference in [d512.as_str(), d256.as_str(), "t"] {
        reg.get_manifest("mgmt/two", reference)
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
}

/// A blob deleted from a repository can be pushed there again and is served again.
#[tokio::test]
async fn repush_blob_after_delete() {
    let reg = Reg::start();
    let data = random_bytes(123);
    let digest = reg.push_blob("mgmt/blob-again", &data).await;
    reg.delete(&format!("/v2/mgmt/blob-again/blobs/{digest}"))
        .await
        .expect_status(202);
    reg.push_blob("mgmt/blob-again", &data).await;
    let r = reg
        .get(&format!("/v2/mgmt/blob-again/blobs/{digest}"))
        .await;
    r.expect_status(200);
    assert!(r.body == data);
}
