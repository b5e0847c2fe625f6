//! 1,000 mixed operations (monolithic, single-POST and chunked pushes, mounts, manifest PUTs
//! that move tags, deletes, reads) against a server whose every backend call fails 5% of the
//! time (transient errors, full disk, lost connections, latency, torn writes, fsyncs and links
//! whose answers are lost), with a client that retries 503s and 507s. Every answer must be a
//! success, a clean 503/507, or the protocol's answer to a retry (416 with the session's
//! `Range`, 404 for a delete already done); at the end the store checker must find the store
//! consistent, and every acknowledged blob must read back byte for byte and every acknowledged
//! tag must name its manifest.
//!
//! The run is deterministic from its seed: `STOWAGE_FAULT_SEED=N` replays a failure (the seed
//! is printed at the start and in every failure message).

mod fault_rig;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fault_rig::Rig;
use stowage_oci::{Algorithm, Digest};
use stowage_storage::IoFault;
use stowage_testkit::fault::{Fault, Rng};

const OPS: usize = 1000;
const RATE: f64 = 0.05;
const DEFAULT_SEED: u64 = 0x5EED_0011;
const ETIMEDOUT: i32 = 110;
const REPOS: [&str; 3] = ["r0", "r1", "team/r2"];
const TAGS: [&str; 4] = ["a", "b", "c", "latest"];
/// Attempts of one client action before it gives up (the fault then counts as unresolved).
const ATTEMPTS: usize = 6;

struct Run {
    rig: Rig,
    rng: Rng,
    seed: u64,
    /// Acknowledged blobs per repository, with their bytes.
    blobs: BTreeMap<(String, Digest), Vec<u8>>,
    /// Blobs named by any manifest PUT attempt (never deleted, so manifests stay whole).
    used: BTreeSet<(String, Digest)>,
    /// Acknowledged tags and the manifest digest they name.
    tags: BTreeMap<(String, String), String>,
    /// Acknowledged manifests per repository.
    manifests: BTreeSet<(String, String)>,
    acks: usize,
    gave_up: usize,
}

