//! Registry metadata: repositories, blob links, manifests, tags, referrers and upload sessions.
//!
//! `MetadataStore` is the seam every backend implements (SQLite today, PostgreSQL later). It is
//! the single source of truth for anything that can change (tags, links, uploads), so several
//! server instances sharing one store never disagree; the process caches none of it. Every
//! mutation is durable when its future resolves. Ordering is byte order everywhere (SQLite's
//! BINARY collation), so paging is identical across backends. `suite` holds the shared tests.

pub mod auth;
#[cfg(any(test, feature = "testing"))]
pub mod auth_suite;
pub mod inventory;
pub mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod suite;

use async_trait::async_trait;
use stowage_oci::{Algorithm, Digest};

pub use auth::{AuthStore, RefreshRecord, SigningKeyRecord, TokenRecord, UserRecord};
pub use inventory::{BlobEntry, Inventory, LinkEntry, ManifestEntry, TagEntry};

/// Metadata failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The store's disk is full: the write was rolled back.
    #[error("metadata store is full")]
    Full,
    /// The store cannot be reached or is too busy right now, and nothing was changed (or a
    /// change's outcome was lost with the connection): the same request may succeed later.
    /// SQLite: `SQLITE_BUSY` or `SQLITE_LOCKED` still there after the busy timeout.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a broken store or a bug, not worth retrying.
    #[error("metadata store: {0}")]
    Backend(String),
}

impl MetadataError {
    /// Whether a retry of the same request may succeed once the store is back.
    pub fn is_transient(&self) -> bool {
        matches!(self, MetadataError::Unavailable(_))
    }
}

impl From<rusqlite::Error> for MetadataError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => MetadataError::Full,
            // Another connection (a backup, `stowage user` on the store, a checkpoint) held
            // the database past the busy timeout: it lets go eventually.
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                MetadataError::Unavailable(e.to_string())
            }
            _ => MetadataError::Backend(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, MetadataError>;

/// A manifest to store.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// The digest it was pushed under (the URL digest, or sha256 for a tag push).
    pub digest: Digest,
    /// Its sha256 digest, so manifests pushed by sha512 are reachable by sha256 too.
    pub sha256: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    /// Annotations as a JSON object string, served in referrers responses.
    pub annotations: Option<String>,
    /// Blobs and child manifests it references (kept for garbage collection).
    pub references: Vec<Digest>,
}

/// A stored manifest as found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMeta {
    /// The digest to report: the one asked for, or the pushed digest for a tag.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The bytes, when asked for.
    pub body: Option<Vec<u8>>,
}

/// One entry of a referrers response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// An upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub repo: String,
    pub algorithm: Algorithm,
    /// Bytes acknowledged so far (durable in the blob store).
    pub offset: u64,
    /// The running hash state at `offset` (`Hasher::save_state`), so the upload continues
    /// after a restart or on another instance without re-reading its bytes.
    pub hash_state: Option<Vec<u8>>,
    /// The session was completed or cancelled: its id must not be used again.
    pub ended: bool,
    /// Unix seconds.
    pub created: i64,
    pub updated: i64,
    /// Who opened the session: the authenticated subject, empty without authentication.
    pub owner: String,
}

/// A bound on the live upload sessions of one owner, applied when a session gets its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCap {
    /// Live sessions an owner may have.
    pub max_open: u64,
    /// Sessions not updated since this (unix seconds) are abandoned and not counted.
    pub live_since: i64,
}

/// What [`MetadataStore::advance_upload_capped`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The offset moved.
    Done,
    /// The session no longer held the offset the caller started from, or ended.
    Moved,
    /// The session had no row yet and its owner already has `open` live sessions.
    Full { open: u64 },
}

/// What became of a manifest delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Tags that pointed at it and are gone too.
    pub tags: Vec<String>,
}

