//! Tests of `fs` (kept apart to keep the module short).

use super::*;

#[tokio::test]
async fn passes_shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    crate::suite::run(&store).await;
}

#[tokio::test]
async fn passes_shared_listing_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    crate::suite::run_listing(&store).await;
}

#[tokio::test]
async fn listing_skips_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let d = Digest::of(Algorithm::Sha256, b"x");
    let at = store.blob_path(&d);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::write(&at, b"x").unwrap();
    // A temporary name, a misplaced blob and an unknown algorithm are not blobs.
    std::fs::write(at.with_extension("tmp"), b"x").unwrap();
    let other = Digest::of(Algorithm::Sha256, b"y");
    std::fs::write(at.parent().unwrap().join(other.hex()), b"y").unwrap();
    std::fs::create_dir_all(dir.path().join("blobs/md5/ab")).unwrap();
    std::fs::write(dir.path().join("blobs/md5/ab/abcd"), b"z").unwrap();
    let listed = store.list_blobs(None, 10).await.unwrap();
    let mut want = vec![d];
    if other.hex()[..2] == want[0].hex()[..2] {
        want.push(other);
        want.sort_by_key(|d| d.to_string());
    }
    assert_eq!(
        listed.into_iter().map(|b| b.digest).collect::<Vec<_>>(),
        want
    );
}

#[tokio::test]
async fn rejects_path_like_upload_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    for bad in ["../x", "a/b", "", ".", "..", "a.b"] {
        let body: ByteStream = Box::pin(futures_util::stream::empty());
        let r = store
            .upload_append(bad, 0, body, Hasher::new(Algorithm::Sha256), true)
            .await;
        assert!(matches!(r, Err(StorageError::NotFound)), "{bad}");
    }
}

#[tokio::test]
async fn commit_reports_durable_order() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let store = FsBlobStore::open(dir.path())
        .unwrap()
        .with_observer(Arc::new(move |op| l2.lock().unwrap().push(op)));
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(
        b"hello",
    ))]));
    let a = store
        .upload_append("u1", 0, body, Hasher::new(Algorithm::Sha256), false)
        .await
        .unwrap();
    let d = a.hasher.finish();
    store.upload_commit("u1", &d).await.unwrap();
    let ops = log.lock().unwrap().clone();
    let kinds: Vec<_> = ops
        .iter()
        .map(|o| {
            format!("{o:?}")
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["Write", "FileSync", "Publish", "DirSync"]);
}

#[tokio::test]
async fn redirecting_wrapper_redirects_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::suite::Redirecting {
        inner: FsBlobStore::open(dir.path()).unwrap(),
        base: "https://objects.example/bucket".into(),
    };
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(
        b"hello",
    ))]));
    let a = store
        .upload_append("r1", 0, body, Hasher::new(Algorithm::Sha256), true)
        .await
        .unwrap();
    let d = a.hasher.finish();
    store.upload_commit("r1", &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(5));
    match store.read(&d, 1, 3).await.unwrap() {
        BlobRead::Redirect { url, expires } => {
            assert_eq!(url, format!("https://objects.example/bucket/{d}"));
            assert!(expires > SystemTime::now());
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    assert!(matches!(
        store.read(&missing, 0, 1).await,
        Err(StorageError::NotFound)
    ));
}

/// A blob file that shrinks while it is being served ends the stream with an error (never a
/// crash, never a silently short stream); one that is short already is refused at open.
#[tokio::test]
async fn truncated_blob_file_ends_the_stream_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<io::Result<Bytes>> = big
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let a = store
        .upload_append(
            "t1",
            0,
            Box::pin(futures_util::stream::iter(chunks)),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await
        .unwrap();
    let d = a.hasher.finish();
    store.upload_commit("t1", &d).await.unwrap();
    store.upload_abort("t1").await.unwrap();
    let path = store.blob_path(&d);

    let mut s = store
        .read(&d, 0, big.len() as u64)
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(&first[..], &big[..first.len()]);
    // The reader is at most a few chunks ahead: cut the file well before the end.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(12 << 20).unwrap();
    let mut got = first.len();
    let err = loop {
        match s.next().await {
            Some(Ok(c)) => got += c.len(),
            Some(Err(e)) => break e,
            None => panic!("the stream ended short without an error after {got} bytes"),
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    assert!(got <= 12 << 20);

    // Short already when opened: refused before any byte.
    assert!(matches!(
        store.read(&d, 0, big.len() as u64).await,
        Err(StorageError::Io(_))
    ));
    // The bytes that are there still read.
    let head = store
        .read(&d, 0, 3)
        .await
        .unwrap()
        .into_stream()
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head[..], &big[..3]);
}

#[path = "fs_hook_tests.rs"]
mod hook;
