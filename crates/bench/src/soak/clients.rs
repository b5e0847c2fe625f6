//! One soak client: its own connection pool (half the clients speak HTTP/2, half HTTP/1.1),
//! logged in as one of the soak users, working in its own repository with a random mix of
//! pushes (config + one layer + a manifest under a new tag; every fourth layer in chunks),
//! pulls (a manifest by tag and its layer, bytes and digests checked), tag listings (every
//! acknowledged tag must be listed) and deletes (a manifest by digest).
//!
//! Every acknowledged push goes into the client's ledger and leaves it only when the client
//! deletes it (before the DELETE is sent, so a delete cut by a restart never counts as lost).
//! Errors are counted by kind: a transport error, or any error of an operation during which the
//! server was killed, is an interruption; anything else is unexpected, and a wrong answer
//! (bytes, digest, a missing tag) is an integrity failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use futures_util::StreamExt;
use stowage_client::credentials::Credential;
use stowage_client::{Client, ClientError};
use stowage_oci::{Algorithm, Digest, Hasher};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// An acknowledged push.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub manifest: Digest,
    pub manifest_bytes: Bytes,
    pub blobs: Vec<(Digest, u64)>,
}

/// Counters shared by every client and the sampler.
pub struct Counters {
    pub epoch: std::time::Instant,
    pub pushes: AtomicU64,
    pub pulls: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub interrupted: AtomicU64,
    pub unexpected: AtomicU64,
    pub integrity: AtomicU64,
    /// Incremented at every kill of the server: an operation that saw it move was interrupted.
    pub kills: AtomicU64,
    /// Incremented when the server is back after a kill: while it differs from `kills`, the
    /// server is down.
    pub restarts: AtomicU64,
    /// When the server last came back from a kill (milliseconds since `epoch`; 0: never).
    pub restarted_ms: AtomicU64,
    pub stop: AtomicBool,
}

/// Operations starting this soon after a restart may still meet connections of the killed
/// process in their pools: their errors count as interruptions too.
const AFTER_RESTART: Duration = Duration::from_secs(5);

impl Default for Counters {
    fn default() -> Counters {
        Counters::new()
    }
}

