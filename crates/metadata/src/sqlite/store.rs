//! `MetadataStore` for SQLite: each method is one read on the pool or one write in a group
//! commit. Repository rows are created on first link or manifest and resolved by name inside
//! the same statement batch, so a request costs one round trip to the writer.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use stowage_oci::{Algorithm, Digest};

use super::SqliteStore;
use crate::{
    Advance, Deleted, ManifestMeta, MetadataStore, NewManifest, Referrer, Result, SessionCap,
    Upload,
};

use stowage_oci::time::now;

fn repo_id(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT id FROM repos WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
}

fn ensure_repo(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    if let Some(id) = repo_id(conn, name)? {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO repos (name, created) VALUES (?1, ?2)")?
        .execute(params![name, now()])?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: stowage_oci::digest::DigestError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn link(conn: &Connection, repo: &str, digest: &str, size: u64) -> rusqlite::Result<()> {
    let id = ensure_repo(conn, repo)?;
    let t = now();
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (digest, size, created) VALUES (?1, ?2, ?3)")?
        .execute(params![digest, size as i64, t])?;
    conn.prepare_cached(
        "INSERT OR IGNORE INTO repo_blobs (repo_id, digest, created) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, digest, t])?;
    Ok(())
}

/// Write `u` as an ended session (a tombstone), whether or not it had a row.
/// Write a session's row as given (insert or replace its state).
fn save(c: &Connection, u: &Upload) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO uploads (id, repo, algorithm, \"offset\", hash_state, created, updated, ended, owner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET \"offset\" = excluded.\"offset\", hash_state = excluded.hash_state,
           updated = excluded.updated, ended = excluded.ended",
    )?
    .execute(params![
        u.id,
        u.repo,
        u.algorithm.as_str(),
        u.offset as i64,
        u.hash_state,
        u.created,
        u.updated,
        u.ended,
        u.owner
    ])?;
    Ok(())
}

fn end_session(c: &Connection, u: &Upload) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO uploads (id, repo, algorithm, \"offset\", hash_state, created, updated, ended, owner)
         VALUES (?1, ?2, ?3, 0, NULL, ?4, ?5, 1, ?6)
         ON CONFLICT (id) DO UPDATE SET ended = 1, hash_state = NULL, updated = excluded.updated",
    )?
    .execute(params![
        u.id,
        u.repo,
        u.algorithm.as_str(),
        u.created,
        now(),
        u.owner
    ])?;
    Ok(())
}

/// How many bytes a live session holds: 0 before its first chunk (no row yet), None once it
/// has ended.
fn session_at(c: &Connection, id: &str) -> rusqlite::Result<Option<u64>> {
    Ok(session_row(c, id)?.offset())
}

/// A session's row as far as advancing it goes.
enum SessionRow {
    Missing,
    Ended,
    Live(u64),
}

impl SessionRow {
    /// The bytes it holds (0 with no row), None once ended.
    fn offset(&self) -> Option<u64> {
        match self {
            SessionRow::Missing => Some(0),
            SessionRow::Ended => None,
            SessionRow::Live(o) => Some(*o),
        }
    }
}

/// The live sessions of `owner` updated at or after `since`.
fn count_open(c: &Connection, owner: &str, since: i64) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "SELECT COUNT(*) FROM uploads WHERE owner = ?1 AND owner <> '' AND ended = 0 AND updated >= ?2",
    )?
    .query_row(params![owner, since], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
}

fn session_row(c: &Connection, id: &str) -> rusqlite::Result<SessionRow> {
    let row: Option<(i64, bool)> = c
        .prepare_cached("SELECT \"offset\", ended FROM uploads WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        None => SessionRow::Missing,
        Some((_, true)) => SessionRow::Ended,
        Some((offset, false)) => SessionRow::Live(offset as u64),
    })
}

