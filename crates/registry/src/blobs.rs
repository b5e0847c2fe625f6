//! Blob reads, ranged reads, per-repository deletes and cross-repository mounts.
//!
//! A blob is readable through a repository only if that repository links it (it was pushed or
//! mounted there): the bytes are shared, the visibility is not.

use std::time::SystemTime;

use stowage_oci::range::{RangeOutcome, apply_range};
use stowage_oci::{Digest, RepoName};
use stowage_storage::{BlobRead, ByteStream};

use crate::{Error, Registry, Result};

/// What a blob GET returns.
pub struct BlobBody {
    /// Total size of the blob.
    pub size: u64,
    /// `Some((start, end))` for a 206 partial response (of a stream; a redirect serves the
    /// client's `Range` itself).
    pub partial: Option<(u64, u64)>,
    pub content: BlobContent,
}

/// The bytes of a blob GET, or where to get them.
pub enum BlobContent {
    /// Exactly the bytes of the response (the range when `partial`).
    Stream(ByteStream),
    /// The blob store serves the blob itself at `url` (e.g. an S3 presigned GET) until
    /// `expires`; answered with a temporary redirect.
    Redirect { url: String, expires: SystemTime },
}

impl BlobBody {
    /// The stream, for callers that cannot follow a redirect.
    pub fn into_stream(self) -> Result<ByteStream> {
        match self.content {
            BlobContent::Stream(s) => Ok(s),
            BlobContent::Redirect { .. } => Err(Error::internal(
                "the blob store answered with a redirect where bytes were needed",
            )),
        }
    }
}

/// How many repositories holding a blob are considered for a mount without `from`: enough that
/// a caller who can read only a few of many holders still finds one, bounded so a popular blob
/// does not make a mount expensive.
const MOUNT_CANDIDATES: usize = 1000;

impl Registry {
    /// Size of a blob visible in `repo`, or BLOB_UNKNOWN.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.meta
            .blob_in_repo(repo.as_str(), digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown {
                digest: digest.clone(),
            })
    }

    /// Open a blob for reading, honouring a `Range` header.
    pub async fn blob_get(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<&str>,
    ) -> Result<BlobBody> {
        let size = self.blob_size(repo, digest).await?;
        let (start, len, partial) = match range.map(|r| apply_range(r, size)) {
            None | Some(RangeOutcome::Full) => (0, size, None),
            Some(RangeOutcome::Partial { start, end }) => {
                let len = stowage_oci::range::range_len(start, end)
                    .ok_or(Error::RangeNotSatisfiable { size })?;
                (start, len, Some((start, end)))
            }
            Some(RangeOutcome::Unsatisfiable) => {
                return Err(Error::RangeNotSatisfiable { size });
            }
        };
        let content = match self.blobs.read(digest, start, len).await {
            Ok(BlobRead::Stream {
                start: s,
                len: l,
                body,
            }) => {
                if (s, l) != (start, len) {
                    return Err(Error::internal(format!(
                        "the blob store streamed {l} bytes from {s} for {len} from {start}"
                    )));
                }
                BlobContent::Stream(body)
            }
            Ok(BlobRead::Redirect { url, expires }) => {
                return Ok(BlobBody {
                    size,
                    partial: None,
                    content: BlobContent::Redirect { url, expires },
                });
            }
            Err(stowage_storage::StorageError::NotFound) => {
                tracing::error!(%digest, "blob linked in metadata but missing from storage");
                return Err(Error::BlobUnknown {
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobBody {
            size,
            partial,
            content,
        })
    }

    /// Remove a blob from one repository (its bytes stay for others until garbage collection).
    pub async fn blob_delete(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if !self.settings.delete_enabled {
            return Err(Error::Disabled("deletion"));
        }
        if self.meta.unlink_blob(repo.as_str(), digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown {
                digest: digest.clone(),
            })
        }
    }

    /// Try to mount `digest` into `repo`. With `from`, only from that repository; without, from
    /// any repository holding it; either way only from repositories `readable` allows (all,
    /// when None). Returns false when nothing was mounted, so the caller starts a normal upload
    /// and existence elsewhere stays hidden.
    pub async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        readable: Option<&crate::uploads::Readable>,
    ) -> Result<bool> {
        let may_read = |name: &str| readable.is_none_or(|f| f(name));
        if self
            .meta
            .blob_in_repo(repo.as_str(), digest)
            .await?
            .is_some()
        {
            return Ok(true);
        }
        let size = match from {
            Some(from) if may_read(from.as_str()) => {
                self.meta.blob_in_repo(from.as_str(), digest).await?
            }
            Some(_) => None,
            None => self
                .meta
                .repos_with_blob(digest, MOUNT_CANDIDATES)
                .await?
                .into_iter()
                .find(|(name, _)| may_read(name))
                .map(|(_, s)| s),
        };
        let Some(size) = size else { return Ok(false) };
        // The bytes must really be there: never link a blob storage cannot serve.
        if self.blobs.stat(digest).await? != Some(size) {
            return Ok(false);
        }
        self.meta.link_blob(repo.as_str(), digest, size).await?;
        Ok(true)
    }
}
