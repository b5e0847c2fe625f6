//! The listener's connection limits over real TCP on 127.0.0.1: silent connections, partial
//! heads and HTTP/2 prefaces, idle keep-alive and idle HTTP/2 connections (plain and HTTPS) are
//! closed after their (small, configured) timeouts; transfers that keep moving are never cut;
//! the connection cap queues new clients without disturbing the ones served, and says so in
//! the log; bodies the application leaves unread still let the answer through (drained and
//! kept alive under the bound, `Connection: close` and a clean close over it, a stream reset
//! with NO_ERROR on HTTP/2 with the connection kept).
//!
//! Timing assertions use generous upper bounds (the machine may be loaded); lower bounds only
//! check that a timeout did not fire before it was due.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{any, get, put};
use futures_util::StreamExt;
use stowage_server::listener::{ConnSettings, Limits, serve_connections_with};
use stowage_server::tls::{self, TlsAcceptor, TlsFiles};
use stowage_testkit::wire::{CountingProxy, Framing, H1, h2};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Generous bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(20);

/// Everything logged by this test binary (all tests share the global subscriber).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: OnceLock<()> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| Mutex::new(Vec::new()));
    INIT.get_or_init(|| {
        struct W;
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(b);
                std::io::stderr().write_all(b)?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("stowage_server=debug")
            .with_ansi(false)
            .with_writer(|| W)
            .try_init();
    });
    buffer
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

/// `/` answers at once; `/slow-download` sends 8 chunks of 1 KiB 400 ms apart; `/upload` reads
/// the whole body and answers its length; `/refuse` answers 401 without reading the body;
/// `/read-some` reads one frame and answers 400.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow-download",
            get(|| async {
                let chunks = futures_util::stream::iter(0..8).then(|_| async {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024]))
                });
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/upload",
            put(|body: Body| async move {
                let mut n = 0usize;
                let mut s = body.into_data_stream();
                while let Some(chunk) = s.next().await {
                    match chunk {
                        Ok(c) => n += c.len(),
                        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
                    }
                }
                (StatusCode::OK, n.to_string())
            }),
        )
        .route(
            "/refuse",
            any(|| async { (StatusCode::UNAUTHORIZED, "no\n") }),
        )
        .route(
            "/read-some",
            any(|req: Request| async move {
                let mut s = req.into_body().into_data_stream();
                let _ = s.next().await;
                (StatusCode::BAD_REQUEST, "read some\n")
            }),
        )
}

struct Server {
    addr: String,
    _stop: watch::Sender<bool>,
}

fn settings() -> ConnSettings {
    ConnSettings {
        first_byte_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 64,
        drain: 1 << 20,
        body_idle_timeout: Duration::from_secs(10),
        max_header_size: 64 << 10,
    }
}

async fn start(settings: ConnSettings) -> Server {
    start_with(settings, None).await
}

async fn start_with(settings: ConnSettings, tls: Option<TlsAcceptor>) -> Server {
    logs();
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(serve_connections_with(
        listener,
        tls,
        app(),
        rx,
        Limits::new(settings),
    ));
    Server { addr, _stop: stop }
}

