//! The accept loop: takes TCP connections (optionally TLS), serves HTTP/1.1 and HTTP/2 on them
//! with the application router, and drains them on shutdown. Also the tiny HTTP-to-HTTPS
//! redirect application for an optional plain listener.
//!
//! This module owns connection-level concerns only: TCP options, the TLS handshake and its
//! deadline, protocol selection, per-connection request extensions (peer address, whether the
//! connection is secure), the connection cap (`limits`), the first-byte, header and idle
//! timeouts (`activity`), unread request bodies (`drain`), closing without resets, accept-error
//! back-off and graceful shutdown. It must not look at requests beyond attaching those
//! extensions (routing, auth and headers such as HSTS belong to the application), must not
//! buffer request bodies (they stream straight to the handlers), and must never let one
//! connection, however slow or silent, hold up the accept loop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Response, StatusCode, Version, header, uri::Authority};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use crate::activity::{Activity, Expiry, InFlight, Returned, Timeouts, TrackedIo};
use crate::drain::{self, DrainSettings};
use crate::limits::RateLimit;
pub use crate::limits::{ConnSettings, Limits};
use crate::tls::TlsAcceptor;

/// Request extension: whether the request arrived over TLS, so the application can add
/// `Strict-Transport-Security` (and only then: HSTS over plain HTTP is ignored by browsers and
/// would be wrong behind a plain listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure(pub bool);

/// How long a client may take from connecting to completing the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a graceful close for idleness (HTTP/2: GOAWAY), how long the peer may take before the
/// connection is dropped anyway.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a closed connection keeps reading (and dropping) what the client still sends,
/// after the server's half-close, so the client reads the answer instead of a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

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
    fn new(settings: &ConnSettings) -> Engines {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // Header and idle timeouts are the listener's own (`activity`): hyper's header read
        // timeout also runs while a keep-alive connection waits, which would cut idle
        // connections at the header timeout instead of the idle one.
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        // `limits.max_header_size` is checked by the application, which answers 431 with a
        // message saying so. The engines' own bounds sit above it, so they only catch what is
        // far over (HTTP/1.1: hyper's read buffer, about 400 KiB; HTTP/2: twice the limit
        // plus HPACK's 32 bytes per field for 100 fields), answering a bare 431 themselves.
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(h2_header_list_size(settings.max_header_size));
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

/// The HTTP/2 engine's header list bound for a `limits.max_header_size` of `max`.
fn h2_header_list_size(max: u64) -> u32 {
    max.saturating_mul(2)
        .saturating_add(32 * 100)
        .min(u64::from(u32::MAX)) as u32
}

/// A connection past its opening phase: the socket, or the TLS stream over it (boxed: it is
/// much larger than a socket). Wrapped in a [`Handback`] while hyper serves it, so the
/// listener can still answer on it afterwards (a 408 for a request head that timed out).
enum Stream {
    Plain(TrackedIo),
    Tls(Box<tokio_rustls::server::TlsStream<TrackedIo>>),
}

/// A [`Stream`] that is sent back through `back` when dropped.
struct Handback {
    stream: Option<Stream>,
    back: Option<oneshot::Sender<Stream>>,
}

impl Handback {
    fn new(stream: Stream) -> (Handback, oneshot::Receiver<Stream>) {
        let (tx, rx) = oneshot::channel();
        let h = Handback {
            stream: Some(stream),
            back: Some(tx),
        };
        (h, rx)
    }

    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("present until dropped")
    }
}

impl Drop for Handback {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(stream);
        }
    }
}

/// Delegate to whichever stream it is.
macro_rules! on_stream {
    ($s:expr, $io:ident => $e:expr) => {
        match $s {
            Stream::Plain($io) => $e,
            Stream::Tls($io) => $e,
        }
    };
}

impl tokio::io::AsyncRead for Handback {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self.stream(), io => Pin::new(io).poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Handback {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        on_stream!(self.stream(), io => Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        on_stream!(self.stream(), io => Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Some(Stream::Plain(io)) => io.is_write_vectored(),
            Some(Stream::Tls(io)) => io.is_write_vectored(),
            None => false,
        }
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self.stream(), io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        on_stream!(self.stream(), io => Pin::new(io).poll_shutdown(cx))
    }
}

/// Send `408 Request Timeout` on a connection whose request head did not arrive in time
/// (HTTP/1.1 only: nothing of that request was answered yet, so the client reads this as its
/// answer), within a short bound, then close the TLS session if there is one.
async fn answer_head_timeout(mut stream: Stream, header_timeout: Duration) {
    let bytes = crate::error::request_timeout_response(header_timeout);
    let _ = tokio::time::timeout(LINGER, async {
        on_stream!(&mut stream, io => {
            io.write_all(&bytes).await?;
            io.flush().await?;
            io.shutdown().await
        })
    })
    .await;
}

/// [`serve_connections_with`] with the default [`Limits`].
pub async fn serve_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_connections_with(listener, tls, app, shutdown, Limits::default()).await
}

