//! The registry's one domain error: what went wrong, in the registry's terms.
//!
//! No HTTP here: no status, no header, no wire code. The server's renderer decides how each
//! case is answered (`crates/server/src/error.rs`). Internal failures keep their cause for the
//! log; the renderer shows the client a generic message, so no path, SQL or other internals
//! leak.

use stowage_metadata::MetadataError;
use stowage_oci::Digest;
use stowage_storage::StorageError;

/// Everything a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such blob in the repository.
    #[error("blob unknown to registry")]
    BlobUnknown { digest: Digest },
    /// No such manifest (by tag or digest) in the repository.
    #[error("manifest unknown")]
    ManifestUnknown { reference: String },
    /// The repository does not exist.
    #[error("repository name not known to registry")]
    NameUnknown { name: String },
    /// A manifest names a blob or child manifest the repository does not hold.
    #[error("{reason}")]
    ManifestBlobUnknown {
        reason: &'static str,
        digest: Digest,
    },
    /// The manifest fails validation.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest body is larger than the configured limit.
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { limit: u64 },
    /// The manifest body does not hash to the digest it was pushed under.
    #[error("manifest body does not match the digest in the URL")]
    ManifestDigestMismatch { expected: Digest, computed: Digest },
    /// Uploaded bytes do not hash to the digest the client gave.
    #[error("provided digest did not match uploaded content")]
    DigestMismatch { expected: Digest, computed: Digest },
    /// No such upload session (or it ended, expired, or belongs to someone else).
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    /// A chunk does not start where the session ends, or its range is impossible; `offset`
    /// is what the session holds, so the client can resume from there.
    #[error("{reason}")]
    RangeMismatch {
        id: String,
        offset: u64,
        reason: String,
    },
    /// Another request is appending to the session right now.
    #[error("another request is writing to this upload; wait for it to finish, then resume")]
    UploadBusy { id: String, offset: u64 },
    /// The chunk's length disagrees with its `Content-Range` or `Content-Length`.
    #[error("{0}")]
    ChunkLength(&'static str),
    /// A blob read asked for bytes outside the blob.
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// Reading the client's body failed (it went away, stalled, or sent too much); the
    /// caller that supplied the body knows why.
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// The disk behind the blob or metadata store is full; nothing was stored.
    #[error(
        "the registry's storage is full; nothing was stored. Free space on the registry and retry"
    )]
    StorageFull,
    /// A backend is unreachable or overloaded for a moment (a transient fault: timeout, lost
    /// connection, a database busy past its timeout); the client should retry. The cause is
    /// for the log only. Whether the operation took effect is unknown only when the backend
    /// lost its answer, and every write path is safe to repeat.
    #[error("the registry's storage is temporarily unavailable; retry shortly")]
    Unavailable(String),
    /// The caller already has as many live upload sessions as it may; the limit is for the
    /// message.
    #[error(
        "too many upload sessions in progress for this user: at most {limit} at once (limits.max_uploads_per_principal); finish or cancel some, or wait for abandoned ones to be purged"
    )]
    TooManyUploads { limit: u64 },
    /// An operation this registry has turned off.
    #[error("{0} is disabled on this registry")]
    Disabled(&'static str),
    /// A backend failed: the cause is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A server-side failure with its cause (logged, never shown).
    pub fn internal(cause: impl std::fmt::Display) -> Error {
        Error::Internal(cause.to_string())
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Error {
        match e {
            MetadataError::Full => Error::StorageFull,
            MetadataError::Unavailable(cause) => Error::Unavailable(cause),
            other => Error::internal(other),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Error {
        match e {
            StorageError::Body(io) => Error::Body(io.to_string()),
            StorageError::NotFound => Error::internal("stored data missing"),
            StorageError::Full => Error::StorageFull,
            StorageError::Unavailable(cause) => Error::Unavailable(cause),
            StorageError::Io(e) => Error::internal(e),
        }
    }
}