impl Run {
    fn ctx(&self) -> String {
        format!(
            "seed {} (replay with STOWAGE_FAULT_SEED={}); last faults: {:?}",
            self.seed,
            self.seed,
            self.rig
                .plan
                .injected()
                .iter()
                .rev()
                .take(6)
                .collect::<Vec<_>>()
        )
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len() as u64) as usize]
    }

    /// An answer to a request that met faults: a success, or a clean 503/507.
    async fn check_failure(&self, r: reqwest::Response, what: &str) -> u16 {
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let body = r.text().await.unwrap_or_default();
        match status {
            503 => assert!(
                retry_after,
                "{what}: 503 without Retry-After; {}",
                self.ctx()
            ),
            507 => {}
            _ => panic!("{what}: unexpected {status}: {body}; {}", self.ctx()),
        }
        status
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer ({e}); {}", self.ctx()))
    }

    async fn session(&mut self, repo: &str) -> Option<String> {
        for _ in 0..ATTEMPTS {
            let r = self
                .send(
                    self.rig
                        .http
                        .post(format!("{}/v2/{repo}/blobs/uploads/", self.rig.url)),
                    "POST",
                )
                .await;
            if r.status() == 202 {
                return Some(format!(
                    "{}{}",
                    self.rig.url,
                    r.headers()["location"].to_str().unwrap()
                ));
            }
            self.check_failure(r, "POST session").await;
        }
        None
    }

    fn data(&mut self) -> Vec<u8> {
        let len = match self.rng.below(20) {
            0 => 1_100_000 + self.rng.below(300_000) as usize, // the streaming write path
            1 => 1 + self.rng.below(16) as usize,
            _ => 100 + self.rng.below(64 * 1024) as usize,
        };
        self.rng.bytes(len)
    }

    async fn finish(&mut self, loc: &str, d: &Digest, last: &[u8], at: usize) -> bool {
        let sep = if loc.contains('?') { '&' } else { '?' };
        for _ in 0..ATTEMPTS {
            let mut req = self
                .rig
                .http
                .put(format!("{loc}{sep}digest={d}"))
                .body(last.to_vec());
            if !last.is_empty() {
                req = req.header("Content-Range", format!("{at}-{}", at + last.len() - 1));
            }
            let r = self.send(req, "final PUT").await;
            if r.status() == 201 {
                return true;
            }
            self.check_failure(r, "final PUT").await;
        }
        false
    }

    fn ack_blob(&mut self, repo: &str, d: Digest, data: Vec<u8>) {
        self.acks += 1;
        self.blobs.insert((repo.to_string(), d), data);
    }

    async fn push_monolithic(&mut self, repo: &str) {
        let data = self.data();
        let d = Digest::of(Algorithm::Sha256, &data);
        let Some(loc) = self.session(repo).await else {
            return self.gave_up += 1;
        };
        if self.finish(&loc, &d, &data, 0).await {
            self.ack_blob(repo, d, data);
        } else {
            self.gave_up += 1;
        }
    }

    async fn push_single_post(&mut self, repo: &str) {
        let data = self.data();
        let d = Digest::of(Algorithm::Sha256, &data);
        for _ in 0..ATTEMPTS {
            let url = format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.rig.url);
            let r = self
                .send(self.rig.http.post(url).body(data.clone()), "single POST")
                .await;
            if r.status() == 201 {
                return self.ack_blob(repo, d, data);
            }
            self.check_failure(r, "single POST").await;
        }
        self.gave_up += 1;
    }

    async fn push_chunked(&mut self, repo: &str) {
        let mut data = self.data();
        if data.len() < 4 {
            data.extend_from_slice(b"pad!");
        }
        let d = Digest::of(Algorithm::Sha256, &data);
        let Some(loc) = self.session(repo).await else {
            return self.gave_up += 1;
        };
        let step = data.len().div_ceil(1 + self.rng.below(3) as usize).max(2);
        let mut offset = 0;
        let mut failures = 0;
        // Leave the last piece for the final PUT.
        while offset + step < data.len() {
            let end = offset + step;
            let req = self
                .rig
                .http
                .patch(&loc)
                .header("Content-Range", format!("{offset}-{}", end - 1))
                .body(data[offset..end].to_vec());
            let r = self.send(req, "PATCH").await;
            match r.status().as_u16() {
                202 => offset = end,
                // A lost answer's chunk was committed: resume where the session says.
                416 if failures > 0 => {
                    let range = r.headers()["range"].to_str().unwrap().to_string();
                    let held: usize = range.trim_start_matches("0-").parse().unwrap();
                    assert_eq!(
                        held + 1,
                        end,
                        "PATCH retry: session at {range}; {}",
                        self.ctx()
                    );
                    offset = end;
                }
                _ => {
                    self.check_failure(r, "PATCH").await;
                    failures += 1;
                    if failures == ATTEMPTS {
                        return self.gave_up += 1;
                    }
                }
            }
        }
        if self.finish(&loc, &d, &data[offset..], offset).await {
            self.ack_blob(repo, d, data);
        } else {
            self.gave_up += 1;
        }
    }

    /// A blob acknowledged in some repository, with that repository.
    fn some_blob(&mut self, repo: Option<&str>) -> Option<(String, Digest)> {
        let keys: Vec<_> = self
            .blobs
            .keys()
            .filter(|(r, _)| repo.is_none_or(|want| r == want))
            .cloned()
            .collect();
        (!keys.is_empty()).then(|| self.pick(&keys).clone())
    }

    async fn mount(&mut self, repo: &str) {
        let Some((from, d)) = self.some_blob(None) else {
            return;
        };
        for _ in 0..ATTEMPTS {
            let url = format!(
                "{}/v2/{repo}/blobs/uploads/?mount={d}&from={from}",
                self.rig.url
            );
            let r = self.send(self.rig.http.post(url), "mount").await;
            if r.status() == 201 {
                let data = self.blobs[&(from.clone(), d.clone())].clone();
                return self.ack_blob(repo, d, data);
            }
            self.check_failure(r, "mount").await;
        }
        self.gave_up += 1;
    }

    async fn put_manifest(&mut self, repo: &str) {
        let mut parts = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            if let Some(b) = self.some_blob(Some(repo)) {
                parts.push(b.1);
            }
        }
        let Some(config) = parts.first().cloned() else {
            return;
        };
        let size = |d: &Digest| self.blobs[&(repo.to_string(), d.clone())].len();
        let layers: Vec<String> = parts[1..]
            .iter()
            .map(|d| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#, size(d)))
            .collect();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{}}},"layers":[{}]}}"#,
            size(&config),
            layers.join(",")
        );
        for d in &parts {
            self.used.insert((repo.to_string(), d.clone()));
        }
        let md = Digest::of(Algorithm::Sha256, body.as_bytes()).to_string();
        let tag = self.pick(&TAGS).to_string();
        for _ in 0..ATTEMPTS {
            let req = self
                .rig
                .http
                .put(format!("{}/v2/{repo}/manifests/{tag}", self.rig.url))
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(body.clone());
            let r = self.send(req, "manifest PUT").await;
            if r.status() == 201 {
                self.acks += 1;
                self.manifests.insert((repo.to_string(), md.clone()));
                self.tags.insert((repo.to_string(), tag), md);
                return;
            }
            self.check_failure(r, "manifest PUT").await;
        }
        // Unresolved: a lost answer may have moved the tag.
        self.tags.remove(&(repo.to_string(), tag));
        self.gave_up += 1;
    }

    /// DELETE `path` with retries; a 404 after a failed attempt means the attempt did it.
    async fn delete(&mut self, path: &str, what: &str) -> bool {
        let mut failed = false;
        for _ in 0..ATTEMPTS {
            let r = self
                .send(
                    self.rig.http.delete(format!("{}{path}", self.rig.url)),
                    what,
                )
                .await;
            match r.status().as_u16() {
                202 => return true,
                404 if failed => return true,
                _ => {
                    self.check_failure(r, what).await;
                    failed = true;
                }
            }
        }
        false
    }

    async fn delete_something(&mut self, repo: &str) {
        match self.rng.below(3) {
            0 => {
                let tag = self.pick(&TAGS).to_string();
                let key = (repo.to_string(), tag.clone());
                if self.tags.contains_key(&key) {
                    let done = self
                        .delete(&format!("/v2/{repo}/manifests/{tag}"), "tag DELETE")
                        .await;
                    self.tags.remove(&key);
                    self.acks += usize::from(done);
                }
            }
            1 => {
                let ms: Vec<_> = self
                    .manifests
                    .iter()
                    .filter(|(r, _)| r == repo)
                    .cloned()
                    .collect();
                if ms.is_empty() {
                    return;
                }
                let (_, md) = self.pick(&ms).clone();
                let done = self
                    .delete(&format!("/v2/{repo}/manifests/{md}"), "manifest DELETE")
                    .await;
                self.manifests.remove(&(repo.to_string(), md.clone()));
                self.tags.retain(|(r, _), d| !(r == repo && *d == md));
                self.acks += usize::from(done);
            }
            _ => {
                let free: Vec<_> = self
                    .blobs
                    .keys()
                    .filter(|k| k.0 == repo && !self.used.contains(*k))
                    .cloned()
                    .collect();
                if free.is_empty() {
                    return;
                }
                let (_, d) = self.pick(&free).clone();
                let done = self
                    .delete(&format!("/v2/{repo}/blobs/{d}"), "blob DELETE")
                    .await;
                self.blobs.remove(&(repo.to_string(), d));
                self.acks += usize::from(done);
            }
        }
    }

    async fn read_something(&mut self) {
        let Some(key) = self.some_blob(None) else {
            return;
        };
        let url = format!("{}/v2/{}/blobs/{}", self.rig.url, key.0, key.1);
        let r = self.send(self.rig.http.get(url), "blob GET").await;
        if r.status() != 200 {
            self.check_failure(r, "blob GET").await;
            return;
        }
        // A read whose backend connection dropped ends early: the client sees the error.
        if let Ok(got) = r.bytes().await {
            assert_eq!(
                &got[..],
                &self.blobs[&key][..],
                "blob GET {}; {}",
                key.1,
                self.ctx()
            );
        }
    }

    async fn step(&mut self) {
        let repo = self.pick(&REPOS).to_string();
        match self.rng.below(100) {
            0..25 => self.push_monolithic(&repo).await,
            25..35 => self.push_single_post(&repo).await,
            35..50 => self.push_chunked(&repo).await,
            50..55 => self.mount(&repo).await,
            55..72 => self.put_manifest(&repo).await,
            72..85 => self.delete_something(&repo).await,
            _ => self.read_something().await,
        }
    }

    /// Without faults: every acknowledged blob reads back, every acknowledged tag names its
    /// manifest, and the store is consistent.
    async fn verify(&self) {
        self.rig.plan.clear();
        self.rig.assert_consistent().await;
        for ((repo, d), data) in &self.blobs {
            let r = self
                .send(
                    self.rig
                        .http
                        .get(format!("{}/v2/{repo}/blobs/{d}", self.rig.url)),
                    "verify GET",
                )
                .await;
            assert_eq!(
                r.status(),
                200,
                "acknowledged blob {repo}@{d} is gone; {}",
                self.ctx()
            );
            let got = r.bytes().await.unwrap();
            assert_eq!(
                Digest::of(Algorithm::Sha256, &got),
                *d,
                "{repo}@{d}; {}",
                self.ctx()
            );
            assert_eq!(&got[..], &data[..]);
        }
        for ((repo, tag), md) in &self.tags {
            let r = self
                .send(
                    self.rig
                        .http
                        .head(format!("{}/v2/{repo}/manifests/{tag}", self.rig.url))
                        .header("Accept", "application/vnd.oci.image.manifest.v1+json"),
                    "verify HEAD",
                )
                .await;
            assert_eq!(
                r.status(),
                200,
                "acknowledged tag {repo}:{tag} is gone; {}",
                self.ctx()
            );
            assert_eq!(
                r.headers()["docker-content-digest"],
                md.as_str(),
                "{repo}:{tag}; {}",
                self.ctx()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_operations_at_five_percent_faults() {
    let seed = std::env::var("STOWAGE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("fault seed {seed} (replay with STOWAGE_FAULT_SEED={seed})");
    let rig = Rig::start(seed, false).await;
    rig.plan.random(
        None,
        RATE,
        &[
            Fault::Unavailable,
            Fault::Full,
            Fault::LostConnection,
            Fault::Latency(Duration::from_millis(3)),
            Fault::Io(IoFault::Partial {
                keep: 7,
                errno: ETIMEDOUT,
            }),
            Fault::Io(IoFault::AfterEffect(ETIMEDOUT)),
        ],
    );
    let mut run = Run {
        rig,
        rng: Rng::new(seed ^ 0xA5A5_A5A5),
        seed,
        blobs: BTreeMap::new(),
        used: BTreeSet::new(),
        tags: BTreeMap::new(),
        manifests: BTreeSet::new(),
        acks: 0,
        gave_up: 0,
    };
    let started = Instant::now();
    for _ in 0..OPS {
        run.step().await;
    }
    let injected = run.rig.plan.injected().len();
    eprintln!(
        "{OPS} operations in {:?}: {} acknowledged, {} given up, {injected} faults injected",
        started.elapsed(),
        run.acks,
        run.gave_up
    );
    assert!(
        injected > 100,
        "only {injected} faults injected; {}",
        run.ctx()
    );
    assert!(
        run.acks > OPS / 2,
        "only {} operations acknowledged; {}",
        run.acks,
        run.ctx()
    );
    run.verify().await;
}
