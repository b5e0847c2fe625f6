//! What one connection is doing, as the first-byte, header and idle timeouts see it, and the
//! socket wrapper that reports it.
//!
//! [`Activity`] counts requests in flight (a request is in flight from its head being parsed
//! until its response body is done or dropped, so long uploads and downloads are never idle)
//! and remembers when the connection last became idle and when bytes of a new request head
//! started arriving. [`Activity::expired`] resolves when a timeout applies:
//!
//! - a request in flight: never (stalled bodies are the body idle timeout's business);
//! - HTTP/2 with no stream open: `idle_timeout` after the last stream ended (or the preface);
//! - HTTP/1 (or not yet known) with bytes of a head received: `header_timeout` after the first;
//! - otherwise: `idle_timeout` after the last response, or `first_byte_timeout` from the start
//!   when nothing was ever asked.
//!
//! [`TrackedIo`] wraps the TCP socket (under TLS, when there is TLS): it reports bytes read,
//! recognises the HTTP/2 prior-knowledge preface, notes whether the peer closed its side, and
//! when dropped hands the socket back so the listener can close it without a reset (see
//! `listener::linger`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// The HTTP/2 connection preface a prior-knowledge client starts with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Marks "no head under way".
const NONE: u64 = u64::MAX;

/// The timeouts [`Activity::expired`] applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub first_byte: Duration,
    pub header: Duration,
    pub idle: Duration,
}

/// Why a connection timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing in flight for too long: close gracefully (HTTP/2 GOAWAY).
    Idle,
    /// A request head took too long: close at once.
    Head,
}

