//! Consistent copies of the SQLite database, for `stowage backup`.
//!
//! `VACUUM INTO` runs inside one read transaction, so under WAL it copies exactly one committed
//! state of the database, whatever a running server writes meanwhile. The copy is then made a
//! fresh start: upload sessions are dropped (their bytes live in the source's `uploads/`, which
//! a backup does not carry), and it is checkpointed into a single file.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use stowage_oci::Digest;

use super::SqliteStore;
use crate::{MetadataError, Result};

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Every blob some repository links (or some manifest references), with its recorded size,
    /// in digest order: the blobs a backup must copy.
    pub blobs: Vec<(Digest, u64)>,
    /// Upload sessions in progress at the moment of the snapshot (dropped from the copy).
    pub uploads_skipped: u64,
    /// Repositories and manifests in the copy.
    pub repositories: u64,
    pub manifests: u64,
}

impl SqliteStore {
    /// Write a consistent copy of the database at `source` to `dest` (which must not exist),
    /// while other processes may be reading and writing it. Does not migrate or otherwise
    /// change `source`. The copy keeps users, tokens, signing keys and secrets, and drops
    /// upload sessions.
    pub fn snapshot_into(source: &Path, dest: &Path) -> Result<Snapshot> {
        let backend =
            |what: &str, e: rusqlite::Error| MetadataError::Backend(format!("{what}: {e}"));
        if !source.exists() {
            return Err(MetadataError::Backend(format!(
                "{}: no such database",
                source.display()
            )));
        }
        // Read-write (never created) rather than read-only: a read-only connection cannot make
        // the WAL index a stopped server removed. Nothing is written through it.
        let src = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| backend(&format!("cannot open {}", source.display()), e))?;
        src.busy_timeout(std::time::Duration::from_secs(30))?;
        let dest_str = dest.to_str().ok_or_else(|| {
            MetadataError::Backend(format!("{}: path is not UTF-8", dest.display()))
        })?;
        src.execute("VACUUM INTO ?1", [dest_str]).map_err(|e| {
            backend(
                &format!("cannot copy the database to {}", dest.display()),
                e,
            )
        })?;
        drop(src);
        {
            use std::os::unix::fs::PermissionsExt;
            // It holds password hashes, signing keys and secrets.
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| MetadataError::Backend(format!("{}: {e}", dest.display())))?;
        }
        let copy = Connection::open(dest)?;
        copy.pragma_update(None, "synchronous", "FULL")?;
        let uploads_skipped: i64 =
            copy.query_row("SELECT count(*) FROM uploads WHERE ended = 0", [], |r| {
                r.get(0)
            })?;
        copy.execute("DELETE FROM uploads", [])?;
        let mut blobs = Vec::new();
        {
            let mut stmt = copy.prepare(
                "SELECT b.digest, b.size FROM blobs b
                 WHERE EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.digest = b.digest)
                    OR EXISTS (SELECT 1 FROM manifest_refs mr WHERE mr.target = b.digest)
                 ORDER BY b.digest",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (d, size) = row?;
                let digest = d.parse().map_err(|e| {
                    MetadataError::Backend(format!("invalid digest {d:?} in the database: {e}"))
                })?;
                blobs.push((digest, size.max(0) as u64));
            }
        }
        let repositories: i64 = copy.query_row("SELECT count(*) FROM repos", [], |r| r.get(0))?;
        let manifests: i64 = copy.query_row("SELECT count(*) FROM manifests", [], |r| r.get(0))?;
        // VACUUM INTO writes a rollback-journal database; the server switches it to WAL when it
        // opens it. Leave one self-contained, durable file.
        copy.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(copy);
        std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| MetadataError::Backend(format!("{}: {e}", dest.display())))?;
        Ok(Snapshot {
            blobs,
            uploads_skipped: uploads_skipped.max(0) as u64,
            repositories: repositories.max(0) as u64,
            manifests: manifests.max(0) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetadataStore, NewManifest, Upload};
    use stowage_oci::Algorithm;

    #[tokio::test(flavor = "multi_thread")]
    async fn snapshot_keeps_links_and_manifests_and_drops_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let store = SqliteStore::open(&src).unwrap();
        let layer = Digest::of(Algorithm::Sha256, b"layer");
        store.link_blob("team/app", &layer, 5).await.unwrap();
        let body = br#"{"schemaVersion":2}"#.to_vec();
        let md = Digest::of(Algorithm::Sha256, &body);
        store
            .put_manifest(
                "team/app",
                NewManifest {
                    digest: md.clone(),
                    sha256: md.clone(),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    body,
                    subject: None,
                    artifact_type: None,
                    annotations: None,
                    references: vec![layer.clone()],
                },
                &["v1".to_string()],
            )
            .await
            .unwrap();
        store
            .save_upload(&Upload {
                id: "u1".into(),
                repo: "team/app".into(),
                algorithm: Algorithm::Sha256,
                offset: 3,
                hash_state: None,
                ended: false,
                created: 1,
                updated: 1,
                owner: String::new(),
            })
            .await
            .unwrap();
        store.secret("k", b"secret".to_vec()).await.unwrap();
        let dest = dir.path().join("copy.db");
        let snap = SqliteStore::snapshot_into(&src, &dest).unwrap();
        assert_eq!(snap.blobs, vec![(layer.clone(), 5)]);
        assert_eq!(snap.uploads_skipped, 1);
        assert_eq!((snap.repositories, snap.manifests), (1, 1));
        // The copy is a working store with the same content, and no upload sessions.
        let copy = SqliteStore::open(&dest).unwrap();
        assert_eq!(
            copy.blob_in_repo("team/app", &layer).await.unwrap(),
            Some(5)
        );
        let m = copy.manifest_by_tag("team/app", "v1", true).await.unwrap();
        assert_eq!(m.unwrap().digest, md);
        assert!(copy.get_upload("u1").await.unwrap().is_none());
        assert_eq!(
            copy.secret("k", b"other".to_vec()).await.unwrap(),
            b"secret"
        );
        // An existing destination is refused.
        assert!(SqliteStore::snapshot_into(&src, &dest).is_err());
    }
}
