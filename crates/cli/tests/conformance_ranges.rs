//! OCI conformance, blob range requests (RFC 9110 §14).
//!
//! Spec: "Registries **should** support the HTTP `Range:` request header as defined in
//! **RFC 9110**." Issue: "a single range gets 206; a range whose end is past the blob is
//! truncated to the blob (206); only a first byte at or past the length gets 416 with
//! `Content-Range: bytes */len`; a multi-range request may get the whole blob with 200. (also
//! suffix ranges `bytes=-N`.)"

mod common;

use common::*;
use reqwest::Method;

const REPO: &str = "ranges/blob";

async fn setup() -> (Reg, Vec<u8>, String) {
    let reg = Reg::start();
    let data = random_bytes(1000);
    let digest = reg.push_blob(REPO, &data).await;
    (reg, data, digest)
}

async fn ranged(reg: &Reg, digest: &str, range: &str) -> Resp {
    reg.send(
        reg.req(Method::GET, &format!("/v2/{REPO}/blobs/{digest}"))
            .header("range", range),
    )
    .await
}

#[track_caller]
fn expect_partial(r: &Resp, data: &[u8], first: usize, last: usize) {
    r.expect_status(206);
    let want = format!("bytes {first}-{last}/{}", data.len());
    assert_eq!(
        r.header("content-range"),
        Some(want.as_str()),
        "Content-Range:\n{r}"
    );
    assert!(
        r.body == data[first..=last],
        "206 body is not bytes {first}-{last}:\n{r}"
    );
    let len = (last - first + 1).to_string();
    assert_eq!(
        r.header("content-length"),
        Some(len.as_str()),
        "Content-Length of 206:\n{r}"
    );
}

/// RFC 9110 §14.2/§15.3.7: a satisfiable single range gets 206 Partial Content with
/// `Content-Range: bytes first-last/complete-length` and exactly those bytes.
#[tokio::test]
async fn single_range_is_206() {
    let (reg, data, digest) = setup().await;
    let r = ranged(&reg, &digest, "bytes=10-19").await;
    expect_partial(&r, &data, 10, 19);
    r.expect_header("docker-content-digest", &digest);
    expect_partial(&ranged(&reg, &digest, "bytes=0-0").await, &data, 0, 0);
    expect_partial(
        &ranged(&reg, &digest, "bytes=999-999").await,
        &data,
        999,
        999,
    );
}

/// RFC 9110 §14.1.1: "bytes=500-" means from byte 500 to the end.
#[tokio::test]
async fn open_ended_range_is_206() {
    let (reg, data, digest) = setup().await;
    expect_partial(&ranged(&reg, &digest, "bytes=500-").await, &data, 500, 999);
    expect_partial(&ranged(&reg, &digest, "bytes=0-").await, &data, 0, 999);
}

/// Issue: "a range whose end is past the blob is truncated to the blob (206)" (RFC 9110
/// §14.1.1: "If the last-pos value is absent, or if the value is greater than or equal to the
/// current length of the representation data, the byte range is interpreted as the remainder").
#[tokio::test]
async fn range_end_past_blob_is_truncated() {
    let (reg, data, digest) = setup().await;
    expect_partial(
        &ranged(&reg, &digest, "bytes=900-5000").await,
        &data,
        900,
        999,
    );
    expect_partial(&ranged(&reg, &digest, "bytes=0-1000").await, &data, 0, 999);
}

/// Issue: "also suffix ranges `bytes=-N`" (RFC 9110: the last N bytes; a suffix longer than
/// the representation selects all of it).
#[tokio::test]
async fn suffix_range_is_206() {
    let (reg, data, digest) = setup().await;
    expect_partial(&ranged(&reg, &digest, "bytes=-4").await, &data, 996, 999);
    expect_partial(&ranged(&reg, &digest, "bytes=-5000").await, &data, 0, 999);
}

/// Issue: "only a first byte at or past the length gets 416 with `Content-Range: bytes */len`"
/// (RFC 9110 §15.5.17: "the server SHOULD generate a Content-Range header field specifying the
/// current length of the selected representation").
#[tokio::test]
async fn range_starting_past_end_is_416() {
    let (reg, _data, digest) = setup().await;
    for range in ["bytes=1000-", "bytes=1000-1005", "bytes=5000-6000"] {
        let r = ranged(&reg, &digest, range).await;
        r.expect_status(416)
            .expect_header("content-range", "bytes */1000");
    }
}

