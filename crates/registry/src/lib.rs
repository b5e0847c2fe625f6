//! The registry's use cases, written only against the `BlobStore` and `MetadataStore` traits.
//!
//! Layout:
//! - `error`: the domain error with its OCI code (rendered by the server, nowhere else).
//! - `blobs`: blob reads, ranges, deletes and cross-repository mounts.
//! - `uploads`: upload sessions: start, chunk, status, finish, cancel, purge.
//! - `session_id`: self-verifying session ids, so opening a session writes nothing.
//! - `manifests`: manifest push (validation against stored blobs), pull and delete.
//! - `listing`: tag and catalog pages, referrers.
//!
//! No HTTP types appear here: handlers translate requests into these calls. Nothing that can
//! change (tags, links, uploads) is cached in the process. An upload's running hash state is
//! saved with its offset after every chunk, so any instance, or this one after a restart,
//! continues it without re-reading the bytes.

pub mod blobs;
pub mod error;
pub mod fsck;
pub mod listing;
pub mod manifests;
pub mod session_id;
pub mod uploads;

use std::sync::{Arc, Mutex};

use stowage_metadata::MetadataStore;
use stowage_storage::BlobStore;

pub use error::{Error, Result};

/// Behaviour switches of the registry (a slice of the server configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Allow DELETE on manifests, tags and blobs (otherwise 405 UNSUPPORTED).
    pub delete_enabled: bool,
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: u64,
    /// Require an index's child manifests to exist in the repository.
    pub index_children_must_exist: bool,
    /// URL prefixes allowed in descriptor `urls` (foreign / non-distributable layers).
    pub foreign_url_allow: Vec<String>,
    /// Page size for tag and catalog listings without `n`.
    pub page_size: usize,
    /// Largest `n` honoured on listings.
    pub max_page_size: usize,
    /// Uploads untouched for this many seconds are purged.
    pub upload_purge_after: u64,
    /// Live upload sessions one owner (an authenticated subject) may have; None: no cap.
    /// Sessions without an owner (authentication off) are never capped.
    pub max_uploads_per_owner: Option<u64>,
    /// Deepest JSON nesting accepted in a manifest (`{"a":[{}]}` is 3 deep).
    pub max_manifest_depth: usize,
    /// Most descriptors (config, layers, child manifests, subject) accepted in a manifest.
    pub max_manifest_descriptors: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            delete_enabled: true,
            max_manifest_size: 4 * 1024 * 1024,
            index_children_must_exist: true,
            foreign_url_allow: vec!["https://".into(), "http://".into()],
            page_size: 10_000,
            max_page_size: 100_000,
            upload_purge_after: 24 * 3600,
            max_uploads_per_owner: None,
            max_manifest_depth: 32,
            max_manifest_descriptors: 10_000,
        }
    }
}

/// The registry service: shared by every request handler.
pub struct Registry {
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) settings: Settings,
    /// Upload ids a request is writing right now: a second concurrent writer is refused
    /// instead of interleaving bytes at the same offset.
    pub(crate) busy: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Signs and checks upload session ids; loaded from the metadata store on first use.
    pub(crate) session_key: tokio::sync::OnceCell<aws_lc_rs::hmac::Key>,
}

impl Registry {
    /// Build a registry over the given stores.
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        settings: Settings,
    ) -> Registry {
        Registry {
            blobs,
            meta,
            settings,
            busy: Arc::new(Mutex::new(std::collections::HashSet::new())),
            session_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The active settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The chunk size advertised as `OCI-Chunk-Min-Length`.
    pub fn preferred_chunk_size(&self) -> u64 {
        self.blobs.preferred_chunk_size()
    }

    /// A cheap readiness probe of the metadata store.
    pub async fn ready(&self) -> Result<()> {
        self.meta.list_repos(None, 1).await?;
        Ok(())
    }
}

/// Current time in unix seconds.
pub(crate) use stowage_oci::time::now;
