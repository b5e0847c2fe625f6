//! Request handlers: one function per endpoint group, plus the helpers they share for reading
//! bodies, headers and query parameters. Handlers translate HTTP into registry calls and
//! registry results into responses; they make no decisions of their own. Errors are returned,
//! never rendered here (see `crate::error`).

mod blobs;
mod listing;
mod manifests;

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Response, header};
use bytes::Bytes;
use futures_util::StreamExt;
use stowage_oci::ErrorCode;
use stowage_registry::{BodyError, Error, Result};
use stowage_storage::ByteStream;

pub(crate) use self::manifests::ManifestBudget;
use crate::AppState;
use crate::auth::decide::Principal;
use crate::routes::Endpoint;

/// Route an endpoint + method to its handler.
pub async fn handle(
    state: &AppState,
    who: &Principal,
    ep: Endpoint,
    parts: Parts,
    body: Body,
) -> Result<Response<Body>> {
    let m = &parts.method;
    match ep {
        Endpoint::Base if m == Method::GET || m == Method::HEAD => Ok(json_response(
            200,
            Bytes::from_static(b"{}"),
            m == Method::HEAD,
        )),
        Endpoint::Catalog if m == Method::GET => listing::catalog(state, who, &parts).await,
        Endpoint::Tags(name) if m == Method::GET => listing::tags(state, &name, &parts).await,
        Endpoint::Referrers(name, d) if m == Method::GET => {
            listing::referrers(state, &name, &d, &parts).await
        }
        Endpoint::Manifest(name, r) => match *m {
            Method::GET | Method::HEAD => manifests::get(state, &name, &r, m == Method::HEAD).await,
            Method::PUT => manifests::put(state, &name, &r, &parts, body).await,
            Method::DELETE => manifests::delete(state, &name, &r).await,
            _ => Err(method_not_allowed()),
        },
        Endpoint::Blob(name, d) => match *m {
            Method::GET | Method::HEAD => {
                blobs::get(state, &name, &d, &parts, m == Method::HEAD).await
            }
            Method::DELETE => blobs::delete(state, &name, &d).await,
            _ => Err(method_not_allowed()),
        },
        Endpoint::UploadStart(name) if m == Method::POST => {
            blobs::start(state, who, &name, &parts, body).await
        }
        Endpoint::Upload(name, id) => match *m {
            Method::GET => blobs::status(state, who, &name, &id).await,
            Method::PATCH => blobs::patch(state, who, &name, &id, &parts, body).await,
            Method::PUT => blobs::finish(state, who, &name, &id, &parts, body).await,
            Method::DELETE => blobs::cancel(state, who, &name, &id).await,
            _ => Err(method_not_allowed()),
        },
        _ => Err(method_not_allowed()),
    }
}

fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::Unsupported,
        "method not allowed on this endpoint",
    )
}

/// A JSON response with an explicit length (HEAD keeps the length, drops the body).
pub(crate) fn json_response(status: u16, body: Bytes, head: bool) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(if head {
            Body::empty()
        } else {
            Body::from(body)
        })
        .expect("valid response")
}

/// An empty response with a status and headers.
pub(crate) fn empty(status: u16, headers: &[(&str, String)]) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, 0);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A header as a string, if present and valid.
pub(crate) fn header_str(
    h: &HeaderMap,
    name: impl axum::http::header::AsHeaderName,
) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The declared Content-Length; a malformed value is a client error.
pub(crate) fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::new(ErrorCode::SizeInvalid, "invalid Content-Length header")),
    }
}

/// Whether the request carries a body at all.
pub(crate) fn has_body(h: &HeaderMap) -> Result<bool> {
    Ok(content_length(h)?.is_some_and(|n| n > 0) || h.contains_key(header::TRANSFER_ENCODING))
}

/// The request body as a stream with an idle timeout per frame and an optional size limit;
/// received bytes are counted in the metrics.
pub(crate) fn body_stream(state: &AppState, body: Body, limit: Option<u64>) -> ByteStream {
    let idle: Duration = state.body_idle_timeout;
    let metrics = state.metrics.clone();
    let inner = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(
        (inner, 0u64, false),
        move |(mut inner, seen, done)| {
            let metrics = metrics.clone();
            async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(idle, inner.next()).await {
                    Err(_) => Some((
                        Err(io::Error::other(BodyError::Idle(idle.as_secs()))),
                        (inner, seen, true),
                    )),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), (inner, seen, true))),
                    Ok(Some(Ok(chunk))) => {
                        let seen = seen.saturating_add(chunk.len() as u64);
                        metrics.add_in(chunk.len() as u64);
                        if let Some(limit) = limit
                            && seen > limit
                        {
                            return Some((
                                Err(io::Error::other(BodyError::TooLarge(limit))),
                                (inner, seen, true),
                            ));
                        }
                        Some((Ok(chunk), (inner, seen, false)))
                    }
                }
            }
        },
    ))
}

/// Read a whole (small) body into memory under `limit`. The buffer is sized from the declared
/// length up front (never past `limit`), so a large body is one allocation instead of a chain
/// of doublings that leaves freed fragments behind.
pub(crate) async fn read_body(state: &AppState, body: Body, limit: u64) -> Result<Vec<u8>> {
    let declared = axum::body::HttpBody::size_hint(&body).exact().unwrap_or(0);
    let mut s = body_stream(state, body, Some(limit));
    let mut out = Vec::with_capacity(declared.min(limit.saturating_add(1)) as usize);
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| Error::from(stowage_storage::StorageError::Body(e)))?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decoded query parameters of a request.
pub(crate) fn query(parts: &Parts) -> Vec<(String, String)> {
    crate::routes::query_pairs(parts.uri.query())
}

/// The first value of a query parameter.
pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
