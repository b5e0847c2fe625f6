//! The workloads, each run the same way against either registry.
//!
//! Timed passes check what they can cheaply (status codes, lengths, the bytes against the seeded
//! pattern); digests are verified in untimed passes, so the client's hashing never caps what is
//! measured but a fast wrong answer still fails the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures_util::StreamExt;
use stowage_client::Client;
use stowage_oci::{Algorithm, Digest, Hasher};

use crate::data::{SeededBlob, small_blob};
use crate::stats::Latencies;

const MB: f64 = 1_000_000.0;

/// Push `blob` with a POST and one streamed PUT; returns MB/s.
pub async fn push_monolithic(c: &Client, repo: &str, blob: &SeededBlob) -> Result<f64> {
    let t0 = Instant::now();
    let up = c.upload_start(repo).await?;
    c.upload_finish(up, &blob.digest, Some((blob.body(0, blob.len), blob.len)))
        .await?;
    Ok(blob.len as f64 / t0.elapsed().as_secs_f64() / MB)
}

/// Push `blob` in `chunk`-byte PATCHes with Content-Range, then a closing PUT; returns MB/s.
pub async fn push_chunked(c: &Client, repo: &str, blob: &SeededBlob, chunk: u64) -> Result<f64> {
    let t0 = Instant::now();
    let mut up = c.upload_start(repo).await?;
    let mut off = 0;
    while off < blob.len {
        let n = chunk.min(blob.len - off);
        let end = c
            .upload_patch(&mut up, blob.body(off, n), Some((off, off + n - 1)))
            .await?;
        ensure!(
            end == off + n,
            "registry reports offset {end} after a chunk ending at {}",
            off + n
        );
        off += n;
    }
    c.upload_finish(up, &blob.digest, None).await?;
    Ok(blob.len as f64 / t0.elapsed().as_secs_f64() / MB)
}

/// Pull `blob`, checking length and bytes as they stream; returns MB/s.
pub async fn pull(c: &Client, repo: &str, blob: &SeededBlob) -> Result<f64> {
    let t0 = Instant::now();
    let resp = c.blob_get(repo, &blob.digest, None).await?;
    ensure!(
        resp.content_length() == Some(blob.len),
        "wrong Content-Length {:?}",
        resp.content_length()
    );
    let mut stream = resp.bytes_stream();
    let mut off = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("pull body")?;
        ensure!(
            blob.matches(off, &chunk),
            "pulled bytes differ at offset {off}"
        );
        off += chunk.len() as u64;
    }
    ensure!(off == blob.len, "pulled {off} bytes of {}", blob.len);
    Ok(blob.len as f64 / t0.elapsed().as_secs_f64() / MB)
}

/// Untimed: pull the blob again and check its digest.
pub async fn verify_digest(c: &Client, repo: &str, digest: &Digest) -> Result<()> {
    let mut stream = c.blob_get(repo, digest, None).await?.bytes_stream();
    let mut h = Hasher::new(Algorithm::Sha256);
    while let Some(chunk) = stream.next().await {
        h.update(&chunk?);
    }
    let got = h.finish();
    ensure!(&got == digest, "blob {digest} pulled back as {got}");
    Ok(())
}