/// Issue: "a multi-range request may get the whole blob with 200" (RFC 9110 §14.2: a server
/// MAY ignore the Range header). A 206 must then be a proper multipart/byteranges response.
#[tokio::test]
async fn multi_range_gets_whole_blob_or_multipart() {
    let (reg, data, digest) = setup().await;
    let r = ranged(&reg, &digest, "bytes=0-9,20-29").await;
    match r.status {
        200 => assert!(
            r.body == data,
            "200 to multi-range must be the whole blob:\n{r}"
        ),
        206 => assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("multipart/byteranges"),
            "206 to a multi-range must be multipart/byteranges:\n{r}"
        ),
        _ => panic!("multi-range request: expected 200 or 206:\n{r}"),
    }
}

/// RFC 9110 §14.2: "An origin server MUST ignore a Range header field that contains a range
/// unit it does not understand" -> the whole blob with 200.
#[tokio::test]
async fn unknown_range_unit_is_ignored() {
    let (reg, data, digest) = setup().await;
    let r = ranged(&reg, &digest, "items=0-5").await;
    r.expect_status(200);
    assert!(r.body == data);
}

/// Issue: "malformed ... Range ... get a 4xx with the right code (... 416 for ranges), never a
/// 500" (RFC 9110 §15.5.17: invalid or unsatisfiable ranges SHOULD get 416).
#[tokio::test]
async fn malformed_byte_range_is_416() {
    let (reg, _data, digest) = setup().await;
    for range in [
        "bytes=abc",
        "bytes=20-10",
        "bytes=",
        "bytes=-",
        "bytes=--5",
        "bytes=1-2-3",
    ] {
        let r = ranged(&reg, &digest, range).await;
        r.expect_status(416);
        assert_eq!(
            r.header("content-range"),
            Some("bytes */1000"),
            "416 Content-Range for {range:?}:\n{r}"
        );
    }
}

/// RFC 9110 §14.2: "GET is the only method for which range handling is defined" and a server
/// "MUST ignore a Range header field received with a request method ... for which range
/// handling is not defined", so HEAD with Range is a plain 200; a 206 is tolerated only when it
/// carries exactly the headers GET would (RFC 9110 §9.3.2).
#[tokio::test]
async fn ranged_head_is_consistent() {
    let (reg, _data, digest) = setup().await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let head = reg
        .send(reg.req(Method::HEAD, &path).header("range", "bytes=10-19"))
        .await;
    match head.status {
        200 => assert_eq!(
            head.header("content-length"),
            Some("1000"),
            "HEAD Content-Length:\n{head}"
        ),
        206 => {
            let get = ranged(&reg, &digest, "bytes=10-19").await;
            assert_eq!(
                head.header("content-range"),
                get.header("content-range"),
                "HEAD Content-Range:\n{head}"
            );
            assert_eq!(
                head.header("content-length"),
                get.header("content-length"),
                "HEAD Content-Length:\n{head}"
            );
        }
        _ => panic!("HEAD with Range: expected 200 (or 206):\n{head}"),
    }
}

/// A zero-length blob has no satisfiable range: any `bytes=` range is 416 with `bytes */0`.
#[tokio::test]
async fn range_on_empty_blob_is_416() {
    let reg = Reg::start();
    let digest = reg.push_blob(REPO, b"").await;
    for range in ["bytes=0-", "bytes=0-0", "bytes=-1"] {
        let r = ranged(&reg, &digest, range).await;
        match r.status {
            416 => {
                r.expect_header("content-range", "bytes */0");
            }
            // RFC 9110 lets a server ignore Range; then it is the (empty) whole blob.
            200 => assert!(r.body.is_empty(), "{r}"),
            _ => panic!("range {range} on an empty blob:\n{r}"),
        }
    }
}

/// Ranges across the server's internal read-buffer boundaries of a multi-megabyte blob return
/// exactly the requested bytes (off-by-one checks at 64 KiB, 256 KiB and 1 MiB edges).
#[tokio::test]
async fn ranges_across_buffer_boundaries() {
    let reg = Reg::start();
    let data = random_bytes(3 * 1024 * 1024 + 5);
    let digest = reg.push_blob(REPO, &data).await;
    let len = data.len();
    for (first, last) in [
        (65_535, 65_536),
        (262_143, 262_144),
        (262_000, 600_000),
        (1_048_575, 2_097_152),
        (len - 1, len - 1),
        (1, len - 2),
    ] {
        expect_partial(
            &ranged(&reg, &digest, &format!("bytes={first}-{last}")).await,
            &data,
            first,
            last,
        );
    }
    let r = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    assert!(r.body == data, "whole multi-megabyte blob differs");
}
