//! The shared `BlobStore` test suite. Every backend's tests call [`run`], so a new backend
//! (S3) is held to exactly the behaviour the registry relies on. Reads must stream here: a
//! backend that can answer with redirects runs the suite with them turned off.

use bytes::Bytes;
use futures_util::StreamExt;
use stowage_oci::{Algorithm, Digest, Hasher};

use crate::{BlobRead, BlobStore, ByteStream, StorageError};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

/// The bytes of a read, checking it streams exactly the range asked for.
async fn collect(r: Result<BlobRead, StorageError>, start: u64, len: u64) -> Vec<u8> {
    let mut s = match r.expect("read") {
        BlobRead::Stream {
            start: s,
            len: l,
            body,
        } => {
            assert_eq!(
                (s, l),
                (start, len),
                "the stream covers the range asked for"
            );
            body
        }
        BlobRead::Redirect { .. } => panic!("the suite needs a backend that streams"),
    };
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("read chunk"));
    }
    assert_eq!(out.len() as u64, len, "a stream yields exactly its length");
    out
}

/// Upload and commit `bytes` as one blob.
async fn put(store: &dyn BlobStore, id: &str, bytes: &[u8]) -> Digest {
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(300_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let a = store
        .upload_append(
            id,
            0,
            Box::pin(futures_util::stream::iter(chunks)),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    let d = a.hasher.finish();
    store.upload_commit(id, &d).await.unwrap();
    store.upload_abort(id).await.unwrap();
    d
}

/// Run every check against `store`. Panics on the first failure.
pub async fn run(store: &dyn BlobStore) {
    // Append in two requests, carrying the hasher, then commit.
    let a = store
        .upload_append(
            "suite-1",
            0,
            body(&[b"hello ", b"wor"]),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    assert_eq!(a.len, 9);
    let b = store
        .upload_append("suite-1", 9, body(&[b"ld"]), a.hasher, true)
        .await
        .unwrap();
    assert_eq!(b.len, 11);
    let d = b.hasher.finish();
    assert_eq!(d, Digest::of(Algorithm::Sha256, b"hello world"));
    assert_eq!(
        store.stat(&d).await.unwrap(),
        None,
        "not visible before commit"
    );
    store.upload_commit("suite-1", &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(11));
    assert_eq!(
        collect(store.read(&d, 0, 11).await, 0, 11).await,
        b"hello world"
    );
    assert_eq!(collect(store.read(&d, 6, 3).await, 6, 3).await, b"wor");

    // Rehash after "restart" equals the streamed state; stale bytes past the offset are dropped.
    let a = store
        .upload_append(
            "suite-2",
            0,
            body(&[b"abcdef"]),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    let h = store
        .upload_rehash("suite-2", 3, Algorithm::Sha256)
        .await
        .unwrap();
    let b = store
        .upload_append("suite-2", 3, body(&[b"XYZ"]), h, true)
        .await
        .unwrap();
    assert_eq!(b.len, 6);
    assert_ne!(a.hasher.finish(), b.hasher.clone().finish());
    assert_eq!(b.hasher.finish(), Digest::of(Algorithm::Sha256, b"abcXYZ"));
    let h512 = store
        .upload_rehash("suite-2", 6, Algorithm::Sha512)
        .await
        .unwrap();
    assert_eq!(h512.finish(), Digest::of(Algorithm::Sha512, b"abcXYZ"));

    // A published upload that is resumed (crash before the metadata commit) must not change the
    // blob: the append works on its own copy.
    store
        .upload_append(
            "suite-5",
            0,
            body(&[b"hello world"]),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    store.upload_commit("suite-5", &d).await.unwrap();
    let h = store
        .upload_rehash("suite-5", 6, Algorithm::Sha256)
        .await
        .unwrap();
    let b = store
        .upload_append("suite-5", 6, body(&[b"there"]), h, true)
        .await
        .unwrap();
    assert_eq!(
        b.hasher.finish(),
        Digest::of(Algorithm::Sha256, b"hello there")
    );
    assert_eq!(
        collect(store.read(&d, 0, 11).await, 0, 11).await,
        b"hello world"
    );
    store.upload_abort("suite-5").await.unwrap();
    assert_eq!(
        collect(store.read(&d, 0, 11).await, 0, 11).await,
        b"hello world"
    );

    // Committing identical content twice is idempotent.
    store
        .upload_append(
            "suite-3",
            0,
            body(&[b"hello world"]),
            Hasher::new(Algorithm::Sha256),
            false,
        )
        .await
        .unwrap();
    store.upload_commit("suite-3", &d).await.unwrap();
    assert_eq!(
        collect(store.read(&d, 0, 11).await, 0, 11).await,
        b"hello world"
    );

    // An empty upload commits to the empty blob.
    let empty = Digest::of(Algorithm::Sha256, b"");
    store.upload_commit("suite-4", &empty).await.unwrap();
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));

    // A failing body reports Body and keeps what was acknowledged before.
    let bad: ByteStream = Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"xx")),
        Err(std::io::Error::other("client went away")),
    ]));
    let r = store
        .upload_append("suite-2", 6, bad, Hasher::new(Algorithm::Sha256), true)
        .await;
    assert!(matches!(r, Err(StorageError::Body(_))));
    let h = store
        .upload_rehash("suite-2", 6, Algorithm::Sha256)
        .await
        .unwrap();
    assert_eq!(h.finish(), Digest::of(Algorithm::Sha256, b"abcXYZ"));

    // Abort removes; listing shows live uploads only.
    let listed: Vec<String> = store
        .upload_list()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(listed.contains(&"suite-2".to_string()));
    store.upload_abort("suite-2").await.unwrap();
    store.upload_abort("suite-2").await.unwrap();
    let listed: Vec<String> = store
        .upload_list()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(!listed.contains(&"suite-2".to_string()));

    // A blob of several read chunks, read whole and by ranges that start and end inside
    // chunks; chunks kept by the reader and chunks dropped at once both hold the right bytes.
    let big: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bd = put(store, "suite-6", &big).await;
    assert_eq!(store.stat(&bd).await.unwrap(), Some(big.len() as u64));
    assert!(
        collect(
            store.read(&bd, 0, big.len() as u64).await,
            0,
            big.len() as u64
        )
        .await
            == big
    );
    for (start, len) in [(1, 3_000_000), (1_048_575, 2), (4_000_001, 999_999), (7, 0)] {
        let got = collect(store.read(&bd, start, len).await, start, len).await;
        assert!(
            got == big[start as usize..(start + len) as usize],
            "range {start}+{len}"
        );
    }
    let mut s = store
        .read(&bd, 0, big.len() as u64)
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    let mut kept = Vec::new();
    while let Some(c) = s.next().await {
        kept.push(c.unwrap());
    }
    assert!(
        kept.concat() == big,
        "chunks held until the end stay intact"
    );
    assert!(
        matches!(
            store.read(&bd, 1, big.len() as u64).await,
            Err(StorageError::Io(_))
        ),
        "a range past the end is refused"
    );
    store.delete(&bd).await.unwrap();

    // Missing blobs.
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    assert!(matches!(
        store.read(&missing, 0, 1).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(store.stat(&missing).await.unwrap(), None);
    store.delete(&d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), None);
}

