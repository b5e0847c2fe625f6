//! `Faulty<S>`: a store wrapped so that a [`FaultPlan`] decides, before each trait call, whether
//! it fails (transient error, full disk), is delayed, or loses its connection.
//!
//! It wraps a `BlobStore` (`Faulty<dyn BlobStore>` or any concrete one), a `MetadataStore`
//! with its `Inventory`, and an `AuthStore`, forwarding every method. Each call asks the plan
//! under the method's name (`upload_commit`, `put_manifest`, `walk_tags`, `create_user`...).
//! A lost connection lets the call run and then fails it, so its effect may have happened;
//! on a stream it cuts the stream part-way (`read`: the bytes stop with an error; an
//! `upload_append`: only part of the body reaches the store, which keeps it, and the call
//! fails).

use std::future::Future;
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use stowage_metadata::{
    AuthStore, BlobEntry, Deleted, Inventory, LinkEntry, ManifestEntry, ManifestMeta,
    MetadataError, MetadataStore, NewManifest, Referrer, RefreshRecord, SigningKeyRecord, TagEntry,
    TokenRecord, Upload, UserRecord,
};
use stowage_oci::{Algorithm, Digest, Hasher};
use stowage_storage::{Appended, BlobRead, BlobStore, ByteStream, StorageError, StoredBlob};

use super::plan::{Fault, FaultPlan};

/// A store whose calls fail as a [`FaultPlan`] says.
pub struct Faulty<S: ?Sized> {
    inner: Arc<S>,
    plan: Arc<FaultPlan>,
}

impl<S: ?Sized> Faulty<S> {
    pub fn new(inner: Arc<S>, plan: Arc<FaultPlan>) -> Faulty<S> {
        Faulty { inner, plan }
    }

    /// The store underneath (to check it without faults).
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }
}

/// How each error type says "transient", "full" and "connection lost".
trait Injectable {
    fn unavailable(op: &str) -> Self;
    fn full() -> Self;
    fn lost(op: &str) -> Self;
}

impl Injectable for MetadataError {
    fn unavailable(op: &str) -> Self {
        MetadataError::Unavailable(format!("injected fault: {op}: store unreachable"))
    }
    fn full() -> Self {
        MetadataError::Full
    }
    fn lost(op: &str) -> Self {
        MetadataError::Unavailable(format!("injected fault: {op}: connection lost"))
    }
}

impl Injectable for StorageError {
    fn unavailable(op: &str) -> Self {
        StorageError::Unavailable(format!("injected fault: {op}: store unreachable"))
    }
    fn full() -> Self {
        StorageError::Full
    }
    fn lost(op: &str) -> Self {
        StorageError::Unavailable(format!("injected fault: {op}: connection lost"))
    }
}

impl<S: ?Sized> Faulty<S> {
    /// Run `call` (lazily built, so a fault before it has no effect) as the plan says.
    async fn gate<T, E: Injectable>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match self.plan.decide(op) {
            None => call.await,
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                call.await
            }
            Some(Fault::Unavailable | Fault::Io(_)) => Err(E::unavailable(op)),
            Some(Fault::Full) => Err(E::full()),
            Some(Fault::LostConnection) => {
                let _ = call.await;
                Err(E::lost(op))
            }
        }
    }
}

/// `body` cut after about half of its first non-empty chunk: what a store receives when the
/// connection drops mid-upload.
fn cut_short(body: ByteStream) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (body, false),
        |(mut body, done)| async move {
            if done {
                return None;
            }
            loop {
                match body.next().await? {
                    Ok(chunk) if chunk.is_empty() => continue,
                    Ok(chunk) => {
                        let half = chunk.slice(..chunk.len().div_ceil(2));
                        return Some((Ok(half), (body, true)));
                    }
                    Err(e) => return Some((Err(e), (body, true))),
                }
            }
        },
    ))
}

/// `body` ending with a reset after `keep` bytes: a download whose connection drops.
fn break_after(body: ByteStream, keep: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (body, keep, false),
        |(mut body, left, done)| async move {
            if done {
                return None;
            }
            let reset = || {
                io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "injected fault: read: connection lost mid-stream",
                )
            };
            match body.next().await {
                Some(Ok(chunk)) if (chunk.len() as u64) < left => {
                    let rest = left - chunk.len() as u64;
                    Some((Ok(chunk), (body, rest, false)))
                }
                Some(Ok(chunk)) if left > 0 => {
                    let part: Bytes = chunk.slice(..left as usize);
                    // Deliver what fits, then the error on the next poll.
                    Some((Ok(part), (body, 0, false)))
                }
                Some(Ok(_)) | None => Some((Err(reset()), (body, 0, true))),
                Some(Err(e)) => Some((Err(e), (body, 0, true))),
            }
        },
    ))
}

