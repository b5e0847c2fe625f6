//! OCI conformance, digest algorithms: sha256 and sha512 for blobs and manifests, the v1.2
//! `?digest-algorithm=` upload parameter, and rejection of unsupported algorithms.
//!
//! Issue: "Digests: sha256 and sha512 for blobs and manifests, `?digest-algorithm=sha512` on
//! upload start; a final PUT whose digest uses another algorithm than the session is still
//! verified. Every blob is verified ... Manifests pushed by sha512 digest are also reachable by
//! their sha256 digest. Unsupported algorithm e.g. `md5:...` -> 400 DIGEST_INVALID."

mod common;

use common::*;
use reqwest::Method;

/// A sha512 blob pushed monolithically is served under its sha512 digest.
#[tokio::test]
async fn sha512_blob_monolithic() {
    let reg = Reg::start();
    let data = random_bytes(1500);
    let digest = sha512_digest(&data);
    reg.upload_as("dig/b512", &data, &digest)
        .await
        .expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let r = reg.get(&format!("/v2/dig/b512/blobs/{digest}")).await;
    r.expect_status(200)
        .expect_header("docker-content-digest", &digest);
    assert!(r.body == data);
    reg.head(&format!("/v2/dig/b512/blobs/{digest}"))
        .await
        .expect_status(200);
}

