//! OCI conformance, error handling: every reachable OCI error code with its status and body
//! shape, malformed names, references, digests, `Content-Range` and headers, and the
//! `Docker-Distribution-API-Version` header on error responses.
//!
//! Spec (Error Codes): "If the response body is in JSON format, it MUST have the following
//! format: `{"errors": [{"code", "message", "detail"}]}`. The `code` field MUST be a unique
//! identifier, containing only uppercase alphabetic characters and underscores." Issue:
//! "malformed names (uppercase, `..`, too long), references (tag >128 chars, bad chars),
//! digests, Content-Range, Range, JSON or headers get a 4xx with the right code (NAME_INVALID
//! 400, MANIFEST_INVALID, DIGEST_INVALID, BLOB_UPLOAD_INVALID, 416 for ranges), never a 500."
//!
//! Every response received through `Reg::send` is also checked for the API version header and
//! for the absence of 5xx, so all other conformance files exercise those too.

mod common;

use common::*;
use reqwest::Method;
use stowage_testkit::wire;

/// One scenario per reachable code (UNAUTHORIZED, DENIED and TOOMANYREQUESTS need auth or rate
/// limits and are covered elsewhere).
#[tokio::test]
async fn error_code_status_table() {
    let reg = Reg::start();
    let img = reg.push_image("err/codes", "v1").await;
    let missing = sha256_digest(b"missing");

    reg.get(&format!("/v2/err/codes/blobs/{missing}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    let loc = reg.start_upload("err/codes").await;
    let fake = strip_origin(&loc).split('?').next().unwrap().replacen(
        &upload_id(&loc),
        &"0".repeat(32),
        1,
    );
    reg.get(&fake)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.upload_as("err/codes", b"x", &missing)
        .await
        .expect_error(400, "DIGEST_INVALID");
    let bad_ref = image_manifest(&img.config, &[descriptor(OCI_LAYER, b"not pushed")]);
    reg.put_manifest("err/codes", "x", OCI_MANIFEST, &bad_ref)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.put_manifest("err/codes", "x", OCI_MANIFEST, b"{")
        .await
        .expect_error(400, "MANIFEST_INVALID");
    reg.get_manifest("err/codes", "nope")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get("/v2/Err/Codes/tags/list")
        .await
        .expect_error(400, "NAME_INVALID");
    reg.get("/v2/err/unknown-repo/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    let big = [img.manifest.as_slice(), &vec![b' '; 4 * 1024 * 1024]].concat();
    reg.put_manifest("err/codes", "big", OCI_MANIFEST, &big)
        .await
        .expect_error_any(413, &["SIZE_INVALID", "MANIFEST_INVALID"]);
}

/// Error bodies carry the API version header and a JSON content type; `detail` is optional
/// but when present any JSON is allowed.
#[tokio::test]
async fn error_responses_are_json() {
    let reg = Reg::start();
    let r = reg
        .get(&format!("/v2/err/json/blobs/{}", sha256_digest(b"x")))
        .await;
    r.expect_status(404)
        .expect_header("docker-distribution-api-version", "registry/2.0");
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error Content-Type should be JSON:\n{r}"
    );
    let v = r.json();
    assert!(v["errors"][0]["message"].is_string(), "{r}");
}

/// Spec: repository names MUST match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/...)*`; issue:
/// "malformed names (uppercase, `..`, too long) ... NAME_INVALID 400".
#[tokio::test]
async fn invalid_repository_names() {
    let reg = Reg::start();
    let long = vec!["abcdefghij"; 30].join("/");
    let bad = [
        "Upper",
        "a/B",
        "a_-b",
        "-a",
        "a-",
        "a..b",
        "a._b",
        "a___b",
        "a/.b",
        "a/b_",
        "é",
        long.as_str(),
    ];
    for name in bad {
        let r = reg.get(&format!("/v2/{name}/tags/list")).await;
        r.expect_error(400, "NAME_INVALID");
        let r = reg
            .send(
                reg.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
                    .header("content-length", "0"),
            )
            .await;
        r.expect_error(400, "NAME_INVALID");
        reg.get_manifest(name, "latest")
            .await
            .expect_error(400, "NAME_INVALID");
    }
    // Valid separators from the grammar (`__`, repeated `-`, `.`) are accepted.
    for name in ["a__b", "a--b", "a.b", "a-b/c_d/e.f", "0/1"] {
        let r = reg
            .send(
                reg.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))
                    .header("content-length", "0"),
            )
            .await;
        r.expect_status(202);
    }
}

