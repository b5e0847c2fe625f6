//! Request handlers: one arm per [`Endpoint`], plus the helpers they share for bodies and
//! responses. Handlers translate a parsed endpoint into registry (or auth) calls and results
//! into responses; they parse nothing the router already parsed and decide no access. Errors
//! are returned, never rendered here (see `crate::error`).

mod blobs;
mod listing;
mod manifests;
mod service;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Response, header};
use bytes::Bytes;
use futures_util::StreamExt;
use stowage_oci::ErrorCode;
use stowage_storage::ByteStream;

pub(crate) use self::manifests::ManifestBudget;
use crate::AppState;
use crate::auth::decide::Principal;
use crate::error::{Error, Result};
use crate::routes::Endpoint;

/// A request past routing: what the handlers may still need of it.
pub struct Call {
    pub parts: Parts,
    pub body: Body,
    pub peer: Option<SocketAddr>,
    pub secure: bool,
}

/// Answer `ep` for `who`, whose access the gate has already checked.
pub async fn handle(
    state: &AppState,
    who: &Principal,
    ep: Endpoint,
    call: Call,
) -> Result<Response<Body>> {
    let body = call.body;
    match ep {
        Endpoint::Base { head } => Ok(json_response(200, Bytes::from_static(b"{}"), head)),
        Endpoint::Catalog { page } => listing::catalog(state, who, page).await,
        Endpoint::Tags { name, page } => listing::tags(state, &name, page).await,
        Endpoint::Referrers {
            name,
            subject,
            artifact_type,
        } => listing::referrers(state, &name, &subject, artifact_type.as_deref()).await,
        Endpoint::ManifestGet {
            name,
            reference,
            head,
        } => manifests::get(state, &name, &reference, head).await,
        Endpoint::ManifestPut {
            name,
            reference,
            tags,
            content_type,
        } => {
            manifests::put(
                state,
                &name,
                &reference,
                &tags,
                content_type.as_deref(),
                body,
            )
            .await
        }
        Endpoint::ManifestDelete { name, reference } => {
            manifests::delete(state, &name, &reference).await
        }
        Endpoint::BlobGet {
            name,
            digest,
            head,
            range,
        } => blobs::get(state, &name, &digest, range.as_deref(), head).await,
        Endpoint::BlobDelete { name, digest } => blobs::delete(state, &name, &digest).await,
        Endpoint::UploadStart { name, start } => blobs::start(state, who, &name, start, body).await,
        Endpoint::UploadStatus { name, id } => blobs::status(state, who, &name, &id).await,
        Endpoint::UploadChunk {
            name,
            id,
            range,
            length,
        } => blobs::patch(state, who, &name, &id, range, length, body).await,
        Endpoint::UploadFinish {
            name,
            id,
            digest,
            range,
            length,
            has_body,
        } => {
            let body = has_body.then_some(body);
            let chunk = blobs::Chunk {
                range,
                length,
                body,
            };
            blobs::finish(state, who, &name, &id, &digest, chunk).await
        }
        Endpoint::UploadCancel { name, id } => blobs::cancel(state, who, &name, &id).await,
        Endpoint::Token => match &state.auth {
            None => Ok(service::plain(
                404,
                "authentication is off on this registry\n",
            )),
            Some(auth) => auth.token_endpoint(&call.parts, body, call.peer).await,
        },
        Endpoint::Jwks => match &state.auth {
            None => Ok(service::plain(
                404,
                "authentication is off on this registry\n",
            )),
            Some(auth) => Ok(auth.jwks()),
        },
        Endpoint::Admin(op) => match &state.auth {
            None => Ok(service::plain(
                403,
                "authentication is off on this server: manage users on its store (--data or --config)\n",
            )),
            Some(auth) => {
                auth.admin_api(op, &call.parts, body, call.peer, call.secure)
                    .await
            }
        },
        Endpoint::Health => Ok(service::plain(200, "ok\n")),
        Endpoint::Ready => Ok(service::ready(state).await),
        Endpoint::Metrics => Ok(service::metrics(state, call.peer)),
    }
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

/// Why a request body stream stopped early, noted by the stream itself so the handler can
/// say so when the registry reports that the body failed (the registry only sees a failed
/// stream; why it failed is the server's business).
#[derive(Clone, Default)]
pub(crate) struct BodyWatch(Arc<OnceLock<Cut>>);

#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The body exceeded the limit.
    TooLarge(u64),
    /// No data arrived for this many seconds.
    Idle(u64),
}

impl BodyWatch {
    /// The answer for a registry error, given what happened to the body.
    pub(crate) fn explain(&self, e: stowage_registry::Error) -> Error {
        match (&e, self.0.get()) {
            (stowage_registry::Error::Body(_), Some(Cut::TooLarge(limit))) => Error::new(
                ErrorCode::SizeInvalid,
                format!("request body larger than {limit} bytes"),
            )
            .status(413),
            (stowage_registry::Error::Body(_), Some(Cut::Idle(s))) => Error::new(
                ErrorCode::BlobUploadInvalid,
                format!("no data received for {s} seconds; resume the upload"),
            ),
            _ => e.into(),
        }
    }
}

/// The request body as a stream with an idle timeout per frame and an optional size limit;
/// received bytes are counted in the metrics. The watch says why the stream ended early.
pub(crate) fn body_stream(
    state: &AppState,
    body: Body,
    limit: Option<u64>,
) -> (ByteStream, BodyWatch) {
    let idle: Duration = state.body_idle_timeout;
    let metrics = state.metrics.clone();
    let watch = BodyWatch::default();
    let cut = watch.clone();
    let inner = body.into_data_stream();
    let stream = Box::pin(futures_util::stream::unfold(
        (inner, 0u64, false),
        move |(mut inner, seen, done)| {
            let metrics = metrics.clone();
            let cut = cut.clone();
            async move {
                if done {
                    return None;
                }
                let stop = |why: Cut, inner, seen| {
                    let _ = cut.0.set(why);
                    let e = io::Error::other(format!("{why:?}"));
                    Some((Err(e), (inner, seen, true)))
                };
                match tokio::time::timeout(idle, inner.next()).await {
                    Err(_) => stop(Cut::Idle(idle.as_secs()), inner, seen),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), (inner, seen, true))),
                    Ok(Some(Ok(chunk))) => {
                        let seen = seen.saturating_add(chunk.len() as u64);
                        metrics.add_in(chunk.len() as u64);
                        if let Some(limit) = limit
                            && seen > limit
                        {
                            return stop(Cut::TooLarge(limit), inner, seen);
                        }
                        Some((Ok(chunk), (inner, seen, false)))
                    }
                }
            }
        },
    ));
    (stream, watch)
}

/// Read a whole (small) body into memory under `limit`. The buffer is sized from the declared
/// length up front (never past `limit`), so a large body is one allocation instead of a chain
/// of doublings that leaves freed fragments behind.
pub(crate) async fn read_body(state: &AppState, body: Body, limit: u64) -> Result<Vec<u8>> {
    let declared = axum::body::HttpBody::size_hint(&body).exact().unwrap_or(0);
    let (mut s, watch) = body_stream(state, body, Some(limit));
    let mut out = Vec::with_capacity(declared.min(limit.saturating_add(1)) as usize);
    while let Some(chunk) = s.next().await {
        let chunk =
            chunk.map_err(|e| watch.explain(stowage_registry::Error::Body(e.to_string())))?;
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
