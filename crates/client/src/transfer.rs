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

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use stowage_oci::{Algorithm, Digest, media};

use crate::image_ref::ImageRef;
use crate::layout::{Descriptor, Layout};
use crate::{Client, ClientError};

/// Where an image is: a registry reference, or an OCI layout (`oci:DIR[:TAG]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Registry(ImageRef),
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`
    DockerArchive {
        file: PathBuf,
        name: Option<String>,
    },
}

impl Location {
    /// Parse `oci:DIR[:TAG]`, or else a registry reference.
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t.to_string())),
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(format!(
                    "{s:?}: oci: needs a directory, as in oci:./image:latest"
                ));
            }
            return Ok(Location::Layout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = match rest.rsplit_once(':') {
                Some((f, t)) if !t.contains('/') && !f.is_empty() => (f, Some(t.to_string())),
                _ => (rest, None),
            };
            return Ok(Location::OciArchive {
                file: PathBuf::from(file),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // docker-archive:FILE or docker-archive:FILE:name:tag (skopeo's form).
            let (file, name) = match rest.split_once(':') {
                Some((f, n)) if !f.is_empty() => (f, Some(n.to_string())),
                _ => (rest, None),
            };
            return Ok(Location::DockerArchive {
                file: PathBuf::from(file),
                name,
            });
        }
        for prefix in ["docker-daemon:", "dir:"] {
            if s.starts_with(prefix) {
                return Err(format!(
                    "{s:?}: {prefix} is not supported; use oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE or a registry reference"
                ));
            }
        }
        let s = s.strip_prefix("docker://").unwrap_or(s);
        ImageRef::parse(s)
            .map(Location::Registry)
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Layout { dir, tag } => match tag {
                Some(t) => write!(f, "oci:{}:{t}", dir.display()),
                None => write!(f, "oci:{}", dir.display()),
            },
            Location::OciArchive { file, tag } => match tag {
                Some(t) => write!(f, "oci-archive:{}:{t}", file.display()),
                None => write!(f, "oci-archive:{}", file.display()),
            },
            Location::DockerArchive { file, name } => match name {
                Some(n) => write!(f, "docker-archive:{}:{n}", file.display()),
                None => write!(f, "docker-archive:{}", file.display()),
            },
        }
    }
}

/// An OS/architecture pair, optionally with a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: use os/arch[/variant], e.g. linux/arm64"
            )),
        }
    }

    /// This machine, in OCI terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's `platform` object is this platform (a variant, when asked
    /// for, must match; when not asked for, any variant does).
    pub fn matches(&self, p: &Value) -> bool {
        p["os"].as_str() == Some(self.os.as_str())
            && p["architecture"].as_str() == Some(self.architecture.as_str())
            && self
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Which images of an index to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// Only this platform's image (the destination gets that manifest, not the index).
    One(Platform),
    /// The index and every image in it (the index keeps its digest).
    All,
}

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

/// Stream of a source blob from `offset`.
type Chunks = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, String>>;

async fn open_blob(src: &End, d: &Descriptor, offset: u64) -> Result<(Chunks, u64), String> {
    match src {
        End::Registry { client, image } => {
            let range = (offset > 0 && offset < d.size).then(|| (offset, d.size - 1));
            let resp = match client.blob_get(&image.repository, &d.digest, range).await {
                Ok(r) => r,
                // A foreign layer the registry does not hold: fetch it from its `urls`, without
                // the registry's credentials.
                Err(e) if e.status() == Some(404) && d.raw["urls"].is_array() => {
                    foreign(client, d, range).await.map_err(|why| {
                        err(
                            &format!("{image}: blob {}", d.digest),
                            format!("{e}; from its urls: {why}"),
                        )
                    })?
                }
                Err(e) => return Err(err(&format!("{image}: blob {}", d.digest), e)),
            };
            // A registry that ignores Range sends everything from zero.
            let from = if resp.status() == 206 { offset } else { 0 };
            let s = resp.bytes_stream().map_err(|e| e.to_string()).boxed();
            Ok((s, from))
        }
        End::Layout { layout, .. } => {
            use std::io::{Read, Seek, SeekFrom};
            let path = layout.blob_path(&d.digest);
            let mut f =
                std::fs::File::open(&path).map_err(|e| err(&path.display().to_string(), e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| err(&path.display().to_string(), e))?;
            let s = futures_util::stream::unfold(f, |mut f| async move {
                let r = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    let n = f.read(&mut buf)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>((buf, f))
                })
                .await;
                match r {
                    Ok(Ok((buf, _))) if buf.is_empty() => None,
                    Ok(Ok((buf, f))) => Some((Ok(bytes::Bytes::from(buf)), f)),
                    Ok(Err(e)) => {
                        Some((Err(e.to_string()), std::fs::File::open("/dev/null").ok()?))
                    }
                    Err(e) => Some((Err(e.to_string()), std::fs::File::open("/dev/null").ok()?)),
                }
            })
            .boxed();
            Ok((s, offset))
        }
    }
}

/// GET a foreign layer from the first of its `urls` that answers.
async fn foreign(
    client: &Client,
    d: &Descriptor,
    range: Option<(u64, u64)>,
) -> Result<reqwest::Response, String> {
    let mut last = "no usable URL".to_string();
    for url in d.raw["urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str())
    {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            continue;
        }
        let mut req = client.plain_http().get(url);
        if let Some((a, b)) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{b}"));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r) => last = format!("{url}: {}", r.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

async fn copy_blob(
    src: &End,
    dst: &End,
    d: &Descriptor,
    progress: Arc<dyn Progress>,
) -> Result<(), String> {
    match dst {
        End::Layout { layout, .. } => {
            if layout.has_blob(&d.digest, d.size) {
                progress.done(&d.digest, "exists");
                return Ok(());
            }
            let ctx = format!("{}: blob {}", src.name(), d.digest);
            let mut attempt = 0u32;
            let mut restarted = false;
            loop {
                attempt += 1;
                let mut w = layout.blob_writer(&d.digest).map_err(|e| e.to_string())?;
                if w.offset() >= d.size {
                    w.reset().map_err(|e| e.to_string())?;
                }
                let resumed = w.offset() > 0;
                let (mut stream, from) = open_blob(src, d, w.offset()).await?;
                if from != w.offset() {
                    w.reset().map_err(|e| e.to_string())?;
                }
                progress.start(&d.digest, d.size, from);
                let mut cut = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(c) => {
                            w.write(&c).map_err(|e| e.to_string())?;
                            progress.advance(&d.digest, c.len() as u64);
                        }
                        Err(e) => {
                            cut = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = cut {
                    // The bytes so far stay in the partial file: ask for the rest.
                    drop(w);
                    if attempt < 4 {
                        progress.note(&format!("{ctx}: transfer cut ({e}); resuming"));
                        tokio::time::sleep(std::time::Duration::from_millis(
                            250 * u64::from(attempt),
                        ))
                        .await;
                        continue;
                    }
                    return Err(err(&ctx, e));
                }
                match w.commit() {
                    Ok(()) => break,
                    // The bytes kept from an earlier attempt were bad (the partial file is gone
                    // now): fetch the whole blob once more.
                    Err(crate::layout::LayoutError::Digest { .. }) if resumed && !restarted => {
                        restarted = true;
                        progress.note(&format!(
                            "{ctx}: the partial download kept from an earlier attempt was corrupt; starting it again"
                        ));
                    }
                    Err(e) => return Err(err(&src.name(), e)),
                }
            }
            progress.done(&d.digest, "copied");
            Ok(())
        }
        End::Registry { client, image } => {
            let repo = &image.repository;
            // Foreign (non-distributable) layers stay where their `urls` point, as docker and
            // skopeo leave them.
            if (d.media_type.contains("foreign") || d.media_type.contains("nondistributable"))
                && d.raw["urls"].is_array()
            {
                progress.done(&d.digest, "left at its urls (foreign layer)");
                return Ok(());
            }
            if client
                .blob_head(repo, &d.digest)
                .await
                .map_err(|e| err(&image.to_string(), e))?
                .is_some()
            {
                progress.done(&d.digest, "exists");
                return Ok(());
            }
            if let End::Registry { image: from, .. } = src
                && from.registry == image.registry
                && from.repository != image.repository
                && client
                    .blob_mount(repo, &d.digest, &from.repository)
                    .await
                    .unwrap_or(false)
            {
                progress.done(&d.digest, "mounted");
                return Ok(());
            }
            upload(src, client, image, d, progress.clone()).await?;
            progress.done(&d.digest, "copied");
            Ok(())
        }
    }
}

/// Upload one blob as a single streamed PUT. If that fails midway, ask the registry how much
/// of the session it holds and send only the rest; if it holds nothing usable (or the session is
/// gone), start a new session. A refusal by the registry (a 4xx such as a wrong digest or a
/// missing right) is final.
async fn upload(
    src: &End,
    client: &Client,
    image: &ImageRef,
    d: &Descriptor,
    progress: Arc<dyn Progress>,
) -> Result<(), String> {
    let ctx = format!("{image}: blob {}", d.digest);
    let body_from = |stream: Chunks, digest: Digest, progress: Arc<dyn Progress>| {
        reqwest::Body::wrap_stream(stream.map(move |c| {
            if let Ok(b) = &c {
                progress.advance(&digest, b.len() as u64);
            }
            c.map_err(std::io::Error::other)
        }))
    };
    let final_refusal = |e: &ClientError| {
        e.status()
            .is_some_and(|s| (400..500).contains(&s) && !matches!(s, 404 | 408 | 416 | 429))
    };
    let mut last = String::new();
    for attempt in 1..=3u32 {
        let up = client
            .upload_start(&image.repository)
            .await
            .map_err(|e| err(&ctx, e))?;
        let (stream, _) = open_blob(src, d, 0).await?;
        progress.start(&d.digest, d.size, 0);
        let first = client
            .upload_finish(
                up.clone(),
                &d.digest,
                Some((
                    body_from(stream, d.digest.clone(), progress.clone()),
                    d.size,
                )),
            )
            .await;
        let e = match first {
            Ok(()) => return Ok(()),
            Err(e) if final_refusal(&e) => return Err(err(&ctx, e)),
            Err(e) => e,
        };
        last = e.to_string();
        // The registry may still be finishing the cut request: give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(300 * u64::from(attempt))).await;
        // An empty session reports `0-0`, which also means one byte: only resume past that.
        if let Ok(offset) = client.upload_status(&up).await
            && offset > 1
            && offset <= d.size
        {
            progress.note(&format!(
                "{ctx}: resuming the upload at byte {offset} after: {e}"
            ));
            let (stream, from) = open_blob(src, d, offset).await?;
            if from == offset {
                let mut up = up;
                let rest = async {
                    if offset < d.size {
                        client
                            .upload_patch(
                                &mut up,
                                body_from(stream, d.digest.clone(), progress.clone()),
                                Some((offset, d.size - 1)),
                            )
                            .await?;
                    }
                    client.upload_finish(up, &d.digest, None).await
                }
                .await;
                match rest {
                    Ok(()) => return Ok(()),
                    Err(e) if final_refusal(&e) && e.status() != Some(400) => {
                        return Err(err(&ctx, e));
                    }
                    Err(e) => last = e.to_string(),
                }
            }
        }
        if attempt < 3 {
            progress.note(&format!("{ctx}: upload failed ({last}); starting it again"));
        }
    }
    Err(err(&ctx, last))
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
    fn locations_and_platforms() {
        assert_eq!(
            Location::parse("oci:/tmp/x:v1").unwrap(),
            Location::Layout {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::parse("oci:./a/b").unwrap(),
            Location::Layout {
                dir: "./a/b".into(),
                tag: None
            }
        );
        assert!(matches!(
            Location::parse("ubuntu").unwrap(),
            Location::Registry(_)
        ));
        assert_eq!(
            Location::parse("oci-archive:x.tar:v2").unwrap(),
            Location::OciArchive {
                file: "x.tar".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            Location::parse("docker-archive:/t/x.tar:app:v1").unwrap(),
            Location::DockerArchive {
                file: "/t/x.tar".into(),
                name: Some("app:v1".into())
            }
        );
        assert!(
            Location::parse("dir:/x")
                .unwrap_err()
                .contains("not supported")
        );
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(
            p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"}))
        );
        assert!(
            !p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v7"}))
        );
        let any = Platform::parse("linux/arm64").unwrap();
        assert!(
            any.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"}))
        );
        assert!(Platform::parse("linux").is_err());
        assert_eq!(Platform::host().os, "linux");
    }

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
