//! The store checker behind `stowage fsck`: is what the metadata says consistent with itself and
//! with the bytes in the blob store?
//!
//! Integrity errors (the store has lost or damaged something a client can ask for):
//! a tag naming a manifest that is not stored; a stored manifest whose bytes no longer match its
//! digest or size, or no longer parse; an image manifest referencing a blob its repository does
//! not link; a link with no blob record; a blob record without bytes, with bytes of another size,
//! or (with `deep`) with bytes that no longer hash to its digest.
//!
//! Warnings (harmless, but worth knowing): an index naming a child manifest its repository does
//! not hold (allowed when `index_children_must_exist` is off, and left behind when a child is
//! deleted); blob bytes no record names (orphans: normal for a moment, since bytes are published
//! before their metadata commits, so only reported once older than the grace period); upload
//! files no live session owns, older than the grace period. `repair` removes those orphans and
//! leftovers, re-checking each just before it goes.
//!
//! The checker runs against a live store: it walks in pages, judges each row with facts read in
//! the same read where it can, and re-reads anything it is about to report that a concurrent
//! request could have changed meanwhile (a manifest deleted with its blob link), so a busy
//! registry does not produce false alarms.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use stowage_metadata::MetadataStore;
use stowage_oci::manifest::{self, Kind as ManifestKind};
use stowage_oci::{Algorithm, Digest, Hasher};
use stowage_storage::{BlobStore, StorageError};

/// Rows per page of a metadata walk.
const PAGE: usize = 500;
/// Manifests per page (they come with their bytes).
const MANIFEST_PAGE: usize = 32;

/// What the checker reports while it works.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A phase starts.
    Phase(&'static str),
    /// The deep pass starts: this many blobs and bytes to hash.
    Hashing { blobs: u64, bytes: u64 },
    /// This many more bytes were hashed.
    Hashed(u64),
}

/// How to check.
#[derive(Clone)]
pub struct FsckOptions {
    /// Re-hash every blob's bytes.
    pub deep: bool,
    /// Remove orphan blobs and leftover upload files older than `grace`.
    pub repair: bool,
    /// Bytes without a record younger than this are in flight, not orphans.
    pub grace: Duration,
    /// Called as the check goes (progress bars).
    pub progress: Option<Arc<dyn Fn(Progress) + Send + Sync>>,
}

impl Default for FsckOptions {
    fn default() -> FsckOptions {
        FsckOptions {
            deep: false,
            repair: false,
            grace: Duration::from_secs(24 * 3600),
            progress: None,
        }
    }
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingKind {
    /// A tag names a manifest its repository does not store.
    DanglingTag,
    /// A stored manifest's bytes do not match its digest or size, or do not parse.
    ManifestCorrupt,
    /// An image manifest references a blob its repository does not link.
    ManifestBlobMissing,
    /// A repository links a blob that has no blob record.
    LinkWithoutBlob,
    /// A blob record has no bytes in the blob store.
    BlobMissing,
    /// A blob's stored bytes have another size than its record.
    BlobSizeMismatch,
    /// A blob's stored bytes do not hash to its digest (`deep`).
    BlobCorrupt,
    /// An index names a child manifest its repository does not hold (warning).
    IndexChildMissing,
    /// Blob bytes that no record names, older than the grace period (warning).
    OrphanBlob,
    /// An upload file that no live session owns, older than the grace period (warning).
    LeftoverUpload,
}

impl FindingKind {
    /// Whether this is an integrity error (exit status 1) rather than a warning.
    pub fn is_error(self) -> bool {
        !matches!(
            self,
            FindingKind::IndexChildMissing | FindingKind::OrphanBlob | FindingKind::LeftoverUpload
        )
    }

    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DanglingTag => "dangling_tag",
            FindingKind::ManifestCorrupt => "manifest_corrupt",
            FindingKind::ManifestBlobMissing => "manifest_blob_missing",
            FindingKind::LinkWithoutBlob => "link_without_blob",
            FindingKind::BlobMissing => "blob_missing",
            FindingKind::BlobSizeMismatch => "blob_size_mismatch",
            FindingKind::BlobCorrupt => "blob_corrupt",
            FindingKind::IndexChildMissing => "index_child_missing",
            FindingKind::OrphanBlob => "orphan_blob",
            FindingKind::LeftoverUpload => "leftover_upload",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// The digest of the blob or manifest concerned.
    pub digest: Option<String>,
    /// The upload id, for leftover uploads.
    pub upload: Option<String>,
    /// What exactly is wrong, for people.
    pub detail: String,
}

impl Finding {
    fn new(kind: FindingKind, detail: impl Into<String>) -> Finding {
        Finding {
            kind,
            repository: None,
            tag: None,
            digest: None,
            upload: None,
            detail: detail.into(),
        }
    }
    fn repo(mut self, r: &str) -> Finding {
        self.repository = Some(r.to_string());
        self
    }
    fn digest(mut self, d: &Digest) -> Finding {
        self.digest = Some(d.to_string());
        self
    }
}

/// How much was looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub tags: u64,
    pub manifests: u64,
    pub links: u64,
    pub blob_records: u64,
    pub stored_blobs: u64,
    /// Stored blobs without a record, younger than the grace period (in flight).
    pub recent_unrecorded: u64,
    pub upload_files: u64,
    pub bytes_hashed: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    /// Problems, errors and warnings, in the order found.
    pub findings: Vec<Finding>,
    /// Orphans and leftovers `repair` removed (also listed in `findings`).
    pub repaired: Vec<Finding>,
    pub counts: Counts,
    pub deep: bool,
}

