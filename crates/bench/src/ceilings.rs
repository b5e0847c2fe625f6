//! The machine's own limits, measured in the same run: single-core SHA-256 throughput of the
//! hasher Stowage uses (and its CPU seconds per GiB), and loopback TCP throughput. Push and pull
//! figures are reported as fractions of these.

use std::time::Instant;

use stowage_oci::{Algorithm, Hasher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procs::cpu_seconds;

/// Measured ceilings.
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// SHA-256 on one core, MB/s.
    pub sha256_mbps: f64,
    /// CPU seconds the hasher needs per GiB.
    pub sha256_cpu_s_per_gib: f64,
    /// Loopback TCP, MB/s.
    pub loopback_mbps: f64,
}

const MB: f64 = 1_000_000.0;

/// Hash `bytes` on one thread; returns (MB/s, CPU s per GiB).
pub fn sha256(bytes: u64) -> (f64, f64) {
    let buf = vec![0x5au8; 1024 * 1024];
    let handle = std::thread::spawn(move || {
        let stat = std::path::PathBuf::from("/proc/thread-self/stat");
        let cpu0 = cpu_seconds(&stat);
        let t0 = Instant::now();
        let mut h = Hasher::new(Algorithm::Sha256);
        let mut done = 0;
        while done < bytes {
            h.update(&buf);
            done += buf.len() as u64;
        }
        std::hint::black_box(h.finish());
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(&stat) - cpu0;
        // /proc CPU time has 10 ms resolution; a run too short to register falls back to wall time.
        let cpu = if cpu > 0.0 { cpu } else { wall };
        (
            done as f64 / wall / MB,
            cpu / (done as f64 / (1u64 << 30) as f64),
        )
    });
    handle.join().expect("hash thread")
}

/// Push `bytes` through a loopback TCP connection; returns MB/s.
pub async fn loopback(bytes: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 1024 * 1024];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        got
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let buf = vec![0xa5u8; 1024 * 1024];
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        s.write_all(&buf).await.expect("write");
        sent += buf.len() as u64;
    }
    s.shutdown().await.expect("shutdown");
    let got = reader.await.expect("reader");
    assert_eq!(got, sent);
    sent as f64 / t0.elapsed().as_secs_f64() / MB
}