impl Counters {
    pub fn new() -> Counters {
        Counters {
            epoch: std::time::Instant::now(),
            pushes: AtomicU64::new(0),
            pulls: AtomicU64::new(0),
            lists: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            integrity: AtomicU64::new(0),
            kills: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            restarted_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The server is being killed.
    pub fn killing(&self) {
        self.kills.fetch_add(1, Ordering::SeqCst);
    }

    /// The server is back after a kill.
    pub fn restarted(&self) {
        self.restarted_ms
            .store(self.now_ms().max(1), Ordering::SeqCst);
        self.restarts.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether an operation that started at `start_ms`, when `kills` kills and `restarts`
    /// restarts had happened, may have been cut by a kill: one happened since, or the server
    /// was down when it started, or had only just come back.
    fn interrupted(&self, start_ms: u64, kills: u64, restarts: u64) -> bool {
        if self.kills.load(Ordering::SeqCst) != kills || restarts != kills {
            return true;
        }
        let back = self.restarted_ms.load(Ordering::SeqCst);
        back != 0 && start_ms < back + AFTER_RESTART.as_millis() as u64
    }

    pub fn ops(&self) -> u64 {
        self.pushes.load(Ordering::Relaxed)
            + self.pulls.load(Ordering::Relaxed)
            + self.lists.load(Ordering::Relaxed)
            + self.deletes.load(Ordering::Relaxed)
    }
}

/// Why an operation failed.
#[derive(Debug)]
enum Failure {
    /// The registry answered, but wrongly.
    Integrity(String),
    /// The request failed.
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

/// What a client needs to reach the registry.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub ca_pem: Vec<u8>,
    pub user: String,
    pub password: String,
}

/// A registry client with its own connection pool.
pub fn client(t: &Target, http1_only: bool) -> Result<Client> {
    let mut b = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .add_root_certificate(reqwest::Certificate::from_pem(&t.ca_pem)?);
    if http1_only {
        b = b.http1_only();
    }
    Ok(
        Client::with_http(&t.url, b.build()?).with_auth(Some(Credential {
            username: t.user.clone(),
            secret: t.password.clone(),
        })),
    )
}

/// A small xorshift generator (no dependency, deterministic per client).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Bytes {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        Bytes::from(v)
    }
}

/// Run client `id` until `counters.stop`, pausing up to `pause` between operations; returns its
/// ledger of acknowledged pushes still expected to exist.
pub async fn run(
    id: usize,
    target: Target,
    counters: Arc<Counters>,
    pause: Duration,
) -> Result<Vec<Pushed>> {
    let c = client(&target, id % 2 == 1)?;
    let repo = format!("soak/c{id:02}");
    let mut rng = Rng((id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut ledger: Vec<Pushed> = Vec::new();
    let mut seq = 0u64;
    while !counters.stop.load(Ordering::Relaxed) {
        let restarts = counters.restarts.load(Ordering::SeqCst);
        let kills = counters.kills.load(Ordering::SeqCst);
        let start_ms = counters.now_ms();
        let roll = rng.below(100);
        let (result, counter) = if roll < 35 || ledger.is_empty() {
            seq += 1;
            let r = push(&c, &repo, id, seq, &mut rng).await;
            let r = r.map(|p| ledger.push(p));
            (r, &counters.pushes)
        } else if roll < 70 {
            let p = ledger[rng.below(ledger.len() as u64) as usize].clone();
            (pull(&c, &p).await, &counters.pulls)
        } else if roll < 90 {
            (list(&c, &repo, &ledger).await, &counters.lists)
        } else {
            let i = rng.below(ledger.len() as u64) as usize;
            let p = ledger.swap_remove(i);
            let r = c
                .manifest_delete(&p.repo, &p.manifest.to_string())
                .await
                .map_err(Failure::from);
            (r, &counters.deletes)
        };
        match result {
            Ok(()) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure::Integrity(why)) => {
                counters.integrity.fetch_add(1, Ordering::Relaxed);
                eprintln!("soak: client {id}: INTEGRITY: {why}");
            }
            Err(Failure::Client(e)) => {
                if counters.interrupted(start_ms, kills, restarts) {
                    counters.interrupted.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.unexpected.fetch_add(1, Ordering::Relaxed);
                    eprintln!("soak: client {id}: unexpected error: {e}");
                }
                // Give a restarting server a moment.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !pause.is_zero() {
            let ms = rng.below(pause.as_millis() as u64 + 1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    Ok(ledger)
}

/// A config blob, one layer (mostly up to 64 KiB, one in twenty up to 1 MiB, so a long run
/// stays within a few GB of disk; every fourth pushed in 16 KiB chunks) and a manifest under a
/// new tag.
async fn push(
    c: &Client,
    repo: &str,
    id: usize,
    seq: u64,
    rng: &mut Rng,
) -> Result<Pushed, Failure> {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","soak":{{"client":{id},"seq":{seq}}}}}"#
    ));
    let config_d = Digest::of(Algorithm::Sha256, &config);
    c.push_blob(
        repo,
        &config_d,
        reqwest::Body::from(config.clone()),
        config.len() as u64,
    )
    .await?;
    let size = if rng.below(20) == 0 {
        1 + rng.below(1 << 20)
    } else {
        1 + rng.below(64 << 10)
    } as usize;
    let layer = rng.bytes(size);
    let layer_d = Digest::of(Algorithm::Sha256, &layer);
    if seq.is_multiple_of(4) {
        let mut up = c.upload_start(repo).await?;
        let mut off = 0usize;
        while off < layer.len() {
            let n = (16 << 10).min(layer.len() - off);
            let end = c
                .upload_patch(
                    &mut up,
                    reqwest::Body::from(layer.slice(off..off + n)),
                    Some((off as u64, (off + n - 1) as u64)),
                )
                .await?;
            if end != (off + n) as u64 {
                return Err(Failure::Integrity(format!(
                    "{repo}: upload offset {end} after a chunk ending at {}",
                    off + n
                )));
            }
            off += n;
        }
        c.upload_finish(up, &layer_d, None).await?;
    } else {
        c.push_blob(
            repo,
            &layer_d,
            reqwest::Body::from(layer.clone()),
            size as u64,
        )
        .await?;
    }
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_d}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{size}}}]}}"#,
        config.len()
    ));
    let manifest_d = Digest::of(Algorithm::Sha256, &manifest);
    let tag = format!("t{seq}");
    let got = c
        .manifest_put(repo, &tag, MANIFEST_TYPE, manifest.clone())
        .await?;
    if got.as_deref() != Some(manifest_d.to_string().as_str()) {
        return Err(Failure::Integrity(format!(
            "{repo}:{tag}: PUT answered digest {got:?}, expected {manifest_d}"
        )));
    }
    Ok(Pushed {
        repo: repo.to_string(),
        tag,
        manifest: manifest_d,
        manifest_bytes: manifest,
        blobs: vec![(config_d, config.len() as u64), (layer_d, size as u64)],
    })
}

