//! The one place where a registry error becomes an HTTP response: status, the extra headers
//! the error carries, and the `{"errors":[{code,message,detail}]}` body. Internal errors are
//! logged here with their cause and shown to the client as a generic message.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use stowage_oci::ErrorCode;
use stowage_oci::error::error_body;
use stowage_registry::Error;

/// Render `e` as a response. `head` omits the body (but keeps its length) for HEAD requests.
pub fn render(e: &Error, head: bool) -> Response<Body> {
    if let Some(cause) = &e.internal {
        tracing::error!(cause = %cause, "internal error");
    }
    // A code outside the spec's list must not appear in a JSON error body: such errors (an
    // unsatisfiable range, a full disk) are answered with their status and a plain-text message.
    let (body, content_type) = if matches!(e.code, ErrorCode::RangeInvalid | ErrorCode::StorageFull)
    {
        (
            format!("{}\n", e.message).into_bytes(),
            "text/plain; charset=utf-8",
        )
    } else {
        (
            error_body(e.code, &e.message, e.detail.clone()),
            "application/json; charset=utf-8",
        )
    };
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(if head {
            Body::empty()
        } else {
            Body::from(body)
        })
        .expect("static response parts are valid");
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(*name, v);
        }
    }
    resp
}
