//! Stowage-only scale checks of the performance issue: memory while receiving a very large
//! layer, several large pushes at once, and start-up time with a big store.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use stowage_client::Client;

use crate::data::{SeededBlob, small_blob};
use crate::procs::Registry;
use crate::workloads;

/// What the scale checks measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleFigures {
    /// Size of the very large layer, GiB.
    pub huge_gib: f64,
    /// Peak server RSS while receiving it, MiB.
    pub huge_peak_mib: f64,
    /// Concurrent large pushes: how many, of what size (GiB).
    pub parallel: usize,
    pub parallel_gib: f64,
    /// Aggregate MB/s of the concurrent pushes.
    pub parallel_mbps: f64,
    /// Server CPU seconds per wall second during them (2.0 = both cores busy).
    pub parallel_cores: f64,
    /// Blobs and tags in the store for the start-up check.
    pub blobs: usize,
    pub tags: usize,
    /// Milliseconds from process start until `GET /v2/` answers 200.
    pub ready_ms: f64,
}

/// Run the scale checks with Stowage from `bin` in `dir`.
pub async fn run(
    bin: &Path,
    dir: &Path,
    huge: u64,
    parallel: usize,
    each: u64,
    blobs: usize,
    tags: usize,
) -> Result<ScaleFigures> {
    let mut f = ScaleFigures {
        huge_gib: huge as f64 / (1u64 << 30) as f64,
        ..Default::default()
    };

    // A very large layer, streamed: memory must not grow with it.
    let d1 = dir.join("huge");
    std::fs::create_dir_all(&d1)?;
    let reg = Registry::stowage(bin, &d1, false)?;
    let c = Client::new(&reg.url)?;
    let blob = SeededBlob::new(11, huge);
    crate::settle().await;
    workloads::push_monolithic(&c, "scale/huge", &blob).await?;
    f.huge_peak_mib = reg.memory_mib().1;
    ensure!(
        c.blob_head("scale/huge", &blob.digest).await? == Some(huge),
        "huge layer not stored"
    );
    drop(reg);
    std::fs::remove_dir_all(&d1)?;

    // Several large pushes at once should use every core.
    let d2 = dir.join("parallel");
    std::fs::create_dir_all(&d2)?;
    let reg = Registry::stowage(bin, &d2, false)?;
    let c = Client::new(&reg.url)?;
    let blobs_big: Vec<SeededBlob> = (0..parallel)
        .map(|i| SeededBlob::new(100 + i as u64, each))
        .collect();
    crate::settle().await;
    let cpu0 = reg.cpu_seconds();
    let t0 = Instant::now();
    let tasks: Vec<_> = blobs_big
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let c = c.clone();
            tokio::spawn(
                async move { workloads::push_monolithic(&c, &format!("scale/p{i}"), &b).await },
            )
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let wall = t0.elapsed().as_secs_f64();
    f.parallel = parallel;
    f.parallel_gib = each as f64 / (1u64 << 30) as f64;
    f.parallel_mbps = (parallel as u64 * each) as f64 / wall / 1e6;
    f.parallel_cores = (reg.cpu_seconds() - cpu0) / wall;
    drop(reg);
    std::fs::remove_dir_all(&d2)?;

    // Start-up with a big store: many blobs and tags, then a restart.
    let d3 = dir.join("startup");
    std::fs::create_dir_all(&d3)?;
    let reg = Registry::stowage(bin, &d3, false)?;
    let c = Client::new(&reg.url)?;
    fill(&c, blobs, tags).await?;
    reg.stop()?;
    let t0 = Instant::now();
    let reg = Registry::stowage(bin, &d3, false)?;
    let c = Client::new(&reg.url)?;
    while c.ping().await.is_err() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    f.ready_ms = t0.elapsed().as_secs_f64() * 1000.0;
    f.blobs = blobs;
    f.tags = tags;
    ensure!(
        c.all_tags("scale/tags", None).await?.len() == tags,
        "tags lost across the restart"
    );
    Ok(f)
}

/// Push `blobs` small blobs (single-POST uploads, 32 at a time) and `tags` tagged manifests.
async fn fill(c: &Client, blobs: usize, tags: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (c, next) = (c.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= blobs {
                    return Ok::<_, anyhow::Error>(());
                }
                let (bytes, d) = small_blob(1_000_000 + i as u64, 128);
                c.push_blob_single_post(&format!("scale/r{}", i % 100), &d, bytes)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    workloads::manifests(c, "scale/tags", tags, 16).await?;
    Ok(())
}
