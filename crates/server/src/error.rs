//! The one place where errors become HTTP responses.
//!
//! [`Error`] is an answer the server gives: an OCI code (or, for the cases the spec has no code
//! for, a plain-text body), a message, optional detail, extra headers and the status. Route
//! parsing, authentication and the admin API build them directly; the registry's domain errors
//! are translated here ([`From<stowage_registry::Error>`]), and nowhere else. Internal errors
//! are logged with their cause and shown to the client as a generic message.

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use stowage_oci::ErrorCode;
use stowage_oci::error::error_body;
use stowage_registry::Error as Domain;

/// Seconds a client is asked to wait (`Retry-After`) after a transient backend fault.
pub const RETRY_AFTER_SECS: u64 = 1;

/// An error answer, ready to be rendered.
#[derive(Debug)]
pub struct Error {
    /// The OCI code of the JSON body; None for the answers the spec has no code for (an
    /// unsatisfiable read range, a full disk), which get a plain-text body.
    pub code: Option<ErrorCode>,
    pub message: String,
    pub detail: serde_json::Value,
    /// Headers to add to the response.
    pub headers: Vec<(&'static str, String)>,
    /// Overrides the code's status.
    pub status: Option<u16>,
    /// The cause of an internal error, for the log only.
    pub internal: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with an OCI code and the code's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code: Some(code),
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
            status: None,
            internal: None,
        }
    }

    /// An answer with a plain-text body and no OCI code.
    pub fn plain(status: u16, message: impl Into<String>) -> Error {
        Error {
            code: None,
            status: Some(status),
            ..Error::new(ErrorCode::Internal, message)
        }
    }

    /// Attach a JSON detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Error {
        self.detail = detail;
        self
    }

    /// Attach a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Error {
        self.headers.push((name, value.into()));
        self
    }

    /// Override the HTTP status.
    pub fn status(mut self, status: u16) -> Error {
        self.status = Some(status);
        self
    }

    /// The status to send.
    pub fn http_status(&self) -> u16 {
        self.status
            .or_else(|| self.code.map(ErrorCode::status))
            .unwrap_or(500)
    }

    /// A server-side failure: logged in full, shown as a generic message.
    pub fn internal(cause: impl fmt::Display) -> Error {
        let mut e = Error::new(
            ErrorCode::Internal,
            "internal server error; the registry log has details",
        );
        e.internal = Some(cause.to_string());
        e
    }

    /// The method is not one this endpoint answers.
    pub fn method_not_allowed(allowed: &'static str) -> Error {
        Error::new(
            ErrorCode::Unsupported,
            "method not allowed on this endpoint",
        )
        .status(405)
        .header("Allow", allowed)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code.map_or("-", ErrorCode::as_str);
        write!(f, "{code}: {}", self.message)?;
        if let Some(i) = &self.internal {
            write!(f, " ({i})")?;
        }
        Ok(())
    }
}

