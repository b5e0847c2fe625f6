//! Upload sessions: start (plain, single-POST monolithic, or mount), chunked PATCHes, status,
//! the final PUT, cancel, and purging abandoned sessions.
//!
//! Order of a push, which every acknowledgement waits for: bytes written and fsynced, published
//! at the content address (an atomic hard link), directory fsynced (all in `BlobStore::upload_commit`), then the
//! metadata commit linking the blob. The acknowledged offset of a session is stored in metadata
//! only after its bytes are durable, so a resumed upload never trusts bytes that were not.

use stowage_metadata::{Advance, SessionCap, Upload};

use crate::session_id::{self, SessionClaims, UploadId};
use stowage_oci::{Algorithm, Digest, Hasher, RepoName};
use stowage_storage::ByteStream;

use crate::{Error, Registry, Result, now};

/// What a POST to `/blobs/uploads/` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A session was opened (202).
    Session { id: UploadId },
    /// The blob was mounted from another repository (201).
    Mounted { digest: Digest },
    /// A single-POST monolithic upload completed (201).
    Created { digest: Digest },
}

/// The parameters of an upload POST.
pub struct StartRequest {
    pub digest: Option<Digest>,
    pub mount: Option<Digest>,
    pub from: Option<RepoName>,
    pub algorithm: Option<Algorithm>,
    /// The body, when the POST carries one (single-POST monolithic upload).
    pub body: Option<ByteStream>,
    /// Who opens the session (empty without authentication): every later request on it must
    /// come from the same subject.
    pub owner: String,
    /// Which repositories the caller may read, for mounts (None: all of them).
    pub readable: Option<Readable>,
}

/// A predicate over repository names: may the caller pull from it?
pub type Readable = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A chunk's declared position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// Bytes in the (inclusive) range; None when it is empty-or-inverted or does not fit a u64.
    pub fn byte_count(&self) -> Option<u64> {
        stowage_oci::range::range_len(self.start, self.end)
    }
}

/// Marks an upload as being written; released on drop, whatever way the request ends.
///
/// In-process only: the data directory's lock keeps a second process off the same store, and
/// the session offset moves only by compare-and-set (see `MetadataStore::advance_upload`), so a
/// writer that lost a race never acknowledges bytes.
struct BusyGuard {
    set: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    id: String,
}

impl BusyGuard {
    /// Claim `id`, or None while another request holds it.
    fn take(reg: &Registry, id: &UploadId) -> Option<BusyGuard> {
        let mut set = reg.busy.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string()).then(|| BusyGuard {
            set: reg.busy.clone(),
            id: id.to_string(),
        })
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// 128 random bits as lowercase hex: unguessable and path-safe.
fn random128() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::internal("system random source failed"))?;
    Ok(b)
}

fn new_upload_id() -> Result<UploadId> {
    UploadId::parse(&stowage_oci::hex(&random128()?))
        .ok_or_else(|| Error::internal("a fresh upload id is malformed"))
}

impl Registry {
    /// Handle `POST /v2/<name>/blobs/uploads/`.
    pub async fn upload_start(&self, repo: &RepoName, req: StartRequest) -> Result<Started> {
        if let Some(mount) = &req.mount
            && self
                .blob_mount(repo, mount, req.from.as_ref(), req.readable.as_ref())
                .await?
        {
            return Ok(Started::Mounted {
                digest: mount.clone(),
            });
        }
        if let (Some(digest), Some(body)) = (req.digest, req.body) {
            let id = new_upload_id()?;
            let hasher = Hasher::new(digest.algorithm());
            let result = self
                .complete(repo, &id, None, 0, hasher, body, &digest)
                .await;
            if result.is_err() {
                let _ = self.blobs.upload_abort(id.as_str()).await;
            }
            return result.map(|_| Started::Created { digest });
        }
        // Refuse early when the owner is at the cap (the first chunk is where it is enforced
        // for good, in the metadata store's transaction: see `advance`).
        if let Some(cap) = self.session_cap(&req.owner) {
            let open = self.meta.open_uploads(&req.owner, cap.live_since).await?;
            if open >= cap.max_open {
                return Err(Error::TooManyUploads {
                    limit: cap.max_open,
                });
            }
        }
        // No write: the id itself proves the session (see `session_id`).
        let claims = SessionClaims {
            algorithm: req.algorithm.unwrap_or(Algorithm::Sha256),
            created: now(),
        };
        let id = session_id::issue(
            self.session_key().await?,
            &random128()?,
            repo.as_str(),
            &req.owner,
            claims,
        );
        Ok(Started::Session { id })
    }

