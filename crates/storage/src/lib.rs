//! Blob storage: content-addressed blobs and the upload sessions that produce them.
//!
//! `BlobStore` is the seam every backend implements (filesystem today, S3 later). A backend owns
//! bytes only: which repository may see a blob, and which uploads exist, is metadata's job. The
//! durability contract of `upload_commit` (data durable and published at its content address
//! before it returns) is what lets the registry acknowledge a push. `suite` is the shared test
//! suite every backend must pass.

pub mod fs;
mod fs_export;
mod fs_hook;
mod fs_io;
mod fs_walk;
#[cfg(any(test, feature = "testing"))]
pub mod suite;

/// The filesystem backend's I/O fault hook (tests only).
#[cfg(any(test, feature = "testing"))]
pub use fs_hook::{IoFault, IoHook, IoPoint};

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use stowage_oci::{Algorithm, Digest, Hasher};

/// A stream of body bytes, from a request or to a response.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Receives a record of each durability-relevant operation, in order (tests assert the order).
pub type OpObserver = Arc<dyn Fn(Op) + Send + Sync>;

/// A durability-relevant storage operation, reported to an [`OpObserver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Bytes were written to an upload file.
    Write { upload: String },
    /// An upload file was fsynced.
    FileSync { upload: String },
    /// A verified upload was published at its content address (an atomic hard link: the
    /// rename of the classic write-fsync-rename sequence, keeping the upload file until the
    /// metadata commit so a crash in between leaves the session resumable).
    Publish { upload: String, digest: String },
    /// The directory holding a blob was fsynced.
    DirSync { digest: String },
    /// Metadata committed (reported by the metadata store; same channel for ordering).
    Commit { what: String },
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such blob or upload.
    #[error("not found")]
    NotFound,
    /// Reading the request body failed (client went away, timed out, or sent too much).
    #[error("request body: {0}")]
    Body(io::Error),
    /// The backend is out of space (or quota).
    #[error("storage is full")]
    Full,
    /// The backend cannot be reached or is overloaded right now (a timeout, a lost
    /// connection, descriptors exhausted): the same request may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend itself failed.
    #[error("storage I/O: {0}")]
    Io(io::Error),
}

impl StorageError {
    /// Whether a retry of the same request may succeed once the backend is back.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

/// Whether an I/O error of the filesystem is transient: it says the file system (a network or
/// FUSE one, or the process's share of the kernel) could not serve the call right now, not that
/// data is damaged. `EIO` is not: on a local disk it means the medium failed.
pub fn io_is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::TimedOut
            | K::WouldBlock
            | K::Interrupted
            | K::ResourceBusy
            | K::StaleNetworkFileHandle
            | K::NotConnected
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
    ) {
        return true;
    }
    let errno = rustix::io::Errno::from_io_error(e);
    // Too many open files (process or system): passes as load drops. ENOMEM likewise.
    errno.is_some_and(|n| {
        n == rustix::io::Errno::MFILE
            || n == rustix::io::Errno::NFILE
            || n == rustix::io::Errno::NOMEM
            || n == rustix::io::Errno::NOBUFS
    })
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> StorageError {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::Full,
            _ if io_is_transient(&e) => StorageError::Unavailable(e.to_string()),
            _ => StorageError::Io(e),
        }
    }
}

/// The result of appending a body to an upload.
pub struct Appended {
    /// Length of the upload after the append.
    pub len: u64,
    /// Hasher over the whole upload so far.
    pub hasher: Hasher,
}

/// How a backend answers a blob read: with the bytes, or with a URL the client fetches them
/// from itself (an S3 presigned GET), so the bytes never pass through the registry.
pub enum BlobRead {
    /// `len` bytes of the blob starting at `start` (what was asked for).
    Stream {
        start: u64,
        len: u64,
        body: ByteStream,
    },
    /// Fetch the whole blob from `url` (the client sends its own `Range` there), valid until
    /// `expires`.
    Redirect { url: String, expires: SystemTime },
}

impl BlobRead {
    /// The stream, for callers that cannot follow a redirect (tests, in-process readers).
    pub fn into_stream(self) -> Result<ByteStream, StorageError> {
        match self {
            BlobRead::Stream { body, .. } => Ok(body),
            BlobRead::Redirect { .. } => Err(StorageError::Io(io::Error::other(
                "the blob store answered with a redirect where bytes were needed",
            ))),
        }
    }
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobRead::Stream { start, len, .. } => f
                .debug_struct("Stream")
                .field("start", start)
                .field("len", len)
                .finish_non_exhaustive(),
            BlobRead::Redirect { url, expires } => f
                .debug_struct("Redirect")
                .field("url", url)
                .field("expires", expires)
                .finish(),
        }
    }
}

/// A blob as the store holds it (`BlobStore::list_blobs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    /// Its stored size.
    pub size: u64,
    /// How long it has been at its content address (as far as the backend can tell).
    pub age: Duration,
}

/// Content-addressed blobs plus resumable upload files.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The chunk size this backend prefers, advertised as `OCI-Chunk-Min-Length`.
    fn preferred_chunk_size(&self) -> u64;

    /// Read `len` bytes of a blob starting at `start`: a stream of exactly those bytes, or a
    /// redirect to a URL serving the whole blob (ranges are then the client's business with
    /// that URL). A stream that cannot deliver every byte (the stored file was truncated or
    /// damaged) ends with an error item rather than short.
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobRead, StorageError>;

    /// The stored size of a blob, if present.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Stored blobs whose digests sort (as text) after `after`, in that order, at most `limit`:
    /// a page of a walk over everything the store holds, for the store checker and the garbage
    /// collector. Blobs published or removed during a walk may or may not appear.
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError>;

    /// Remove a blob's bytes (used by garbage collection only).
    async fn delete(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Append `body` to upload `id` at `offset`, hashing with `hasher` (whose state must cover
    /// exactly `offset` bytes). Anything stored past `offset` by an interrupted append is
    /// discarded first. With `durable`, the data (and a newly created file) is fsynced before
    /// returning, so the new length can be acknowledged and resumed after a crash.
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
        durable: bool,
    ) -> Result<Appended, StorageError>;

    /// Rebuild the hash of the first `len` bytes of an upload (after a restart, or for a digest
    /// of another algorithm than the session's).
    async fn upload_rehash(
        &self,
        id: &str,
        len: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher, StorageError>;

    /// Make upload `id` (already verified to hash to `digest`) visible at that digest: fsync the
    /// data, publish it atomically at its content address and fsync the directory. The upload
    /// itself stays until `upload_abort`, which the registry calls after the metadata commit.
    /// Idempotent for identical content.
    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), StorageError>;

    /// Discard an upload's bytes. Missing uploads are not an error.
    async fn upload_abort(&self, id: &str) -> Result<(), StorageError>;

    /// Upload files with their age in seconds, so orphans left by a crash can be purged.
    async fn upload_list(&self) -> Result<Vec<(String, u64)>, StorageError>;
}