/// The raw HTTP/1.1 answer to a request head that did not arrive within `limits.header_timeout`
/// (the listener writes it on the socket itself: no request was parsed, so nothing reaches the
/// application). The connection is closed after it.
pub fn request_timeout_response(header_timeout: std::time::Duration) -> Vec<u8> {
    let body = format!(
        "request timeout: the request line and headers must arrive within {} s of their first byte (limits.header_timeout)\n",
        header_timeout.as_secs_f64()
    );
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `Retry-After` (seconds) when a user has too many upload sessions open.
const UPLOADS_RETRY_AFTER: u64 = 10;

/// The `Range` header of an upload session holding `offset` bytes (distribution answers `0-0`
/// for an empty session, and clients expect that form).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

impl From<Domain> for Error {
    fn from(e: Domain) -> Error {
        let message = e.to_string();
        match e {
            Domain::BlobUnknown { digest } => Error::new(ErrorCode::BlobUnknown, message)
                .detail(serde_json::json!({ "digest": digest.to_string() })),
            Domain::ManifestUnknown { reference } => {
                Error::new(ErrorCode::ManifestUnknown, message)
                    .detail(serde_json::json!({ "reference": reference }))
            }
            Domain::NameUnknown { name } => Error::new(ErrorCode::NameUnknown, message)
                .detail(serde_json::json!({ "name": name })),
            Domain::ManifestBlobUnknown { digest, .. } => {
                Error::new(ErrorCode::ManifestBlobUnknown, message)
                    .detail(serde_json::json!({ "digest": digest.to_string() }))
            }
            Domain::ManifestInvalid(_) => Error::new(ErrorCode::ManifestInvalid, message),
            Domain::ManifestTooLarge { .. } => {
                Error::new(ErrorCode::SizeInvalid, message).status(413)
            }
            Domain::ManifestDigestMismatch { expected, computed }
            | Domain::DigestMismatch { expected, computed } => {
                Error::new(ErrorCode::DigestInvalid, message).detail(serde_json::json!({
                    "expected": expected.to_string(),
                    "computed": computed.to_string(),
                }))
            }
            Domain::UploadUnknown => Error::new(ErrorCode::BlobUploadUnknown, message),
            Domain::RangeMismatch { id, offset, .. } | Domain::UploadBusy { id, offset } => {
                Error::new(ErrorCode::BlobUploadInvalid, message)
                    .status(416)
                    .header("Range", upload_range(offset))
                    .header("Docker-Upload-UUID", id)
            }
            Domain::ChunkLength(_) => Error::new(ErrorCode::BlobUploadInvalid, message),
            Domain::RangeNotSatisfiable { size } => {
                Error::plain(416, message).header("Content-Range", format!("bytes */{size}"))
            }
            Domain::Body(_) => Error::new(ErrorCode::BlobUploadInvalid, message),
            Domain::StorageFull => Error::plain(507, message),
            Domain::Unavailable(cause) => {
                let mut e = Error::new(ErrorCode::Unavailable, message)
                    .header("Retry-After", RETRY_AFTER_SECS.to_string());
                e.internal = Some(cause);
                e
            }
            Domain::Disabled(_) => Error::new(ErrorCode::Unsupported, message),
            // Sessions end when their pushes finish: a short wait is usually enough.
            Domain::TooManyUploads { limit } => Error::new(ErrorCode::TooManyRequests, message)
                .detail(serde_json::json!({ "limit": limit }))
                .header("Retry-After", UPLOADS_RETRY_AFTER.to_string()),
            Domain::Internal(cause) => Error::internal(cause),
        }
    }
}

impl From<stowage_metadata::MetadataError> for Error {
    fn from(e: stowage_metadata::MetadataError) -> Error {
        Domain::from(e).into()
    }
}

/// Render `e` as a response. `head` omits the body (but keeps its length) for HEAD requests.
pub fn render(e: &Error, head: bool) -> Response<Body> {
    if let Some(cause) = &e.internal {
        if e.code == Some(ErrorCode::Unavailable) {
            tracing::warn!(cause = %cause, "backend unavailable; answered 503");
        } else {
            tracing::error!(cause = %cause, "internal error");
        }
    }
    // A code outside the spec's list must not appear in a JSON error body: such errors are
    // answered with their status and a plain-text message.
    let (body, content_type) = match e.code {
        None => (
            format!("{}\n", e.message).into_bytes(),
            "text/plain; charset=utf-8",
        ),
        Some(code) => (
            error_body(code, &e.message, e.detail.clone()),
            "application/json; charset=utf-8",
        ),
    };
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body.clone())
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.append(*name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_outside_the_spec_are_plain_text() {
        let r = render(&Domain::StorageFull.into(), false);
        assert_eq!(r.status(), 507);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let r = render(&Domain::RangeNotSatisfiable { size: 9 }.into(), true);
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */9");
    }

    #[test]
    fn upload_conflicts_say_where_to_resume() {
        let e: Error = Domain::UploadBusy {
            id: "abc".into(),
            offset: 10,
        }
        .into();
        assert_eq!(e.http_status(), 416);
        assert!(e.headers.contains(&("Range", "0-9".into())));
        assert_eq!(upload_range(0), "0-0");
    }

    #[test]
    fn transient_faults_are_503_with_retry_after() {
        let e: Error = Domain::from(stowage_metadata::MetadataError::Unavailable(
            "database is locked at /secret".into(),
        ))
        .into();
        assert_eq!(e.http_status(), 503);
        assert!(!e.message.contains("secret"));
        let r = render(&e, false);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let e: Error = Domain::from(stowage_storage::StorageError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )))
        .into();
        assert_eq!(e.code, Some(ErrorCode::Unavailable));
        let e: Error = Domain::from(stowage_storage::StorageError::from(
            std::io::Error::from_raw_os_error(5),
        ))
        .into();
        assert_eq!(e.http_status(), 500, "EIO is damage, not a transient fault");
    }

    #[test]
    fn internal_causes_stay_in_the_log() {
        let e: Error = Domain::internal("/secret/path: EIO").into();
        assert!(!e.message.contains("secret"));
        assert_eq!(e.http_status(), 500);
    }
}