impl FsckReport {
    /// No integrity errors (warnings allowed).
    pub fn is_consistent(&self) -> bool {
        self.errors().next().is_none()
    }
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_error())
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.kind.is_error())
    }
}

/// Why a check could not finish.
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error(transparent)]
    Metadata(#[from] stowage_metadata::MetadataError),
    #[error("blob store: {0}")]
    Storage(#[from] StorageError),
}

/// Check `meta` against `blobs`.
pub async fn check(
    meta: &dyn MetadataStore,
    blobs: &dyn BlobStore,
    opts: &FsckOptions,
) -> Result<FsckReport, FsckError> {
    let mut c = Checker {
        meta,
        blobs,
        opts,
        report: FsckReport {
            deep: opts.deep,
            ..FsckReport::default()
        },
    };
    c.tags().await?;
    c.manifests().await?;
    c.links().await?;
    let present = c.blob_records().await?;
    if opts.deep {
        c.hash(&present).await?;
    }
    c.orphans().await?;
    c.uploads().await?;
    Ok(c.report)
}

/// What a repository holds a digest as.
#[derive(Clone, Copy)]
enum Held {
    Blob,
    Manifest,
}

struct Checker<'a> {
    meta: &'a dyn MetadataStore,
    blobs: &'a dyn BlobStore,
    opts: &'a FsckOptions,
    report: FsckReport,
}