/// Path traversal and empty components must be refused as names, not normalised (sent over
/// raw TCP because HTTP client libraries normalise `..`).
#[tokio::test]
async fn traversal_names_are_name_invalid() {
    let reg = Reg::start();
    reg.push_image("err/victim", "v1").await;
    for path in [
        "/v2/err/../err/victim/tags/list",
        "/v2/err/./victim/tags/list",
        "/v2/../v2/err/victim/tags/list",
        "/v2/err//victim/tags/list",
        "/v2//err/victim/tags/list",
        "/v2/err/%2e%2e/err/victim/tags/list",
    ] {
        let r = wire::send(&reg.server.addr, &format!("GET {path} HTTP/1.1"), b"").await;
        assert_eq!(r.status, 400, "{path}: expected 400 NAME_INVALID:\n{r}");
        assert_eq!(r.error_code(), "NAME_INVALID", "{path}:\n{r}");
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{path}:\n{r}"
        );
    }
}

/// Spec: tags match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`; issue: "references (tag >128 chars,
/// bad chars)" get a 4xx with the right code.
#[tokio::test]
async fn invalid_tags() {
    let reg = Reg::start();
    let img = reg.push_image("err/tags", "v1").await;
    let ok128 = format!("a{}", "b".repeat(127));
    reg.push_manifest("err/tags", &ok128, OCI_MANIFEST, &img.manifest)
        .await;
    let long = "a".repeat(129);
    for tag in [
        long.as_str(),
        "-lead",
        ".lead",
        "bad!tag",
        "bad%20tag",
        "ta+g",
        "t%C3%A9",
    ] {
        let r = reg
            .put_manifest("err/tags", tag, OCI_MANIFEST, &img.manifest)
            .await;
        r.expect_error_any(400, &["MANIFEST_INVALID", "TAG_INVALID"]);
        let r = reg.get_manifest("err/tags", tag).await;
        match r.status {
            400 => assert!(!r.error_code().is_empty()),
            404 => {
                r.expect_error(404, "MANIFEST_UNKNOWN");
            }
            _ => panic!("GET invalid tag {tag:?}: expected 400 or 404:\n{r}"),
        }
    }
    assert_eq!(reg.tags("err/tags").await, [ok128.as_str(), "v1"]);
}

/// Issue: malformed `Content-Range` on PATCH -> 4xx (`BLOB_UPLOAD_INVALID` or 416), never 500,
/// and the session survives.
#[tokio::test]
async fn malformed_content_range() {
    let reg = Reg::start();
    let loc = reg.start_upload("err/cr").await;
    for cr in [
        "abc", "0-", "-4", "4-0", "0-4-5", "0x0-4", "a-b", "+0-4", "0-+4",
    ] {
        let r = reg
            .send(
                reg.req(Method::PATCH, &loc)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", cr)
                    .body(b"12345".to_vec()),
            )
            .await;
        match r.status {
            416 => {}
            400 => {
                r.expect_error(400, "BLOB_UPLOAD_INVALID");
            }
            _ => panic!("Content-Range {cr:?}: expected 400 BLOB_UPLOAD_INVALID or 416:\n{r}"),
        }
    }
    // Range length disagreeing with the body length.
    let r = reg
        .send(
            reg.req(Method::PATCH, &loc)
                .header("content-range", "0-9")
                .body(b"12345".to_vec()),
        )
        .await;
    assert!(
        r.status == 400 || r.status == 416,
        "Content-Range 0-9 with 5 bytes:\n{r}"
    );
    if r.status == 400 {
        r.expect_error_any(400, &["BLOB_UPLOAD_INVALID", "SIZE_INVALID"]);
    }
    reg.get(&loc).await.expect_status(204);
    let loc = reg
        .patch_chunk(&loc, 0, b"12345")
        .await
        .expect_status(202)
        .location();
    reg.put_upload(&loc, &sha256_digest(b"12345"), b"")
        .await
        .expect_status(201);
}

