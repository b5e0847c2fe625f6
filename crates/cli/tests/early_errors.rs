//! Early errors reach the client. When the registry answers before reading the request body (a
//! chunk at the wrong offset: 416; an anonymous or under-privileged write: 401/403; a malformed
//! digest: 400; an over-size manifest: 413), the client is still sending. The answer must arrive
//! every time, never `broken pipe` or `connection reset`: with `[limits] drain` set small here,
//! bodies of half the bound are read and dropped and the connection is reused, bodies of twice
//! the bound get the answer with `Connection: close` (HTTP/1.1) or a reset of the stream only
//! (HTTP/2, where the client keeps its one connection).
//!
//! HTTP/1.1 goes over a raw socket that writes the body while it reads the answer (as Go
//! clients do); HTTP/2 is reqwest with prior knowledge through a proxy that counts connections.

mod common;

use common::auth::{AuthReg, user};
use common::*;
use reqwest::Method;
use stowage_testkit::wire::{CountingProxy, Framing, H1};

/// `[limits] drain` in these tests.
const BOUND: usize = 1 << 20;
/// Each case is sent this many times per body size and protocol.
const REPEAT: usize = 50;

/// A request the registry answers without reading its body.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    /// Headers for a body of the given length (besides the framing).
    headers: Box<dyn Fn(usize) -> Vec<(String, String)>>,
    status: u16,
}

impl Case {
    fn new(what: &'static str, method: &'static str, path: String, status: u16) -> Case {
        Case {
            what,
            method,
            path,
            headers: Box::new(|_| {
                vec![(
                    "Content-Type".to_string(),
                    "application/octet-stream".to_string(),
                )]
            }),
            status,
        }
    }

    fn with_headers(mut self, h: impl Fn(usize) -> Vec<(String, String)> + 'static) -> Case {
        self.headers = Box::new(h);
        self
    }
}

/// The unread-body bound; and, since every request here comes from 127.0.0.1 and the anonymous
/// ones are the point, an anonymous request rate that hundreds of them in a row stay under.
fn limits(bound: usize) -> String {
    format!("[limits]\ndrain = {bound}\nanonymous_rate = 10000\nanonymous_burst = 100000\n")
}

/// Over HTTP/1.1: bodies up to `bound` on one kept-alive connection (Content-Length, then a few
/// chunked), then a following request on it; bodies over `bound` each on a new connection,
/// answered with `Connection: close`.
async fn over_http1(addr: &str, case: &Case, len: usize, bound: usize) {
    let body = vec![0x5au8; len];
    let headers = (case.headers)(len);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let check = |resp: std::io::Result<stowage_testkit::wire::Response>, i: usize| {
        let resp = resp.unwrap_or_else(|e| {
            panic!(
                "{} ({len} bytes, #{i}): no answer over HTTP/1.1: {e}",
                case.what
            )
        });
        assert_eq!(
            resp.status,
            case.status,
            "{} ({len} bytes, #{i}): {resp:?} {}",
            case.what,
            String::from_utf8_lossy(&resp.body)
        );
        resp
    };
    if len <= bound {
        let mut c = H1::connect(addr).await.unwrap();
        for i in 0..REPEAT {
            let framing = if i % 10 == 9 {
                Framing::Chunked
            } else {
                Framing::Length
            };
            let (resp, write_err) = c
                .request(case.method, &case.path, &headers, &body, framing)
                .await;
            let resp = check(resp, i);
            assert!(
                !resp.closes(),
                "{}: under the bound the connection must be kept: {resp:?}",
                case.what
            );
            assert!(write_err.is_none(), "{}: {write_err:?}", case.what);
        }
        let (resp, _) = c
            .request("GET", "/healthz", &[], b"", Framing::Length)
            .await;
        assert_eq!(
            resp.expect("the kept connection answers the next request")
                .status,
            200
        );
    } else {
        for i in 0..REPEAT {
            let mut c = H1::connect(addr).await.unwrap();
            let framing = if i % 10 == 9 {
                Framing::Chunked
            } else {
                Framing::Length
            };
            let (resp, _) = c
                .request(case.method, &case.path, &headers, &body, framing)
                .await;
            let resp = check(resp, i);
            assert!(resp.closes(), "{}: {resp:?}", case.what);
        }
    }
}

