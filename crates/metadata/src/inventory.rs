//! Walking everything a metadata store holds, a page at a time in key order: what the store
//! checker (`stowage fsck`) reads, and what the garbage collector will.
//!
//! Each page is one read, so a walk never holds a transaction open while a server writes; a
//! caller that finds something wrong re-reads it before reporting (the store moves under a
//! walk). Every page answers with the facts needed to judge its rows in the same read (a tag
//! with whether its manifest exists, a link with its blob's recorded size), so a row is never
//! judged against a later state than its own.

use async_trait::async_trait;
use stowage_oci::Digest;

use crate::Result;

/// A tag, and whether the manifest it names is stored in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagEntry {
    pub repo: String,
    pub tag: String,
    pub digest: Digest,
    pub manifest_stored: bool,
}

/// A stored manifest with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub repo: String,
    /// The digest it was pushed under.
    pub digest: Digest,
    /// Its sha256 digest as recorded.
    pub sha256: Digest,
    pub media_type: String,
    /// The recorded size.
    pub size: u64,
    pub body: Vec<u8>,
}

/// A blob record: content the metadata says exists, whichever repositories link it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
}

/// A repository's link to a blob, with the blob's recorded size (None: no blob record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEntry {
    pub repo: String,
    pub digest: Digest,
    pub blob_size: Option<u64>,
}

/// Paged walks over a metadata store, in byte order of their keys. `after` is the key of the
/// last row of the previous page (None for the first); a page shorter than `limit` is the last.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// Tags, ordered by (repository, tag).
    async fn walk_tags(
        &self,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<TagEntry>>;
    /// Manifests with their bodies, ordered by (repository, digest).
    async fn walk_manifests(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>>;
    /// Blob records, ordered by digest.
    async fn walk_blobs(&self, after: Option<Digest>, limit: usize) -> Result<Vec<BlobEntry>>;
    /// Repository links, ordered by (repository, digest).
    async fn walk_links(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>>;
    /// Those of `digests` that have a blob record, with their recorded sizes.
    async fn blob_records(&self, digests: &[Digest]) -> Result<Vec<(Digest, u64)>>;
}
