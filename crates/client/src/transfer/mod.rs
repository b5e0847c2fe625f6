//! Moving images: between registries and OCI layout directories, in any direction.
//!
//! One walk serves pull, push and copy: fetch the top manifest (verifying its digest), pick
//! the platform(s) from an index, then for every config and layer blob check whether the
//! destination has it, try a cross-repository mount when both ends are the same registry,
//! else stream it across (never buffered whole); children before parents, the tag last.
//! Blobs move in parallel. Every blob written to a layout is verified against its digest
//! before it gets its name; a registry verifies what it receives itself. An interrupted blob
//! download resumes with a Range request; a failed upload asks the registry for its offset and
//! sends only the rest.

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use stowage_oci::{Algorithm, Digest, media};

use crate::image_ref::ImageRef;
use crate::layout::{Descriptor, Layout};
pub use crate::location::{Location, Platform, Platforms};

mod blobs;
use crate::Client;
use blobs::copy_blob;

/// What happens to each blob, for progress reporting.
pub trait Progress: Send + Sync {
    /// A blob starts moving (`offset` bytes are already there, from an interrupted attempt).
    fn start(&self, digest: &Digest, size: u64, offset: u64);
    /// More bytes moved.
    fn advance(&self, digest: &Digest, bytes: u64);
    /// A blob is done; `how` says what happened (`copied`, `exists`, `mounted`).
    fn done(&self, digest: &Digest, how: &str);
    /// A line for the user.
    fn note(&self, line: &str);
    /// The blobs an image is about to move (before any starts), for a total known up front.
    fn plan(&self, _blobs: &[(Digest, u64)]) {}
}

/// Progress that says nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &Digest, _: u64, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn done(&self, _: &Digest, _: &str) {}
    fn note(&self, _: &str) {}
}

/// A resolved end of a transfer.
pub enum End {
    Registry { client: Client, image: ImageRef },
    Layout { layout: Layout, tag: Option<String> },
}

impl End {
    fn name(&self) -> String {
        match self {
            End::Registry { image, .. } => image.to_string(),
            End::Layout { layout, tag } => match tag {
                Some(t) => format!("oci:{}:{t}", layout.root().display()),
                None => format!("oci:{}", layout.root().display()),
            },
        }
    }
}

/// A manifest as fetched and verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: bytes::Bytes,
    pub media_type: String,
    pub digest: Digest,
}

fn err(ctx: &str, e: impl std::fmt::Display) -> String {
    format!("{ctx}: {e}")
}

/// The media type a manifest declares (or, for Docker schema 2 lists without one, what its
/// shape says).
fn declared_media_type(bytes: &[u8], header: &str) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match v["mediaType"].as_str() {
        Some(m) => m.to_string(),
        None if !header.is_empty() => header.to_string(),
        None if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
        None => media::OCI_MANIFEST.to_string(),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == media::OCI_INDEX || media_type == media::DOCKER_MANIFEST_LIST
}

/// Fetch the manifest `reference` (a tag or digest) and verify its digest: against the digest
/// asked for, or against the registry's `Docker-Content-Digest`.
pub async fn fetch_manifest(end: &End, reference: &str) -> Result<Fetched, String> {
    match end {
        End::Registry { client, image } => {
            let m = client
                .manifest_get(&image.repository, reference)
                .await
                .map_err(|e| err(&image.to_string(), e))?;
            let wanted: Option<Digest> = reference.parse().ok();
            let algorithm = wanted.as_ref().map_or(Algorithm::Sha256, Digest::algorithm);
            let digest = Digest::of(algorithm, &m.bytes);
            if let Some(w) = &wanted
                && w != &digest
            {
                return Err(format!(
                    "{image}: the registry sent a manifest whose digest is {digest}, not {w}"
                ));
            }
            if wanted.is_none()
                && let Some(h) = m.digest.as_deref().and_then(|h| h.parse::<Digest>().ok())
                && h.algorithm() == Algorithm::Sha256
                && h != digest
            {
                return Err(format!(
                    "{image}: the manifest's content hashes to {digest} but the registry says {h}"
                ));
            }
            Ok(Fetched {
                media_type: declared_media_type(&m.bytes, &m.media_type),
                bytes: m.bytes,
                digest,
            })
        }
        End::Layout { layout, .. } => {
            let desc = match reference.parse::<Digest>() {
                Ok(d) => {
                    let size = std::fs::metadata(layout.blob_path(&d)).map_or(0, |m| m.len());
                    Descriptor {
                        media_type: String::new(),
                        digest: d,
                        size,
                        raw: Value::Null,
                    }
                }
                Err(_) => layout
                    .find(Some(reference).filter(|r| !r.is_empty()))
                    .map_err(|e| e.to_string())?,
            };
            let bytes = layout.read_blob(&desc.digest).map_err(|e| e.to_string())?;
            Ok(Fetched {
                media_type: declared_media_type(&bytes, &desc.media_type),
                bytes: bytes.into(),
                digest: desc.digest,
            })
        }
    }
}

/// The reference to start from at a source end.
fn start_reference(end: &End) -> String {
    match end {
        End::Registry { image, .. } => image.reference(),
        End::Layout { tag, .. } => tag.clone().unwrap_or_default(),
    }
}

