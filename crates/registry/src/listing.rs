//! Tag and catalog pages (byte order, `n`/`last` paging) and the referrers index.

use stowage_oci::{Digest, RepoName, media};

use crate::{Error, Registry, Result};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    /// `Some((n, last))` when another page follows.
    pub next: Option<(usize, String)>,
}

impl Registry {
    fn page_size(&self, n: Option<usize>) -> usize {
        n.unwrap_or(self.settings.page_size)
            .min(self.settings.max_page_size)
    }

    /// Tags of `repo` after `last`; NAME_UNKNOWN for an unknown repository.
    pub async fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        let size = self.page_size(n);
        let known = self.meta.list_tags(repo.as_str(), last, size + 1).await?;
        let items = known.ok_or_else(|| Error::NameUnknown {
            name: repo.to_string(),
        })?;
        Ok(paginate(items, size))
    }

    /// Repository names after `last` that `readable` allows (all, when None). Filtering
    /// happens before paging, so a page is full whenever more visible names follow and no
    /// page, count or `Link` reveals a hidden repository.
    pub async fn catalog(
        &self,
        n: Option<usize>,
        last: Option<&str>,
        readable: Option<&crate::uploads::Readable>,
    ) -> Result<Page> {
        let size = self.page_size(n);
        let Some(readable) = readable else {
            let items = self.meta.list_repos(last, size + 1).await?;
            return Ok(paginate(items, size));
        };
        let mut items = Vec::new();
        let mut cursor = last.map(str::to_string);
        let batch = (size + 1).clamp(64, 10_000);
        while items.len() <= size {
            let got = self.meta.list_repos(cursor.as_deref(), batch).await?;
            let done = got.len() < batch;
            cursor = got.last().cloned();
            items.extend(got.into_iter().filter(|name| readable(name)));
            if done {
                break;
            }
        }
        items.truncate(size + 1);
        Ok(paginate(items, size))
    }

    /// The referrers index of `subject` in `repo` (an empty index when there are none).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>> {
        let found = self
            .meta
            .referrers(repo.as_str(), subject, artifact_type)
            .await?;
        let manifests: Vec<serde_json::Value> = found
            .into_iter()
            .map(|r| {
                let mut d = serde_json::json!({
                    "mediaType": r.media_type,
                    "digest": r.digest.to_string(),
                    "size": r.size,
                });
                if let Some(at) = r.artifact_type {
                    d["artifactType"] = at.into();
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests });
        serde_json::to_vec(&index).map_err(Error::internal)
    }
}

fn paginate(mut items: Vec<String>, size: usize) -> Page {
    if size == 0 {
        // `n=0` asks for an empty list, and no Link (nothing would ever follow it).
        return Page {
            items: Vec::new(),
            next: None,
        };
    }
    if items.len() > size {
        items.truncate(size);
        let last = items.last().cloned().unwrap_or_default();
        return Page {
            items,
            next: Some((size, last)),
        };
    }
    Page { items, next: None }
}
