//! OCI conformance, upload-session lifecycle: status (`GET <location>`), cancel
//! (`DELETE <location>`), unguessable ids bound to their repository, resuming across a server
//! restart, and purging of abandoned uploads.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;

/// Spec: "The response to an active upload `<location>` MUST be a `204 No Content` response
/// code, and MUST have the following headers: `Location: <location>`, `Range:
/// 0-<end-of-range>`". Issue: "`GET <location>` answers 204 with `Range`".
#[tokio::test]
async fn upload_status_is_204_with_range() {
    let reg = Reg::start();
    let loc = reg.start_upload("up/status").await;
    let r = reg.get(&loc).await;
    r.expect_status(204);
    assert!(
        r.header("location").is_some(),
        "upload status without Location:\n{r}"
    );

    let loc = reg
        .patch_chunk(&loc, 0, &random_bytes(50))
        .await
        .expect_status(202)
        .location();
    let r = reg.get(&loc).await;
    r.expect_status(204).expect_header("range", "0-49");
    assert!(
        r.header("location").is_some(),
        "upload status without Location:\n{r}"
    );
}

/// Spec (v1.2, end-14): "the session may be canceled with a `DELETE` request ... If successful,
/// the response SHOULD be a `204 No Content`". Issue: "`DELETE <location>` cancels (204, then GET
/// location 404 BLOB_UPLOAD_UNKNOWN)".
#[tokio::test]
async fn cancel_upload() {
    let reg = Reg::start();
    let data = random_bytes(30);
    let loc = reg.start_upload("up/cancel").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data)
        .await
        .expect_status(202)
        .location();
    reg.send(reg.req(Method::DELETE, &loc).header("content-length", "0"))
        .await
        .expect_status(204);
    reg.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&loc, 30, b"more")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// Spec: "The `<location>` MUST contain a UUID representing a unique session ID". Issue:
/// "Upload ids are unguessable (>=122 random bits: check the id in Location has >= 32 hex
/// chars or >=22 base64url chars and two uploads differ)".
#[tokio::test]
async fn upload_ids_are_unguessable() {
    let reg = Reg::start();
    let a = upload_id(&reg.start_upload("up/ids").await);
    let b = upload_id(&reg.start_upload("up/ids").await);
    assert_ne!(a, b, "two uploads got the same id");
    for id in [&a, &b] {
        let hex = id.chars().filter(|c| *c != '-').collect::<String>();
        let enough_hex = hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
        let enough_b64 = id.len() >= 22
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        assert!(
            enough_hex || enough_b64,
            "upload id {id:?} has fewer than 122 random bits"
        );
    }
}

/// Issue: upload ids are "bound to their repository (using the location under another repo name
/// -> 404 BLOB_UPLOAD_UNKNOWN)".
#[tokio::test]
async fn upload_is_bound_to_its_repository() {
    let reg = Reg::start();
    reg.push_blob("up/other", b"makes the other repository exist")
        .await;
    let data = random_bytes(20);
    let loc = reg.start_upload("up/mine").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..10])
        .await
        .expect_status(202)
        .location();
    let path = strip_origin(&loc);
    assert!(
        path.starts_with("/v2/up/mine/blobs/uploads/"),
        "unexpected upload location {loc}"
    );
    let stolen = path.replacen("/v2/up/mine/", "/v2/up/other/", 1);

    reg.get(&stolen)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&stolen, 10, &data[10..])
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put_upload(&stolen, &sha256_digest(&data[..10]), b"")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&stolen)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let never = stolen.replacen("/v2/up/other/", "/v2/up/never-created/", 1);
    reg.get(&never)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");

    // The real session is untouched by the attempts.
    reg.get(&loc)
        .await
        .expect_status(204)
        .expect_header("range", "0-9");
    let loc = reg
        .patch_chunk(&loc, 10, &data[10..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
    reg.head(&format!("/v2/up/other/blobs/{}", sha256_digest(&data)))
        .await
        .expect_status(404);
}

/// A well-formed id that was never issued is unknown (404 `BLOB_UPLOAD_UNKNOWN`).
#[tokio::test]
async fn unknown_upload_id_is_404() {
    let reg = Reg::start();
    let loc = reg.start_upload("up/unknown").await;
    let id = upload_id(&loc);
    let fake: String = id.chars().rev().collect();
    let fake_loc = strip_origin(&loc)
        .split('?')
        .next()
        .unwrap()
        .replacen(&id, &fake, 1);
    reg.get(&fake_loc)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&fake_loc, 0, b"x")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

async fn resume_after_restart(graceful: bool) {
    let mut reg = Reg::start();
    let data = random_bytes(42);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("up/resume").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..22])
        .await
        .expect_status(202)
        .location();

    reg.restart(graceful);

    let status = reg.get(&loc).await;
    status.expect_status(204).expect_header("range", "0-21");
    let loc = reg
        .patch_chunk(&status.location(), 22, &data[22..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &digest, b"").await.expect_status(201);
    let pull = reg.get(&format!("/v2/up/resume/blobs/{digest}")).await;
    pull.expect_status(200);
    assert!(pull.body == data, "resumed blob differs:\n{pull}");
}

