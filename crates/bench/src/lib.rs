//! Side-by-side benchmark of Stowage and CNCF distribution.
//!
//! Layout:
//! - `data`: seeded blobs that are free to send and check.
//! - `procs`: the registries as child processes, and their CPU and memory from `/proc`.
//! - `ceilings`: the machine's SHA-256 and loopback TCP limits, measured in the same run.
//! - `workloads`: the workloads, identical for both registries.
//! - `report`: the comparison table and the targets.
//! - `scale`: Stowage-only checks of memory, parallelism and start-up at scale.
//! - `soak`: the long mixed run with auth and HTTPS, optionally killing the server (`soak`).
//! - `run` (here): one registry through every workload, collecting [`Figures`].
//!
//! The load comes from `stowage-client`, the protocol core Stowage's own client is built on.

pub mod ceilings;
pub mod data;
pub mod procs;
pub mod report;
pub mod scale;
pub mod soak;
pub mod stats;
pub mod workloads;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use stowage_client::Client;
use stowage_client::credentials::Credential;

use crate::data::SeededBlob;
use crate::procs::Registry;
use crate::workloads::Read;

/// Workload sizes.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// The big blob pushed and pulled.
    pub big: u64,
    /// Chunk size of the chunked push.
    pub chunk: u64,
    /// Times the big blob is pulled for the pull figures (CPU time in `/proc` counts 10 ms
    /// ticks: one pull of a small blob costs only a few of them).
    pub pull_reps: u32,
    pub small_count: usize,
    pub small_size: usize,
    pub pushers: usize,
    pub manifests: usize,
    pub manifest_conc: usize,
    pub read_secs: f64,
    pub read_conns: usize,
    pub list_reps: usize,
    /// Bytes hashed and sent over loopback for the ceilings.
    pub ceiling_bytes: u64,
}

impl Sizes {
    /// The full run (well under ten minutes for both registries).
    pub fn full() -> Sizes {
        Sizes {
            big: 1 << 30,
            chunk: 16 << 20,
            pull_reps: 1,
            small_count: 4000,
            small_size: 4096,
            pushers: 16,
            manifests: 10_000,
            manifest_conc: 16,
            read_secs: 10.0,
            read_conns: 64,
            list_reps: 20,
            ceiling_bytes: 2 << 30,
        }
    }

    /// `--quick`: small sizes, about a minute.
    pub fn quick() -> Sizes {
        Sizes {
            big: 128 << 20,
            chunk: 16 << 20,
            pull_reps: 8,
            small_count: 800,
            small_size: 4096,
            pushers: 16,
            manifests: 1000,
            manifest_conc: 16,
            read_secs: 2.0,
            read_conns: 64,
            list_reps: 5,
            ceiling_bytes: 512 << 20,
        }
    }

    /// The correctness smoke run used by the test suite (numbers meaningless).
    pub fn smoke() -> Sizes {
        Sizes {
            big: 20 << 20,
            chunk: 3 << 20,
            pull_reps: 1,
            small_count: 64,
            small_size: 4096,
            pushers: 8,
            manifests: 150,
            manifest_conc: 8,
            read_secs: 0.3,
            read_conns: 8,
            list_reps: 2,
            ceiling_bytes: 8 << 20,
        }
    }
}

/// Figures for one registry, by key (see `report::ROWS`).
pub type Figures = BTreeMap<&'static str, f64>;