/// A test-only backend: `inner` for everything, except that every blob read is answered with a
/// redirect to `<base>/<digest>`, valid for ten minutes, the way an object store answers with a
/// presigned GET. The registry and the server must pass the redirect on instead of streaming.
pub struct Redirecting<S> {
    pub inner: S,
    pub base: String,
}

#[async_trait::async_trait]
impl<S: BlobStore> BlobStore for Redirecting<S> {
    fn preferred_chunk_size(&self) -> u64 {
        self.inner.preferred_chunk_size()
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<BlobRead, StorageError> {
        // Like an object store, fail for a blob that is not there (and let the inner backend
        // check the range), but hand out a URL instead of the bytes.
        drop(self.inner.read(digest, start, len).await?);
        Ok(BlobRead::Redirect {
            url: format!("{}/{digest}", self.base),
            expires: std::time::SystemTime::now() + std::time::Duration::from_secs(600),
        })
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.inner.stat(digest).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<crate::StoredBlob>, StorageError> {
        self.inner.list_blobs(after, limit).await
    }

    async fn delete(&self, digest: &Digest) -> Result<(), StorageError> {
        self.inner.delete(digest).await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
        durable: bool,
    ) -> Result<crate::Appended, StorageError> {
        self.inner
            .upload_append(id, offset, body, hasher, durable)
            .await
    }

    async fn upload_rehash(
        &self,
        id: &str,
        len: u64,
        algorithm: Algorithm,
    ) -> Result<Hasher, StorageError> {
        self.inner.upload_rehash(id, len, algorithm).await
    }

    async fn upload_commit(&self, id: &str, digest: &Digest) -> Result<(), StorageError> {
        self.inner.upload_commit(id, digest).await
    }

    async fn upload_abort(&self, id: &str) -> Result<(), StorageError> {
        self.inner.upload_abort(id).await
    }

    async fn upload_list(&self) -> Result<Vec<(String, u64)>, StorageError> {
        self.inner.upload_list().await
    }
}

/// `list_blobs` against an empty `store`: every committed blob once, in digest order, across
/// pages, with its size; uploads are not blobs. Panics on the first failure.
pub async fn run_listing(store: &dyn BlobStore) {
    assert!(store.list_blobs(None, 10).await.unwrap().is_empty());
    let mut digests = Vec::new();
    for i in 0..7u8 {
        let bytes = vec![i; 10 + i as usize];
        digests.push((
            put(store, &format!("list-{i}"), &bytes).await,
            bytes.len() as u64,
        ));
    }
    // An upload that was never committed is not listed.
    store
        .upload_append(
            "list-open",
            0,
            body(&[b"pending"]),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    digests.sort_by_key(|(d, _)| d.to_string());
    let mut seen = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|b| (b.digest.clone(), b.size)));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.digest.clone()),
            _ => break,
        }
    }
    assert_eq!(
        seen, digests,
        "every blob once, in digest order, with its size"
    );
    // Starting after a digest that is not stored works too.
    let missing = Digest::of(Algorithm::Sha256, b"not stored");
    let rest = store.list_blobs(Some(&missing), 100).await.unwrap();
    let want: Vec<&Digest> = digests
        .iter()
        .map(|(d, _)| d)
        .filter(|d| d.to_string() > missing.to_string())
        .collect();
    assert_eq!(rest.iter().map(|b| &b.digest).collect::<Vec<_>>(), want);
    assert!(
        rest.iter()
            .all(|b| b.age < std::time::Duration::from_secs(600)),
        "a blob just published is young"
    );
    store.upload_abort("list-open").await.unwrap();
}
