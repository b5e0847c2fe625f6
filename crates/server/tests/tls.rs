//! End-to-end tests of the listener and TLS: real TCP on 127.0.0.1, real handshakes, reqwest
//! clients (and, where hyper's client gets in the way, a bare `h2` one) that trust only the
//! certificates these tests generate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension};
use axum::http::{Method, Request, StatusCode, Version, header};
use axum::routing::get;
use axum::{Router, response::Response};
use bytes::Bytes;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use stowage_server::listener::{Secure, redirect_router, serve_connections};
use stowage_server::tls::{self, SelfSigned, TlsAcceptor, TlsFiles};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

const RELOAD: Duration = Duration::from_millis(200);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `/` says whether the request came over TLS and from where; `/slow` takes 300 ms and tells
/// `started` when it begins.
fn app(started: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/",
            get(
                |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 Extension(Secure(secure)): Extension<Secure>| async move {
                    format!("hello secure={secure} peer={peer}")
                },
            ),
        )
        .route(
            "/slow",
            get(move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow done"
                }
            }),
        )
}

struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    handle: JoinHandle<std::io::Result<()>>,
    started: Arc<Notify>,
}

async fn start(tls: Option<TlsAcceptor>) -> Server {
    let started = Arc::new(Notify::new());
    start_app(tls, app(started.clone()), started).await
}

async fn start_app(tls: Option<TlsAcceptor>, app: Router, started: Arc<Notify>) -> Server {
    let listener = TcpListener::bind(local(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let handle = tokio::spawn(serve_connections(listener, tls, app, rx));
    Server {
        addr,
        stop,
        handle,
        started,
    }
}

fn dev_set(dir: &Path) -> SelfSigned {
    let set = tls::self_signed(dir, &[], local(0)).unwrap();
    assert!(set.created);
    set
}

fn builder_trusting(ca: &Path, addr: SocketAddr) -> reqwest::ClientBuilder {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve("localhost", addr)
        .resolve("registry.test", addr)
        .no_proxy()
        .timeout(Duration::from_secs(10))
}

fn client_trusting(ca: &Path, addr: SocketAddr) -> reqwest::Client {
    builder_trusting(ca, addr).build().unwrap()
}

/// The error and all its causes, lowercased, for matching on what went wrong.
fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.to_lowercase()
}

async fn get_text(client: &reqwest::Client, url: &str) -> Result<(Version, String), String> {
    let resp = client.get(url).send().await.map_err(|e| error_text(&e))?;
    assert_eq!(resp.status(), StatusCode::OK);
    let version = resp.version();
    Ok((version, resp.text().await.unwrap()))
}

/// An HTTP/2 connection made with the `h2` crate over TLS (ALPN `h2`), trusting only `ca`.
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    /// The connection task; ends when the server closes the connection.
    connection: JoinHandle<Result<(), h2::Error>>,
}

async fn h2_connect(ca: &Path, addr: SocketAddr) -> H2Conn {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let send = send.ready().await.unwrap();
    H2Conn {
        send,
        connection: tokio::spawn(connection),
    }
}

async fn h2_body(mut body: h2::RecvStream) -> String {
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the response body was cut");
        body.flow_control().release_capacity(chunk.len()).unwrap();
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).unwrap()
}

async fn expect_certificate_error(client: &reqwest::Client, url: &str) {
    let err = get_text(client, url)
        .await
        .expect_err("the handshake should have been refused");
    assert!(
        err.contains("certificate"),
        "not a certificate error: {err}"
    );
}

/// Replace `dest` with `src`'s content the way a careful deployment tool does (temp + rename).
fn install(src: &Path, dest: &Path) {
    install_bytes(&std::fs::read(src).unwrap(), dest);
}