#[async_trait]
impl<S: BlobStore + ?Sized> BlobStore for Faulty<S> {
    fn preferred_chunk_size(&self) -> u64 {
        self.inner.preferred_chunk_size()
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobRead, StorageError> {
        match self.plan.decide("read") {
            Some(Fault::LostConnection) => match self.inner.read(digest, start, len).await? {
                BlobRead::Stream { start, len, body } => Ok(BlobRead::Stream {
                    start,
                    len,
                    body: break_after(body, len / 2),
                }),
                redirect => Ok(redirect),
            },
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                self.inner.read(digest, start, len).await
            }
            Some(Fault::Full) => Err(StorageError::Full),
            Some(Fault::Unavailable | Fault::Io(_)) => Err(StorageError::unavailable("read")),
            None => self.inner.read(digest, start, len).await,
        }
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.gate("stat", self.inner.stat(digest)).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        self.gate("list_blobs", self.inner.list_blobs(after, limit))
            .await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.gate("delete", self.inner.delete(digest)).await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
        durable: bool,
    ) -> Result<Appended, StorageError> {
        match self.plan.decide("upload_append") {
            Some(Fault::LostConnection) => {
                let _ = self
                    .inner
                    .upload_append(id, offset, cut_short(body), hasher, durable)
                    .await;
                Err(StorageError::lost("upload_append"))
            }
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                self.inner
                    .upload_append(id, offset, body, hasher, durable)
                    .await
            }
            Some(Fault::Full) => Err(StorageError::Full),
            Some(Fault::Unavailable | Fault::Io(_)) => {
                Err(StorageError::unavailable("upload_append"))
            }
            None => {
                self.inner
                    .upload_append(id, offset, body, hasher, durable)
                    .await
            }
        }
    }

    async fn upload_rehash(
        &self,
        id: &str,
        len: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher, StorageError> {
        self.gate(
            "upload_rehash",
            self.inner.upload_rehash(id, len, algorithm),
        )
        .await
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), StorageError> {
        self.gate("upload_commit", self.inner.upload_commit(id, digest))
            .await
    }

    async fn upload_abort(&self, id: &str) -> Result<(), StorageError> {
        self.gate("upload_abort", self.inner.upload_abort(id)).await
    }

    async fn upload_list(&self) -> Result<Vec<(String, u64)>, StorageError> {
        self.gate("upload_list", self.inner.upload_list()).await
    }
}

type MResult<T> = stowage_metadata::Result<T>;

