//! Tests of `uploads` (kept apart to keep the module short).

use std::sync::Arc;

use bytes::Bytes;
use stowage_metadata::sqlite::SqliteStore;
use stowage_storage::fs::FsBlobStore;

use super::*;
use crate::Settings;

fn registry(dir: &std::path::Path) -> Registry {
    let blobs = FsBlobStore::open(dir).unwrap();
    let meta = SqliteStore::open(&dir.join("m.db")).unwrap();
    Registry::new(Arc::new(blobs), Arc::new(meta), Settings::default())
}

/// A request body of one chunk.
fn once(bytes: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(bytes))]))
}

fn start() -> StartRequest {
    StartRequest {
        digest: None,
        mount: None,
        from: None,
        algorithm: None,
        body: None,
        owner: String::new(),
        readable: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_to_one_upload_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Arc::new(registry(dir.path()));
    let repo = RepoName::parse("r").unwrap();
    let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
        panic!()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let body: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (r2, repo2, id2) = (reg.clone(), repo.clone(), id.clone());
    let first =
        tokio::spawn(async move { r2.upload_patch(&repo2, &id2, "", None, None, body).await });
    tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let second: ByteStream = once(b"zzz");
    let err = reg
        .upload_patch(&repo, &id, "", None, None, second)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UploadBusy { offset: 0, .. }),
        "a second writer learns where the session stands: {err:?}"
    );
    drop(tx);
    assert_eq!(first.await.unwrap().unwrap(), 3);
    // Released: the next writer proceeds from the acknowledged offset.
    let third: ByteStream = once(b"def");
    assert_eq!(
        reg.upload_patch(&repo, &id, "", None, None, third)
            .await
            .unwrap(),
        6
    );
    let d = Digest::of(Algorithm::Sha256, b"abcdef");
    reg.upload_finish(&repo, &id, "", &d, None, None, None)
        .await
        .unwrap();
    assert_eq!(reg.blob_size(&repo, &d).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn rehash_after_losing_memory_state() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("r").unwrap();
    let id = {
        let reg = registry(dir.path());
        let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
            panic!()
        };
        let b: ByteStream = once(b"hello ");
        reg.upload_patch(&repo, &id, "", None, None, b)
            .await
            .unwrap();
        id
    };
    // A new registry instance (a restart, or another server) continues from what is stored.
    let reg = registry(dir.path());
    let b: ByteStream = once(b"world");
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    reg.upload_finish(&repo, &id, "", &d, None, None, Some(b))
        .await
        .unwrap();
    assert_eq!(reg.blob_size(&repo, &d).await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_hash_state_is_used_instead_of_rereading() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("r").unwrap();
    let id = {
        let reg = registry(dir.path());
        let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
            panic!()
        };
        let b: ByteStream = once(b"hello ");
        reg.upload_patch(&repo, &id, "", None, None, b)
            .await
            .unwrap();
        id
    };
    // Change the stored prefix behind the registry's back: only a re-read would notice.
    std::fs::write(dir.path().join("uploads").join(id.as_str()), b"HELLO ").unwrap();
    let reg = registry(dir.path());
    let b: ByteStream = once(b"world");
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    reg.upload_finish(&repo, &id, "", &d, None, None, Some(b))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_publish_and_metadata_commit_leaves_session_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("r").unwrap();
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    let id = {
        let reg = registry(dir.path());
        let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
            panic!()
        };
        let b: ByteStream = once(b"hello world");
        reg.upload_patch(&repo, &id, "", None, None, b)
            .await
            .unwrap();
        // The final PUT got as far as publishing the blob, then the process died.
        reg.blobs.upload_commit(&id, &d).await.unwrap();
        id
    };
    let reg = registry(dir.path());
    assert_eq!(reg.upload_status(&repo, &id, "").await.unwrap(), 11);
    assert!(
        reg.blob_size(&repo, &d).await.is_err(),
        "not visible before the metadata commit"
    );
    // The client's retry of the PUT completes the push.
    reg.upload_finish(&repo, &id, "", &d, None, None, None)
        .await
        .unwrap();
    assert_eq!(reg.blob_size(&repo, &d).await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_a_published_session_never_changes_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let repo = RepoName::parse("r").unwrap();
    let d = Digest::of(Algorithm::Sha256, b"hello world");
    let reg = registry(dir.path());
    let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
        panic!()
    };
    let b: ByteStream = once(b"hello ");
    reg.upload_patch(&repo, &id, "", None, None, b)
        .await
        .unwrap();
    // Another repository publishes "hello world" through its own upload.
    let other = RepoName::parse("o").unwrap();
    let body: ByteStream = once(b"hello world");
    let req = StartRequest {
        digest: Some(d.clone()),
        body: Some(body),
        ..start()
    };
    reg.upload_start(&other, req).await.unwrap();
    // This session was published under the same digest by a crashed finish, then resumed.
    let b: ByteStream = once(b"world");
    reg.upload_patch(&repo, &id, "", None, None, b)
        .await
        .unwrap();
    reg.blobs.upload_commit(&id, &d).await.unwrap();
    let b: ByteStream = once(b"!!!!!");
    let err = reg
        .upload_finish(&repo, &id, "", &d, None, None, Some(b))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    let mut s = reg
        .blob_get(&other, &d, None)
        .await
        .unwrap()
        .into_stream()
        .unwrap();
    let mut got = Vec::new();
    while let Some(c) = futures_util::StreamExt::next(&mut s).await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"hello world");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_the_subject_that_opened_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let repo = RepoName::parse("team/app").unwrap();
    let req = StartRequest {
        owner: "alice".into(),
        ..start()
    };
    let Started::Session { id } = reg.upload_start(&repo, req).await.unwrap() else {
        panic!()
    };
    assert!(
        reg.upload_opened_at(&repo, &id, "alice")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(reg.upload_opened_at(&repo, &id, "bob").await.unwrap(), None);
    // Another subject can neither write, read the state of, finish nor cancel it; that holds
    // after its first bytes too (the row alone does not vouch for the owner).
    for phase in 0..2 {
        let err = reg
            .upload_patch(&repo, &id, "bob", None, None, once(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::UploadUnknown),
            "phase {phase}: {err:?}"
        );
        assert!(reg.upload_status(&repo, &id, "bob").await.is_err());
        assert!(reg.upload_status(&repo, &id, "").await.is_err());
        assert!(reg.upload_cancel(&repo, &id, "bob").await.is_err());
        if phase == 0 {
            reg.upload_patch(&repo, &id, "alice", None, None, once(b"abc"))
                .await
                .unwrap();
        }
    }
    let d = Digest::of(Algorithm::Sha256, b"abc");
    assert!(
        reg.upload_finish(&repo, &id, "bob", &d, None, None, None)
            .await
            .is_err()
    );
    reg.upload_finish(&repo, &id, "alice", &d, None, None, None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_only_from_readable_repositories() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let secret = RepoName::parse("secret/app").unwrap();
    let d = Digest::of(Algorithm::Sha256, b"payload");
    let req = StartRequest {
        digest: Some(d.clone()),
        body: Some(once(b"payload")),
        ..start()
    };
    reg.upload_start(&secret, req).await.unwrap();
    let mine = RepoName::parse("mine/app").unwrap();
    let only_mine: Readable = Arc::new(|name: &str| name.starts_with("mine/"));
    for from in [Some(secret.clone()), None] {
        let req = StartRequest {
            mount: Some(d.clone()),
            from: from.clone(),
            readable: Some(only_mine.clone()),
            ..start()
        };
        let started = reg.upload_start(&mine, req).await.unwrap();
        assert!(
            matches!(started, Started::Session { .. }),
            "from {from:?}: a mount from an unreadable repository becomes a plain upload"
        );
    }
    assert!(matches!(
        reg.blob_size(&mine, &d).await,
        Err(Error::BlobUnknown { .. })
    ));
    let req = StartRequest {
        mount: Some(d.clone()),
        ..start()
    };
    assert!(matches!(
        reg.upload_start(&mine, req).await.unwrap(),
        Started::Mounted { .. }
    ));
}

/// `Content-Range: 0-18446744073709551615` would wrap to a zero length (matching an empty
/// body) with unchecked arithmetic: it is refused with 416, for PATCH and for the final PUT,
/// and the session is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn ranges_whose_length_overflows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    let repo = RepoName::parse("r").unwrap();
    let Started::Session { id } = reg.upload_start(&repo, start()).await.unwrap() else {
        panic!()
    };
    let empty = || -> ByteStream { Box::pin(futures_util::stream::empty()) };
    let wrap = ChunkRange {
        start: 0,
        end: u64::MAX,
    };
    for len in [Some(0), None] {
        let err = reg
            .upload_patch(&repo, &id, "", Some(wrap), len, empty())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::RangeMismatch { offset: 0, .. }),
            "{err:?}"
        );
    }
    let d = Digest::of(Algorithm::Sha256, b"");
    let err = reg
        .upload_finish(&repo, &id, "", &d, Some(wrap), Some(0), Some(empty()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RangeMismatch { offset: 0, .. }),
        "{err:?}"
    );
    assert_eq!(reg.upload_status(&repo, &id, "").await.unwrap(), 0);
    // The session still works.
    let n = reg
        .upload_patch(
            &repo,
            &id,
            "",
            Some(ChunkRange { start: 0, end: 2 }),
            Some(3),
            once(b"abc"),
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let wrap = ChunkRange {
        start: 3,
        end: u64::MAX,
    };
    let err = reg
        .upload_patch(&repo, &id, "", Some(wrap), None, once(b"d"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ChunkLength(_)),
        "an honest length mismatch: {err:?}"
    );
    assert_eq!(reg.upload_status(&repo, &id, "").await.unwrap(), 3);
}