/// Issue: "Uploads survive a server restart and can be resumed" (spec use case "Resumable
/// Push"): graceful restart (SIGTERM).
#[tokio::test]
async fn upload_resumes_after_graceful_restart() {
    resume_after_restart(true).await;
}

/// Issue: "Uploads survive a server restart and can be resumed" - after a crash (SIGKILL) too.
#[tokio::test]
async fn upload_resumes_after_crash() {
    resume_after_restart(false).await;
}

/// Blobs and manifests pushed before a restart are still served after it.
#[tokio::test]
async fn content_survives_restart() {
    let mut reg = Reg::start();
    let img = reg.push_image("up/durable", "v1").await;
    reg.restart(false);
    let r = reg.get_manifest("up/durable", "v1").await;
    r.expect_status(200)
        .expect_header("docker-content-digest", &img.digest);
    assert!(r.body == img.manifest);
    let layer = reg
        .get(&format!(
            "/v2/up/durable/blobs/{}",
            img.layer["digest"].as_str().unwrap()
        ))
        .await;
    assert!(layer.body == img.layer_bytes);
}

/// Spec: "If this request fails or is not called, the server SHOULD eventually timeout
/// unfinished uploads." Issue: "abandoned uploads are purged after a configurable age (config
/// `purge_after = "2s"`, `purge_interval = "1s"`, then the upload location gives 404)".
#[tokio::test]
async fn abandoned_uploads_are_purged() {
    let reg = Reg::start_with_config("[uploads]\npurge_after = \"2s\"\npurge_interval = \"1s\"\n");
    let loc = reg.start_upload("up/purge").await;
    let loc = reg
        .patch_chunk(&loc, 0, &random_bytes(100))
        .await
        .expect_status(202)
        .location();
    reg.get(&loc).await.expect_status(204);

    let purged = eventually(Duration::from_secs(20), || async {
        let r = reg.get(&loc).await;
        if r.status == 404 {
            r.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
            true
        } else {
            r.expect_status(204);
            false
        }
    })
    .await;
    assert!(
        purged,
        "upload {loc} still alive 20s after purge_after = 2s"
    );
    reg.patch_chunk(&loc, 100, b"late")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// Purging must not touch uploads that are younger than `purge_after`, nor finished blobs.
#[tokio::test]
async fn purge_spares_young_uploads_and_blobs() {
    let reg = Reg::start_with_config("[uploads]\npurge_after = \"1h\"\npurge_interval = \"1s\"\n");
    let blob = reg.push_blob("up/spare", b"finished blob").await;
    let loc = reg.start_upload("up/spare").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    reg.get(&loc).await.expect_status(204);
    reg.get(&format!("/v2/up/spare/blobs/{blob}"))
        .await
        .expect_status(200);
}

/// Resuming must restore the hash state exactly: a sha512 session (128-byte blocks) and a
/// sha256 session, each interrupted by SIGKILL at an offset that is not block-aligned after
/// more than a megabyte, still verify their digests after the restart.
#[tokio::test]
async fn hash_state_survives_crash_mid_block() {
    let mut reg = Reg::start();
    let data = random_bytes(2 * 1024 * 1024 + 777);
    let cut = 1024 * 1024 + 61;
    let l512 = reg
        .start_upload_query("up/hash", "digest-algorithm=sha512")
        .await;
    let l512 = reg
        .patch_chunk(&l512, 0, &data[..cut])
        .await
        .expect_status(202)
        .location();
    let l256 = reg.start_upload("up/hash").await;
    let l256 = reg
        .patch_stream(&l256, &data[..cut])
        .await
        .expect_status(202)
        .location();

    reg.restart(false);

    let want = format!("0-{}", cut - 1);
    reg.get(&l512)
        .await
        .expect_status(204)
        .expect_header("range", &want);
    reg.get(&l256)
        .await
        .expect_status(204)
        .expect_header("range", &want);
    let l512 = reg
        .patch_chunk(&l512, cut as u64, &data[cut..])
        .await
        .expect_status(202)
        .location();
    let l256 = reg
        .patch_stream(&l256, &data[cut..])
        .await
        .expect_status(202)
        .location();
    let d512 = sha512_digest(&data);
    reg.put_upload(&l512, &d512, b"").await.expect_status(201);
    reg.put_upload(&l256, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
    let r = reg.get(&format!("/v2/up/hash/blobs/{d512}")).await;
    r.expect_status(200);
    assert!(r.body == data, "sha512 blob resumed after a crash differs");
}

/// A restart between two restarts: an upload resumed once can be resumed again.
#[tokio::test]
async fn upload_resumes_across_two_restarts() {
    let mut reg = Reg::start();
    let data = random_bytes(300);
    let loc = reg.start_upload("up/twice").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..100])
        .await
        .expect_status(202)
        .location();
    reg.restart(true);
    let loc = reg
        .patch_chunk(&loc, 100, &data[100..200])
        .await
        .expect_status(202)
        .location();
    reg.restart(false);
    reg.get(&loc)
        .await
        .expect_status(204)
        .expect_header("range", "0-199");
    let loc = reg
        .patch_chunk(&loc, 200, &data[200..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
}