/// `pushers` tasks push `count` distinct blobs of `size` bytes (POST + PUT each).
/// Returns (blobs/s, latencies, the digests pushed).
pub async fn small_pushes(
    c: &Client,
    repo: &str,
    count: usize,
    size: usize,
    pushers: usize,
) -> Result<(f64, Latencies, Vec<(Digest, u64)>)> {
    let blobs: Arc<Vec<(Bytes, Digest)>> =
        Arc::new((0..count).map(|i| small_blob(i as u64 + 1, size)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..pushers {
        let (c, blobs, next, repo) = (c.clone(), blobs.clone(), next.clone(), repo.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((bytes, d)) = blobs.get(i) else {
                    return Ok::<_, anyhow::Error>(lat);
                };
                let t = Instant::now();
                c.push_blob(
                    &repo,
                    d,
                    reqwest::Body::from(bytes.clone()),
                    bytes.len() as u64,
                )
                .await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Latencies::default();
    for t in tasks {
        lat.extend(t.await??);
    }
    let rate = count as f64 / t0.elapsed().as_secs_f64();
    Ok((
        rate,
        lat,
        blobs
            .iter()
            .map(|(b, d)| (d.clone(), b.len() as u64))
            .collect(),
    ))
}

/// A manifest pushed by the manifest workload.
pub struct PushedManifest {
    pub tag: String,
    pub bytes: Bytes,
}

/// A tag name that does not sort like its index (so listing order is really checked).
fn tag_name(i: usize) -> String {
    let mix = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let case = if i.is_multiple_of(3) { "T" } else { "t" };
    format!("{case}{mix:06x}-{i}")
}

/// Push `count` small manifests with distinct tags using `conc` tasks; returns manifests/s.
pub async fn manifests(
    c: &Client,
    repo: &str,
    count: usize,
    conc: usize,
) -> Result<(f64, Arc<Vec<PushedManifest>>)> {
    let config = Bytes::from_static(b"{}");
    let config_d = Digest::of(Algorithm::Sha256, &config);
    c.push_blob(repo, &config_d, reqwest::Body::from(config.clone()), 2)
        .await?;
    let (layer, layer_d) = small_blob(424242, 1024);
    c.push_blob(repo, &layer_d, reqwest::Body::from(layer.clone()), 1024)
        .await?;
    let list: Arc<Vec<PushedManifest>> = Arc::new(
        (0..count)
            .map(|i| {
                let body = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_d}","size":1024}}],"annotations":{{"bench.index":"{i}"}}}}"#
                );
                PushedManifest { tag: tag_name(i), bytes: Bytes::from(body) }
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, list, next, repo) = (c.clone(), list.clone(), next.clone(), repo.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = list.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let want = Digest::of(Algorithm::Sha256, &m.bytes).to_string();
                let got = c
                    .manifest_put(
                        &repo,
                        &m.tag,
                        "application/vnd.oci.image.manifest.v1+json",
                        m.bytes.clone(),
                    )
                    .await?;
                ensure!(
                    got.as_deref() == Some(want.as_str()),
                    "manifest PUT reported digest {got:?}, expected {want}"
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((count as f64 / t0.elapsed().as_secs_f64(), list))
}

/// Which read request the read workload sends.
#[derive(Clone, Copy, Debug)]
pub enum Read {
    ManifestHead,
    ManifestGet,
    BlobHead,
}

/// `conns` tasks send `what` for `secs` seconds; returns (requests/s, latencies).
pub async fn reads(
    c: &Client,
    repo: &str,
    what: Read,
    secs: f64,
    conns: usize,
    manifests: Arc<Vec<PushedManifest>>,
    blobs: Arc<Vec<(Digest, u64)>>,
) -> Result<(f64, Latencies)> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..conns {
        let (c, repo, manifests, blobs) = (
            c.clone(),
            repo.to_string(),
            manifests.clone(),
            blobs.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let mut x = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let t = Instant::now();
                match what {
                    Read::ManifestHead => {
                        let m = &manifests[(x % manifests.len() as u64) as usize];
                        let (_, size) = c
                            .manifest_head(&repo, &m.tag)
                            .await?
                            .context("manifest missing")?;
                        ensure!(
                            size == m.bytes.len() as u64,
                            "HEAD length {size} for {}",
                            m.tag
                        );
                    }
                    Read::ManifestGet => {
                        let m = &manifests[(x % manifests.len() as u64) as usize];
                        let got = c.manifest_get(&repo, &m.tag).await?;
                        ensure!(got.bytes == m.bytes, "GET {} returned other bytes", m.tag);
                    }
                    Read::BlobHead => {
                        let (d, size) = &blobs[(x % blobs.len() as u64) as usize];
                        let got = c.blob_head(&repo, d).await?.context("blob missing")?;
                        ensure!(got == *size, "blob HEAD length {got} for {d}");
                    }
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Latencies::default();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((lat.len() as f64 / t0.elapsed().as_secs_f64(), lat))
}

/// Fetch the whole tag list in one unpaged request `reps` times; returns ms per listing.
/// `sorted` demands byte order (Stowage); otherwise the tags are compared as a set.
pub async fn tag_list(
    c: &Client,
    repo: &str,
    expected: &[String],
    reps: usize,
    sorted: bool,
) -> Result<f64> {
    let mut want = expected.to_vec();
    want.sort();
    let t0 = Instant::now();
    for _ in 0..reps {
        let page = c.tags_page(repo, None, None).await?;
        ensure!(
            page.next.is_none(),
            "unpaged listing of {} tags was paged",
            want.len()
        );
        if sorted {
            ensure!(page.tags == want, "tag list not complete and in byte order");
        } else {
            let mut got = page.tags;
            got.sort();
            ensure!(got == want, "tag list incomplete");
        }
    }
    Ok(t0.elapsed().as_secs_f64() * 1000.0 / reps as f64)
}

/// Follow `n=100` pages to the end and check order and completeness (Stowage only).
pub async fn tag_pages(c: &Client, repo: &str, expected: &[String]) -> Result<()> {
    let mut want = expected.to_vec();
    want.sort();
    let got = c.all_tags(repo, Some(100)).await?;
    if got != want {
        bail!(
            "paged listing with n=100 returned {} tags, not the {} expected in byte order",
            got.len(),
            want.len()
        );
    }
    Ok(())
}
