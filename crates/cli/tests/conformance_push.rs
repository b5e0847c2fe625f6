//! OCI conformance, category "Push" for blobs: monolithic POST+PUT, single POST with
//! `?digest=`, chunked PATCH with `Content-Range`, streamed PATCH without it, the final chunk
//! on PUT, `OCI-Chunk-Min-Length`, and digest verification of every upload.
//!
//! Upload-session lifecycle (status, cancel, ids, restart, purge) is in
//! `conformance_uploads.rs`; mounting in `conformance_mount.rs`; algorithms in
//! `conformance_digests.rs`.

mod common;

use common::*;
use reqwest::Method;
use stowage_testkit::wire;

/// Spec (POST then PUT): "Upon success, the response MUST have a code of `202 Accepted`, and
/// MUST include `Location: <location>`" then "Upon successful completion of the request, the
/// response MUST have code `201 Created` and MUST have the following header: `Location:
/// <blob-location>` With `<blob-location>` being a pullable blob URL."
#[tokio::test]
async fn monolithic_post_then_put() {
    let reg = Reg::start();
    let data = random_bytes(4096);
    let digest = sha256_digest(&data);
    reg.get(&format!("/v2/push/mono/blobs/{digest}"))
        .await
        .expect_status(404);

    let loc = reg.start_upload("push/mono").await;
    let r = reg.put_upload(&loc, &digest, &data).await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let pull = reg.get(&r.location()).await;
    pull.expect_status(200);
    assert!(
        pull.body == data,
        "blob at the PUT Location differs:\n{pull}"
    );
    reg.head(&format!("/v2/push/mono/blobs/{digest}"))
        .await
        .expect_status(200);
}

/// Spec (Single POST): "Successful completion of the request MUST return a `201 Created` and
/// MUST include `Location: <blob-location>`". Issue: "single POST with `?digest=` and a body
/// (201)".
#[tokio::test]
async fn single_post_with_digest_is_201() {
    let reg = Reg::start();
    let data = random_bytes(2000);
    let digest = sha256_digest(&data);
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/push/single/blobs/uploads/?digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
        )
        .await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let pull = reg.get(&r.location()).await;
    pull.expect_status(200);
    assert!(pull.body == data);

    // The same bytes again (already stored): still 201.
    let again = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/push/single/blobs/uploads/?digest={digest}"),
            )
            .body(data.clone()),
        )
        .await;
    again.expect_status(201);
}

