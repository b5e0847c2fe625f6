//! The shared `BlobStore` test suite. Every backend's tests call [`run`], so a new backend
//! (S3) is held to exactly the behaviour the registry relies on.

use bytes::Bytes;
use futures_util::StreamExt;
use stowage_oci::{Algorithm, Digest, Hasher};

use crate::{BlobStore, ByteStream, StorageError};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

async fn collect(s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = s;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("read chunk"));
    }
    out
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
        collect(store.read(&d, 0, 11).await.unwrap()).await,
        b"hello world"
    );
    assert_eq!(collect(store.read(&d, 6, 3).await.unwrap()).await, b"wor");

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
        collect(store.read(&d, 0, 11).await.unwrap()).await,
        b"hello world"
    );
    store.upload_abort("suite-5").await.unwrap();
    assert_eq!(
        collect(store.read(&d, 0, 11).await.unwrap()).await,
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
        collect(store.read(&d, 0, 11).await.unwrap()).await,
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
