//! Upload sessions: start (plain, single-POST monolithic, or mount), chunked PATCHes, status,
//! the final PUT, cancel, and purging abandoned sessions.
//!
//! Order of a push, which every acknowledgement waits for: bytes written and fsynced, renamed
//! into the content address, directory fsynced (all in `BlobStore::upload_commit`), then the
//! metadata commit linking the blob. The acknowledged offset of a session is stored in metadata
//! only after its bytes are durable, so a resumed upload never trusts bytes that were not.

use stowage_metadata::Upload;
use stowage_oci::{Algorithm, Digest, ErrorCode, Hasher, RepoName};
use stowage_storage::ByteStream;

use crate::{Error, Registry, Result, now};

/// What a POST to `/blobs/uploads/` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A session was opened (202).
    Session { id: String },
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
}

/// A chunk's declared position.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

/// 128 random bits as lowercase hex: unguessable and path-safe.
fn new_upload_id() -> Result<String> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::internal("system random source failed"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn range_header(offset: u64) -> String {
    // Distribution answers `0-0` for an empty session, and clients expect that form.
    format!("0-{}", offset.saturating_sub(1))
}

impl Registry {
    /// Handle `POST /v2/<name>/blobs/uploads/`.
    pub async fn upload_start(&self, repo: &RepoName, req: StartRequest) -> Result<Started> {
        if let Some(mount) = &req.mount
            && self.blob_mount(repo, mount, req.from.as_ref()).await?
        {
            return Ok(Started::Mounted {
                digest: mount.clone(),
            });
        }
        if let (Some(digest), Some(body)) = (req.digest, req.body) {
            let id = new_upload_id()?;
            let hasher = Hasher::new(digest.algorithm());
            let result = self.complete(repo, &id, 0, hasher, body, &digest).await;
            if result.is_err() {
                let _ = self.blobs.upload_abort(&id).await;
            }
            return result.map(|_| Started::Created { digest });
        }
        let id = new_upload_id()?;
        let t = now();
        let algorithm = req.algorithm.unwrap_or(Algorithm::Sha256);
        self.meta
            .create_upload(&Upload {
                id: id.clone(),
                repo: repo.to_string(),
                algorithm,
                offset: 0,
                created: t,
                updated: t,
            })
            .await?;
        Ok(Started::Session { id })
    }

    /// Find a session and check it belongs to `repo`.
    async fn session(&self, repo: &RepoName, id: &str) -> Result<Upload> {
        match self.meta.get_upload(id).await? {
            Some(u) if u.repo == repo.as_str() => Ok(u),
            _ => Err(Error::upload_unknown()),
        }
    }

    /// The running hasher of a session at `offset`, from memory or rebuilt from stored bytes.
    async fn hasher_at(&self, up: &Upload, algorithm: Algorithm) -> Result<Hasher> {
        let cached = self.hashers.lock().expect("hasher map").remove(&up.id);
        if let Some((off, h)) = cached
            && off == up.offset
            && h.algorithm() == algorithm
        {
            return Ok(h);
        }
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
        if r.start != up.offset {
            return Err(Error::new(
                ErrorCode::RangeInvalid,
                format!(
                    "chunk starts at {} but the upload holds {} bytes",
                    r.start, up.offset
                ),
            )
            .header("Range", range_header(up.offset))
            .header("Docker-Upload-UUID", up.id.clone()));
        }
        if let Some(len) = content_length
            && len != r.end - r.start + 1
        {
            return Err(Error::new(
                ErrorCode::BlobUploadInvalid,
                "Content-Range does not match Content-Length",
            ));
        }
        Ok(())
    }

    /// Handle a PATCH: append a chunk (with `Content-Range`) or a stream (without). Returns the
    /// new offset.
    pub async fn upload_patch(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let up = self.session(repo, id).await?;
        Self::check_range(&up, range, content_length)?;
        let hasher = self.hasher_at(&up, up.algorithm).await?;
        let appended = self
            .blobs
            .upload_append(id, up.offset, body, hasher, true)
            .await?;
        if let Some(r) = range
            && appended.len != r.end + 1
        {
            return Err(Error::new(
                ErrorCode::BlobUploadInvalid,
                "chunk length does not match its Content-Range",
            ));
        }
        self.meta.set_upload_offset(id, appended.len, now()).await?;
        self.hashers
            .lock()
            .expect("hasher map")
            .insert(id.to_string(), (appended.len, appended.hasher));
        Ok(appended.len)
    }

    /// Handle `GET <location>`: the acknowledged offset.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<u64> {
        Ok(self.session(repo, id).await?.offset)
    }

    /// The `Range` header value for an offset.
    pub fn upload_range_header(offset: u64) -> String {
        range_header(offset)
    }

    /// Handle the final PUT with `?digest=`, optionally carrying the last chunk.
    pub async fn upload_finish(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        content_length: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<()> {
        let up = self.session(repo, id).await?;
        Self::check_range(&up, range, content_length)?;
        let hasher = self.hasher_at(&up, up.algorithm).await?;
        let body = body.unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
        let result = self
            .complete(repo, id, up.offset, hasher, body, digest)
            .await;
        match &result {
            Ok(()) => {}
            // A wrong digest ends the session: its bytes can never become that blob.
            Err(e) if e.code == ErrorCode::DigestInvalid => {
                let _ = self.blobs.upload_abort(id).await;
                self.meta.delete_upload(id).await?;
            }
            Err(_) => {}
        }
        self.hashers.lock().expect("hasher map").remove(id);
        result
    }

    /// Append the last bytes, verify the digest, make the blob durable and visible, link it.
    async fn complete(
        &self,
        repo: &RepoName,
        id: &str,
        offset: u64,
        hasher: Hasher,
        body: ByteStream,
        digest: &Digest,
    ) -> Result<()> {
        let appended = self
            .blobs
            .upload_append(id, offset, body, hasher, false)
            .await?;
        let computed = if appended.hasher.algorithm() == digest.algorithm() {
            appended.hasher.finish()
        } else {
            // The session hashed another algorithm: verify by re-reading what was stored.
            self.blobs
                .upload_rehash(id, appended.len, digest.algorithm())
                .await?
                .finish()
        };
        if &computed != digest {
            return Err(Error::new(ErrorCode::DigestInvalid, "provided digest did not match uploaded content")
                .detail(serde_json::json!({ "expected": digest.to_string(), "computed": computed.to_string() })));
        }
        self.blobs.upload_commit(id, digest).await?;
        self.meta
            .finish_upload(id, repo.as_str(), digest, appended.len)
            .await?;
        Ok(())
    }

    /// Handle `DELETE <location>`.
    pub async fn upload_cancel(&self, repo: &RepoName, id: &str) -> Result<()> {
        let up = self.session(repo, id).await?;
        self.meta.delete_upload(&up.id).await?;
        self.blobs.upload_abort(&up.id).await?;
        self.hashers.lock().expect("hasher map").remove(id);
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
            self.hashers.lock().expect("hasher map").remove(&id);
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
