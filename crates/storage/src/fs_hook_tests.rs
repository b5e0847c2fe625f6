//! The I/O hook: each injected fault at a write, fsync, link or rename leaves the store as the
//! durability rules promise (an acknowledged offset intact, no blob published from a failed
//! commit, a retry that succeeds).

use std::sync::{Arc, Mutex};

use super::*;
use crate::{IoFault, IoHook, IoPoint};

/// Fails the calls at one point, in order, from a script (None: let that call through).
struct Script(Mutex<Vec<(IoPoint, Option<IoFault>)>>);

impl IoHook for Script {
    fn before(&self, point: IoPoint, _path: &Path) -> Option<IoFault> {
        let mut s = self.0.lock().unwrap();
        let at = s.iter().position(|(p, _)| *p == point)?;
        s.remove(at).1
    }
}

fn store(dir: &Path, script: Vec<(IoPoint, Option<IoFault>)>) -> FsBlobStore {
    FsBlobStore::open(dir)
        .unwrap()
        .with_io_hook(Arc::new(Script(Mutex::new(script))))
}

fn body(data: &[u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(
        data.to_vec(),
    ))]))
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[tokio::test]
async fn a_torn_write_is_undone_and_the_append_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![
            (IoPoint::Write, None),
            (
                IoPoint::Write,
                Some(IoFault::Partial {
                    keep: 3,
                    errno: EIO,
                }),
            ),
        ],
    );
    let h = Hasher::new(Algorithm::Sha256);
    let first = s
        .upload_append("u1", 0, body(b"hello"), h, true)
        .await
        .unwrap();
    assert_eq!(first.len, 5);
    let r = s
        .upload_append("u1", 5, body(b" world"), first.hasher.clone(), true)
        .await;
    assert!(matches!(r, Err(StorageError::Io(_))), "{:?}", r.err());
    // The file is back at the acknowledged offset, not holding 3 stray bytes.
    assert_eq!(
        std::fs::read(dir.path().join("uploads/u1")).unwrap(),
        b"hello"
    );
    let again = s
        .upload_append("u1", 5, body(b" world"), first.hasher, true)
        .await
        .unwrap();
    assert_eq!(
        again.hasher.finish(),
        Digest::of(Algorithm::Sha256, b"hello world")
    );
}

#[tokio::test]
async fn a_short_write_on_a_full_disk_is_full_and_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![(
            IoPoint::Write,
            Some(IoFault::Partial {
                keep: 2,
                errno: ENOSPC,
            }),
        )],
    );
    let r = s
        .upload_append(
            "u2",
            0,
            body(b"abcdef"),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await;
    assert!(matches!(r, Err(StorageError::Full)), "{:?}", r.err());
    assert_eq!(
        std::fs::metadata(dir.path().join("uploads/u2"))
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn a_failed_fsync_or_link_publishes_nothing_and_the_commit_can_be_retried() {
    for point in [IoPoint::FileSync, IoPoint::Link] {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), vec![]);
        let a = s
            .upload_append("u3", 0, body(b"data"), Hasher::new(Algorithm::Sha256), true)
            .await
            .unwrap();
        let d = a.hasher.finish();
        let s = s.with_io_hook(Arc::new(Script(Mutex::new(vec![(
            point,
            Some(IoFault::Fail(EIO)),
        )]))));
        assert!(s.upload_commit("u3", &d).await.is_err(), "{point:?}");
        assert_eq!(
            s.stat(&d).await.unwrap(),
            None,
            "{point:?} published a blob"
        );
        s.upload_commit("u3", &d).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), Some(4));
    }
}

#[tokio::test]
async fn a_link_whose_answer_is_lost_is_repeated_harmlessly() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![(IoPoint::Link, Some(IoFault::AfterEffect(EIO)))],
    );
    let a = s
        .upload_append("u4", 0, body(b"xyz"), Hasher::new(Algorithm::Sha256), true)
        .await
        .unwrap();
    let d = a.hasher.finish();
    assert!(s.upload_commit("u4", &d).await.is_err());
    s.upload_commit("u4", &d).await.unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), Some(3));
}

#[tokio::test]
async fn a_failed_directory_fsync_fails_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![(IoPoint::DirSync, Some(IoFault::Fail(EIO)))],
    );
    let a = s
        .upload_append("u5", 0, body(b"q"), Hasher::new(Algorithm::Sha256), false)
        .await
        .unwrap();
    let d = a.hasher.finish();
    assert!(s.upload_commit("u5", &d).await.is_err());
    s.upload_commit("u5", &d).await.unwrap();
}

#[tokio::test]
async fn a_failed_rename_while_unsharing_keeps_the_published_blob_intact() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![(IoPoint::Rename, Some(IoFault::Fail(EIO)))],
    );
    let a = s
        .upload_append("u6", 0, body(b"blob"), Hasher::new(Algorithm::Sha256), true)
        .await
        .unwrap();
    let d = a.hasher.clone().finish();
    s.upload_commit("u6", &d).await.unwrap();
    // Appending to the published upload must first copy it off the blob: the rename fails.
    let r = s
        .upload_append("u6", 4, body(b"more"), a.hasher, true)
        .await;
    assert!(r.is_err());
    assert_eq!(std::fs::read(s.blob_path(&d)).unwrap(), b"blob");
}

#[tokio::test]
async fn a_failed_fsync_of_a_chunk_drops_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        vec![(IoPoint::FileSync, Some(IoFault::Fail(EIO)))],
    );
    let r = s
        .upload_append(
            "u7",
            0,
            body(b"chunk"),
            Hasher::new(Algorithm::Sha256),
            true,
        )
        .await;
    assert!(r.is_err());
    assert_eq!(
        std::fs::metadata(dir.path().join("uploads/u7"))
            .unwrap()
            .len(),
        0
    );
}