async fn get_ok(c: &mut H1) {
    let (resp, _) = c.request("GET", "/", &[], b"", Framing::Length).await;
    let resp = resp.expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_first_byte_timeout() {
    let s = start(ConnSettings {
        first_byte_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    let mut c = H1::connect(&s.addr).await.unwrap();
    let took = c
        .closed_within(SOON)
        .await
        .expect("silent connection still open");
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
}

/// A head begun but not finished within `header_timeout` (slowloris) is answered `408 Request
/// Timeout` with a message naming the key, then the connection is closed; so is a partial
/// HTTP/2 preface (the server cannot know yet that it is HTTP/2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_heads_and_prefaces_get_408_after_the_header_timeout() {
    let s = start(ConnSettings {
        header_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    for partial in [
        &b"PRI * HTTP/2.0\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"G",
    ] {
        let mut c = H1::connect(&s.addr).await.unwrap();
        c.write(partial).await.unwrap();
        let started = Instant::now();
        let resp = tokio::time::timeout(SOON, c.read_response(false))
            .await
            .unwrap_or_else(|_| panic!("{partial:?}: no answer"))
            .unwrap_or_else(|e| panic!("{partial:?}: {e}"));
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "answered early: {:?}",
            started.elapsed()
        );
        assert_eq!(resp.status, 408, "{partial:?}: {resp:?}");
        assert!(resp.closes(), "{resp:?}");
        assert!(
            resp.text().contains("limits.header_timeout"),
            "{}",
            resp.text()
        );
        c.closed_within(SOON)
            .await
            .unwrap_or_else(|| panic!("{partial:?}: still open after the 408"));
    }
}

/// The same over HTTPS: the 408 comes inside the TLS session, followed by its close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_heads_over_https_get_408() {
    let dir = tempfile::tempdir().unwrap();
    let set = tls::self_signed(dir.path(), &[], SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let files = TlsFiles {
        cert: set.cert.clone(),
        key: set.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, Duration::ZERO).unwrap();
    let s = start_with(
        ConnSettings {
            header_timeout: Duration::from_secs(1),
            ..settings()
        },
        Some(acceptor),
    )
    .await;
    use rustls_pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(&set.ca_cert).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(SOON, tls.read_to_end(&mut got))
        .await
        .expect("no answer and no close")
        .expect("a clean TLS close after the answer");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("limits.header_timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_but_reusable_before() {
    let s = start(ConnSettings {
        idle_timeout: Duration::from_secs(4),
        // Shorter than idle: waiting for the next request is idle time, not header time.
        header_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    let mut c = H1::connect(&s.addr).await.unwrap();
    get_ok(&mut c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    get_ok(&mut c).await;
    let took = c
        .closed_within(SOON)
        .await
        .expect("idle connection still open");
    // Measured from when this client read the answer, a little after the server's clock.
    assert!(took >= Duration::from_secs(3), "closed early: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connection_gets_goaway_and_is_closed() {
    let s = start(ConnSettings {
        idle_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(60),
        ..settings()
    })
    .await;
    let (frames, closed) = h2::idle_client(&s.addr, SOON).await;
    let took = closed.unwrap_or_else(|| panic!("still open; frames: {frames:?}"));
    assert!(took >= Duration::from_millis(900), "closed early: {took:?}");
    assert!(
        frames.iter().any(|f| f.kind == h2::GOAWAY),
        "no GOAWAY before the close: {frames:?}"
    );
}

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(SOON)
        .build()
        .unwrap()
}

fn h1_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .timeout(SOON)
        .build()
        .unwrap()
}

/// reqwest over HTTP/2: the server closes the idle connection (the proxy sees it), and the
/// client's next request goes over a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_client_connection_is_closed() {
    let s = start(ConnSettings {
        idle_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    let proxy = CountingProxy::start(&s.addr).await;
    let client = h2_client();
    let url = format!("http://{}/", proxy.addr);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), "ok");
    let started = Instant::now();
    while proxy.closed_by_upstream() == 0 {
        assert!(
            started.elapsed() < SOON,
            "the server never closed the idle connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(proxy.connections(), 2);
}

/// A download and an upload that each take several idle timeouts but keep moving are not cut,
/// over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_transfers_that_keep_moving_are_not_cut() {
    let s = start(ConnSettings {
        idle_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        first_byte_timeout: Duration::from_secs(1),
        ..settings()
    })
    .await;
    for client in [h1_client(), h2_client()] {
        let started = Instant::now();
        let body = client
            .get(format!("http://{}/slow-download", s.addr))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .expect("slow download cut");
        assert_eq!(body.len(), 8 * 1024);
        assert!(started.elapsed() >= Duration::from_secs(3));

        let chunks = futures_util::stream::iter(0..8).then(|_| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>(vec![b'y'; 1000])
        });
        let resp = client
            .put(format!("http://{}/upload", s.addr))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("slow upload cut");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "8000");
    }
}

/// With `max_connections = 2`, a third client waits (its request is not answered) while the
/// two served keep being served; it is served as soon as one of them closes; the log says the
/// cap was reached and which key raises it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_queues_new_clients_and_says_so() {
    let s = start(ConnSettings {
        max_connections: 2,
        ..settings()
    })
    .await;
    let mut a = H1::connect(&s.addr).await.unwrap();
    let mut b = H1::connect(&s.addr).await.unwrap();
    get_ok(&mut a).await;
    get_ok(&mut b).await;
    let mut c = H1::connect(&s.addr)
        .await
        .expect("the backlog takes the connection");
    c.write(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(1), c.read_response(false)).await;
    assert!(waited.is_err(), "served past the cap: {waited:?}");
    // The two served connections are unaffected.
    for _ in 0..3 {
        get_ok(&mut a).await;
        get_ok(&mut b).await;
    }
    let started = Instant::now();
    while !logged("connection limit reached") {
        assert!(started.elapsed() < SOON, "no log line about the cap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged("limits.max_connections"));
    drop(a);
    let resp = tokio::time::timeout(SOON, c.read_response(false))
        .await
        .expect("queued client never served")
        .unwrap();
    assert_eq!(resp.status, 200);
    get_ok(&mut b).await;
}

/// Unread bodies under the bound are drained and the connection kept (Content-Length and
/// chunked); over it the answer says `Connection: close` and still arrives, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_bodies_http1() {
    let s = start(settings()).await;
    let half = vec![7u8; 512 * 1024];
    let twice = vec![7u8; 2 << 20];
    for framing in [Framing::Length, Framing::Chunked] {
        let mut c = H1::connect(&s.addr).await.unwrap();
        for _ in 0..10 {
            for path in ["/refuse", "/read-some"] {
                let (resp, write_err) = c.request("PUT", path, &[], &half, framing).await;
                let resp = resp.unwrap_or_else(|e| panic!("{path} {framing:?}: {e}"));
                assert!(matches!(resp.status, 401 | 400), "{resp:?}");
                assert!(write_err.is_none(), "{write_err:?}");
                assert!(!resp.closes(), "{resp:?}");
            }
        }
        get_ok(&mut c).await;
        for _ in 0..10 {
            let mut c = H1::connect(&s.addr).await.unwrap();
            let (resp, _) = c.request("PUT", "/refuse", &[], &twice, framing).await;
            let resp = resp.expect("the answer must arrive");
            assert_eq!(resp.status, 401);
            assert!(resp.closes(), "{resp:?}");
            assert!(c.closed_within(SOON).await.is_some());
        }
    }
    // A client waiting for `100 Continue` is answered without being asked for the body.
    let mut c = H1::connect(&s.addr).await.unwrap();
    c.write(
        format!(
            "PUT /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            twice.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let resp = tokio::time::timeout(SOON, c.read_response(false))
        .await
        .expect("answer without the body")
        .unwrap();
    assert_eq!(resp.status, 401);
    assert!(resp.closes());
}

/// Over HTTP/2 every early answer arrives, under and over the bound, and the client keeps
/// using its one connection (the unread stream is reset, not the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_bodies_http2() {
    let s = start(settings()).await;
    let proxy = CountingProxy::start(&s.addr).await;
    let client = h2_client();
    for size in [512 * 1024, 2 << 20] {
        for _ in 0..20 {
            let resp = client
                .put(format!("http://{}/refuse", proxy.addr))
                .body(vec![1u8; size])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{size} bytes: {e:?}"));
            assert_eq!(resp.status(), 401);
            assert_eq!(resp.version(), reqwest::Version::HTTP_2);
            assert_eq!(resp.text().await.unwrap(), "no\n");
        }
    }
    let r = client
        .get(format!("http://{}/", proxy.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(proxy.connections(), 1, "the HTTP/2 connection was not kept");
    assert_eq!(proxy.closed_by_upstream(), 0);
}

/// What h2 does when the answer comes before the request body (checked on the wire): the
/// response, then `RST_STREAM` with `NO_ERROR` (0) for that stream only, no `GOAWAY`, and the
/// next stream on the connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answer_on_http2_resets_only_the_stream_with_no_error() {
    use tokio::io::AsyncWriteExt;
    let s = start(settings()).await;
    let mut c = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let mut hello = h2::PREFACE.to_vec();
    hello.extend(h2::frame(h2::SETTINGS, 0, 0, &[]));
    let declared = (2u64 << 20).to_string();
    let head = h2::literal_headers(&[
        (":method", "PUT"),
        (":scheme", "http"),
        (":path", "/refuse"),
        (":authority", "x"),
        ("content-length", &declared),
    ]);
    hello.extend(h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &head));
    // Within the default windows; the body is declared much larger and never finished.
    for _ in 0..3 {
        hello.extend(h2::frame(h2::DATA, 0, 1, &[9u8; 16 * 1024]));
    }
    c.write_all(&hello).await.unwrap();
    let mut seen = Vec::new();
    let reset = tokio::time::timeout(
        SOON,
        h2::read_until(&mut c, &mut seen, |f| {
            f.kind == h2::RST_STREAM && f.stream == 1
        }),
    )
    .await
    .expect("no RST_STREAM for the unread stream");
    assert!(reset, "connection closed: {seen:?}");
    let response = seen
        .iter()
        .position(|f| f.kind == h2::HEADERS && f.stream == 1)
        .unwrap_or_else(|| panic!("no response before the reset: {seen:?}"));
    let rst = seen.len() - 1;
    assert!(response < rst, "{seen:?}");
    assert_eq!(
        seen[rst].payload,
        [0, 0, 0, 0],
        "RST_STREAM must say NO_ERROR"
    );
    assert!(!seen.iter().any(|f| f.kind == h2::GOAWAY), "{seen:?}");
    // The connection lives on: stream 3 is answered.
    let get = h2::literal_headers(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "x"),
    ]);
    c.write_all(&h2::frame(
        h2::HEADERS,
        h2::END_HEADERS | h2::END_STREAM,
        3,
        &get,
    ))
    .await
    .unwrap();
    let mut more = Vec::new();
    let answered = tokio::time::timeout(
        SOON,
        h2::read_until(&mut c, &mut more, |f| {
            f.kind == h2::DATA && f.stream == 3 && f.flags & h2::END_STREAM != 0
        }),
    )
    .await
    .expect("stream 3 not answered");
    assert!(answered, "connection closed: {more:?}");
    let body: Vec<u8> = more
        .iter()
        .filter(|f| f.kind == h2::DATA && f.stream == 3)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(body, b"ok");
}

/// Over HTTPS the same holds: an idle HTTP/2 connection (ALPN `h2`) and an idle HTTP/1.1
/// keep-alive connection are closed after the idle timeout (the first-byte and header
/// timeouts are long here, so only the idle one can close them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_https_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let set = tls::self_signed(dir.path(), &[], SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let files = TlsFiles {
        cert: set.cert.clone(),
        key: set.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, Duration::ZERO).unwrap();
    let s = start_with(
        ConnSettings {
            idle_timeout: Duration::from_secs(1),
            ..settings()
        },
        Some(acceptor),
    )
    .await;
    let proxy = CountingProxy::start(&s.addr).await;
    let pem = std::fs::read(&set.ca_cert).unwrap();
    for http1 in [false, true] {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .no_proxy()
            .timeout(SOON);
        if http1 {
            b = b.http1_only();
        }
        let client = b.build().unwrap();
        let before = proxy.closed_by_upstream();
        let r = client
            .get(format!("https://{}/", proxy.addr))
            .send()
            .await
            .unwrap();
        let want = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(r.version(), want);
        assert_eq!(r.text().await.unwrap(), "ok");
        let started = Instant::now();
        while proxy.closed_by_upstream() == before {
            assert!(
                started.elapsed() < SOON,
                "idle HTTPS connection ({want:?}) still open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
