//! The accept loop: takes TCP connections (optionally TLS), serves HTTP/1.1 and HTTP/2 on them
//! with the application router, and drains them on shutdown. Also the tiny HTTP-to-HTTPS
//! redirect application for an optional plain listener.
//!
//! This module owns connection-level concerns only: TCP options, the TLS handshake and its
//! deadline, protocol selection, per-connection request extensions (peer address, whether the
//! connection is secure), accept-error back-off and graceful shutdown. It must not look at
//! requests beyond attaching those extensions (routing, auth and headers such as HSTS belong to
//! the application), must not buffer request bodies (they stream straight to the handlers), and
//! must never let one connection, however slow or silent, hold up the accept loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Response, StatusCode, header, uri::Authority};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::tls::TlsAcceptor;

/// Request extension: whether the request arrived over TLS, so the application can add
/// `Strict-Transport-Security` (and only then: HSTS over plain HTTP is ignored by browsers and
/// would be wrong behind a plain listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure(pub bool);

/// How long a client may take from connecting to completing the TLS handshake (or, on a plain
/// listener, to sending its first byte) before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1 client may take to send a request's headers; also closes keep-alive
/// connections idle for that long (hyper starts this clock when it waits for a request head).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error that is not about one connection (out of file descriptors,
/// memory): retrying at once would spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The HTTP protocol engines, built once and shared by every connection.
struct Engines {
    /// Sniffs the HTTP/2 preface: plain listeners (HTTP/2 with prior knowledge or HTTP/1.1)
    /// and TLS connections whose client offered no ALPN.
    auto: auto::Builder<TokioExecutor>,
    /// ALPN said `http/1.1`.
    http1: auto::Builder<TokioExecutor>,
    /// ALPN said `h2`.
    http2: auto::Builder<TokioExecutor>,
}

impl Engines {
    fn new() -> Engines {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        auto.http2().timer(TokioTimer::new());
        Engines {
            http1: auto.clone().http1_only(),
            http2: auto.clone().http2_only(),
            auto,
        }
    }

    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.http2,
            Some(b"http/1.1") => &self.http1,
            _ => &self.auto,
        }
    }
}

/// Serve `app` on every connection `listener` accepts, over TLS when `tls` is given, until
/// `shutdown` becomes true (or its sender is dropped).
///
/// Each connection gets its own task; requests carry `ConnectInfo<SocketAddr>` (the peer) and
/// [`Secure`] in their extensions. On shutdown the listener is closed at once, idle
/// connections are closed, connections with requests in flight finish those requests, and
/// connections still in their handshake are dropped; this returns when all are done. The caller
/// bounds that wait with its own timeout. Accept errors are logged and retried, never returned.
pub async fn serve_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let engines = Arc::new(Engines::new());
    let graceful = GracefulShutdown::new();
    let stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            // A dropped sender counts as shutdown: nobody could ever stop this loop otherwise.
            _ = shutdown.wait_for(|&stop| stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = Connection {
                    engines: engines.clone(),
                    tls: tls.clone(),
                    app: app.clone(),
                    peer,
                    stop: stop.clone(),
                    // Taken before the task starts, so a shutdown signalled while the task is
                    // still queued is not missed and is waited for.
                    watcher: graceful.watcher(),
                };
                tokio::spawn(connection.run(stream));
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "connection failed before it was accepted");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot accept connections; retrying shortly");
                tokio::select! {
                    _ = shutdown.wait_for(|&stop| stop) => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                }
            }
        }
    }
    // Close the socket first so new clients are refused rather than left waiting.
    drop(listener);
    tracing::debug!(
        connections = graceful.count(),
        "listener closed; draining connections"
    );
    graceful.shutdown().await;
    Ok(())
}

/// Errors about the one connection being accepted (the client already gave up), as opposed to
/// the listener's own trouble.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    )
}

/// Everything one connection task needs.
struct Connection {
    engines: Arc<Engines>,
    tls: Option<TlsAcceptor>,
    app: Router,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    watcher: Watcher,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Connection {
            engines,
            tls,
            app,
            peer,
            mut stop,
            watcher,
        } = self;
        // Registry traffic is request/response with small heads; Nagle would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        // The opening phase (TLS handshake, or waiting for the first byte) is bounded, and
        // abandoned on shutdown: no request can be in flight yet, so nothing is lost.
        let opening = async {
            match tls {
                Some(acceptor) => acceptor
                    .accept(stream)
                    .await
                    .map(|s| Stream::Tls(Box::new(s))),
                None => stream.readable().await.map(|()| Stream::Plain(stream)),
            }
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, opening) => opened,
            _ = stop.wait_for(|&stop| stop) => return,
        };
        let stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection failed before its first request (TLS handshake)");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "handshake or first byte not received in time; closing");
                return;
            }
        };
        let result = match stream {
            Stream::Plain(stream) => {
                let service = service(app, peer, false);
                let conn = engines.auto.serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            }
            Stream::Tls(stream) => {
                let engine = engines.for_alpn(stream.get_ref().1.alpn_protocol());
                let service = service(app, peer, true);
                let conn = engine.serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            }
        };
        if let Err(e) = result {
            // Clients vanishing mid-connection is routine; not worth more than debug.
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// A connection past its opening phase. The TLS state is boxed: it is much larger than a socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The hyper service for one connection: tags each request with the connection's facts, turns
/// its body into axum's (still streaming) and hands it to the router.
fn service(
    app: Router,
    peer: SocketAddr,
    secure: bool,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = axum::routing::future::RouteFuture<Infallible>,
> + Clone {
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let extensions = req.extensions_mut();
        extensions.insert(ConnectInfo(peer));
        extensions.insert(Secure(secure));
        // The router is a cheap handle (an `Arc` inside); a clone per request is how
        // `axum::serve` drives it too. Its `poll_ready` is always ready, so calling directly
        // is allowed.
        tower_service::Service::call(&mut app.clone(), req.map(Body::new))
    })
}

/// The application for a plain-HTTP listener next to an HTTPS one: every request is answered
/// with `308 Permanent Redirect` to the same host, path and query on `https_port` (no port in
/// the URL when it is 443). A request without a usable `Host` (or HTTP/2 `:authority`) gets 400.
pub fn redirect_router(https_port: u16) -> Router {
    Router::new().fallback(move |req: Request| async move { redirect(&req, https_port) })
}

fn redirect(req: &Request, https_port: u16) -> Response<Body> {
    let Some(host) = request_host(req) else {
        return simple(StatusCode::BAD_REQUEST, "missing or invalid Host header\n");
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    match HeaderValue::try_from(location) {
        Ok(location) => {
            let mut resp = simple(StatusCode::PERMANENT_REDIRECT, "");
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => simple(StatusCode::BAD_REQUEST, "invalid request target\n"),
    }
}

/// The host the client asked for, without its port: from `Host`, or from the URI's authority
/// (HTTP/2's `:authority`, or an absolute-form HTTP/1 target). IPv6 literals keep their
/// brackets. User info is refused: it has no business in a Host and would end up in the URL.
fn request_host(req: &Request) -> Option<String> {
    let authority = match req.headers().get(header::HOST) {
        Some(value) => value.to_str().ok()?.parse::<Authority>().ok()?,
        None => req.uri().authority()?.clone(),
    };
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn simple(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}
