//! Request bodies the application did not read, for every route in one place.
//!
//! Many answers come before the body was read: 401/403 from the auth gate, 416 for a chunk at
//! the wrong offset, 413, 400 for a bad digest, 507 after a failed write. If the connection were
//! closed with the client still sending, the kernel would answer the unread bytes with a TCP
//! reset and the client would see `broken pipe` or `connection reset` instead of the status.
//!
//! So [`serve`] hands the application a body it can drop at will, takes it back once the
//! response is ready, and then:
//!
//! - nothing left (read to the end, or no body): the response goes out as it is;
//! - at most `limits.drain` bytes left (known from `Content-Length`, or, for a chunked body, found
//!   out by reading): they are read and dropped (each frame within the body idle timeout), then
//!   the response goes out and the connection stays usable (HTTP/1.1 keep-alive);
//! - more than that (or the body failed, or the client stopped sending and the application gave
//!   up waiting, or the client waits for a `100 Continue` it never got):
//!   HTTP/1 answers with `Connection: close`, and the listener half-closes the socket and keeps
//!   reading for a moment before closing it (`listener::linger`), so the answer still arrives;
//!   HTTP/2 answers and the unread stream is reset with `RST_STREAM(NO_ERROR)` (h2 does this when
//!   the response is complete and the request body is dropped), and the connection lives on.
//!
//! The request body is kept inside the response body until hyper drops it, so on HTTP/2 the
//! reset follows the end of the response rather than cancelling it.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, Version, header};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

/// What [`serve`] needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainSettings {
    /// Most bytes read and dropped after the application answered.
    pub bound: u64,
    /// Longest wait for each frame while draining.
    pub frame_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Run `app` on `req`, then deal with the body it left unread (see the module docs). `keep` is
/// held until the response body is dropped (the connection's in-flight marker).
pub(crate) async fn serve<K: Send + Unpin + 'static>(
    app: Router,
    req: Request<Incoming>,
    settings: DrainSettings,
    keep: K,
) -> Response<Body> {
    let http1 = req.version() < Version::HTTP_2;
    let waits_for_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (parts, incoming) = req.into_parts();
    let shared = Arc::new(Mutex::new(Slot {
        body: Some(incoming),
        polled: false,
        ended: false,
        failed: false,
        read: 0,
        waiting_since: None,
        taken_back: false,
    }));
    let req = Request::from_parts(parts, Body::new(Lent(shared.clone())));
    let Ok(mut resp) = tower_service::Service::call(&mut app.clone(), req).await;
    let slot = take_back(&shared);
    let mut body = slot.body;
    let finished = slot.ended || body.as_ref().is_none_or(HttpBody::is_end_stream);
    // The application gave up waiting for the client (its body idle timeout): the client is
    // not sending, so waiting for more would only delay the answer.
    let stalled = slot
        .waiting_since
        .is_some_and(|t| t.elapsed() >= settings.frame_timeout / 2);
    let keep_open = if finished {
        true
    } else if slot.failed
        || stalled
        || (waits_for_continue && !slot.polled)
        || declared.is_some_and(|n| n.saturating_sub(slot.read) > settings.bound)
    {
        // Not worth reading (or not to be read): answer and let the rest go.
        false
    } else {
        match body.as_mut() {
            Some(b) => drain(b, settings).await,
            None => true,
        }
    };
    if keep_open {
        // Read to the end: nothing to keep (and on HTTP/2, no reset).
        body = None;
    } else {
        tracing::debug!(
            read = slot.read,
            declared,
            "request body left unread; answering without reading the rest"
        );
        if http1 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    resp.map(|inner| {
        Body::new(Held {
            inner,
            _request: body,
            _keep: keep,
        })
    })
}

/// Read and drop what is left of `body`, at most `bound` bytes; true when it ended.
async fn drain(body: &mut Incoming, s: DrainSettings) -> bool {
    let mut seen: u64 = 0;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
        match tokio::time::timeout(s.frame_timeout, next).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len() as u64);
                    if seen > s.bound {
                        return false;
                    }
                }
                if body.is_end_stream() {
                    return true;
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// The request body while the application has it.
struct Slot {
    body: Option<Incoming>,
    polled: bool,
    ended: bool,
    failed: bool,
    read: u64,
    /// When the application started waiting for a frame that has not come yet.
    waiting_since: Option<Instant>,
    taken_back: bool,
}

fn lock(shared: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Take the body back from the application; anything still holding it sees an error from now
/// on (never a clean end, which could pass a truncated body for a whole one).
fn take_back(shared: &Mutex<Slot>) -> Slot {
    let mut slot = lock(shared);
    slot.taken_back = true;
    Slot {
        body: slot.body.take(),
        polled: slot.polled,
        ended: slot.ended,
        failed: slot.failed,
        read: slot.read,
        waiting_since: slot.waiting_since,
        taken_back: true,
    }
}

/// The body the application sees: the request's, through the shared slot.
struct Lent(Arc<Mutex<Slot>>);

#[derive(Debug)]
struct TakenBack;

impl std::fmt::Display for TakenBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body is no longer available (the response was already sent)")
    }
}

impl std::error::Error for TakenBack {}

impl HttpBody for Lent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut slot = lock(&self.0);
        if slot.taken_back {
            return Poll::Ready(Some(Err(TakenBack.into())));
        }
        slot.polled = true;
        let Some(body) = slot.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if polled.is_pending() {
            slot.waiting_since.get_or_insert_with(Instant::now);
        } else {
            slot.waiting_since = None;
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                slot.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    slot.read = slot.read.saturating_add(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                slot.failed = true;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = lock(&self.0);
        !slot.taken_back && (slot.ended || slot.body.as_ref().is_none_or(|b| b.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        let slot = lock(&self.0);
        match &slot.body {
            Some(b) if !slot.taken_back => b.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// The response body, holding what must live as long as it: the unread request body (on
/// HTTP/2 its drop after the response resets the stream with NO_ERROR) and the in-flight marker.
struct Held<K> {
    inner: Body,
    _request: Option<Incoming>,
    _keep: K,
}

impl<K: Send + Unpin + 'static> HttpBody for Held<K> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
