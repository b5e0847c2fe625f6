//! Memory after large manifest PUTs is given back (security review, "Low").
//!
//! The review pushed a 4 MB manifest with 38,000 descriptors twenty times in a row and then 32
//! more times, 16 at a time; each was refused (its blobs do not exist) yet resident memory grew
//! from 74 to 189 MiB and stayed there. The registry must parse such bodies without large
//! intermediate trees, bound how many it parses at once, and give the memory back: 10 s after
//! the 52 PUTs, resident memory is within 20 MiB of its value before them.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A manifest just under the spec's 4 MiB minimum limit, with `count` layer descriptors none of
/// which exists in the registry (about 112 bytes each).
fn huge_manifest(count: usize) -> Vec<u8> {
    let mut layers = String::with_capacity(count * 110);
    for i in 0..count {
        if i > 0 {
            layers.push(',');
        }
        let digest = format!("sha256:{i:064x}");
        layers.push_str(&format!(
            r#"{{"mediaType":"a/b","digest":"{digest}","size":{}}}"#,
            i % 10
        ));
    }
    let config = sha256_digest(b"config");
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config}","size":2}},"layers":[{layers}]}}"#
    )
    .into_bytes()
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `RssAnon`...).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Resident anonymous memory (the heap and stacks): what the allocator holds. File-backed
/// pages are left out: the first run of a code path maps more of the (debug) binary, which is
/// shared, clean and reclaimable, and is not memory the registry fails to give back.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_returns_after_large_manifest_puts() {
    // Past the default `limits.max_manifest_descriptors` (10,000): this test is about parsing
    // such bodies, and about the blob lookups behind them.
    let reg = Reg::start_with_config("[limits]\nmax_manifest_descriptors = 50000\n");
    let pid = reg.server.pid().expect("server pid");
    let body = huge_manifest(37_000);
    assert!(
        body.len() > 4_000_000 && body.len() <= 4 * 1024 * 1024,
        "manifest of {} bytes",
        body.len()
    );

    // Warm up, so the baseline is a server that has served requests (the review's started at
    // 74 MiB): a real push, and one large PUT, which sets up what any first request of a kind
    // sets up once (reader connections, blocking threads, buffers). What is measured is
    // whether a burst of them ratchets memory up, not those one-time costs.
    reg.push_image("mem/warm", "v1").await;
    reg.put_manifest("mem/huge", "latest", OCI_MANIFEST, &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    for _ in 0..20 {
        reg.put_manifest("mem/huge", "latest", OCI_MANIFEST, &body)
            .await
            .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    }
    let reg = std::sync::Arc::new(reg);
    let body = std::sync::Arc::new(body);
    for _ in 0..2 {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (reg, body) = (reg.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                reg.put_manifest("mem/huge", "latest", OCI_MANIFEST, &body)
                    .await
                    .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
            }));
        }
        for t in tasks {
            t.await.expect("PUT task");
        }
    }
    let peak = rss_kib(pid);

    // Within 10 s of the last PUT (the review's wait), resident memory is back within 20 MiB.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_kib(pid);
    while after > before + 20 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss_kib(pid);
    }
    eprintln!(
        "anonymous RSS before {} MiB, right after the PUTs {} MiB, settled {} MiB (VmRSS {} MiB, peak {} MiB)",
        before / 1024,
        peak / 1024,
        after / 1024,
        status_kib(pid, "VmRSS") / 1024,
        status_kib(pid, "VmHWM") / 1024,
    );
    assert!(
        after <= before + 20 * 1024,
        "resident memory {} KiB did not come back within 20 MiB of {} KiB",
        after,
        before
    );
    // The registry still works.
    reg.push_image("mem/after", "v1").await;
}