/// Over HTTP/2 (reqwest, prior knowledge): every answer arrives and one connection serves all.
async fn over_http2(addr: &str, case: &Case, len: usize) {
    let proxy = CountingProxy::start(addr).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("http://{}{}", proxy.addr, case.path);
    let method = Method::from_bytes(case.method.as_bytes()).unwrap();
    for i in 0..REPEAT {
        let mut rb = client.request(method.clone(), &url);
        for (k, v) in (case.headers)(len) {
            rb = rb.header(k, v);
        }
        let resp = rb.body(vec![0xa5u8; len]).send().await.unwrap_or_else(|e| {
            panic!(
                "{} ({len} bytes, #{i}): no answer over HTTP/2: {e:?}",
                case.what
            )
        });
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(
            resp.status().as_u16(),
            case.status,
            "{} ({len} bytes, #{i})",
            case.what
        );
        resp.bytes().await.expect("the error body");
    }
    let r = client
        .get(format!("http://{}/healthz", proxy.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        proxy.connections(),
        1,
        "{}: the HTTP/2 connection did not survive",
        case.what
    );
}

/// Every size and protocol for each case.
async fn every_way(addr: &str, cases: &[Case], bound: usize) {
    for case in cases {
        for len in [bound / 2, bound * 2] {
            over_http1(addr, case, len, bound).await;
            over_http2(addr, case, len).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_offset_chunk_gets_416_every_time() {
    let reg = Reg::start_with_config(&limits(BOUND));
    let loc = reg.start_upload("early/offset").await;
    let loc = reg
        .patch_chunk(&loc, 0, b"0123456789")
        .await
        .expect_status(202)
        .location();
    let case = Case::new(
        "PATCH at the wrong offset",
        "PATCH",
        strip_origin(&loc).into(),
        416,
    )
    .with_headers(|len| {
        vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("Content-Range".into(), format!("0-{}", len - 1)),
        ]
    });
    every_way(&reg.server.addr, &[case], BOUND).await;
    // The session is untouched.
    let r = reg.get(&loc).await;
    r.expect_status(204);
    assert_eq!(r.header("range"), Some("0-9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_digest_on_put_gets_400_every_time() {
    let reg = Reg::start_with_config(&limits(BOUND));
    let loc = reg.start_upload("early/digest").await;
    let path = with_query(strip_origin(&loc), "digest=sha256:not-a-digest");
    let case = Case::new("PUT with a malformed digest", "PUT", path, 400);
    every_way(&reg.server.addr, &[case], BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_manifest_gets_413_every_time() {
    // The manifest limit is at least 4 MiB, so the bound is larger here: 5 MiB bodies are
    // under it, 20 MiB bodies over.
    let bound = 10 << 20;
    let reg = Reg::start_with_config(&limits(bound));
    let case = Case::new(
        "over-size manifest",
        "PUT",
        "/v2/early/big/manifests/v1".into(),
        413,
    )
    .with_headers(|_| {
        vec![(
            "Content-Type".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        )]
    });
    every_way(&reg.server.addr, &[case], bound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_get_401_and_403_every_time() {
    let toml = format!("{}{}", common::auth::auth_toml(""), limits(BOUND));
    let reg = AuthReg::start_toml(
        &toml,
        &[user("reader", "reader-password-1", &["team/**:pull"])],
    );
    let zero = format!("sha256:{}", "0".repeat(64));
    let reader = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "reader:reader-password-1"
        )
    );
    let with_auth = move |len: usize| -> Vec<(String, String)> {
        let _ = len;
        vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("Authorization".into(), reader.clone()),
        ]
    };
    let cases = vec![
        Case::new(
            "anonymous PATCH",
            "PATCH",
            "/v2/team/app/blobs/uploads/0123456789abcdef".into(),
            401,
        ),
        Case::new(
            "anonymous manifest PUT",
            "PUT",
            "/v2/team/app/manifests/v1".into(),
            401,
        ),
        Case::new(
            "anonymous single-POST upload",
            "POST",
            format!("/v2/team/app/blobs/uploads/?digest={zero}"),
            401,
        ),
        Case::new(
            "pull-only user's manifest PUT",
            "PUT",
            "/v2/team/app/manifests/v1".into(),
            403,
        )
        .with_headers(with_auth.clone()),
        Case::new(
            "pull-only user's single-POST upload",
            "POST",
            format!("/v2/team/app/blobs/uploads/?digest={zero}"),
            403,
        )
        .with_headers(with_auth),
    ];
    every_way(&reg.server.addr, &cases, BOUND).await;
}