/// Let the disk finish earlier work (writeback, and discards of files deleted by a previous
/// phase or run) so one workload's flushing is not charged to the next: `sync`, then wait until
/// `/proc/diskstats` shows no writes or discards for a whole second (at most two minutes, or
/// `STOWAGE_BENCH_SETTLE_MAX` seconds: on a machine where other work writes all the time the
/// disk never settles, and every phase would wait the whole two minutes).
pub async fn settle() {
    let _ = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    let max = std::env::var("STOWAGE_BENCH_SETTLE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(max);
    let mut last = disk_activity();
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = disk_activity();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Writes and discards completed on every block device (fields 8 and 15 of
/// `/proc/diskstats`, counted from the device name).
fn disk_activity() -> u64 {
    let text = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            n(7) + n(14)
        })
        .sum()
}

/// Run every workload against `reg`.
pub async fn run(reg: &Registry, sizes: &Sizes, progress: &dyn Fn(&str)) -> Result<Figures> {
    let progress = |what: &str| {
        let (rss, peak) = reg.memory_mib();
        progress(&format!(
            "{what} (server RSS {rss:.0} MiB, peak so far {peak:.0} MiB)"
        ));
    };
    // With authentication on, every request carries a bearer JWT, fetched per repository
    // scope on the first 401 and renewed before it expires.
    let c = match &reg.creds {
        Some((user, pass)) => Client::new(&reg.url)?.with_auth(Some(Credential {
            username: user.clone(),
            secret: pass.clone(),
        })),
        None => Client::new(&reg.url)?,
    };
    c.ping().await?;
    let mut f = Figures::new();
    let (idle, _) = reg.memory_mib();
    f.insert("mem_idle_mib", idle);
    let gib = (1u64 << 30) as f64;

    progress("push big blob (monolithic, chunked)");
    let mono = SeededBlob::new(1, sizes.big);
    let chunked = SeededBlob::new(2, sizes.big);
    settle().await;
    let cpu0 = reg.cpu_seconds();
    f.insert(
        "push_mono_mbps",
        workloads::push_monolithic(&c, "bench/big", &mono).await?,
    );
    f.insert(
        "push_chunked_mbps",
        workloads::push_chunked(&c, "bench/big", &chunked, sizes.chunk).await?,
    );
    f.insert(
        "cpu_s_per_gib_push",
        (reg.cpu_seconds() - cpu0) / (2.0 * sizes.big as f64 / gib),
    );

    progress("pull big blob");
    settle().await;
    let cpu0 = reg.cpu_seconds();
    let t0 = std::time::Instant::now();
    for _ in 0..sizes.pull_reps {
        workloads::pull(&c, "bench/big", &mono).await?;
    }
    let pulled = sizes.big as f64 * f64::from(sizes.pull_reps);
    f.insert(
        "pull_mbps",
        pulled / t0.elapsed().as_secs_f64() / 1_000_000.0,
    );
    f.insert(
        "cpu_s_per_gib_pull",
        (reg.cpu_seconds() - cpu0) / (pulled / gib),
    );
    workloads::verify_digest(&c, "bench/big", &mono.digest).await?;
    workloads::verify_digest(&c, "bench/big", &chunked.digest).await?;

    progress("small blob pushes");
    settle().await;
    let (rate, lat, small) = workloads::small_pushes(
        &c,
        "bench/small",
        sizes.small_count,
        sizes.small_size,
        sizes.pushers,
    )
    .await?;
    f.insert("small_push_per_s", rate);
    f.insert("small_push_p50_ms", lat.quantile_ms(0.5));
    f.insert("small_push_p99_ms", lat.quantile_ms(0.99));
    for (d, _) in small.iter().take(8) {
        workloads::verify_digest(&c, "bench/small", d).await?;
    }

    progress("manifest pushes");
    let (rate, manifests) =
        workloads::manifests(&c, "bench/manifests", sizes.manifests, sizes.manifest_conc).await?;
    f.insert("manifest_put_per_s", rate);

    let small = Arc::new(small);
    for (what, key) in [
        (Read::ManifestHead, "manifest_head"),
        (Read::ManifestGet, "manifest_get"),
        (Read::BlobHead, "blob_head"),
    ] {
        progress(key);
        let repo = if matches!(what, Read::BlobHead) {
            "bench/small"
        } else {
            "bench/manifests"
        };
        let (rate, lat) = workloads::reads(
            &c,
            repo,
            what,
            sizes.read_secs,
            sizes.read_conns,
            manifests.clone(),
            small.clone(),
        )
        .await?;
        f.insert(leak(format!("{key}_per_s")), rate);
        f.insert(leak(format!("{key}_p50_ms")), lat.quantile_ms(0.5));
        f.insert(leak(format!("{key}_p99_ms")), lat.quantile_ms(0.99));
    }

    progress("tag list");
    let tags: Vec<String> = manifests.iter().map(|m| m.tag.clone()).collect();
    let sorted = reg.kind == procs::Kind::Stowage;
    f.insert(
        "tag_list_ms",
        workloads::tag_list(&c, "bench/manifests", &tags, sizes.list_reps, sorted).await?,
    );
    if sorted {
        workloads::tag_pages(&c, "bench/manifests", &tags).await?;
    }

    let (_, peak) = reg.memory_mib();
    f.insert("mem_peak_mib", peak);
    progress("done");
    Ok(f)
}

/// Figure keys are static strings; the few built at run time are interned once per key.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