fn install_bytes(data: &[u8], dest: &Path) {
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

fn peer_of(body: &str) -> String {
    body.split("peer=").nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_generated_ca_negotiates_http2_and_serves_http1() {
    let dir = tempfile::tempdir().unwrap();
    let set = dev_set(dir.path());
    let files = TlsFiles {
        cert: set.cert.clone(),
        key: set.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, RELOAD).unwrap();
    let server = start(Some(acceptor)).await;
    let port = server.addr.port();

    let client = client_trusting(&set.ca_cert, server.addr);
    let (version, body) = get_text(&client, &format!("https://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(version, Version::HTTP_2);
    assert!(
        body.starts_with("hello secure=true peer=127.0.0.1:"),
        "{body}"
    );
    let (version, _) = get_text(&client, &format!("https://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(version, Version::HTTP_2);

    let http1 = builder_trusting(&set.ca_cert, server.addr)
        .http1_only()
        .build()
        .unwrap();
    let (version, body) = get_text(&http1, &format!("https://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(version, Version::HTTP_11);
    assert!(body.starts_with("hello secure=true"), "{body}");

    // A client trusting some other CA refuses the server.
    let other = tempfile::tempdir().unwrap();
    let other_set = dev_set(other.path());
    let stranger = client_trusting(&other_set.ca_cert, server.addr);
    expect_certificate_error(&stranger, &format!("https://127.0.0.1:{port}/")).await;
    // And a name the certificate does not cover is refused too.
    expect_certificate_error(
        &client_trusting(&set.ca_cert, server.addr),
        &format!("https://registry.test:{port}/"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_serves_http1_and_http2_prior_knowledge() {
    let server = start(None).await;
    let url = format!("http://127.0.0.1:{}/", server.addr.port());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (version, body) = get_text(&client, &url).await.unwrap();
    assert_eq!(version, Version::HTTP_11);
    assert!(
        body.starts_with("hello secure=false peer=127.0.0.1:"),
        "{body}"
    );
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let (version, body) = get_text(&h2, &url).await.unwrap();
    assert_eq!(version, Version::HTTP_2);
    assert!(body.starts_with("hello secure=false"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificate_for_new_connections_only() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let c_dir = tempfile::tempdir().unwrap();
    let live = tempfile::tempdir().unwrap();
    let a = dev_set(a_dir.path());
    let b = dev_set(b_dir.path());
    let c = dev_set(c_dir.path());
    let files = TlsFiles {
        cert: live.path().join("cert.pem"),
        key: live.path().join("key.pem"),
    };
    install(&a.cert, &files.cert);
    install(&a.key, &files.key);
    let (acceptor, resolver) = tls::load(&files, RELOAD).unwrap();
    let server = start(Some(acceptor)).await;
    let url = format!("https://localhost:{}/", server.addr.port());

    // One client keeps its (HTTP/2, so single) connection open across the swap.
    let old = client_trusting(&a.ca_cert, server.addr);
    let (_, body) = get_text(&old, &url).await.unwrap();
    let old_peer = peer_of(&body);

    install(&b.key, &files.key);
    install(&b.cert, &files.cert);
    wait_until_served(&b.ca_cert, server.addr, &url).await;

    // The existing connection is untouched: same peer port, and it still works even though a
    // new handshake trusting only A would now fail.
    let (_, body) = get_text(&old, &url).await.unwrap();
    assert_eq!(peer_of(&body), old_peer);
    expect_certificate_error(&client_trusting(&a.ca_cert, server.addr), &url).await;

    // A broken key is refused with a clear message, and B keeps serving.
    install_bytes(b"not a key\n", &files.key);
    let err = resolver.reload_if_changed().unwrap_err();
    assert!(err.contains("no private key found"), "{err}");
    assert!(err.contains(&files.key.display().to_string()), "{err}");
    tokio::time::sleep(RELOAD * 3).await;
    get_text(&client_trusting(&b.ca_cert, server.addr), &url)
        .await
        .unwrap();

    // Half-way through a renewal (new certificate, old key) nothing changes either...
    install(&b.key, &files.key);
    install(&c.cert, &files.cert);
    let err = resolver.reload_if_changed().unwrap_err();
    assert!(err.contains("certificate and key do not match"), "{err}");
    tokio::time::sleep(RELOAD * 3).await;
    get_text(&client_trusting(&b.ca_cert, server.addr), &url)
        .await
        .unwrap();
    // ...and once the key lands, the failed attempt is retried and C is served.
    install(&c.key, &files.key);
    wait_until_served(&c.ca_cert, server.addr, &url).await;
    expect_certificate_error(&client_trusting(&b.ca_cert, server.addr), &url).await;
    let (_, body) = get_text(&old, &url).await.unwrap();
    assert_eq!(peer_of(&body), old_peer);
}

/// Wait (bounded) until a fresh client trusting only `ca` gets through.
async fn wait_until_served(ca: &Path, addr: SocketAddr, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match get_text(&client_trusting(ca, addr), url).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                assert!(e.contains("certificate"), "unexpected error: {e}");
                tokio::time::sleep(RELOAD / 2).await;
            }
            Err(e) => panic!("new certificate not served in time: {e}"),
        }
    }
}

#[test]
fn load_reports_bad_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let set = tls::self_signed(dir.path(), &[], local(0)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_set = tls::self_signed(other.path(), &[], local(0)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let load = |cert: &Path, key: &Path| {
        tls::load(
            &TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            Duration::ZERO,
        )
        .map(|_| ())
        .unwrap_err()
    };
    let missing = dir.path().join("missing.pem");
    let err = load(&missing, &set.key);
    assert!(
        err.starts_with("tls.cert ") && err.contains("missing.pem"),
        "{err}"
    );
    let err = load(&set.cert, &set.cert);
    assert!(
        err.contains("no private key found (expected PEM PKCS#8, SEC1 or RSA key)"),
        "{err}"
    );
    let err = load(&set.key, &set.key);
    assert!(err.contains("no certificate found"), "{err}");
    let err = load(&set.cert, &other_set.key);
    assert!(err.contains("certificate and key do not match"), "{err}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_is_reused_and_reissued_for_new_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = "0.0.0.0:5000".parse().unwrap();
    let first = tls::self_signed(dir.path(), &[], listen).unwrap();
    assert!(first.created);
    assert_eq!(first.ca_cert, dir.path().join("ca.crt"));
    assert_eq!(first.cert, dir.path().join("server.crt"));
    assert_eq!(first.key, dir.path().join("server.key"));
    let ca = read(&first.ca_cert);
    let leaf = read(&first.cert);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [dir.path().join("ca.key"), first.key.clone()] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    let again = tls::self_signed(dir.path(), &[], listen).unwrap();
    assert!(!again.created);
    assert_eq!(read(&again.cert), leaf);

    // A new host needs a new server certificate, from the same CA.
    let hosts = vec!["registry.test".to_owned(), "10.1.2.3".to_owned()];
    let wider = tls::self_signed(dir.path(), &hosts, listen).unwrap();
    assert!(wider.created);
    assert_eq!(read(&wider.ca_cert), ca);
    assert_ne!(read(&wider.cert), leaf);
    let wider_leaf = read(&wider.cert);
    assert!(
        !tls::self_signed(dir.path(), &hosts, listen)
            .unwrap()
            .created
    );
    // Fewer hosts are still covered.
    let fewer = tls::self_signed(dir.path(), &hosts[..1], listen).unwrap();
    assert!(!fewer.created);
    assert_eq!(read(&fewer.cert), wider_leaf);
    // The files are not left behind half-written or as temporaries.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.crt", "ca.key", "server.crt", "server.key"]);

    // The re-issued certificate works for the new name and for the loopback address that the
    // unspecified listen address stands for, with the unchanged CA.
    let files = TlsFiles {
        cert: wider.cert.clone(),
        key: wider.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, Duration::ZERO).unwrap();
    let server = start(Some(acceptor)).await;
    let port = server.addr.port();
    let client = client_trusting(&first.ca_cert, server.addr);
    for url in [
        format!("https://registry.test:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://localhost:{port}/"),
    ] {
        get_text(&client, &url).await.unwrap();
    }

    // A damaged CA key means a new CA (and so a new ca.crt clients must trust).
    std::fs::write(dir.path().join("ca.key"), "garbage").unwrap();
    std::fs::remove_file(&wider.cert).unwrap();
    let renewed = tls::self_signed(dir.path(), &hosts, listen).unwrap();
    assert!(renewed.created);
    assert_ne!(read(&renewed.ca_cert), ca);
}

#[tokio::test]
async fn redirect_router_answers_308_to_https() {
    async fn location(
        https_port: u16,
        method: Method,
        host: Option<&str>,
        target: &str,
    ) -> (StatusCode, Option<String>) {
        let mut req = Request::builder().method(method).uri(target);
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        let resp: Response = tower_service::Service::call(
            &mut redirect_router(https_port),
            req.body(Body::empty()).unwrap(),
        )
        .await
        .unwrap();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status(), location)
    }
    let redirect = |to: &str| (StatusCode::PERMANENT_REDIRECT, Some(to.to_owned()));

    assert_eq!(
        location(
            8443,
            Method::GET,
            Some("Registry.Example:8080"),
            "/v2/a/b/manifests/latest?n=1"
        )
        .await,
        redirect("https://registry.example:8443/v2/a/b/manifests/latest?n=1")
    );
    assert_eq!(
        location(443, Method::PUT, Some("registry.example"), "/v2/").await,
        redirect("https://registry.example/v2/")
    );
    assert_eq!(
        location(8443, Method::GET, Some("[::1]:80"), "/").await,
        redirect("https://[::1]:8443/")
    );
    // HTTP/2 and absolute-form requests carry the host in the URI.
    assert_eq!(
        location(443, Method::GET, None, "http://registry.example:80/x").await,
        redirect("https://registry.example/x")
    );
    for bad in [None, Some("user@evil.example"), Some("bad host"), Some("")] {
        let (status, loc) = location(8443, Method::GET, bad, "/").await;
        assert_eq!((status, loc), (StatusCode::BAD_REQUEST, None), "{bad:?}");
    }

    // And through a real plain listener.
    let server = start_app(None, redirect_router(8443), Arc::new(Notify::new())).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!(
            "http://127.0.0.1:{}/v2/?last=a",
            server.addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers()[header::LOCATION],
        "https://127.0.0.1:8443/v2/?last=a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let set = dev_set(dir.path());
    let files = TlsFiles {
        cert: set.cert.clone(),
        key: set.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, RELOAD).unwrap();
    let server = start(Some(acceptor)).await;
    let port = server.addr.port();

    // An idle keep-alive HTTP/1.1 connection and a client stuck before its handshake must not
    // hold the shutdown up.
    let idle = builder_trusting(&set.ca_cert, server.addr)
        .http1_only()
        .build()
        .unwrap();
    get_text(&idle, &format!("https://localhost:{port}/"))
        .await
        .unwrap();
    let _silent = TcpStream::connect(server.addr).await.unwrap();

    // The in-flight request goes through the `h2` crate itself, not reqwest: hyper's HTTP/2
    // client (1.12, `proto/h2/client.rs`, `ClientTask::poll`) checks `poll_ready` again right
    // after sending a request, and that fails once any GOAWAY has arrived, even the graceful
    // one that lets the stream finish. If the client task is descheduled between the two
    // calls long enough for the request to reach the handler and the shutdown's GOAWAY to come
    // back, it fails a request the server is serving ("connection error received: not a result
    // of an error") and cancels its stream. What is tested here is the server.
    let mut h2 = h2_connect(&set.ca_cert, server.addr).await;
    let request = Request::get(format!("https://localhost:{port}/slow"))
        .body(())
        .unwrap();
    let started = server.started.notified();
    let (response, _) = h2.send.send_request(request, true).unwrap();
    started.await;
    let signalled = Instant::now();
    server.stop.send(true).unwrap();

    let response = response.await.expect("the in-flight request was cut");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h2_body(response.into_body()).await, "slow done");
    // The shutdown did reach this connection while the request was in flight: a graceful
    // GOAWAY (no error) refuses new streams, and the connection then ends cleanly.
    let refused = std::future::poll_fn(|cx| h2.send.poll_ready(cx))
        .await
        .expect_err("no GOAWAY after the shutdown");
    assert!(
        refused.is_go_away() && refused.is_remote(),
        "not a GOAWAY: {refused}"
    );
    assert_eq!(refused.reason(), Some(h2::Reason::NO_ERROR));
    tokio::time::timeout(Duration::from_secs(5), h2.connection)
        .await
        .expect("the connection was not closed")
        .unwrap()
        .expect("the connection did not end cleanly");
    tokio::time::timeout(Duration::from_secs(5), server.handle)
        .await
        .expect("serve_connections did not return")
        .unwrap()
        .unwrap();
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    // The listener is closed: nobody new gets in.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let set = dev_set(dir.path());
    let files = TlsFiles {
        cert: set.cert.clone(),
        key: set.key.clone(),
    };
    let (acceptor, _resolver) = tls::load(&files, RELOAD).unwrap();
    let secure = start(Some(acceptor)).await;
    let plain = start(None).await;

    let mut silent = Vec::new();
    for addr in [secure.addr, plain.addr] {
        for _ in 0..3 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // One more that starts talking and then stalls.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        silent.push(stalled);
    }

    let begun = Instant::now();
    let client = client_trusting(&set.ca_cert, secure.addr);
    get_text(
        &client,
        &format!("https://localhost:{}/", secure.addr.port()),
    )
    .await
    .unwrap();
    let plain_client = reqwest::Client::builder().no_proxy().build().unwrap();
    get_text(
        &plain_client,
        &format!("http://127.0.0.1:{}/", plain.addr.port()),
    )
    .await
    .unwrap();
    let took = begun.elapsed();
    assert!(took < Duration::from_secs(3), "requests took {took:?}");
    drop(silent);
}
