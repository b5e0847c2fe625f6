//! Tests of `fs` (kept apart to keep the module short).

use super::*;

#[tokio::test]
async fn passes_shared_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    crate::suite::run(&store).await;
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
