//! The benchmark's correctness checks, run by the test suite on tiny sizes: every workload
//! against Stowage and against CNCF distribution must pass its status, length, byte, digest
//! and listing checks. The numbers are not looked at here (timings live in the benchmark).

use std::path::PathBuf;

use stowage_bench::procs::Registry;
use stowage_bench::{Sizes, ceilings, report, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_workloads_pass_their_checks_on_both_registries() {
    let work = tempfile::tempdir().unwrap();
    let sizes = Sizes::smoke();
    let sdir = work.path().join("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let stowage =
        Registry::stowage(&PathBuf::from(env!("CARGO_BIN_EXE_stowage")), &sdir, false).unwrap();
    let s = run(&stowage, &sizes, &|_| {})
        .await
        .expect("stowage passes every workload check");
    let ddir = work.path().join("d");
    std::fs::create_dir_all(&ddir).unwrap();
    let dist = Registry::distribution("docker-registry", &ddir).unwrap();
    let d = run(&dist, &sizes, &|_| {})
        .await
        .expect("distribution passes every workload check");
    for (key, ..) in report::ROWS {
        assert!(s.contains_key(key), "stowage figure {key} missing");
        assert!(d.contains_key(key), "distribution figure {key} missing");
    }
    let (sha, cpu) = ceilings::sha256(sizes.ceiling_bytes);
    let lo = ceilings::loopback(sizes.ceiling_bytes).await;
    let table = report::table(
        &s,
        Some(&d),
        &ceilings::Ceilings {
            sha256_mbps: sha,
            sha256_cpu_s_per_gib: cpu,
            loopback_mbps: lo,
        },
    );
    assert!(table.contains("| push big blob, monolithic |"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_workloads_pass_with_token_auth_on() {
    let work = tempfile::tempdir().unwrap();
    let stowage = Registry::stowage(
        &PathBuf::from(env!("CARGO_BIN_EXE_stowage")),
        work.path(),
        true,
    )
    .unwrap();
    assert!(stowage.creds.is_some());
    // Without a token the registry refuses; the workloads log in and pass every check.
    let anonymous = reqwest::get(format!("{}/v2/bench/big/tags/list", stowage.url))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let s = run(&stowage, &Sizes::smoke(), &|_| {})
        .await
        .expect("stowage with auth passes every workload check");
    assert!(s.contains_key("manifest_get_per_s"));
}
