//! Manifest push, pull and delete.
//!
//! A push is validated against what the repository holds: every blob a manifest references
//! must be linked there with the stated size, and (by default) every child of an index must be
//! a manifest there. `subject` may point anywhere (referrers of not-yet-pushed content are
//! legal), and descriptors with `urls` (foreign layers) only need allowed URLs. The bytes are
//! stored exactly as pushed.

use std::collections::BTreeMap;

use stowage_metadata::{ManifestMeta, NewManifest};
use stowage_oci::manifest::{self, Descriptor, Kind};
use stowage_oci::{Algorithm, Digest, Reference, RepoName, Tag};

use crate::{Error, Registry, Result};

/// What a manifest PUT stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The digest to report in `Docker-Content-Digest` and `Location`.
    pub digest: Digest,
    /// The subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
    /// Tags now pointing at it, for `OCI-Tag` headers.
    pub tags: Vec<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::ManifestInvalid(message.into())
}

/// Descriptors whose targets are looked up in one metadata read.
const REFERENCE_BATCH: usize = 512;

/// Check that every descriptor's target is stored in the repository with the stated size,
/// looking them up in batches so a manifest naming tens of thousands of missing targets fails
/// at the first batch instead of building lookups for all of them.
async fn check_present<F, Fut, E>(
    descriptors: &[&Descriptor],
    lookup: F,
    unknown: &'static str,
    noun: &str,
) -> Result<()>
where
    F: Fn(Vec<Digest>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Vec<(Digest, u64)>, E>>,
    Error: From<E>,
{
    for batch in descriptors.chunks(REFERENCE_BATCH) {
        let wanted: Vec<Digest> = batch.iter().map(|d| d.digest.clone()).collect();
        let found: BTreeMap<Digest, u64> = lookup(wanted).await?.into_iter().collect();
        for d in batch {
            match found.get(&d.digest) {
                None => {
                    return Err(Error::ManifestBlobUnknown {
                        reason: unknown,
                        digest: d.digest.clone(),
                    });
                }
                Some(&size) if size != d.size => {
                    return Err(invalid(format!(
                        "descriptor for {} states size {} but the {noun} has {size} bytes",
                        d.digest, d.size
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

impl Registry {
    /// Handle `PUT /v2/<name>/manifests/<reference>[?tag=...]`.
    pub async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_tags: &[Tag],
    ) -> Result<Pushed> {
        if body.len() as u64 > self.settings.max_manifest_size {
            return Err(Error::ManifestTooLarge {
                limit: self.settings.max_manifest_size,
            });
        }
        let depth = manifest::json_depth(&body);
        if depth > self.settings.max_manifest_depth {
            return Err(invalid(format!(
                "manifest JSON is nested {depth} levels deep; this registry accepts at most {} (limits.max_manifest_depth)",
                self.settings.max_manifest_depth
            )));
        }
        let parsed = manifest::parse(&body, content_type).map_err(|e| invalid(e.to_string()))?;
        let descriptors = parsed.descriptor_count();
        if descriptors > self.settings.max_manifest_descriptors {
            return Err(invalid(format!(
                "manifest has {descriptors} descriptors; this registry accepts at most {} (limits.max_manifest_descriptors)",
                self.settings.max_manifest_descriptors
            )));
        }
        let sha256 = Digest::of(Algorithm::Sha256, &body);
        let digest = match reference {
            Reference::Digest(want) => {
                let got = if want.algorithm() == Algorithm::Sha256 {
                    sha256.clone()
                } else {
                    Digest::of(want.algorithm(), &body)
                };
                if &got != want {
                    return Err(Error::ManifestDigestMismatch {
                        expected: want.clone(),
                        computed: got,
                    });
                }
                got
            }
            Reference::Tag(_) => sha256.clone(),
        };
        let references = self.check_references(repo, &parsed).await?;
        let mut tags: Vec<String> = extra_tags.iter().map(|t| t.to_string()).collect();
        if let Reference::Tag(t) = reference {
            tags.push(t.to_string());
        }
        tags.sort();
        tags.dedup();
        let annotations = parsed
            .annotations
            .as_ref()
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        self.meta
            .put_manifest(
                repo.as_str(),
                NewManifest {
                    digest: digest.clone(),
                    sha256,
                    media_type: parsed.media_type.clone(),
                    body,
                    subject: subject.clone(),
                    artifact_type: parsed.artifact_type.clone(),
                    annotations,
                    references,
                },
                &tags,
            )
            .await?;
        Ok(Pushed {
            digest,
            subject,
            tags,
        })
    }

    /// Check every referenced blob or child manifest; return the digests referenced.
    async fn check_references(
        &self,
        repo: &RepoName,
        parsed: &manifest::ParsedManifest,
    ) -> Result<Vec<Digest>> {
        match parsed.kind {
            Kind::Image => {
                let mut need: Vec<&Descriptor> = Vec::new();
                for d in parsed.referenced() {
                    if d.urls.is_empty() {
                        need.push(d);
                    } else {
                        self.check_urls(d)?;
                    }
                }
                let repo_name = repo.as_str();
                check_present(
                    &need,
                    |wanted| async move { self.meta.blobs_in_repo(repo_name, &wanted).await },
                    "manifest references a blob unknown to this repository",
                    "blob",
                )
                .await?;
                Ok(parsed.referenced().map(|d| d.digest.clone()).collect())
            }
            Kind::Index => {
                let children: Vec<Digest> = parsed.referenced().map(|d| d.digest.clone()).collect();
                if self.settings.index_children_must_exist {
                    let repo_name = repo.as_str();
                    let listed: Vec<&Descriptor> = parsed.manifests.iter().collect();
                    check_present(
                        &listed,
                        |wanted| async move {
                            self.meta.manifests_in_repo(repo_name, &wanted).await
                        },
                        "index references a manifest unknown to this repository",
                        "manifest",
                    )
                    .await?;
                }
                Ok(children)
            }
        }
    }

    fn check_urls(&self, d: &Descriptor) -> Result<()> {
        for url in &d.urls {
            if !self
                .settings
                .foreign_url_allow
                .iter()
                .any(|p| url.starts_with(p.as_str()))
            {
                return Err(invalid(format!(
                    "layer URL {url:?} is not allowed by this registry's foreign_url_allow list"
                )));
            }
        }
        Ok(())
    }

    /// Handle GET/HEAD of a manifest.
    pub async fn manifest_get(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> Result<ManifestMeta> {
        let found = match reference {
            Reference::Tag(t) => {
                self.meta
                    .manifest_by_tag(repo.as_str(), t.as_str(), with_body)
                    .await?
            }
            Reference::Digest(d) => {
                self.meta
                    .manifest_by_digest(repo.as_str(), d, with_body)
                    .await?
            }
        };
        found.ok_or_else(|| Error::ManifestUnknown {
            reference: reference.to_string(),
        })
    }

    /// Handle DELETE of a manifest: by digest removes it and its tags, by tag removes the tag.
    pub async fn manifest_delete(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        if !self.settings.delete_enabled {
            return Err(Error::Disabled("deletion"));
        }
        let found = match reference {
            Reference::Tag(t) => self.meta.delete_tag(repo.as_str(), t.as_str()).await?,
            Reference::Digest(d) => self.meta.delete_manifest(repo.as_str(), d).await?.is_some(),
        };
        if found {
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                reference: reference.to_string(),
            })
        }
    }
}
