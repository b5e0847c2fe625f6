//! The service endpoints beside the registry API: liveness, readiness and metrics.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use bytes::Bytes;

use crate::AppState;

/// A short plain-text answer.
pub(crate) fn plain(status: u16, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}

/// `/readyz`: whether the metadata store answers.
pub(super) async fn ready(state: &AppState) -> Response<Body> {
    match state.registry.ready().await {
        Ok(()) => plain(200, "ready\n"),
        Err(_) => plain(503, "metadata store unavailable\n"),
    }
}

/// `/metrics`, when enabled and the peer is on the allow-list.
pub(super) fn metrics(state: &AppState, peer: Option<SocketAddr>) -> Response<Body> {
    if !state.metrics_enabled {
        return plain(404, "metrics are disabled\n");
    }
    if !state.metrics_allow.is_empty()
        && !peer.is_some_and(|p| state.metrics_allow.iter().any(|c| c.contains(p.ip())))
    {
        return plain(403, "metrics are not available to this address\n");
    }
    let text = state.metrics.render();
    let mut resp = Response::new(Body::from(text.clone()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    resp
}