/// Closing PUT without `?digest=`, with an empty one or a garbage one -> 400.
#[tokio::test]
async fn upload_put_without_valid_digest() {
    let reg = Reg::start();
    let loc = reg.start_upload("err/put").await;
    let r = reg
        .send(reg.req(Method::PUT, &loc).body(b"abc".to_vec()))
        .await;
    r.expect_error_any(400, &["DIGEST_INVALID", "BLOB_UPLOAD_INVALID"]);
    for d in ["", "garbage", "sha256:"] {
        reg.put_upload(&loc, d, b"abc")
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

/// A garbage upload id (not even the right shape) is unknown or invalid, never a 5xx.
#[tokio::test]
async fn garbage_upload_ids() {
    let reg = Reg::start();
    reg.push_blob("err/ids", b"x").await;
    for id in ["x", "%00", "0000", "a.b", &"f".repeat(300)] {
        let r = reg.get(&format!("/v2/err/ids/blobs/uploads/{id}")).await;
        assert!(r.status == 404 || r.status == 400, "upload id {id:?}:\n{r}");
        r.expect_error_any(r.status, &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"]);
    }
}

/// Malformed or hostile headers are client errors, never 5xx; the server stays healthy.
#[tokio::test]
async fn malformed_headers() {
    let reg = Reg::start();
    let img = reg.push_image("err/hdr", "v1").await;
    let addr = reg.server.addr.clone();
    let ct = wire::send(
        &addr,
        "PUT /v2/err/hdr/manifests/x HTTP/1.1\r\nContent-Type: \u{7f}\u{1}garbage",
        &img.manifest,
    )
    .await;
    assert!(
        (400..500).contains(&ct.status),
        "garbage Content-Type:\n{ct}"
    );
    let cl = wire::send(&addr, "GET /v2/ HTTP/1.1\r\nContent-Length: abc", b"").await;
    assert!(
        (400..500).contains(&cl.status),
        "non-numeric Content-Length:\n{cl}"
    );
    let range = wire::send(
        &addr,
        &format!(
            "GET /v2/err/hdr/blobs/{} HTTP/1.1\r\nRange: bytes=\u{ff}",
            img.layer["digest"].as_str().unwrap()
        ),
        b"",
    )
    .await;
    assert!(
        range.status == 416 || range.status == 200 || range.status == 400,
        "binary Range:\n{range}"
    );
    // Still serving.
    reg.get_manifest("err/hdr", "v1").await.expect_status(200);
}

/// Unknown endpoints and unsupported methods under `/v2` are 4xx with the API version header.
#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let reg = Reg::start();
    reg.push_image("err/ep", "v1").await;
    let r = reg.get("/v2/err/ep/nonsense").await;
    assert!(r.status == 404 || r.status == 400, "unknown endpoint:\n{r}");
    for (m, p) in [
        (Method::PATCH, "/v2/err/ep/manifests/v1"),
        (Method::POST, "/v2/err/ep/manifests/v1"),
        (Method::PUT, "/v2/err/ep/tags/list"),
        (Method::DELETE, "/v2/err/ep/tags/list"),
        (Method::POST, "/v2/"),
    ] {
        let r = reg.send(reg.req(m.clone(), p)).await;
        assert!((400..500).contains(&r.status), "{m} {p}:\n{r}");
    }
}