/// Spec v1.2 (end-4c): `POST /v2/<name>/blobs/uploads/?digest-algorithm=<algorithm>` starts a
/// session hashing with that algorithm; chunked upload then finishes with a sha512 digest.
#[tokio::test]
async fn digest_algorithm_sha512_session() {
    let reg = Reg::start();
    let data = random_bytes(300);
    let digest = sha512_digest(&data);
    let loc = reg
        .start_upload_query("dig/session", "digest-algorithm=sha512")
        .await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..100])
        .await
        .expect_status(202)
        .location();
    let loc = reg
        .patch_chunk(&loc, 100, &data[100..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &digest, b"")
        .await
        .expect_status(201)
        .expect_header("docker-content-digest", &digest);
    assert!(
        reg.get(&format!("/v2/dig/session/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// Issue: "a final PUT whose digest uses another algorithm than the session is still
/// verified": a sha512 session closed with a sha256 digest is accepted when right and
/// rejected (DIGEST_INVALID) when wrong; and the reverse.
#[tokio::test]
async fn final_digest_with_other_algorithm_is_verified() {
    let reg = Reg::start();
    let data = random_bytes(200);

    let loc = reg
        .start_upload_query("dig/mixed", "digest-algorithm=sha512")
        .await;
    let loc = reg
        .patch_chunk(&loc, 0, &data)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(b"wrong"), b"")
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/dig/mixed/blobs/{}", sha256_digest(&data)))
        .await
        .expect_status(404);

    let loc = reg
        .start_upload_query("dig/mixed", "digest-algorithm=sha512")
        .await;
    let loc = reg
        .patch_chunk(&loc, 0, &data)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
    reg.get(&format!("/v2/dig/mixed/blobs/{}", sha256_digest(&data)))
        .await
        .expect_status(200);

    let other = random_bytes(201);
    let loc = reg.start_upload("dig/mixed").await;
    let loc = reg
        .patch_chunk(&loc, 0, &other)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha512_digest(b"wrong"), b"")
        .await
        .expect_error(400, "DIGEST_INVALID");
    let loc = reg.start_upload("dig/mixed").await;
    let loc = reg
        .patch_chunk(&loc, 0, &other)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha512_digest(&other), b"")
        .await
        .expect_status(201);
    reg.get(&format!("/v2/dig/mixed/blobs/{}", sha512_digest(&other)))
        .await
        .expect_status(200);
}

/// Single POST with a sha512 digest.
#[tokio::test]
async fn sha512_single_post() {
    let reg = Reg::start();
    let data = random_bytes(99);
    let digest = sha512_digest(&data);
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/dig/post512/blobs/uploads/?digest={digest}"),
            )
            .body(data.clone()),
        )
        .await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    assert!(
        reg.get(&format!("/v2/dig/post512/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// Issue: "Unsupported algorithm e.g. `md5:...` -> 400 DIGEST_INVALID" (spec: "Invalid or
/// unsupported digest -> 400"), on upload PUT, single POST, `digest-algorithm` and blob GET.
#[tokio::test]
async fn unsupported_algorithm_is_digest_invalid() {
    let reg = Reg::start();
    let md5 = "md5:d41d8cd98f00b204e9800998ecf8427e";
    reg.upload_as("dig/md5", b"x", md5)
        .await
        .expect_error(400, "DIGEST_INVALID");
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/dig/md5/blobs/uploads/?digest={md5}"),
            )
            .body("x"),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    let r = reg
        .send(
            reg.req(
                Method::POST,
                "/v2/dig/md5/blobs/uploads/?digest-algorithm=md5",
            )
            .header("content-length", "0"),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.get(&format!("/v2/dig/md5/blobs/{md5}"))
        .await
        .expect_error(400, "DIGEST_INVALID");
    // A manifest reference that cannot exist is not found (issue 9, as distribution and the
    // spec's conformance suite answer), not a malformed request.
    reg.get_manifest("dig/md5", md5)
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Digests whose encoded part has the wrong length or characters for the algorithm are
/// DIGEST_INVALID (400), not 404, for blobs and uploads.
#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let reg = Reg::start();
    reg.push_blob("dig/bad", b"exists").await;
    let short = "sha256:abc";
    let upper = format!("sha256:{}", "A".repeat(64));
    let nonhex = format!("sha256:{}", "z".repeat(64));
    let sha512_short = format!("sha512:{}", "a".repeat(64));
    for d in [
        short,
        upper.as_str(),
        nonhex.as_str(),
        sha512_short.as_str(),
        "sha256:",
        ":abc",
        "sha256",
    ] {
        reg.get(&format!("/v2/dig/bad/blobs/{d}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.upload_as("dig/bad", b"exists", d)
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
    // Reading a manifest by such a reference is MANIFEST_UNKNOWN (404): it cannot exist.
    reg.get_manifest("dig/bad", "sha256:totallywrong")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Issue: "Manifests pushed by sha512 digest are also reachable by their sha256 digest", and
/// "`Docker-Content-Digest` ... the digest in the URL, or for a tag the digest the manifest was
/// pushed under".
#[tokio::test]
async fn sha512_manifest_reachable_by_both_digests() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("dig/m512", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let d512 = sha512_digest(&manifest);
    let d256 = sha256_digest(&manifest);

    let r = reg
        .put_manifest(
            "dig/m512",
            &format!("{d512}?tag=t512"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &d512);

    for (reference, want) in [
        (d512.as_str(), d512.as_str()),
        (d256.as_str(), d256.as_str()),
        ("t512", d512.as_str()),
    ] {
        let r = reg.get_manifest("dig/m512", reference).await;
        r.expect_status(200)
            .expect_header("docker-content-digest", want);
        assert!(r.body == manifest);
        reg.head_manifest("dig/m512", reference)
            .await
            .expect_status(200)
            .expect_header("docker-content-digest", want);
    }
}

/// A manifest may reference its blobs by sha512 descriptors.
#[tokio::test]
async fn manifest_with_sha512_descriptors() {
    let reg = Reg::start();
    let config = unique_config();
    let layer = random_bytes(333);
    for b in [&config, &layer] {
        reg.upload_as("dig/desc512", b, &sha512_digest(b))
            .await
            .expect_status(201);
    }
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": sha512_digest(b), "size": b.len()});
    let manifest = image_manifest(&desc(OCI_CONFIG, &config), &[desc(OCI_LAYER, &layer)]);
    reg.push_manifest("dig/desc512", "v1", OCI_MANIFEST, &manifest)
        .await;

    // The same manifest with a sha512 descriptor for a blob pushed only under sha256 is unknown.
    let other = random_bytes(10);
    reg.push_blob("dig/desc512", &other).await;
    let manifest = image_manifest(&desc(OCI_CONFIG, &config), &[desc(OCI_LAYER, &other)]);
    reg.put_manifest("dig/desc512", "v2", OCI_MANIFEST, &manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Issue: "PUT by digest whose body does not hash to it -> 400 DIGEST_INVALID", for sha256 and
/// sha512 references.
#[tokio::test]
async fn manifest_put_by_mismatched_digest() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("dig/mput", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    for wrong in [sha256_digest(b"other"), sha512_digest(b"other")] {
        reg.put_manifest("dig/mput", &wrong, OCI_MANIFEST, &manifest)
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.get_manifest("dig/mput", &wrong)
            .await
            .expect_status(404);
    }
    reg.get_manifest("dig/mput", &sha256_digest(&manifest))
        .await
        .expect_status(404);
}
