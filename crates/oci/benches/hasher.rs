//! Throughput of `Hasher` and the cost of saving and restoring its state.
//!
//! Measures only; decides nothing. Compare runs on the deployment CPUs: with SHA-NI the numbers
//! are hardware-bound, without it they show aws-lc's AVX2/SSSE3 assembly. Set
//! `OPENSSL_ia32cap=':~0x20000000'` to make aws-lc ignore SHA-NI on a machine that has it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stowage_oci::{Algorithm, Hasher};

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

fn throughput(c: &mut Criterion) {
    // 1 MiB per update, the size of a typical streamed body chunk after buffering.
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("hasher_update_1MiB");
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    for alg in ALGORITHMS {
        g.bench_function(alg.as_str(), |b| {
            let mut h = Hasher::new(alg);
            b.iter(|| h.update(black_box(&chunk)));
        });
    }
    g.finish();
}

fn save_restore(c: &mut Criterion) {
    let mut g = c.benchmark_group("hasher_state");
    for alg in ALGORITHMS {
        // An odd length leaves a partial block, the usual case at a PATCH boundary.
        let mut h = Hasher::new(alg);
        h.update(&[0x5a; 1_000_003]);
        let saved = h.save_state();
        g.bench_function(format!("save_{}", alg.as_str()), |b| {
            b.iter(|| black_box(&h).save_state())
        });
        g.bench_function(format!("restore_{}", alg.as_str()), |b| {
            b.iter(|| Hasher::restore_state(black_box(&saved)))
        });
    }
    g.finish();
}

criterion_group!(benches, throughput, save_restore);
criterion_main!(benches);