/// Spec (single POST): "the `<digest>` MUST match the blob's digest"; issue: "Every blob is
/// verified (wrong digest -> 400 DIGEST_INVALID and the blob is not visible)".
#[tokio::test]
async fn single_post_with_wrong_digest_is_rejected() {
    let reg = Reg::start();
    let data = random_bytes(100);
    let claimed = sha256_digest(b"something else");
    let r = reg
        .send(
            reg.req(
                Method::POST,
                &format!("/v2/push/bad/blobs/uploads/?digest={claimed}"),
            )
            .body(data.clone()),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/push/bad/blobs/{claimed}"))
        .await
        .expect_status(404);
    reg.head(&format!("/v2/push/bad/blobs/{}", sha256_digest(&data)))
        .await
        .expect_status(404);
}

/// Spec (chunked): "Chunks MUST be uploaded in order ... If a chunk is uploaded out of order,
/// the registry MUST respond with a `416`"; each successful chunk "MUST be `202 Accepted`, and
/// MUST have `Location` and `Range: 0-<end-of-range>`"; GET on the location "MUST be a `204 No
/// Content` response code, and MUST have `Location` and `Range`". This is the v1.1.1 suite's
/// 42-byte blob split 22/20 scenario.
#[tokio::test]
async fn chunked_upload_in_order_with_416_on_gaps() {
    let reg = Reg::start();
    let data = random_bytes(42);
    let digest = sha256_digest(&data);
    let (c1, c2) = data.split_at(22);
    let loc = reg.start_upload("push/chunked").await;

    // Second chunk first: out of order.
    reg.patch_chunk(&loc, 22, c2).await.expect_status(416);

    let r = reg.patch_chunk(&loc, 0, c1).await;
    r.expect_status(202).expect_header("range", "0-21");
    let loc = r.location();

    // The first chunk again: does not start where the upload ends.
    reg.patch_chunk(&loc, 0, c1).await.expect_status(416);

    let status = reg.get(&loc).await;
    status.expect_status(204).expect_header("range", "0-21");
    let loc = status.location();

    let r = reg.patch_chunk(&loc, 22, c2).await;
    r.expect_status(202).expect_header("range", "0-41");
    let r = reg.put_upload(&r.location(), &digest, b"").await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let pull = reg.get(&format!("/v2/push/chunked/blobs/{digest}")).await;
    pull.expect_status(200);
    assert!(pull.body == data);
}

/// Issue: "a chunk that does not start where the upload ends gets 416" - also a chunk that
/// skips ahead, and one that overlaps the end.
#[tokio::test]
async fn chunk_not_at_upload_end_is_416() {
    let reg = Reg::start();
    let data = random_bytes(30);
    let loc = reg.start_upload("push/gap").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..10])
        .await
        .expect_status(202)
        .location();
    reg.patch_chunk(&loc, 11, &data[11..20])
        .await
        .expect_status(416);
    reg.patch_chunk(&loc, 5, &data[5..20])
        .await
        .expect_status(416);
    // The session is intact after the rejected chunks.
    let loc = reg
        .patch_chunk(&loc, 10, &data[10..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
}

/// A `Content-Range` whose length does not fit in 64 bits (`0-18446744073709551615`, which
/// wraps to 0 with unchecked arithmetic and so "matched" an empty body) is refused with 416,
/// with or without `Content-Length: 0`, on PATCH and on the closing PUT; the session survives.
#[tokio::test]
async fn content_range_whose_length_overflows_is_416() {
    let reg = Reg::start();
    let data = random_bytes(20);
    let loc = reg.start_upload("push/overflow").await;
    for range in ["0-18446744073709551615", "bytes 0-18446744073709551615/*"] {
        let r = reg
            .send(
                reg.req(Method::PATCH, &loc)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", range)
                    .header("content-length", "0"),
            )
            .await;
        r.expect_status(416);
        assert_eq!(r.header("range"), Some("0-0"), "{r}");
    }
    // Without Content-Length (and no body), over raw TCP so nothing adds a length.
    let path = strip_origin(&loc).to_string();
    let r = wire::send(
        &reg.server.addr,
        &format!("PATCH {path} HTTP/1.1\r\nContent-Range: 0-18446744073709551615"),
        b"",
    )
    .await;
    assert_eq!(r.status, 416, "{r}");
    let digest = sha256_digest(b"");
    let r = reg
        .send(
            reg.req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
                .header("content-type", "application/octet-stream")
                .header("content-range", "0-18446744073709551615")
                .header("content-length", "0"),
        )
        .await;
    r.expect_status(416);
    // The session is intact: the real bytes go in and the blob completes.
    let loc = reg
        .patch_chunk(&loc, 0, &data)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
}

/// Issue: "streamed PATCH without it [Content-Range]" (docker's upload style; v1.1.1 suite
/// "streamed" workflow): each PATCH appends; the final PUT has no body.
#[tokio::test]
async fn streamed_patch_without_content_range() {
    let reg = Reg::start();
    let data = random_bytes(3000);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/stream").await;
    let r = reg.patch_stream(&loc, &data[..1000]).await;
    r.expect_status(202).expect_header("range", "0-999");
    let r = reg.patch_stream(&r.location(), &data[1000..]).await;
    r.expect_status(202).expect_header("range", "0-2999");
    reg.put_upload(&r.location(), &digest, b"")
        .await
        .expect_status(201);
    assert!(
        reg.get(&format!("/v2/push/stream/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// A streamed PATCH sent with `Transfer-Encoding: chunked` (no Content-Length at all), as
/// docker does for layers of unknown size.
#[tokio::test]
async fn streamed_patch_with_chunked_transfer_encoding() {
    let reg = Reg::start();
    let data = random_bytes(5000);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/te").await;
    let path = strip_origin(&loc).to_string();
    let body = wire::chunked_body(&[&data[..1234], &data[1234..4000], &data[4000..]]);
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked"
    );
    let r = wire::send(&reg.server.addr, &head, &body).await;
    assert_eq!(r.status, 202, "chunked-encoding PATCH:\n{r}");
    assert_eq!(
        r.header("range"),
        Some("0-4999"),
        "Range after chunked PATCH:\n{r}"
    );
    let next = r.header("location").unwrap_or(&path).to_string();
    reg.put_upload(&next, &digest, b"").await.expect_status(201);
    assert!(reg.get(&format!("/v2/push/te/blobs/{digest}")).await.body == data);
}

/// Spec: "The final chunk MAY be uploaded using a `PATCH` request or it MAY be uploaded in the
/// closing `PUT` request ... The closing `PUT` request MUST include the `<digest>` of the whole
/// blob (not the final chunk)".
#[tokio::test]
async fn final_chunk_in_closing_put() {
    let reg = Reg::start();
    let data = random_bytes(100);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/lastput").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..60])
        .await
        .expect_status(202)
        .location();
    let url = with_query(&loc, &format!("digest={digest}"));
    let r = reg
        .send(
            reg.req(Method::PUT, &url)
                .header("content-type", "application/octet-stream")
                .header("content-range", "60-99")
                .body(data[60..].to_vec()),
        )
        .await;
    r.expect_status(201);
    assert!(
        reg.get(&format!("/v2/push/lastput/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// Spec: "If the registry has a minimum chunk size, the `POST` response SHOULD include
/// `OCI-Chunk-Min-Length: <size>`". Issue: "`OCI-Chunk-Min-Length` is advertised on POST but
/// never enforced: smaller chunks are accepted."
#[tokio::test]
async fn chunk_min_length_advertised_but_not_enforced() {
    let reg = Reg::start();
    let r = reg
        .send(
            reg.req(Method::POST, "/v2/push/minlen/blobs/uploads/")
                .header("content-length", "0"),
        )
        .await;
    r.expect_status(202);
    let min: u64 = r
        .header("oci-chunk-min-length")
        .unwrap_or_else(|| panic!("no OCI-Chunk-Min-Length on POST:\n{r}"))
        .parse()
        .unwrap_or_else(|_| panic!("OCI-Chunk-Min-Length is not an integer:\n{r}"));
    assert!(
        min > 1,
        "OCI-Chunk-Min-Length should be a real minimum:\n{r}"
    );

    let data = random_bytes(7);
    let mut loc = r.location();
    for (i, byte) in data.iter().enumerate() {
        let r = reg
            .patch_chunk(&loc, i as u64, std::slice::from_ref(byte))
            .await;
        r.expect_status(202);
        loc = r.location();
    }
    reg.put_upload(&loc, &sha256_digest(&data), b"")
        .await
        .expect_status(201);
}

/// Issue: "Every blob is verified (wrong digest -> 400 DIGEST_INVALID and the blob is not
/// visible)" - for monolithic, chunked and streamed uploads.
#[tokio::test]
async fn wrong_digest_on_put_is_digest_invalid() {
    let reg = Reg::start();
    let data = random_bytes(64);
    let wrong = sha256_digest(b"not the data");
    reg.upload_as("push/verify", &data, &wrong)
        .await
        .expect_error(400, "DIGEST_INVALID");

    let loc = reg.start_upload("push/verify").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data)
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &wrong, b"")
        .await
        .expect_error(400, "DIGEST_INVALID");

    for d in [&wrong, &sha256_digest(&data)] {
        reg.head(&format!("/v2/push/verify/blobs/{d}"))
            .await
            .expect_status(404);
    }
}

/// A completed upload session is closed: its location is no longer an upload (404
/// `BLOB_UPLOAD_UNKNOWN`), so a second PUT cannot re-finish it as anything else. The one
/// exception is the client's retry of the very PUT that completed it (its answer lost on the
/// way): that blob is linked, and 201 is the truth; nothing is written again.
#[tokio::test]
async fn completed_session_is_gone() {
    let reg = Reg::start();
    let data = random_bytes(10);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/done").await;
    reg.put_upload(&loc, &digest, &data)
        .await
        .expect_status(201);
    reg.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let other = random_bytes(10);
    reg.put_upload(&loc, &sha256_digest(&other), &other)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.put_upload(&loc, &digest, &data)
        .await
        .expect_status(201);
    reg.get(&loc).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// v1.2 suite data set "empty blob": a zero-length blob can be pushed and pulled.
#[tokio::test]
async fn empty_blob_round_trip() {
    let reg = Reg::start();
    let digest = reg.push_blob("push/empty", b"").await;
    let r = reg.get(&format!("/v2/push/empty/blobs/{digest}")).await;
    r.expect_status(200)
        .expect_header("docker-content-digest", &digest);
    assert!(r.body.is_empty());
    reg.head(&format!("/v2/push/empty/blobs/{digest}"))
        .await
        .expect_status(200)
        .expect_header("content-length", "0");
}

/// A multi-megabyte blob in several chunks: the server streams rather than rejecting size.
#[tokio::test]
async fn large_blob_in_chunks() {
    let reg = Reg::start();
    let data = random_bytes(12 * 1024 * 1024 + 17);
    let digest = sha256_digest(&data);
    let mut loc = reg.start_upload("push/large").await;
    let mut start = 0usize;
    for chunk in data.chunks(5 * 1024 * 1024) {
        let r = reg.patch_chunk(&loc, start as u64, chunk).await;
        r.expect_status(202);
        loc = r.location();
        start += chunk.len();
    }
    reg.put_upload(&loc, &digest, b"").await.expect_status(201);
    let head = reg.head(&format!("/v2/push/large/blobs/{digest}")).await;
    head.expect_status(200)
        .expect_header("content-length", &data.len().to_string());
    assert!(
        reg.get(&format!("/v2/push/large/blobs/{digest}"))
            .await
            .body
            == data
    );
}

/// Spec (Layer Upload De-duplication): "If process A and B upload the same layer at the same
/// time, both operations will proceed and the first to complete will be stored in the
/// registry." Both concurrent uploads of identical content succeed, into two repositories.
#[tokio::test]
async fn concurrent_uploads_of_the_same_blob() {
    let reg = Reg::start();
    let data = random_bytes(3 * 1024 * 1024);
    let digest = sha256_digest(&data);
    let a = reg.start_upload("push/race-a").await;
    let b = reg.start_upload("push/race-b").await;
    let c = reg.start_upload("push/race-a").await;
    let (ra, rb, rc) = tokio::join!(
        reg.put_upload(&a, &digest, &data),
        reg.put_upload(&b, &digest, &data),
        reg.put_upload(&c, &digest, &data)
    );
    for r in [&ra, &rb, &rc] {
        r.expect_status(201);
    }
    for repo in ["push/race-a", "push/race-b"] {
        let r = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        r.expect_status(200);
        assert!(
            r.body == data,
            "blob in {repo} corrupted by the concurrent upload"
        );
    }
}

/// Spec v1.2: the closing PUT (end-6) "may also return 416" - a final chunk whose
/// `Content-Range` does not start where the upload ends is refused like a misplaced PATCH.
#[tokio::test]
async fn final_chunk_at_wrong_offset_is_416() {
    let reg = Reg::start();
    let data = random_bytes(100);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/badput").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..60])
        .await
        .expect_status(202)
        .location();
    let url = with_query(&loc, &format!("digest={digest}"));
    let r = reg
        .send(
            reg.req(Method::PUT, &url)
                .header("content-type", "application/octet-stream")
                .header("content-range", "70-99")
                .body(data[70..].to_vec()),
        )
        .await;
    r.expect_status(416);
    reg.head(&format!("/v2/push/badput/blobs/{digest}"))
        .await
        .expect_status(404);
}

/// Issue: "chunked PATCH with `Content-Range` and streamed PATCH without it" - mixed in one
/// session, a streamed PATCH appends where the chunked ones ended.
#[tokio::test]
async fn chunked_then_streamed_patch() {
    let reg = Reg::start();
    let data = random_bytes(90);
    let digest = sha256_digest(&data);
    let loc = reg.start_upload("push/mixed").await;
    let loc = reg
        .patch_chunk(&loc, 0, &data[..30])
        .await
        .expect_status(202)
        .location();
    let r = reg.patch_stream(&loc, &data[30..60]).await;
    r.expect_status(202).expect_header("range", "0-59");
    let loc = reg
        .patch_chunk(&r.location(), 60, &data[60..])
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &digest, b"").await.expect_status(201);
    assert!(
        reg.get(&format!("/v2/push/mixed/blobs/{digest}"))
            .await
            .body
            == data
    );
}
