//! The registry's one domain error: an OCI code, a message for the client, optional detail and
//! the extra headers some errors carry (`Range` on a 416 upload, `Content-Range` on a 416 read).
//!
//! Internal failures keep their cause for the log but show the client only a generic message,
//! so no path, SQL or other internals leak. Rendering to HTTP happens in the server crate only.

use std::fmt;

use stowage_metadata::MetadataError;
use stowage_oci::ErrorCode;
use stowage_storage::StorageError;

/// Why reading a request body stopped early; the server puts one of these inside the
/// `io::Error` its body stream yields, and the registry turns it into the right OCI error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body exceeded a configured limit.
    #[error("request body larger than the {0}-byte limit")]
    TooLarge(u64),
    /// No data arrived for the idle timeout.
    #[error("no request data received for {0} seconds")]
    Idle(u64),
}

/// A registry error, ready to be rendered by the server.
#[derive(Debug)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub detail: serde_json::Value,
    /// Headers to add to the error response.
    pub headers: Vec<(&'static str, String)>,
    /// Overrides the code's status (413 for oversized manifests, 416 for upload ranges).
    pub status: Option<u16>,
    /// The cause of an internal error, for the log only.
    pub internal: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with the code's default status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: Vec::new(),
            status: None,
            internal: None,
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
        self.status.unwrap_or_else(|| self.code.status())
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

    pub fn blob_unknown(digest: &impl fmt::Display) -> Error {
        Error::new(ErrorCode::BlobUnknown, "blob unknown to registry")
            .detail(serde_json::json!({ "digest": digest.to_string() }))
    }

    pub fn manifest_unknown(reference: &impl fmt::Display) -> Error {
        Error::new(ErrorCode::ManifestUnknown, "manifest unknown")
            .detail(serde_json::json!({ "reference": reference.to_string() }))
    }

    pub fn upload_unknown() -> Error {
        Error::new(
            ErrorCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    /// The disk behind the blob or metadata store is full: 507, and nothing was stored.
    pub fn storage_full() -> Error {
        Error::new(
            ErrorCode::StorageFull,
            "the registry's storage is full; nothing was stored. Free space on the registry and retry",
        )
    }

    pub fn unsupported(what: &str) -> Error {
        Error::new(
            ErrorCode::Unsupported,
            format!("{what} is disabled on this registry"),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if let Some(i) = &self.internal {
            write!(f, " ({i})")?;
        }
        Ok(())
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Error {
        match e {
            MetadataError::Full => Error::storage_full(),
            other => Error::internal(other),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        match e {
            StorageError::Body(io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<BodyError>()) {
                    Some(BodyError::TooLarge(limit)) => Error::new(
                        ErrorCode::SizeInvalid,
                        format!("request body larger than {limit} bytes"),
                    )
                    .status(413),
                    Some(BodyError::Idle(s)) => Error::new(
                        ErrorCode::BlobUploadInvalid,
                        format!("no data received for {s} seconds; resume the upload"),
                    ),
                    None => Error::new(
                        ErrorCode::BlobUploadInvalid,
                        format!("reading the request body failed: {io}"),
                    ),
                }
            }
            StorageError::NotFound => Error::internal("stored data missing"),
            StorageError::Full => Error::storage_full(),
            StorageError::Io(e) => Error::internal(e),
        }
    }
}