/// The metadata store interface the registry is written against. Its [`Inventory`] walks
/// everything it holds, for the store checker and the garbage collector.
#[async_trait]
pub trait MetadataStore: Inventory + Send + Sync + 'static {
    /// Size of `digest` if it is linked into `repo`.
    async fn blob_in_repo(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;
    /// Sizes of those of `digests` linked into `repo`.
    async fn blobs_in_repo(&self, repo: &str, digests: &[Digest]) -> Result<Vec<(Digest, u64)>>;
    /// Repositories (in byte order, at most `limit`) that link `digest`, with its size.
    async fn repos_with_blob(&self, digest: &Digest, limit: usize) -> Result<Vec<(String, u64)>>;
    /// Link a blob into a repository (creating both records as needed).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()>;
    /// Link the blob an upload produced and end the session, in one transaction. With
    /// `session`, the session's row becomes a tombstone so its id is refused from now on (until
    /// purged with the other stale rows); a single-request upload has no session to end.
    /// Compare-and-set like [`MetadataStore::advance_upload`]: when the session no longer holds
    /// `session.offset` bytes (or has ended), nothing is linked and the answer is false.
    async fn finish_upload(
        &self,
        session: Option<&Upload>,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<bool>;
    /// Remove a blob's link from a repository; false if it was not linked.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;

    /// Those of `digests` that are manifests in `repo`, with their sizes.
    async fn manifests_in_repo(&self, repo: &str, digests: &[Digest])
    -> Result<Vec<(Digest, u64)>>;
    /// Store a manifest and point `tags` at it, in one transaction.
    async fn put_manifest(&self, repo: &str, manifest: NewManifest, tags: &[String]) -> Result<()>;
    /// Look a manifest up by tag.
    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
        with_body: bool,
    ) -> Result<Option<ManifestMeta>>;
    /// Look a manifest up by its pushed digest or its sha256 digest.
    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
        with_body: bool,
    ) -> Result<Option<ManifestMeta>>;
    /// Delete a manifest and every tag pointing at it; None if it did not exist.
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<Option<Deleted>>;
    /// Delete a tag; false if it did not exist.
    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool>;
    /// Tags after `last` in byte order, at most `limit`; None if the repository is unknown.
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>>;
    /// Names of repositories holding any manifest or blob, after `last` in byte order, at
    /// most `limit`.
    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>>;
    /// Manifests in `repo` whose subject is `subject`, optionally filtered by artifact type.
    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;

    /// Record an upload session's state unconditionally (creating its row if needed); used to
    /// end a session.
    async fn save_upload(&self, upload: &Upload) -> Result<()>;
    /// Move a live session from `from` bytes to `upload.offset` (with its hash state), creating
    /// its row on the first chunk, only if it still holds exactly `from` bytes: the one way a
    /// session's offset advances, so two writers racing on one session never both succeed.
    /// False (and nothing changed) when the session moved, ended or never started at `from`.
    async fn advance_upload(&self, upload: &Upload, from: u64) -> Result<bool>;
    /// [`MetadataStore::advance_upload`], except that a session getting its row now (its
    /// first acknowledged chunk) is refused with [`Advance::Full`] when its owner already has
    /// `cap.max_open` live sessions (rows not ended, updated at or after `cap.live_since`),
    /// counted in the same transaction, so concurrent first chunks on any instance never
    /// exceed the cap. Sessions with an empty owner are never counted or refused.
    async fn advance_upload_capped(
        &self,
        upload: &Upload,
        from: u64,
        cap: SessionCap,
    ) -> Result<Advance>;
    /// The live sessions of `owner` (rows not ended, updated at or after `live_since`).
    async fn open_uploads(&self, owner: &str, live_since: i64) -> Result<u64>;
    /// Find an upload session.
    async fn get_upload(&self, id: &str) -> Result<Option<Upload>>;
    /// Forget an upload session.
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// A secret of this registry (shared by every instance using this store): created with
    /// `candidate` on first use, the stored value ever after.
    async fn secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>>;
    /// Upload ids not touched since `before` (unix seconds).
    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_held_by_another_connection_is_unavailable_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder
            .execute_batch("CREATE TABLE t(x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
            .unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let e = MetadataError::from(other.execute("INSERT INTO t VALUES (2)", []).unwrap_err());
        assert!(e.is_transient(), "{e:?}");
        holder.execute_batch("COMMIT").unwrap();
        other.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let e = MetadataError::from(
            other
                .execute("INSERT INTO nope VALUES (2)", [])
                .unwrap_err(),
        );
        assert!(matches!(e, MetadataError::Backend(_)), "{e:?}");
    }
}