/// The shared state of one connection.
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Whether any request was ever received.
    served: AtomicBool,
    h2: AtomicBool,
    /// Milliseconds since `start` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `start` of the first byte read while idle, or [`NONE`].
    head_since: AtomicU64,
    /// Signalled when the deadline may have moved earlier: the last request in flight ended, a
    /// head started, the protocol turned out to be HTTP/2.
    changed: Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// The connection speaks HTTP/2.
    pub(crate) fn set_h2(&self) {
        if !self.h2.swap(true, Ordering::Relaxed) {
            // The deadline may move (the idle timeout may be shorter than the others).
            self.changed.notify_one();
        }
    }

    /// Whether the connection speaks HTTP/2.
    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// Start the clocks afresh (after a TLS handshake, whose bytes are no request head).
    pub(crate) fn reset(&self) {
        self.head_since.store(NONE, Ordering::Relaxed);
        self.idle_since.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes arrived.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let now = self.now_ms();
            if self
                .head_since
                .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                // The header timeout may be due before the idle one being waited for.
                self.changed.notify_one();
            }
        }
    }

    /// A request arrived; it is in flight until the guard drops.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection times out if nothing changes, and why; None while a request is in
    /// flight.
    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = self.at(self.idle_since.load(Ordering::Relaxed));
        if self.h2.load(Ordering::Relaxed) {
            return Some((idle_since + t.idle, Expiry::Idle));
        }
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE {
            return Some((self.at(head) + t.header, Expiry::Head));
        }
        let wait = if self.served.load(Ordering::Relaxed) {
            t.idle
        } else {
            t.first_byte
        };
        Some((idle_since + wait, Expiry::Idle))
    }

    /// Resolves when one of the timeouts applies (see the module docs).
    pub(crate) async fn expired(&self, t: Timeouts) -> Expiry {
        loop {
            // Registered before the state is read, so an end of request in between is not
            // missed (`notify_one` stores a permit).
            let changed = self.changed.notified();
            match self.deadline(&t) {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            if self.deadline(&t).is_some_and(|(now_at, _)| now_at <= Instant::now()) {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight on a connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.head_since.store(NONE, Ordering::Relaxed);
            a.idle_since.store(a.now_ms(), Ordering::Relaxed);
            a.changed.notify_one();
        }
    }
}

/// What a dropped [`TrackedIo`] hands back: the socket, and whether the peer had closed its
/// sending side (then nothing unread can be left).
pub(crate) struct Returned {
    pub stream: TcpStream,
    pub peer_closed: bool,
}

/// A TCP socket that reports reads to an [`Activity`] and is handed back when dropped.
pub(crate) struct TrackedIo {
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    /// Preface bytes matched so far; None once the protocol is known (or not sniffed).
    sniff: Option<usize>,
    peer_closed: bool,
    back: Option<oneshot::Sender<Returned>>,
}

impl TrackedIo {
    /// Wrap `stream`. With `sniff`, the first bytes decide whether the connection is HTTP/2
    /// with prior knowledge (plain listeners; with TLS, ALPN says).
    pub(crate) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        sniff: bool,
    ) -> (TrackedIo, oneshot::Receiver<Returned>) {
        let (tx, rx) = oneshot::channel();
        let io = TrackedIo {
            stream: Some(stream),
            activity,
            sniff: sniff.then_some(0),
            peer_closed: false,
            back: Some(tx),
        };
        (io, rx)
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("present until dropped"))
    }

    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.activity.bytes_read();
        if let Some(matched) = self.sniff {
            let want = &PREFACE[matched..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                self.sniff = None;
            } else if matched + n == PREFACE.len() {
                self.sniff = None;
                self.activity.set_h2();
            } else {
                self.sniff = Some(matched + n);
            }
        }
    }
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let asked = buf.remaining() > 0;
        let res = self.stream().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let got = &buf.filled()[before..];
            if got.is_empty() && asked {
                self.peer_closed = true;
            } else {
                // Only the first bytes matter (the preface); no copy of the rest.
                let mut head = [0u8; PREFACE.len()];
                let k = got.len().min(head.len());
                head[..k].copy_from_slice(&got[..k]);
                self.saw(&head[..k]);
            }
        }
        res
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            // The receiver may be gone (the connection task ended first): then the socket is
            // simply closed here.
            let _ = back.send(Returned {
                stream,
                peer_closed: self.peer_closed,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            first_byte: Duration::from_secs(10),
            header: Duration::from_secs(20),
            idle: Duration::from_secs(30),
        }
    }

    fn after_start(a: &Activity) -> (Duration, Expiry) {
        let (at, why) = a.deadline(&timeouts()).expect("a deadline");
        (at - a.start, why)
    }

    #[test]
    fn first_byte_then_header_then_idle() {
        let a = Activity::new();
        let (d, why) = after_start(&a);
        assert_eq!((d.as_secs(), why), (10, Expiry::Idle));
        a.bytes_read();
        let (d, why) = after_start(&a);
        assert_eq!((d.as_secs(), why), (20, Expiry::Head));
        let req = a.request();
        assert!(
            a.deadline(&timeouts()).is_none(),
            "a request in flight is never idle"
        );
        a.bytes_read();
        assert!(a.deadline(&timeouts()).is_none());
        drop(req);
        let (d, why) = after_start(&a);
        assert_eq!((d.as_secs(), why), (30, Expiry::Idle));
        a.bytes_read();
        assert_eq!(after_start(&a).1, Expiry::Head);
        a.set_h2();
        assert_eq!(
            after_start(&a).1,
            Expiry::Idle,
            "HTTP/2 frames while idle are no request head"
        );
    }

    #[tokio::test]
    async fn expired_waits_for_requests_to_end() {
        let a = Activity::new();
        let t = Timeouts {
            first_byte: Duration::from_millis(50),
            header: Duration::from_millis(50),
            idle: Duration::from_millis(200),
        };
        let req = a.request();
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.expired(t).await }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !waiting.is_finished(),
            "expired while a request was in flight"
        );
        drop(req);
        let started = Instant::now();
        assert_eq!(waiting.await.unwrap(), Expiry::Idle);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn sniffs_the_http2_preface() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, h2) in [
            (&PREFACE[..], true),
            (b"GET / HTTP/1.1\r\n".as_slice(), false),
        ] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let a = Activity::new();
            let (mut io, back) = TrackedIo::new(server, a.clone(), true);
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // Split over two writes: the match must carry across reads.
            client.write_all(&sent[..5]).await.unwrap();
            let mut buf = [0u8; 64];
            let mut got = io.read(&mut buf).await.unwrap();
            client.write_all(&sent[5..]).await.unwrap();
            while got < sent.len() {
                got += io.read(&mut buf).await.unwrap();
            }
            assert_eq!(a.h2.load(Ordering::Relaxed), h2);
            drop(client);
            assert_eq!(io.read(&mut buf).await.unwrap(), 0);
            drop(io);
            assert!(back.await.unwrap().peer_closed);
        }
    }
}