    /// The cap on `owner`'s live sessions, when one applies (an owner, and a configured cap).
    fn session_cap(&self, owner: &str) -> Option<SessionCap> {
        let max_open = self.settings.max_uploads_per_owner?;
        (!owner.is_empty()).then(|| SessionCap {
            max_open,
            live_since: now() - self.settings.upload_purge_after as i64,
        })
    }

    /// The key session ids are signed with, loaded from (or created in) the metadata store once.
    async fn session_key(&self) -> Result<&aws_lc_rs::hmac::Key> {
        self.session_key
            .get_or_try_init(|| async {
                let candidate = random128()?
                    .iter()
                    .chain(random128()?.iter())
                    .copied()
                    .collect();
                let secret = self.meta.secret(session_id::KEY_NAME, candidate).await?;
                Ok(aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    &secret,
                ))
            })
            .await
    }

    /// When a session `id` of `repo` owned by `owner` was opened (unix seconds), if the id is
    /// genuine and the session still young enough to use. Authentication uses it to let the
    /// subject that opened a session finish it after its token expired.
    pub async fn upload_opened_at(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: &str,
    ) -> Result<Option<i64>> {
        let key = self.session_key().await?;
        Ok(session_id::verify(key, id, repo.as_str(), owner)
            .map(|c| c.created)
            .filter(|created| now() - created <= self.settings.upload_purge_after as i64))
    }

    /// Find a session and check it belongs to `repo` and `owner`: the signed id proves both,
    /// then its row (once bytes arrived) or the id's claims give its state. Ended and expired
    /// sessions are unknown.
    async fn session(&self, repo: &RepoName, id: &UploadId, owner: &str) -> Result<Upload> {
        let claims = session_id::verify(self.session_key().await?, id, repo.as_str(), owner)
            .ok_or(Error::UploadUnknown)?;
        if let Some(u) = self.meta.get_upload(id.as_str()).await? {
            return if u.repo == repo.as_str() && !u.ended {
                Ok(u)
            } else {
                Err(Error::UploadUnknown)
            };
        }
        if now() - claims.created > self.settings.upload_purge_after as i64 {
            return Err(Error::UploadUnknown);
        }
        Ok(Upload {
            id: id.to_string(),
            repo: repo.to_string(),
            algorithm: claims.algorithm,
            offset: 0,
            hash_state: None,
            ended: false,
            created: claims.created,
            updated: claims.created,
            owner: owner.to_string(),
        })
    }

    /// Claim a session for writing: the session, held by this request alone until the guard
    /// drops. While another request writes to it, the answer is `UploadBusy` with the offset
    /// acknowledged so far, so the client can resume from there.
    async fn claim(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: &str,
    ) -> Result<(Upload, BusyGuard)> {
        match BusyGuard::take(self, id) {
            Some(guard) => Ok((self.session(repo, id, owner).await?, guard)),
            None => {
                let up = self.session(repo, id, owner).await?;
                Err(Error::UploadBusy {
                    id: id.to_string(),
                    offset: up.offset,
                })
            }
        }
    }

    /// The running hasher of a session at its offset: restored from the state saved with the
    /// offset, or rebuilt from the stored bytes.
    async fn hasher_at(&self, up: &Upload, algorithm: Algorithm) -> Result<Hasher> {
        if let Some(h) = up.hash_state.as_deref().and_then(Hasher::restore_state)
            && h.len() == up.offset
            && h.algorithm() == algorithm
        {
            return Ok(h);
        }
        // No usable saved state (an older format, or another algorithm): re-read the bytes.
        Ok(self
            .blobs
            .upload_rehash(&up.id, up.offset, algorithm)
            .await?)
    }

    fn check_range(
        up: &Upload,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
    ) -> Result<()> {
        let Some(r) = range else { return Ok(()) };
        let mismatch = |reason: String| Error::RangeMismatch {
            id: up.id.clone(),
            offset: up.offset,
            reason,
        };
        let Some(chunk_len) = r.byte_count() else {
            // `0-18446744073709551615`: a length no body can have (and that would wrap).
            return Err(mismatch(format!(
                "Content-Range {}-{} is not a valid range of bytes",
                r.start, r.end
            )));
        };
        if r.start != up.offset {
            return Err(mismatch(format!(
                "chunk starts at {} but the upload holds {} bytes",
                r.start, up.offset
            )));
        }
        if let Some(len) = content_length
            && len != chunk_len
        {
            return Err(Error::ChunkLength(
                "Content-Range does not match Content-Length",
            ));
        }
        Ok(())
    }

    /// Record that a session now holds `progress.offset` bytes, if it still held `from` bytes:
    /// a request that lost a race for the session acknowledges nothing. A session's first
    /// acknowledged chunk makes it live, which its owner's cap may refuse: the chunk's bytes
    /// are then dropped and nothing is acknowledged.
    async fn advance(&self, progress: &Upload, from: u64) -> Result<()> {
        let advanced = match self.session_cap(&progress.owner) {
            Some(cap) => self.meta.advance_upload_capped(progress, from, cap).await?,
            None if self.meta.advance_upload(progress, from).await? => Advance::Done,
            None => Advance::Moved,
        };
        match advanced {
            Advance::Done => return Ok(()),
            Advance::Full { .. } => {
                let _ = self.blobs.upload_abort(&progress.id).await;
                return Err(Error::TooManyUploads {
                    limit: self.settings.max_uploads_per_owner.unwrap_or_default(),
                });
            }
            Advance::Moved => {}
        }
        let now_at = self
            .meta
            .get_upload(&progress.id)
            .await?
            .map_or(0, |u| u.offset);
        Err(Error::RangeMismatch {
            id: progress.id.clone(),
            offset: now_at,
            reason: format!(
                "another request moved the upload to {now_at} bytes while this chunk was written"
            ),
        })
    }

    /// Handle a PATCH: append a chunk (with `Content-Range`) or a stream (without). Returns the
    /// new offset.
    pub async fn upload_patch(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: &str,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let (up, _busy) = self.claim(repo, id, owner).await?;
        Self::check_range(&up, range, content_length)?;
        let hasher = self.hasher_at(&up, up.algorithm).await?;
        let appended = self
            .blobs
            .upload_append(id.as_str(), up.offset, body, hasher, true)
            .await?;
        if let Some(r) = range
            && Some(appended.len) != r.end.checked_add(1)
        {
            return Err(Error::ChunkLength(
                "chunk length does not match its Content-Range",
            ));
        }
        let from = up.offset;
        let progress = Upload {
            offset: appended.len,
            hash_state: Some(appended.hasher.save_state()),
            updated: now(),
            ..up
        };
        self.advance(&progress, from).await?;
        Ok(appended.len)
    }

    /// Handle `GET <location>`: the acknowledged offset.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId, owner: &str) -> Result<u64> {
        Ok(self.session(repo, id, owner).await?.offset)
    }

    /// Handle the final PUT with `?digest=`, optionally carrying the last chunk.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<()> {
        let (up, _busy) = match self.claim(repo, id, owner).await {
            Err(Error::UploadUnknown) if self.finished_as(repo, id, owner, digest).await? => {
                // A retry of a final PUT whose answer was lost: the blob is there.
                return Ok(());
            }
            claimed => claimed?,
        };
        Self::check_range(&up, range, content_length)?;
        let hasher = self.hasher_at(&up, up.algorithm).await?;
        let body = body.unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
        let result = self
            .complete(repo, id, Some(&up), up.offset, hasher, body, digest)
            .await;
        if let Err(Error::DigestMismatch { .. }) = &result {
            // A wrong digest ends the session: its bytes can never become that blob.
            let _ = self.blobs.upload_abort(id.as_str()).await;
            let from = up.offset;
            let ended = Upload {
                ended: true,
                hash_state: None,
                updated: now(),
                ..up
            };
            // Losing this race only means another request already moved the session on.
            if !self.meta.advance_upload(&ended, from).await? {
                tracing::debug!(upload = %id, "session moved before it could be ended");
            }
        }
        result
    }

    /// Whether session `id` (genuinely this repository's and owner's) has ended and `digest`
    /// is linked in the repository: then a repeated final PUT (the client retrying after the
    /// first answer was lost on the way) has nothing left to do, and 201 is the truth.
    async fn finished_as(
        &self,
        repo: &RepoName,
        id: &UploadId,
        owner: &str,
        digest: &Digest,
    ) -> Result<bool> {
        if session_id::verify(self.session_key().await?, id, repo.as_str(), owner).is_none() {
            return Ok(false);
        }
        let ended = self
            .meta
            .get_upload(id.as_str())
            .await?
            .is_some_and(|u| u.ended && u.repo == repo.as_str());
        Ok(ended
            && self
                .meta
                .blob_in_repo(repo.as_str(), digest)
                .await?
                .is_some())
    }

    /// Append the last bytes, verify the digest, make the blob durable and visible, link it.
    #[allow(clippy::too_many_arguments)]
    async fn complete(
        &self,
        repo: &RepoName,
        id: &UploadId,
        session: Option<&Upload>,
        offset: u64,
        hasher: Hasher,
        body: ByteStream,
        digest: &Digest,
    ) -> Result<()> {
        let appended = self
            .blobs
            .upload_append(id.as_str(), offset, body, hasher, false)
            .await?;
        let computed = if appended.hasher.algorithm() == digest.algorithm() {
            appended.hasher.finish()
        } else {
            // The session hashed another algorithm: verify by re-reading what was stored.
            self.blobs
                .upload_rehash(id.as_str(), appended.len, digest.algorithm())
                .await?
                .finish()
        };
        if &computed != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                computed,
            });
        }
        self.blobs.upload_commit(id.as_str(), digest).await?;
        if !self
            .meta
            .finish_upload(session, repo.as_str(), digest, appended.len)
            .await?
        {
            let now_at = self
                .meta
                .get_upload(id.as_str())
                .await?
                .map_or(0, |u| u.offset);
            return Err(Error::RangeMismatch {
                id: id.to_string(),
                offset: now_at,
                reason: format!(
                    "another request moved the upload to {now_at} bytes while it was being finished"
                ),
            });
        }
        // The blob is published and linked; the upload file is only a spare name for it now.
        if let Err(e) = self.blobs.upload_abort(id.as_str()).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a finished upload file; the purge will");
        }
        Ok(())
    }

    /// Handle `DELETE <location>`.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &UploadId, owner: &str) -> Result<()> {
        let up = self.session(repo, id, owner).await?;
        self.meta
            .save_upload(&Upload {
                ended: true,
                hash_state: None,
                updated: now(),
                ..up
            })
            .await?;
        // The session is ended (committed above): its bytes are only clutter now, and the
        // purge removes upload files of ended sessions if this fails.
        if let Err(e) = self.blobs.upload_abort(id.as_str()).await {
            tracing::warn!(upload = %id, error = %e, "could not remove a cancelled upload's file; the purge will");
        }
        Ok(())
    }

    /// Remove sessions idle longer than the configured age, and upload files that no session
    /// owns (left by a crash mid single-POST). Returns how many were removed.
    pub async fn purge_uploads(&self) -> Result<usize> {
        let age = self.settings.upload_purge_after;
        let mut purged = 0;
        for id in self.meta.stale_uploads(now() - age as i64).await? {
            self.blobs.upload_abort(&id).await?;
            self.meta.delete_upload(&id).await?;
            purged += 1;
        }
        for (id, file_age) in self.blobs.upload_list().await? {
            if file_age > age && self.meta.get_upload(&id).await?.is_none() {
                self.blobs.upload_abort(&id).await?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
#[path = "uploads_tests.rs"]
mod tests;