/// The blobs (config and layers, or an artifact's blobs) a manifest references.
pub fn manifest_blobs(bytes: &[u8]) -> Result<Vec<Descriptor>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| err("manifest", e))?;
    let mut out = Vec::new();
    if v.get("config").is_some_and(|c| c.is_object()) {
        out.push(Descriptor::from_json(&v["config"]).map_err(|e| e.to_string())?);
    }
    for l in v["layers"].as_array().into_iter().flatten() {
        out.push(Descriptor::from_json(l).map_err(|e| e.to_string())?);
    }
    if v["schemaVersion"].as_u64() == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    Ok(out)
}

/// Copy the image at `src` to `dst`. Returns the digest and media type of what was written
/// at the top (the index with `Platforms::All`, else the chosen image's manifest).
pub async fn copy(
    src: &End,
    dst: &End,
    platforms: &Platforms,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<Fetched, String> {
    let top = fetch_manifest(src, &start_reference(src)).await?;
    let chosen = if is_index(&top.media_type) {
        let v: Value = serde_json::from_slice(&top.bytes).map_err(|e| err("index", e))?;
        let children: Vec<Descriptor> = v["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Descriptor::from_json)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        match platforms {
            Platforms::All => {
                for child in &children {
                    let m = fetch_manifest(src, &child.digest.to_string()).await?;
                    copy_image(src, dst, &m, jobs, progress.clone()).await?;
                    put_manifest(dst, &m, None).await?;
                }
                None
            }
            Platforms::One(p) => {
                let child = children
                    .iter()
                    .find(|c| p.matches(&c.raw["platform"]))
                    .ok_or_else(|| {
                        let have: Vec<String> = children
                            .iter()
                            .filter_map(|c| {
                                let pl = &c.raw["platform"];
                                Some(format!(
                                    "{}/{}{}",
                                    pl["os"].as_str()?,
                                    pl["architecture"].as_str()?,
                                    pl["variant"].as_str().map(|v| format!("/{v}")).unwrap_or_default()
                                ))
                            })
                            .collect();
                        format!(
                            "{}: no image for {p} (the index has {}); choose one with --platform or copy them all with --all-platforms",
                            src.name(),
                            have.join(", ")
                        )
                    })?;
                progress.note(&format!("{p}: {}", child.digest));
                Some(fetch_manifest(src, &child.digest.to_string()).await?)
            }
        }
    } else {
        Some(top.clone())
    };
    let written = match chosen {
        Some(m) => {
            copy_image(src, dst, &m, jobs, progress.clone()).await?;
            m
        }
        None => top,
    };
    let tag = match dst {
        End::Registry { image, .. } => image.tag_or_latest(),
        End::Layout { tag, .. } => tag.clone(),
    };
    put_manifest(dst, &written, tag.as_deref()).await?;
    Ok(written)
}

/// Copy the blobs of one image manifest (parallel, `jobs` at a time).
async fn copy_image(
    src: &End,
    dst: &End,
    m: &Fetched,
    jobs: usize,
    progress: Arc<dyn Progress>,
) -> Result<(), String> {
    let blobs = manifest_blobs(&m.bytes)?;
    let planned: Vec<(Digest, u64)> = blobs.iter().map(|d| (d.digest.clone(), d.size)).collect();
    progress.plan(&planned);
    futures_util::stream::iter(blobs.into_iter().map(|d| {
        let progress = progress.clone();
        async move { copy_blob(src, dst, &d, progress).await }
    }))
    .buffer_unordered(jobs.max(1))
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Write a manifest at the destination: by digest, or under `tag`.
async fn put_manifest(dst: &End, m: &Fetched, tag: Option<&str>) -> Result<(), String> {
    match dst {
        End::Registry { client, image } => {
            let reference = tag.map_or_else(|| m.digest.to_string(), str::to_string);
            let got = client
                .manifest_put(
                    &image.repository,
                    &reference,
                    &m.media_type,
                    m.bytes.clone(),
                )
                .await
                .map_err(|e| err(&image.to_string(), e))?;
            if let Some(g) = got
                && g != m.digest.to_string()
                && g.starts_with(m.digest.algorithm().as_str())
            {
                return Err(format!(
                    "{image}: the registry stored the manifest as {g}, not {}",
                    m.digest
                ));
            }
            Ok(())
        }
        End::Layout { layout, .. } => {
            layout
                .write_blob(&m.digest, &m.bytes)
                .map_err(|e| e.to_string())?;
            let desc = Descriptor {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                size: m.bytes.len() as u64,
                raw: Value::Null,
            };
            if let Some(t) = tag {
                layout
                    .add_to_index(&desc, Some(t))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_blobs_lists_config_then_layers() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": format!("sha256:{}", "a".repeat(64)), "size": 2},
            "layers": [{"mediaType": "l", "digest": format!("sha256:{}", "b".repeat(64)), "size": 3}]
        });
        let b = manifest_blobs(m.to_string().as_bytes()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].size, 3);
        assert!(manifest_blobs(br#"{"schemaVersion":1}"#).is_err());
    }
}
