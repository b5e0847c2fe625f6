//! Cost of `manifest::parse` on the two shapes every push carries: an image manifest and an index.
//!
//! Measures only. The inputs are built here, shaped like what docker/buildx push (annotations
//! included), so the numbers track JSON parsing plus digest validation of each descriptor.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stowage_oci::manifest;
use stowage_oci::media;

fn hex64(seed: u32) -> String {
    (0..8)
        .map(|i| format!("{:08x}", seed.wrapping_mul(2_654_435_761).wrapping_add(i)))
        .collect()
}

fn image_manifest() -> String {
    let layers: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":{}}}"#,
                hex64(10 + i),
                3_000_000 + i * 12_345
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":1472}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2026-01-01T00:00:00Z","org.opencontainers.image.source":"https://example.com/app"}}}}"#,
        media::OCI_MANIFEST,
        hex64(1),
        layers.join(",")
    )
}

fn index() -> String {
    const PLATFORMS: [(&str, &str); 10] = [
        ("linux", "amd64"),
        ("linux", "arm64"),
        ("linux", "arm"),
        ("linux", "386"),
        ("linux", "ppc64le"),
        ("linux", "s390x"),
        ("linux", "riscv64"),
        ("linux", "mips64le"),
        ("windows", "amd64"),
        ("windows", "arm64"),
    ];
    let manifests: Vec<String> = PLATFORMS
        .iter()
        .enumerate()
        .map(|(i, (os, arch))| {
            format!(
                r#"{{"mediaType":"{}","digest":"sha256:{}","size":{},"platform":{{"architecture":"{arch}","os":"{os}"}}}}"#,
                media::OCI_MANIFEST,
                hex64(100 + i as u32),
                1000 + i
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
        media::OCI_INDEX,
        manifests.join(",")
    )
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_parse");
    for (name, body, content_type) in [
        ("image_3_layers", image_manifest(), media::OCI_MANIFEST),
        ("index_10_platforms", index(), media::OCI_INDEX),
    ] {
        // Fail here, not silently benchmark the error path.
        manifest::parse(body.as_bytes(), Some(content_type)).expect("bench input is valid");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| manifest::parse(black_box(body.as_bytes()), Some(content_type)))
        });
    }
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