/// Pull the manifest by tag and its layer; bytes and digests must match what was pushed.
async fn pull(c: &Client, p: &Pushed) -> Result<(), Failure> {
    let m = c.manifest_get(&p.repo, &p.tag).await?;
    if m.bytes != p.manifest_bytes {
        return Err(Failure::Integrity(format!(
            "{}:{}: manifest pulled by tag differs from the one pushed",
            p.repo, p.tag
        )));
    }
    let (d, size) = &p.blobs[1];
    blob_matches(c, &p.repo, d, *size).await
}

/// Pull a blob and check its length and digest.
async fn blob_matches(c: &Client, repo: &str, d: &Digest, size: u64) -> Result<(), Failure> {
    let mut stream = c.blob_get(repo, d, None).await?.bytes_stream();
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Failure::Client(ClientError::Transport {
                what: "blob GET body".into(),
                source: e,
            })
        })?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    let got = h.finish();
    if n != size || &got != d {
        return Err(Failure::Integrity(format!(
            "{repo}@{d}: pulled {n} bytes with digest {got} (pushed {size})"
        )));
    }
    Ok(())
}

/// The repository's tag list must hold every tag in the ledger.
async fn list(c: &Client, repo: &str, ledger: &[Pushed]) -> Result<(), Failure> {
    let tags = c.all_tags(repo, None).await?;
    let tags: std::collections::HashSet<&str> = tags.iter().map(String::as_str).collect();
    if let Some(p) = ledger.iter().find(|p| !tags.contains(p.tag.as_str())) {
        return Err(Failure::Integrity(format!(
            "{repo}: acknowledged tag {} missing from the tag list",
            p.tag
        )));
    }
    Ok(())
}

/// After the run: every acknowledged push, pulled by digest and by tag, and every blob, with
/// digests checked. Returns the number checked and the failures.
pub async fn verify_all(target: &Target, ledger: &[Pushed]) -> Result<(usize, Vec<String>)> {
    let c = client(target, false)?;
    let mut failures = Vec::new();
    for p in ledger {
        let r: Result<(), Failure> = async {
            let by_digest = c.manifest_get(&p.repo, &p.manifest.to_string()).await?;
            let by_tag = c.manifest_get(&p.repo, &p.tag).await?;
            if Digest::of(Algorithm::Sha256, &by_digest.bytes) != p.manifest
                || by_tag.bytes != p.manifest_bytes
            {
                return Err(Failure::Integrity(format!(
                    "{}:{}: manifest differs",
                    p.repo, p.tag
                )));
            }
            for (d, size) in &p.blobs {
                blob_matches(&c, &p.repo, d, *size).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            failures.push(format!("{}:{} ({}): {e:?}", p.repo, p.tag, p.manifest));
        }
    }
    Ok((ledger.len(), failures))
}

/// Write the ledger as `repo tag manifest-digest blob-digests...` lines.
pub fn write_ledger(path: &std::path::Path, ledger: &[Pushed]) -> Result<()> {
    let mut out = String::new();
    for p in ledger {
        out.push_str(&format!("{} {} {}", p.repo, p.tag, p.manifest));
        for (d, _) in &p.blobs {
            out.push_str(&format!(" {d}"));
        }
        out.push('\n');
    }
    std::fs::write(path, out).context("write ledger")?;
    ensure!(path.exists(), "ledger not written");
    Ok(())
}