impl Checker<'_> {
    fn progress(&self, p: Progress) {
        if let Some(f) = &self.opts.progress {
            f(p);
        }
    }

    fn found(&mut self, f: Finding) {
        self.report.findings.push(f);
    }

    async fn tags(&mut self) -> Result<(), FsckError> {
        self.progress(Progress::Phase("tags"));
        let mut after = None;
        loop {
            let page = self.meta.walk_tags(after.take(), PAGE).await?;
            for t in &page {
                self.report.counts.tags += 1;
                if !t.manifest_stored {
                    let mut f = Finding::new(
                        FindingKind::DanglingTag,
                        format!(
                            "tag {}:{} points to {}, which the repository does not store",
                            t.repo, t.tag, t.digest
                        ),
                    )
                    .repo(&t.repo)
                    .digest(&t.digest);
                    f.tag = Some(t.tag.clone());
                    self.found(f);
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => {
                    after = Some((last.repo.clone(), last.tag.clone()))
                }
                _ => return Ok(()),
            }
        }
    }

    async fn manifests(&mut self) -> Result<(), FsckError> {
        self.progress(Progress::Phase("manifests"));
        let mut after = None;
        loop {
            let page = self
                .meta
                .walk_manifests(after.take(), MANIFEST_PAGE)
                .await?;
            for m in &page {
                self.report.counts.manifests += 1;
                self.manifest(m).await?;
            }
            match page.last() {
                Some(last) if page.len() == MANIFEST_PAGE => {
                    after = Some((last.repo.clone(), last.digest.clone()))
                }
                _ => return Ok(()),
            }
        }
    }

    async fn manifest(&mut self, m: &stowage_metadata::ManifestEntry) -> Result<(), FsckError> {
        let corrupt = |detail: String| {
            Finding::new(FindingKind::ManifestCorrupt, detail)
                .repo(&m.repo)
                .digest(&m.digest)
        };
        let actual = Digest::of(m.digest.algorithm(), &m.body);
        if actual != m.digest
            || Digest::of(Algorithm::Sha256, &m.body) != m.sha256
            || m.body.len() as u64 != m.size
        {
            self.found(corrupt(format!(
                "manifest {}@{}: its stored bytes ({} bytes, {actual}) no longer match its digest and size ({} bytes)",
                m.repo, m.digest, m.body.len(), m.size
            )));
            return Ok(());
        }
        let parsed = match manifest::parse(&m.body, Some(&m.media_type)) {
            Ok(p) => p,
            Err(e) => {
                self.found(corrupt(format!(
                    "manifest {}@{} no longer parses: {e}",
                    m.repo, m.digest
                )));
                return Ok(());
            }
        };
        match parsed.kind {
            ManifestKind::Image => {
                let wanted: Vec<Digest> = parsed
                    .config
                    .iter()
                    .chain(parsed.layers.iter())
                    .filter(|d| d.urls.is_empty())
                    .map(|d| d.digest.clone())
                    .collect();
                let missing = self.missing_blobs(&m.repo, &wanted).await?;
                if !missing.is_empty() && self.still_stored(m).await? {
                    for d in self.missing_blobs(&m.repo, &missing).await? {
                        self.found(
                            Finding::new(
                                FindingKind::ManifestBlobMissing,
                                format!(
                                    "manifest {}@{} references blob {d}, which the repository does not link",
                                    m.repo, m.digest
                                ),
                            )
                            .repo(&m.repo)
                            .digest(&d),
                        );
                    }
                }
            }
            ManifestKind::Index => {
                let wanted: Vec<Digest> =
                    parsed.manifests.iter().map(|d| d.digest.clone()).collect();
                let missing = self.missing_manifests(&m.repo, &wanted).await?;
                if !missing.is_empty() && self.still_stored(m).await? {
                    for d in self.missing_manifests(&m.repo, &missing).await? {
                        self.found(
                            Finding::new(
                                FindingKind::IndexChildMissing,
                                format!(
                                    "index {}@{} lists manifest {d}, which the repository does not hold (pulls of that entry fail)",
                                    m.repo, m.digest
                                ),
                            )
                            .repo(&m.repo)
                            .digest(&d),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Those of `wanted` (deduplicated) that `repo` does not link.
    async fn missing_blobs(&self, repo: &str, wanted: &[Digest]) -> Result<Vec<Digest>, FsckError> {
        self.missing(repo, wanted, Held::Blob).await
    }

    /// Those of `wanted` (deduplicated) that `repo` does not hold as manifests.
    async fn missing_manifests(
        &self,
        repo: &str,
        wanted: &[Digest],
    ) -> Result<Vec<Digest>, FsckError> {
        self.missing(repo, wanted, Held::Manifest).await
    }

    /// Those of `wanted` (deduplicated) that `repo` does not hold as `what`.
    async fn missing(
        &self,
        repo: &str,
        wanted: &[Digest],
        what: Held,
    ) -> Result<Vec<Digest>, FsckError> {
        let mut wanted = wanted.to_vec();
        wanted.sort();
        wanted.dedup();
        let mut missing = Vec::new();
        for chunk in wanted.chunks(PAGE) {
            let have = match what {
                Held::Blob => self.meta.blobs_in_repo(repo, chunk).await?,
                Held::Manifest => self.meta.manifests_in_repo(repo, chunk).await?,
            };
            missing.extend(
                chunk
                    .iter()
                    .filter(|d| !have.iter().any(|(h, _)| h == *d))
                    .cloned(),
            );
        }
        Ok(missing)
    }

    /// Whether a manifest read earlier in the walk is still stored (not deleted meanwhile).
    async fn still_stored(&self, m: &stowage_metadata::ManifestEntry) -> Result<bool, FsckError> {
        Ok(!self
            .meta
            .manifests_in_repo(&m.repo, std::slice::from_ref(&m.digest))
            .await?
            .is_empty())
    }

    async fn links(&mut self) -> Result<(), FsckError> {
        self.progress(Progress::Phase("links"));
        let mut after = None;
        loop {
            let page = self.meta.walk_links(after.take(), PAGE).await?;
            for l in &page {
                self.report.counts.links += 1;
                if l.blob_size.is_none() {
                    self.found(
                        Finding::new(
                            FindingKind::LinkWithoutBlob,
                            format!(
                                "repository {} links blob {}, which has no blob record",
                                l.repo, l.digest
                            ),
                        )
                        .repo(&l.repo)
                        .digest(&l.digest),
                    );
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => {
                    after = Some((last.repo.clone(), last.digest.clone()))
                }
                _ => return Ok(()),
            }
        }
    }

    /// Check every blob record has its bytes at the right size; answer those that do.
    async fn blob_records(&mut self) -> Result<Vec<(Digest, u64)>, FsckError> {
        self.progress(Progress::Phase("blobs"));
        let mut present = Vec::new();
        let mut after = None;
        loop {
            let page = self.meta.walk_blobs(after.take(), PAGE).await?;
            for b in &page {
                self.report.counts.blob_records += 1;
                match self.blobs.stat(&b.digest).await? {
                    Some(size) if size == b.size => present.push((b.digest.clone(), size)),
                    Some(size) => self.found(
                        Finding::new(
                            FindingKind::BlobSizeMismatch,
                            format!(
                                "blob {} is recorded as {} bytes but {size} are stored",
                                b.digest, b.size
                            ),
                        )
                        .digest(&b.digest),
                    ),
                    None => {
                        // A record removed meanwhile (by a collector) is no longer a problem.
                        let still = self
                            .meta
                            .blob_records(std::slice::from_ref(&b.digest))
                            .await?;
                        if !still.is_empty() && self.blobs.stat(&b.digest).await?.is_none() {
                            self.found(
                                Finding::new(
                                    FindingKind::BlobMissing,
                                    format!(
                                        "blob {} ({} bytes) is recorded but its bytes are missing from the blob store",
                                        b.digest, b.size
                                    ),
                                )
                                .digest(&b.digest),
                            );
                        }
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.digest.clone()),
                _ => return Ok(present),
            }
        }
    }

    /// Re-hash every present blob.
    async fn hash(&mut self, present: &[(Digest, u64)]) -> Result<(), FsckError> {
        self.progress(Progress::Hashing {
            blobs: present.len() as u64,
            bytes: present.iter().map(|(_, s)| s).sum(),
        });
        for (digest, size) in present {
            let mut stream = match self.blobs.read(digest, 0, *size).await {
                Ok(r) => r.into_stream()?,
                // Removed since it was looked at (a collector): nothing to hash.
                Err(StorageError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut hasher = Hasher::new(digest.algorithm());
            let mut failure = None;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        hasher.update(&c);
                        self.report.counts.bytes_hashed += c.len() as u64;
                        self.progress(Progress::Hashed(c.len() as u64));
                    }
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            let bad = match failure {
                Some(e) => Some(format!("reading blob {digest} failed: {e}")),
                None if hasher.len() != *size => Some(format!(
                    "blob {digest}: {} of {size} bytes could be read",
                    hasher.len()
                )),
                None => {
                    let actual = hasher.finish();
                    (actual != *digest).then(|| {
                        format!("blob {digest}: its stored bytes hash to {actual} (bit rot or tampering)")
                    })
                }
            };
            if let Some(detail) = bad {
                self.found(Finding::new(FindingKind::BlobCorrupt, detail).digest(digest));
            }
        }
        Ok(())
    }

    /// Stored blobs without a record: in flight when young, orphans once past the grace period.
    async fn orphans(&mut self) -> Result<(), FsckError> {
        self.progress(Progress::Phase("orphans"));
        let mut after: Option<Digest> = None;
        loop {
            let page = self.blobs.list_blobs(after.as_ref(), PAGE).await?;
            self.report.counts.stored_blobs += page.len() as u64;
            let digests: Vec<Digest> = page.iter().map(|b| b.digest.clone()).collect();
            let recorded = self.meta.blob_records(&digests).await?;
            for b in &page {
                if recorded.iter().any(|(d, _)| *d == b.digest) {
                    continue;
                }
                if b.age < self.opts.grace {
                    self.report.counts.recent_unrecorded += 1;
                    continue;
                }
                let f = Finding::new(
                    FindingKind::OrphanBlob,
                    format!(
                        "blob {} ({} bytes, {} old) is stored but no record names it",
                        b.digest,
                        b.size,
                        stowage_oci::time::format_duration(b.age)
                    ),
                )
                .digest(&b.digest);
                if self.opts.repair
                    && self
                        .meta
                        .blob_records(std::slice::from_ref(&b.digest))
                        .await?
                        .is_empty()
                {
                    self.blobs.delete(&b.digest).await?;
                    self.report.repaired.push(f.clone());
                }
                self.found(f);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.digest.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Upload files no live session owns, past the grace period.
    async fn uploads(&mut self) -> Result<(), FsckError> {
        self.progress(Progress::Phase("uploads"));
        let files = self.blobs.upload_list().await?;
        for (id, age) in files {
            self.report.counts.upload_files += 1;
            let age = Duration::from_secs(age);
            if age < self.opts.grace {
                continue;
            }
            let live = matches!(self.meta.get_upload(&id).await?, Some(u) if !u.ended);
            if live {
                continue;
            }
            let mut f = Finding::new(
                FindingKind::LeftoverUpload,
                format!(
                    "upload file {id} ({} old) belongs to no live upload session",
                    stowage_oci::time::format_duration(age)
                ),
            );
            f.upload = Some(id.clone());
            if self.opts.repair {
                self.blobs.upload_abort(&id).await?;
                self.report.repaired.push(f.clone());
            }
            self.found(f);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fsck_tests.rs"]
mod tests;