pub(super) fn digest_strings(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(|d| d.to_string()).collect()
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn blob_in_repo(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT b.size FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id JOIN blobs b ON b.digest = rb.digest
                 WHERE r.name = ?1 AND rb.digest = ?2",
            )?
            .query_row(params![repo, digest], |r| r.get::<_, i64>(0))
            .optional()
            .map(|o| o.map(|s| s as u64))
        })
        .await
    }

    async fn blobs_in_repo(&self, repo: &str, digests: &[Digest]) -> Result<Vec<(Digest, u64)>> {
        let (repo, wanted) = (repo.to_string(), digest_strings(digests));
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else { return Ok(Vec::new()) };
            let mut stmt = c.prepare_cached(
                "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repo_id = ?1 AND rb.digest = ?2",
            )?;
            let mut out = Vec::new();
            for d in wanted {
                if let Some(size) = stmt.query_row(params![id, d], |r| r.get::<_, i64>(0)).optional()? {
                    out.push((parse_digest(d)?, size as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn repos_with_blob(&self, digest: &Digest, limit: usize) -> Result<Vec<(String, u64)>> {
        let digest = digest.to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.name, b.size FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id JOIN blobs b ON b.digest = rb.digest
                 WHERE rb.digest = ?1 ORDER BY r.name LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![digest, limit as i64], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
        .await
    }

    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |c| link(c, &repo, &digest, size)).await
    }

    async fn finish_upload(
        &self,
        session: Option<&Upload>,
        repo: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<bool> {
        let (session, repo, digest) = (session.cloned(), repo.to_string(), digest.to_string());
        self.write(move |c| {
            if let Some(u) = &session
                && session_at(c, &u.id)? != Some(u.offset)
            {
                return Ok(false);
            }
            link(c, &repo, &digest, size)?;
            if let Some(u) = session {
                end_session(c, &u)?;
            }
            Ok(true)
        })
        .await
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(false);
            };
            Ok(
                c.prepare_cached("DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")?
                    .execute(params![id, digest])?
                    > 0,
            )
        })
        .await
    }

    async fn manifests_in_repo(
        &self,
        repo: &str,
        digests: &[Digest],
    ) -> Result<Vec<(Digest, u64)>> {
        let (repo, wanted) = (repo.to_string(), digest_strings(digests));
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(Vec::new());
            };
            let mut stmt = c.prepare_cached(
                "SELECT size FROM manifests WHERE repo_id = ?1 AND (digest = ?2 OR sha256 = ?2) LIMIT 1",
            )?;
            let mut out = Vec::new();
            for d in wanted {
                if let Some(size) = stmt.query_row(params![id, d], |r| r.get::<_, i64>(0)).optional()? {
                    out.push((parse_digest(d)?, size as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_manifest(&self, repo: &str, m: NewManifest, tags: &[String]) -> Result<()> {
        let (repo, tags) = (repo.to_string(), tags.to_vec());
        self.write(move |c| {
            let id = ensure_repo(c, &repo)?;
            let t = now();
            let digest = m.digest.to_string();
            c.prepare_cached(
                "INSERT INTO manifests (repo_id, digest, sha256, media_type, size, body, subject, artifact_type, annotations, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (repo_id, digest) DO UPDATE SET media_type = excluded.media_type, body = excluded.body,
                   size = excluded.size, subject = excluded.subject, artifact_type = excluded.artifact_type,
                   annotations = excluded.annotations",
            )?
            .execute(params![
                id,
                digest,
                m.sha256.to_string(),
                m.media_type,
                m.body.len() as i64,
                m.body,
                m.subject.map(|s| s.to_string()),
                m.artifact_type,
                m.annotations,
                t
            ])?;
            let mut refs = c.prepare_cached("INSERT OR IGNORE INTO manifest_refs (repo_id, manifest, target) VALUES (?1, ?2, ?3)")?;
            for r in &m.references {
                refs.execute(params![id, digest, r.to_string()])?;
            }
            let mut tag = c.prepare_cached(
                "INSERT INTO tags (repo_id, name, digest, updated) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated = excluded.updated",
            )?;
            for name in &tags {
                tag.execute(params![id, name, digest, t])?;
            }
            Ok(())
        })
        .await
    }

    async fn manifest_by_tag(
        &self,
        repo: &str,
        tag: &str,
        with_body: bool,
    ) -> Result<Option<ManifestMeta>> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.read(move |c| {
            let sql = if with_body {
                "SELECT m.digest, m.media_type, m.size, m.body FROM tags t JOIN repos r ON r.id = t.repo_id
                 JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest WHERE r.name = ?1 AND t.name = ?2"
            } else {
                "SELECT m.digest, m.media_type, m.size, NULL FROM tags t JOIN repos r ON r.id = t.repo_id
                 JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest WHERE r.name = ?1 AND t.name = ?2"
            };
            let row = c
                .prepare_cached(sql)?
                .query_row(params![repo, tag], |r| {
                    Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<Vec<u8>>>(3)?))
                })
                .optional()?;
            row.map(|(d, media_type, size, body)| {
                Ok(ManifestMeta { digest: parse_digest(d)?, media_type, size: size as u64, body })
            })
            .transpose()
        })
        .await
    }

    async fn manifest_by_digest(
        &self,
        repo: &str,
        digest: &Digest,
        with_body: bool,
    ) -> Result<Option<ManifestMeta>> {
        let (repo, d) = (repo.to_string(), digest.clone());
        self.read(move |c| {
            let sql = if with_body {
                "SELECT m.media_type, m.size, m.body FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = ?1 AND (m.digest = ?2 OR m.sha256 = ?2) ORDER BY m.digest = ?2 DESC LIMIT 1"
            } else {
                "SELECT m.media_type, m.size, NULL FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE r.name = ?1 AND (m.digest = ?2 OR m.sha256 = ?2) ORDER BY m.digest = ?2 DESC LIMIT 1"
            };
            c.prepare_cached(sql)?
                .query_row(params![repo, d.to_string()], |r| {
                    Ok(ManifestMeta {
                        digest: d.clone(),
                        media_type: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        body: r.get(2)?,
                    })
                })
                .optional()
        })
        .await
    }

    async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<Option<Deleted>> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.write(move |c| {
            let Some(id) = repo_id(c, &repo)? else { return Ok(None) };
            let gone: Vec<String> = c
                .prepare_cached("SELECT digest FROM manifests WHERE repo_id = ?1 AND (digest = ?2 OR sha256 = ?2)")?
                .query_map(params![id, digest], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if gone.is_empty() {
                return Ok(None);
            }
            let mut tags = Vec::new();
            for d in &gone {
                let names: Vec<String> = c
                    .prepare_cached("DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2 RETURNING name")?
                    .query_map(params![id, d], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                tags.extend(names);
                c.prepare_cached("DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2")?.execute(params![id, d])?;
                c.prepare_cached("DELETE FROM manifest_refs WHERE repo_id = ?1 AND manifest = ?2")?.execute(params![id, d])?;
            }
            tags.sort();
            Ok(Some(Deleted { tags }))
        })
        .await
    }

    async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let (repo, tag) = (repo.to_string(), tag.to_string());
        self.write(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(false);
            };
            Ok(
                c.prepare_cached("DELETE FROM tags WHERE repo_id = ?1 AND name = ?2")?
                    .execute(params![id, tag])?
                    > 0,
            )
        })
        .await
    }

    async fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let (repo, last) = (repo.to_string(), last.unwrap_or("").to_string());
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else {
                return Ok(None);
            };
            let mut stmt = c.prepare_cached(
                "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, last, limit as i64], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map(Some)
        })
        .await
    }

    async fn list_repos(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let last = last.unwrap_or("").to_string();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name FROM repos r WHERE name > ?1
                   AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)
                        OR EXISTS (SELECT 1 FROM repo_blobs b WHERE b.repo_id = r.id))
                 ORDER BY name LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![last, limit as i64], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let (repo, subject, at) = (
            repo.to_string(),
            subject.to_string(),
            artifact_type.map(str::to_string),
        );
        self.read(move |c| {
            let Some(id) = repo_id(c, &repo)? else { return Ok(Vec::new()) };
            let mut stmt = c.prepare_cached(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo_id = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3) ORDER BY digest",
            )?;
            let rows = stmt.query_map(params![id, subject, at], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.map(|row| {
                let (d, media_type, size, artifact_type, annotations) = row?;
                Ok(Referrer { digest: parse_digest(d)?, media_type, size: size as u64, artifact_type, annotations })
            })
            .collect()
        })
        .await
    }

    async fn save_upload(&self, u: &Upload) -> Result<()> {
        let u = u.clone();
        self.write(move |c| save(c, &u)).await
    }

    async fn advance_upload(&self, u: &Upload, from: u64) -> Result<bool> {
        let u = u.clone();
        self.write(move |c| {
            if session_at(c, &u.id)? != Some(from) {
                return Ok(false);
            }
            save(c, &u)?;
            Ok(true)
        })
        .await
    }

    async fn advance_upload_capped(
        &self,
        u: &Upload,
        from: u64,
        cap: SessionCap,
    ) -> Result<Advance> {
        let u = u.clone();
        self.write(move |c| {
            let row = session_row(c, &u.id)?;
            if row.offset() != Some(from) {
                return Ok(Advance::Moved);
            }
            if matches!(row, SessionRow::Missing) && !u.owner.is_empty() {
                let open = count_open(c, &u.owner, cap.live_since)?;
                if open >= cap.max_open {
                    return Ok(Advance::Full { open });
                }
            }
            save(c, &u)?;
            Ok(Advance::Done)
        })
        .await
    }

    async fn open_uploads(&self, owner: &str, live_since: i64) -> Result<u64> {
        let owner = owner.to_string();
        self.read(move |c| count_open(c, &owner, live_since)).await
    }

    async fn secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        let name = name.to_string();
        self.write(move |c| {
            c.prepare_cached("INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)")?
                .execute(params![name, candidate])?;
            c.prepare_cached("SELECT value FROM secrets WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
        })
        .await
    }

    async fn get_upload(&self, id: &str) -> Result<Option<Upload>> {
        let id = id.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT id, repo, algorithm, \"offset\", created, updated, hash_state, ended, owner FROM uploads WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get::<_, Option<Vec<u8>>>(6)?,
                        r.get::<_, bool>(7)?,
                        r.get::<_, String>(8)?,
                    ))
                })
                .optional()?;
            Ok(row.and_then(|(id, repo, alg, offset, created, updated, hash_state, ended, owner)| {
                let algorithm = Algorithm::parse(&alg).ok()?;
                Some(Upload { id, repo, algorithm, offset: offset as u64, hash_state, ended, created, updated, owner })
            }))
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM uploads WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT id FROM uploads WHERE updated < ?1")?;
            let rows = stmt.query_map([before], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn passes_shared_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        crate::suite::run(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn passes_shared_inventory_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        crate::suite::run_inventory(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn passes_shared_auth_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        crate::auth_suite::run(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let d = Digest::of(Algorithm::Sha256, b"x");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.link_blob("a/b", &d, 1).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.blob_in_repo("a/b", &d).await.unwrap(), Some(1));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_share_commits() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let commits = Arc::new(AtomicUsize::new(0));
        let c2 = commits.clone();
        let observer: stowage_storage::OpObserver = Arc::new(move |op| {
            if matches!(op, stowage_storage::Op::Commit { .. }) {
                c2.fetch_add(1, Ordering::SeqCst);
            }
        });
        let store = SqliteStore::open_observed(&dir.path().join("m.db"), Some(observer)).unwrap();
        let digests: Vec<Digest> = (0..64)
            .map(|i| Digest::of(Algorithm::Sha256, &[i as u8]))
            .collect();
        let all =
            futures_util::future::join_all(digests.iter().map(|d| store.link_blob("r", d, 1)))
                .await;
        assert!(all.iter().all(|r| r.is_ok()));
        let n = commits.load(Ordering::SeqCst);
        assert!(
            n < 16,
            "64 concurrent writes took {n} commits; they should share a few"
        );
        assert_eq!(store.blobs_in_repo("r", &digests).await.unwrap().len(), 64);
    }
}
