//! Tests of `fsck` (kept apart to keep the module short): a registry populated through its own
//! use cases, then damaged in each way the checker knows, on the real SQLite and filesystem
//! backends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stowage_metadata::sqlite::SqliteStore;
use stowage_oci::reference::Reference;
use stowage_oci::{RepoName, Tag};
use stowage_storage::fs::FsBlobStore;

use super::*;
use crate::uploads::{StartRequest, Started};
use crate::{Registry, Settings};

struct Fixture {
    dir: tempfile::TempDir,
    reg: Registry,
    meta: Arc<SqliteStore>,
    blobs: Arc<FsBlobStore>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(FsBlobStore::open(dir.path()).unwrap());
    let meta = Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
    let reg = Registry::new(blobs.clone(), meta.clone(), Settings::default());
    Fixture {
        dir,
        reg,
        meta,
        blobs,
    }
}

impl Fixture {
    async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, bytes);
        let body: stowage_storage::ByteStream = Box::pin(futures_util::stream::iter([Ok(
            Bytes::copy_from_slice(bytes),
        )]));
        let started = self
            .reg
            .upload_start(
                &RepoName::parse(repo).unwrap(),
                StartRequest {
                    digest: Some(d.clone()),
                    mount: None,
                    from: None,
                    algorithm: None,
                    body: Some(body),
                    owner: String::new(),
                    readable: None,
                },
            )
            .await
            .unwrap();
        assert!(matches!(started, Started::Created { .. }));
        d
    }

    /// Push an image of one config and one layer under `tag`; answer (manifest, config, layer).
    async fn image(&self, repo: &str, tag: &str, seed: &str) -> (Digest, Digest, Digest) {
        let config = self
            .blob(repo, format!("{{\"seed\":\"{seed}\"}}").as_bytes())
            .await;
        let layer = self.blob(repo, format!("layer {seed}").as_bytes()).await;
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{}}}]}}"#,
            format!("{{\"seed\":\"{seed}\"}}").len(),
            format!("layer {seed}").len()
        );
        let d = Digest::of(Algorithm::Sha256, body.as_bytes());
        self.reg
            .manifest_put(
                &RepoName::parse(repo).unwrap(),
                &Reference::Tag(Tag::parse(tag).unwrap()),
                Some("application/vnd.oci.image.manifest.v1+json"),
                body.into_bytes(),
                &[],
            )
            .await
            .unwrap();
        (d, config, layer)
    }

    async fn check(&self, opts: FsckOptions) -> FsckReport {
        check(&*self.meta, &*self.blobs, &opts).await.unwrap()
    }

    fn sql(&self, statement: &str) {
        let c = rusqlite::Connection::open(self.dir.path().join("m.db")).unwrap();
        c.execute_batch(statement).unwrap();
    }

    fn blob_path(&self, d: &Digest) -> std::path::PathBuf {
        self.dir
            .path()
            .join("blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
    }
}

fn kinds(r: &FsckReport) -> Vec<FindingKind> {
    r.findings.iter().map(|f| f.kind).collect()
}

