//! [`Inventory`] for SQLite: each page is one statement on a reader connection (one snapshot
//! of the WAL), keyed on the primary keys so a page costs an index range scan.

use async_trait::async_trait;
use rusqlite::params;
use stowage_oci::Digest;

use super::SqliteStore;
use super::store::{digest_strings, parse_digest};
use crate::Result;
use crate::inventory::{BlobEntry, Inventory, LinkEntry, ManifestEntry, TagEntry};

#[async_trait]
impl Inventory for SqliteStore {
    async fn walk_tags(
        &self,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Result<Vec<TagEntry>> {
        let (repo, tag) = after.unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.name, t.name, t.digest,
                        EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = t.repo_id AND m.digest = t.digest)
                 FROM tags t JOIN repos r ON r.id = t.repo_id
                 WHERE (r.name, t.name) > (?1, ?2)
                 ORDER BY r.name, t.name LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![repo, tag, limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, bool>(3)?))
            })?;
            rows.map(|row| {
                let (repo, tag, digest, manifest_stored) = row?;
                Ok(TagEntry { repo, tag, digest: parse_digest(digest)?, manifest_stored })
            })
            .collect()
        })
        .await
    }

    async fn walk_manifests(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> Result<Vec<ManifestEntry>> {
        let (repo, digest) = after.map(|(r, d)| (r, d.to_string())).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.name, m.digest, m.sha256, m.media_type, m.size, m.body
                 FROM manifests m JOIN repos r ON r.id = m.repo_id
                 WHERE (r.name, m.digest) > (?1, ?2)
                 ORDER BY r.name, m.digest LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![repo, digest, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (repo, digest, sha256, media_type, size, body) = row?;
                Ok(ManifestEntry {
                    repo,
                    digest: parse_digest(digest)?,
                    sha256: parse_digest(sha256)?,
                    media_type,
                    size: size as u64,
                    body,
                })
            })
            .collect()
        })
        .await
    }

    async fn walk_blobs(&self, after: Option<Digest>, limit: usize) -> Result<Vec<BlobEntry>> {
        let after = after.map(|d| d.to_string()).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT digest, size, created FROM blobs WHERE digest > ?1 ORDER BY digest LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })?;
            rows.map(|row| {
                let (digest, size, created) = row?;
                Ok(BlobEntry { digest: parse_digest(digest)?, size: size as u64, created })
            })
            .collect()
        })
        .await
    }

    async fn walk_links(
        &self,
        after: Option<(String, Digest)>,
        limit: usize,
    ) -> Result<Vec<LinkEntry>> {
        let (repo, digest) = after.map(|(r, d)| (r, d.to_string())).unwrap_or_default();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT r.name, rb.digest, b.size
                 FROM repo_blobs rb JOIN repos r ON r.id = rb.repo_id
                 LEFT JOIN blobs b ON b.digest = rb.digest
                 WHERE (r.name, rb.digest) > (?1, ?2)
                 ORDER BY r.name, rb.digest LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![repo, digest, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (repo, digest, size) = row?;
                Ok(LinkEntry {
                    repo,
                    digest: parse_digest(digest)?,
                    blob_size: size.map(|s| s as u64),
                })
            })
            .collect()
        })
        .await
    }

    async fn blob_records(&self, digests: &[Digest]) -> Result<Vec<(Digest, u64)>> {
        let wanted = digest_strings(digests);
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT size FROM blobs WHERE digest = ?1")?;
            let mut out = Vec::new();
            for d in wanted {
                let mut rows = stmt.query([&d])?;
                if let Some(row) = rows.next()? {
                    let size: i64 = row.get(0)?;
                    out.push((parse_digest(d)?, size as u64));
                }
            }
            Ok(out)
        })
        .await
    }
}
