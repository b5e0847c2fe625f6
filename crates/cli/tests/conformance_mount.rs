//! OCI conformance, cross-repository blob mount (end-11).
//!
//! Spec: "The response to a successful mount MUST be `201 Created`, and MUST contain
//! `Location: <blob-location>`"; "The registry MAY treat the `from` parameter as optional";
//! "if a registry ... is unable to mount the requested blob, it SHOULD return a `202`. This
//! indicates that the upload session has begun". Issue: "Cross-repository mount with `from`
//! (201, Location, Docker-Content-Digest, blob then readable in the target repo); without
//! `from` it mounts only if the blob is already linked in some repository (201), and otherwise
//! silently starts a normal upload (202) so existence is never revealed; mount of an unknown
//! digest -> 202 upload."

mod common;

use common::*;
use reqwest::Method;

async fn mount(reg: &Reg, repo: &str, query: &str) -> Resp {
    reg.send(
        reg.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/?{query}"))
            .header("content-length", "0"),
    )
    .await
}

/// A 202 from a mount request must be a usable upload session: finish it with a PUT.
async fn expect_upload_started(reg: &Reg, r: &Resp, data: &[u8]) {
    r.expect_status(202);
    let loc = r.location();
    assert!(
        strip_origin(&loc).contains("/blobs/uploads/"),
        "202 Location is not an upload:\n{r}"
    );
    reg.get(&loc).await.expect_status(204);
    reg.put_upload(&loc, &sha256_digest(data), data)
        .await
        .expect_status(201);
}

/// Mount with `from` naming a repository that links the blob: 201 + Location +
/// Docker-Content-Digest, and the blob is then readable in the target repository.
#[tokio::test]
async fn mount_with_from() {
    let reg = Reg::start();
    let data = random_bytes(777);
    let digest = reg.push_blob("mount/src", &data).await;
    reg.get(&format!("/v2/mount/dst/blobs/{digest}"))
        .await
        .expect_status(404);

    let r = mount(&reg, "mount/dst", &format!("mount={digest}&from=mount/src")).await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let pull = reg.get(&r.location()).await;
    pull.expect_status(200);
    assert!(pull.body == data);
    let direct = reg.get(&format!("/v2/mount/dst/blobs/{digest}")).await;
    direct
        .expect_status(200)
        .expect_header("docker-content-digest", &digest);
    assert!(direct.body == data);
}

/// The mounted blob satisfies a manifest in the target repository (issue: "A blob pushed to
/// repo A is NOT usable by a manifest in repo B unless mounted").
#[tokio::test]
async fn mounted_blobs_satisfy_manifests() {
    let reg = Reg::start();
    let img = reg.push_image("mount/base", "v1").await;
    for d in [&img.config, &img.layer] {
        let digest = d["digest"].as_str().unwrap();
        mount(
            &reg,
            "mount/derived",
            &format!("mount={digest}&from=mount/base"),
        )
        .await
        .expect_status(201);
    }
    reg.push_manifest("mount/derived", "v1", OCI_MANIFEST, &img.manifest)
        .await;
}

/// Issue: "without `from` it mounts only if the blob is already linked in some repository
/// (201)".
#[tokio::test]
async fn mount_without_from_of_linked_blob() {
    let reg = Reg::start();
    let data = random_bytes(100);
    let digest = reg.push_blob("mount/anon-src", &data).await;
    let r = mount(&reg, "mount/anon-dst", &format!("mount={digest}")).await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    assert!(
        reg.get(&format!("/v2/mount/anon-dst/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// Issue: "... and otherwise silently starts a normal upload (202) so existence is never
/// revealed". A blob whose only link was removed is no longer mountable anonymously.
#[tokio::test]
async fn mount_without_from_of_unlinked_blob_starts_upload() {
    let reg = Reg::start();
    let data = random_bytes(100);
    let digest = reg.push_blob("mount/gone", &data).await;
    reg.delete(&format!("/v2/mount/gone/blobs/{digest}"))
        .await
        .expect_status(202);
    let r = mount(&reg, "mount/elsewhere", &format!("mount={digest}")).await;
    expect_upload_started(&reg, &r, &data).await;
}

/// v1.1.1 suite: "Cross-mounting of nonexistent blob should yield session id" (202), with and
/// without `from`.
#[tokio::test]
async fn mount_of_unknown_digest_starts_upload() {
    let reg = Reg::start();
    reg.push_blob("mount/has-stuff", b"something").await;
    let data = random_bytes(64);
    let digest = sha256_digest(&data);
    let r = mount(
        &reg,
        "mount/target",
        &format!("mount={digest}&from=mount/has-stuff"),
    )
    .await;
    expect_upload_started(&reg, &r, &data).await;

    let other = random_bytes(65);
    let r = mount(
        &reg,
        "mount/target2",
        &format!("mount={}", sha256_digest(&other)),
    )
    .await;
    expect_upload_started(&reg, &r, &other).await;
}

/// `from` naming a repository that does not link the blob (or does not exist) must not mount
/// it, even when the blob is stored for another repository: the answer is a 202 upload.
#[tokio::test]
async fn mount_from_repository_without_the_blob_starts_upload() {
    let reg = Reg::start();
    let data = random_bytes(90);
    let digest = reg.push_blob("mount/owner", &data).await;
    reg.push_blob("mount/bystander", b"unrelated").await;
    for from in ["mount/bystander", "mount/no-such-repo"] {
        let r = mount(&reg, "mount/thief", &format!("mount={digest}&from={from}")).await;
        match r.status {
            // The registry MAY treat `from` as optional, and the blob is linked in mount/owner.
            201 => {}
            202 => assert!(strip_origin(&r.location()).contains("/blobs/uploads/")),
            _ => panic!("mount from {from}: expected 201 or 202:\n{r}"),
        }
    }
}

/// A malformed mount digest is a client error, never a 5xx: either 400 `DIGEST_INVALID` or a
/// plain upload session (202).
#[tokio::test]
async fn mount_with_malformed_digest() {
    let reg = Reg::start();
    let r = mount(&reg, "mount/bad", "mount=sha256:nothex&from=mount/src").await;
    match r.status {
        400 => {
            r.expect_error(400, "DIGEST_INVALID");
        }
        202 => {}
        _ => panic!("malformed mount digest: expected 400 or 202:\n{r}"),
    }
}