#[async_trait]
impl<S: Inventory + ?Sized> Inventory for Faulty<S> {
    async fn walk_tags(
        &self,
        after: Option<(String, String)>,
        limit: usize,
    ) -> MResult<Vec<TagEntry>> {
        self.gate("walk_tags", self.inner.walk_tags(after, limit))
            .await
    }
    async fn walk_manifests(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> MResult<Vec<ManifestEntry>> {
        self.gate("walk_manifests", self.inner.walk_manifests(after, limit))
            .await
    }
    async fn walk_blobs(&self, after: Option<Digest>, limit: usize) -> MResult<Vec<BlobEntry>> {
        self.gate("walk_blobs", self.inner.walk_blobs(after, limit))
            .await
    }
    async fn walk_links(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> MResult<Vec<LinkEntry>> {
        self.gate("walk_links", self.inner.walk_links(after, limit))
            .await
    }
    async fn blob_records(&self, digests: &[Digest]) -> MResult<Vec<(Digest, u64)>> {
        self.gate("blob_records", self.inner.blob_records(digests))
            .await
    }
}

#[async_trait]
impl<S: MetadataStore + ?Sized> MetadataStore for Faulty<S> {
    async fn blob_in_repo(&self, repo: &str, digest: &Digest) -> MResult<Option<u64>> {
        self.gate("blob_in_repo", self.inner.blob_in_repo(repo, digest))
            .await
    }
    async fn blobs_in_repo(&self, repo: &str, digests: &[Digest]) -> MResult<Vec<(Digest, u64)>> {
        self.gate("blobs_in_repo", self.inner.blobs_in_repo(repo, digests))
            .await
    }
    async fn repos_with_blob(&self, digest: &Digest, limit: usize) -> MResult<Vec<(String, u64)>> {
        self.gate("repos_with_blob", self.inner.repos_with_blob(digest, limit))
            .await
    }
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> MResult<()> {
        self.gate("link_blob", self.inner.link_blob(repo, digest, size))
            .await
    }
    async fn finish_upload(
        &self,
        session: Option<&Upload>,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> MResult<bool> {
        self.gate(
            "finish_upload",
            self.inner.finish_upload(session, repo, digest, size),
        )
        .await
    }
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> MResult<bool> {
        self.gate("unlink_blob", self.inner.unlink_blob(repo, digest))
            .await
    }
    async fn manifests_in_repo(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> MResult<Vec<(Digest, u64)>> {
        self.gate(
            "manifests_in_repo",
            self.inner.manifests_in_repo(repo, digests),
        )
        .await
    }
    async fn put_manifest(
        &self,
        repo: &str,
        manifest: NewManifest,
        tags: &[String],
    ) -> MResult<()> {
        self.gate(
            "put_manifest",
            self.inner.put_manifest(repo, manifest, tags),
        )
        .await
    }
    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
        with_body: bool,
    ) -> MResult<Option<ManifestMeta>> {
        self.gate(
            "manifest_by_tag",
            self.inner.manifest_by_tag(repo, tag, with_body),
        )
        .await
    }
    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
        with_body: bool,
    ) -> MResult<Option<ManifestMeta>> {
        self.gate(
            "manifest_by_digest",
            self.inner.manifest_by_digest(repo, digest, with_body),
        )
        .await
    }
    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> MResult<Option<Deleted>> {
        self.gate("delete_manifest", self.inner.delete_manifest(repo, digest))
            .await
    }
    async fn delete_tag(&self, repo: &str, tag: &str) -> MResult<bool> {
        self.gate("delete_tag", self.inner.delete_tag(repo, tag))
            .await
    }
    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> MResult<Option<Vec<String>>> {
        self.gate("list_tags", self.inner.list_tags(repo, last, limit))
            .await
    }
    async fn list_repos(&self, last: Option<&str>, limit: usize) -> MResult<Vec<String>> {
        self.gate("list_repos", self.inner.list_repos(last, limit))
            .await
    }
    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> MResult<Vec<Referrer>> {
        self.gate(
            "referrers",
            self.inner.referrers(repo, subject, artifact_type),
        )
        .await
    }
    async fn save_upload(&self, upload: &Upload) -> MResult<()> {
        self.gate("save_upload", self.inner.save_upload(upload))
            .await
    }
    async fn advance_upload(&self, upload: &Upload, from: u64) -> MResult<bool> {
        self.gate("advance_upload", self.inner.advance_upload(upload, from))
            .await
    }
    async fn advance_upload_capped(
        &self,
        upload: &Upload,
        from: u64,
        cap: stowage_metadata::SessionCap,
    ) -> MResult<stowage_metadata::Advance> {
        self.gate(
            "advance_upload_capped",
            self.inner.advance_upload_capped(upload, from, cap),
        )
        .await
    }
    async fn open_uploads(&self, owner: &str, live_since: i64) -> MResult<u64> {
        self.gate("open_uploads", self.inner.open_uploads(owner, live_since))
            .await
    }
    async fn get_upload(&self, id: &str) -> MResult<Option<Upload>> {
        self.gate("get_upload", self.inner.get_upload(id)).await
    }
    async fn delete_upload(&self, id: &str) -> MResult<()> {
        self.gate("delete_upload", self.inner.delete_upload(id))
            .await
    }
    async fn secret(&self, name: &str, candidate: Vec<u8>) -> MResult<Vec<u8>> {
        self.gate("secret", self.inner.secret(name, candidate))
            .await
    }
    async fn stale_uploads(&self, before: i64) -> MResult<Vec<String>> {
        self.gate("stale_uploads", self.inner.stale_uploads(before))
            .await
    }
}

#[async_trait]
impl<S: AuthStore + ?Sized> AuthStore for Faulty<S> {
    async fn auth_revision(&self) -> MResult<i64> {
        self.gate("auth_revision", self.inner.auth_revision()).await
    }
    async fn users(&self) -> MResult<Vec<UserRecord>> {
        self.gate("users", self.inner.users()).await
    }
    async fn create_user(&self, user: &UserRecord) -> MResult<bool> {
        self.gate("create_user", self.inner.create_user(user)).await
    }
    async fn update_user(&self, user: &UserRecord, expected: &UserRecord) -> MResult<bool> {
        self.gate("update_user", self.inner.update_user(user, expected))
            .await
    }
    async fn remove_user(&self, name: &str) -> MResult<bool> {
        self.gate("remove_user", self.inner.remove_user(name)).await
    }
    async fn tokens(&self, user: Option<&str>) -> MResult<Vec<TokenRecord>> {
        self.gate("tokens", self.inner.tokens(user)).await
    }
    async fn create_token(&self, token: &TokenRecord) -> MResult<bool> {
        self.gate("create_token", self.inner.create_token(token))
            .await
    }
    async fn revoke_token(&self, id: &str) -> MResult<bool> {
        self.gate("revoke_token", self.inner.revoke_token(id)).await
    }
    async fn touch_tokens(&self, used: &[(String, i64)]) -> MResult<()> {
        self.gate("touch_tokens", self.inner.touch_tokens(used))
            .await
    }
    async fn create_refresh(&self, hash: &[u8], record: &RefreshRecord) -> MResult<()> {
        self.gate("create_refresh", self.inner.create_refresh(hash, record))
            .await
    }
    async fn refresh(&self, hash: &[u8]) -> MResult<Option<RefreshRecord>> {
        self.gate("refresh", self.inner.refresh(hash)).await
    }
    async fn purge_auth(&self, now: i64) -> MResult<usize> {
        self.gate("purge_auth", self.inner.purge_auth(now)).await
    }
    async fn signing_keys(&self) -> MResult<Vec<SigningKeyRecord>> {
        self.gate("signing_keys", self.inner.signing_keys()).await
    }
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> MResult<()> {
        self.gate("add_signing_key", self.inner.add_signing_key(key))
            .await
    }
}