/// Serve `app` on every connection `listener` accepts, over TLS when `tls` is given, until
/// `shutdown` becomes true (or its sender is dropped), holding connections to `limits`.
///
/// Each connection gets its own task; requests carry `ConnectInfo<SocketAddr>` (the peer) and
/// [`Secure`] in their extensions. At most `max_connections` are open at once: past that,
/// accepting waits (clients queue in the listen backlog) and a warning says so. Connections
/// are closed when silent, slow to send a head, or idle (see `activity`); bodies the
/// application leaves unread are dealt with in `drain`.
///
/// On shutdown the listener is closed at once, idle connections are closed, connections with
/// requests in flight finish those requests, and connections still in their handshake are
/// dropped; this returns when all are done. The caller bounds that wait with its own timeout.
/// Accept errors are logged (rate-limited) and retried, never returned.
pub async fn serve_connections_with(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) -> std::io::Result<()> {
    let engines = Arc::new(Engines::new(limits.settings()));
    // Every connection task holds a sender; `recv` returns None once all are gone.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let accept_errors = RateLimit::new(Duration::from_secs(10));
    loop {
        // A dropped sender counts as shutdown: nobody could ever stop this loop otherwise.
        let slot = tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => break,
            slot = limits.slot() => slot,
        };
        let accepted = tokio::select! {
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
                    stop: shutdown.clone(),
                    limits: limits.clone(),
                    slot,
                    alive: alive.clone(),
                };
                tokio::spawn(connection.run(stream));
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "connection failed before it was accepted");
            }
            Err(e) => {
                if accept_errors.allow() {
                    tracing::error!(error = %e, "cannot accept connections; retrying shortly");
                }
                tokio::select! {
                    _ = shutdown.wait_for(|&stop| stop) => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => {}
                }
            }
        }
    }
    // Close the socket first so new clients are refused rather than left waiting.
    drop(listener);
    drop(alive);
    tracing::debug!("listener closed; draining connections");
    let _ = all_done.recv().await;
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
    limits: Limits,
    /// This connection's place under the cap, held until its socket is closed.
    slot: OwnedSemaphorePermit,
    /// Dropped when the connection no longer matters to shutdown.
    alive: mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Connection {
            engines,
            tls,
            app,
            peer,
            mut stop,
            limits,
            slot,
            alive,
        } = self;
        // Registry traffic is request/response with small heads; Nagle would only add latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let settings = limits.settings();
        let activity = Activity::new();
        // The opening phase (TLS handshake, or waiting for the first byte) is bounded, and
        // abandoned on shutdown: no request can be in flight yet, so nothing is lost.
        let opened = tokio::select! {
            opened = open(stream, tls.as_ref(), &activity, settings.first_byte_timeout) => opened,
            _ = stop.wait_for(|&stop| stop) => return,
        };
        let (opened, back) = match opened {
            Ok(opened) => opened,
            Err(why) => {
                tracing::debug!(%peer, "{why}");
                return;
            }
        };
        activity.reset();
        let timeouts = Timeouts {
            first_byte: settings.first_byte_timeout,
            header: settings.header_timeout,
            idle: settings.idle_timeout,
        };
        let drain = DrainSettings {
            bound: settings.drain,
            frame_timeout: settings.body_idle_timeout,
        };
        let (engine, stream, secure) = match opened {
            Stream::Plain(io) => (&engines.auto, Stream::Plain(io), false),
            Stream::Tls(io) => {
                let alpn = io.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                if alpn.as_deref() == Some(b"h2") {
                    activity.set_h2();
                }
                (engines.for_alpn(alpn.as_deref()), Stream::Tls(io), true)
            }
        };
        let (io, handed_back) = Handback::new(stream);
        let service = AppService::new(app, peer, secure, &activity, drain);
        let conn = engine.serve_connection(TokioIo::new(io), service);
        let result = drive(conn, &activity, timeouts, &mut stop).await;
        match result {
            Ok(Ending::Done) => {}
            Ok(Ending::TimedOut(Expiry::Head)) if !activity.is_h2() => {
                tracing::debug!(%peer, "request head not complete in time; answering 408 and closing");
                let mut handed_back = handed_back;
                if let Ok(stream) = handed_back.try_recv() {
                    answer_head_timeout(stream, settings.header_timeout).await;
                }
            }
            Ok(Ending::TimedOut(why)) => {
                tracing::debug!(%peer, ?why, "connection timed out; closing");
            }
            // Clients vanishing mid-connection is routine; not worth more than debug.
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        }
        // The connection (and its socket wrapper) is gone: the socket came back.
        drop(alive);
        let mut back = back;
        if let Ok(Returned {
            stream,
            peer_closed,
        }) = back.try_recv()
            && !peer_closed
        {
            linger(stream).await;
        }
        drop(slot);
    }
}