fn deep() -> FsckOptions {
    FsckOptions {
        deep: true,
        ..FsckOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_store_is_consistent() {
    let f = fixture();
    f.image("a/one", "v1", "1").await;
    f.image("a/one", "v2", "2").await;
    f.image("b", "latest", "3").await;
    let r = f.check(deep()).await;
    assert!(r.is_consistent(), "{:?}", r.findings);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.counts.tags, 3);
    assert_eq!(r.counts.manifests, 3);
    assert_eq!(r.counts.blob_records, 6);
    assert_eq!(r.counts.stored_blobs, 6);
    assert_eq!(r.counts.links, 6);
    assert!(r.counts.bytes_hashed > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_resized_bytes_are_errors() {
    let f = fixture();
    let (_, config, layer) = f.image("r", "v1", "1").await;
    std::fs::remove_file(f.blob_path(&layer)).unwrap();
    std::fs::write(f.blob_path(&config), b"longer than it was recorded").unwrap();
    let r = f.check(FsckOptions::default()).await;
    assert!(!r.is_consistent());
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(
        k,
        vec![FindingKind::BlobMissing, FindingKind::BlobSizeMismatch]
    );
    let missing = r
        .findings
        .iter()
        .find(|x| x.kind == FindingKind::BlobMissing)
        .unwrap();
    assert_eq!(missing.digest.as_deref(), Some(layer.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_finds_bit_rot_that_a_quick_check_cannot() {
    let f = fixture();
    let (_, _, layer) = f.image("r", "v1", "1").await;
    let path = f.blob_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    assert!(f.check(FsckOptions::default()).await.is_consistent());
    let r = f.check(deep()).await;
    assert_eq!(kinds(&r), vec![FindingKind::BlobCorrupt]);
    assert!(
        r.findings[0].detail.contains("hash to"),
        "{}",
        r.findings[0].detail
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dangling_tags_links_and_references_are_errors() {
    let f = fixture();
    let (m, _, layer) = f.image("r", "v1", "1").await;
    f.image("r", "v2", "2").await;
    // A tag to a manifest that is not stored, a link without its blob record, and a manifest
    // whose layer link is gone: each written behind the registry's back.
    f.sql(&format!(
        "UPDATE tags SET digest = 'sha256:{}' WHERE name = 'v2';
         DELETE FROM repo_blobs WHERE digest = '{layer}';
         INSERT INTO repo_blobs (repo_id, digest, created) SELECT id, 'sha256:{}', 0 FROM repos WHERE name = 'r';",
        "0".repeat(64),
        "1".repeat(64)
    ));
    let r = f.check(FsckOptions::default()).await;
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(
        k,
        vec![
            FindingKind::DanglingTag,
            FindingKind::ManifestBlobMissing,
            FindingKind::LinkWithoutBlob
        ]
    );
    let refs = r
        .findings
        .iter()
        .find(|x| x.kind == FindingKind::ManifestBlobMissing)
        .unwrap();
    assert!(refs.detail.contains(&m.to_string()) && refs.detail.contains(&layer.to_string()));
    assert_eq!(refs.repository.as_deref(), Some("r"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_manifest_row_is_an_error() {
    let f = fixture();
    let (m, _, _) = f.image("r", "v1", "1").await;
    f.sql(&format!(
        "UPDATE manifests SET body = CAST('{{\"schemaVersion\":2}}' AS BLOB) WHERE digest = '{m}'"
    ));
    let r = f.check(FsckOptions::default()).await;
    assert_eq!(kinds(&r), vec![FindingKind::ManifestCorrupt]);
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_wait_for_the_grace_period_and_repair_removes_them() {
    let f = fixture();
    f.image("r", "v1", "1").await;
    // Bytes published without a record (as a crash between publish and commit leaves them),
    // and an upload file no session owns.
    let orphan = Digest::of(Algorithm::Sha256, b"orphan");
    let path = f.blob_path(&orphan);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"orphan").unwrap();
    std::fs::write(f.dir.path().join("uploads/leftover-1"), b"partial").unwrap();

    let r = f.check(FsckOptions::default()).await;
    assert!(
        r.findings.is_empty(),
        "young: in flight, not orphans: {:?}",
        r.findings
    );
    assert_eq!(r.counts.recent_unrecorded, 1);

    let now = FsckOptions {
        grace: Duration::ZERO,
        ..FsckOptions::default()
    };
    let r = f.check(now.clone()).await;
    assert!(r.is_consistent(), "orphans are warnings");
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(
        k,
        vec![FindingKind::OrphanBlob, FindingKind::LeftoverUpload]
    );
    assert!(
        path.exists() && r.repaired.is_empty(),
        "no repair without --repair"
    );

    let r = f
        .check(FsckOptions {
            repair: true,
            ..now.clone()
        })
        .await;
    assert_eq!(r.repaired.len(), 2);
    assert!(!path.exists());
    assert!(!f.dir.path().join("uploads/leftover-1").exists());
    let r = f.check(now).await;
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    // What the store still holds is intact.
    assert!(f.check(deep()).await.findings.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_upload_session_is_not_a_leftover() {
    let f = fixture();
    let repo = RepoName::parse("r").unwrap();
    let start = StartRequest {
        digest: None,
        mount: None,
        from: None,
        algorithm: None,
        body: None,
        owner: String::new(),
        readable: None,
    };
    let Started::Session { id } = f.reg.upload_start(&repo, start).await.unwrap() else {
        panic!("a session")
    };
    let body: stowage_storage::ByteStream =
        Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"abc"))]));
    f.reg
        .upload_patch(&repo, &id, "", None, None, body)
        .await
        .unwrap();
    let r = f
        .check(FsckOptions {
            grace: Duration::ZERO,
            repair: true,
            ..FsckOptions::default()
        })
        .await;
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.counts.upload_files, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_progress_reports_every_byte() {
    let f = fixture();
    f.image("r", "v1", "1").await;
    let seen = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let s2 = seen.clone();
    let r = f
        .check(FsckOptions {
            deep: true,
            progress: Some(Arc::new(move |p| match p {
                Progress::Hashing { bytes, .. } => s2.lock().unwrap().0 = bytes,
                Progress::Hashed(n) => s2.lock().unwrap().1 += n,
                Progress::Phase(_) => {}
            })),
            ..FsckOptions::default()
        })
        .await;
    let (planned, done) = *seen.lock().unwrap();
    assert!(planned > 0);
    assert_eq!(planned, done);
    assert_eq!(done, r.counts.bytes_hashed);
}