/// TLS handshake (within [`HANDSHAKE_TIMEOUT`]) or, on a plain listener, the first byte
/// (within `first_byte`). The socket is wrapped first, so it comes back when dropped.
async fn open(
    stream: TcpStream,
    tls: Option<&TlsAcceptor>,
    activity: &Arc<Activity>,
    first_byte: Duration,
) -> Result<(Stream, oneshot::Receiver<Returned>), String> {
    match tls {
        Some(acceptor) => {
            let (io, back) = TrackedIo::new(stream, activity.clone(), false);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(s)) => Ok((Stream::Tls(Box::new(s)), back)),
                Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                Err(_) => Err("TLS handshake not completed in time; closing".into()),
            }
        }
        None => match tokio::time::timeout(first_byte, stream.readable()).await {
            Ok(Ok(())) => {
                let (io, back) = TrackedIo::new(stream, activity.clone(), true);
                Ok((Stream::Plain(io), back))
            }
            Ok(Err(e)) => Err(format!("connection failed before its first byte: {e}")),
            Err(_) => Err("first byte not received in time; closing".into()),
        },
    }
}

/// How [`drive`] ended a connection.
enum Ending {
    Done,
    TimedOut(Expiry),
}

/// Run a connection until it ends, closing it when a timeout of `activity` applies or the
/// server shuts down (gracefully: requests in flight finish).
async fn drive<C>(
    conn: C,
    activity: &Activity,
    timeouts: Timeouts,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ending, C::Error>
where
    C: GracefulConnection,
{
    let mut conn = pin!(conn);
    let mut stopping = false;
    let mut idle_close: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => return result.map(|()| Ending::Done),
            _ = stop.wait_for(|&stop| stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = activity.expired(timeouts), if idle_close.is_none() && !stopping => match why {
                Expiry::Head => return Ok(Ending::TimedOut(why)),
                Expiry::Idle => {
                    conn.as_mut().graceful_shutdown();
                    idle_close = Some(Box::pin(tokio::time::sleep(IDLE_CLOSE_GRACE)));
                }
            },
            () = async { idle_close.as_mut().expect("guarded").await }, if idle_close.is_some() => {
                return Ok(Ending::TimedOut(Expiry::Idle));
            }
        }
    }
}

/// Close `stream` without a TCP reset: half-close (FIN after everything written), then read
/// and drop what the client still sends, until it closes too or [`LINGER`] passes. Closing a
/// socket with unread input makes the kernel send a reset, which can destroy the response the
/// client has not read yet.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// The hyper service for one connection: tags each request with the connection's facts,
/// counts it in flight until its response is done, and runs it through `drain` and the router.
#[derive(Clone)]
struct AppService {
    app: Router,
    peer: SocketAddr,
    secure: bool,
    activity: Arc<Activity>,
    drain: DrainSettings,
}

impl AppService {
    fn new(
        app: Router,
        peer: SocketAddr,
        secure: bool,
        activity: &Arc<Activity>,
        drain: DrainSettings,
    ) -> AppService {
        AppService {
            app,
            peer,
            secure,
            activity: activity.clone(),
            drain,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let extensions = req.extensions_mut();
        extensions.insert(ConnectInfo(self.peer));
        extensions.insert(Secure(self.secure));
        if req.version() == Version::HTTP_2 {
            self.activity.set_h2();
        }
        let in_flight: InFlight = self.activity.request();
        // The router is a cheap handle (an `Arc` inside); a clone per request is how
        // `axum::serve` drives it too.
        let app = self.app.clone();
        let drain = self.drain;
        Box::pin(async move { Ok(drain::serve(app, req, drain, in_flight).await) })
    }
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
