//! Crash safety: kill -9 the server while many pushes are in flight, restart it on the same
//! data, and check the invariants: every acknowledged push is intact, no partial or unverified
//! blob is ever served or even present in the blob store, and chunked uploads whose chunks were
//! acknowledged resume from where the server says they stand.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stowage_oci::{Algorithm, Digest};
use stowage_testkit::server::Server;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// Deterministic pseudo-random bytes (xorshift) so verification can regenerate any blob.
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Default)]
struct Record {
    /// Pushes that got their 201: (seed, len).
    acked: Vec<(u64, usize)>,
    /// Chunked sessions with at least one acknowledged chunk: (location, acked offset, seed, len).
    sessions: Vec<(String, u64, u64, usize)>,
}

async fn pusher(url: String, worker: u64, rec: Arc<Mutex<Record>>) {
    let c = reqwest::Client::new();
    for i in 0.. {
        let seed = worker * 1_000_000 + i;
        let len = 1 + (seed as usize * 7919) % 3_000_000;
        let data = blob(seed, len);
        let d = Digest::of(Algorithm::Sha256, &data);
        let repo = format!("crash/w{worker}");
        let ok = match i % 3 {
            // single POST
            0 => c
                .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"))
                .body(data)
                .send()
                .await
                .map(|r| r.status() == 201),
            // POST + monolithic PUT
            1 => {
                let Ok(r) = c
                    .post(format!("{url}/v2/{repo}/blobs/uploads/"))
                    .send()
                    .await
                else {
                    return;
                };
                let loc = r.headers()["location"].to_str().unwrap().to_string();
                c.put(format!("{url}{loc}?digest={d}"))
                    .body(data)
                    .send()
                    .await
                    .map(|r| r.status() == 201)
            }
            // chunked, 3 chunks
            _ => {
                let Ok(r) = c
                    .post(format!("{url}/v2/{repo}/blobs/uploads/"))
                    .send()
                    .await
                else {
                    return;
                };
                let loc = r.headers()["location"].to_str().unwrap().to_string();
                let step = len.div_ceil(3);
                let mut off = 0;
                let mut ok = Ok(true);
                while off < len {
                    let end = (off + step).min(len);
                    let r = c
                        .patch(format!("{url}{loc}"))
                        .header("Content-Range", format!("{off}-{}", end - 1))
                        .body(data[off..end].to_vec())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => {
                            off = end;
                            let mut g = rec.lock().unwrap();
                            g.sessions.retain(|s| s.0 != loc);
                            g.sessions.push((loc.clone(), off as u64, seed, len));
                        }
                        Ok(_) => {
                            ok = Ok(false);
                            break;
                        }
                        Err(e) => {
                            ok = Err(e);
                            break;
                        }
                    }
                }
                match ok {
                    Ok(true) => {
                        let r = c
                            .put(format!("{url}{loc}?digest={d}"))
                            .send()
                            .await
                            .map(|r| r.status() == 201);
                        if matches!(r, Ok(true)) {
                            rec.lock().unwrap().sessions.retain(|s| s.0 != loc);
                        }
                        r
                    }
                    other => other,
                }
            }
        };
        match ok {
            Ok(true) => rec.lock().unwrap().acked.push((seed, len)),
            Ok(false) => panic!("push refused while the server was up"),
            Err(_) => return, // the server died
        }
    }
}

/// Every file in the blob store must hash to its own name.
fn verify_blob_store(data: &Path) -> usize {
    let mut n = 0;
    let root = data.join("blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return 0;
    };
    for p in prefixes {
        for f in std::fs::read_dir(p.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let bytes = std::fs::read(f.path()).unwrap();
            let name = f.file_name().into_string().unwrap();
            assert_eq!(
                Digest::of(Algorithm::Sha256, &bytes).hex(),
                name,
                "blob file {name} holds other content"
            );
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_pushes_loses_nothing_acknowledged() {
    let mut server = Server::spawn(&bin(), &[]);
    let _keep = server.take_tempdir();
    let data_dir = server.data_dir.clone();
    let rec = Arc::new(Mutex::new(Record::default()));
    let tasks: Vec<_> = (0..6)
        .map(|w| tokio::spawn(pusher(server.url.clone(), w, rec.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let rec = Arc::try_unwrap(rec).ok().unwrap().into_inner().unwrap();
    assert!(
        rec.acked.len() >= 3,
        "too few pushes completed before the crash to test anything: {}",
        rec.acked.len()
    );

    eprintln!(
        "acknowledged pushes: {}, open chunked sessions: {}",
        rec.acked.len(),
        rec.sessions.len()
    );
    let server = Server::spawn_with_data(&bin(), &data_dir, &[]);
    let stored = verify_blob_store(&data_dir);
    assert!(stored >= rec.acked.len().min(1));
    let c = reqwest::Client::new();
    for (seed, len) in &rec.acked {
        let data = blob(*seed, *len);
        let d = Digest::of(Algorithm::Sha256, &data);
        let repo = format!("crash/w{}", seed / 1_000_000);
        let r = c
            .get(format!("{}/v2/{repo}/blobs/{d}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged blob {d} lost");
        let body = r.bytes().await.unwrap();
        assert_eq!(
            Digest::of(Algorithm::Sha256, &body),
            d,
            "acknowledged blob {d} corrupted"
        );
    }
    // Interrupted chunked uploads resume from the server's offset (at least what was acked).
    for (loc, acked, seed, len) in &rec.sessions {
        let r = c.get(format!("{}{loc}", server.url)).send().await.unwrap();
        assert_eq!(r.status(), 204, "acknowledged upload session {loc} lost");
        let range = r.headers()["range"].to_str().unwrap();
        let offset: u64 = range.split('-').nth(1).unwrap().parse::<u64>().unwrap() + 1;
        assert!(
            offset >= *acked,
            "session {loc} went back from {acked} to {offset}"
        );
        let data = blob(*seed, *len);
        let d = Digest::of(Algorithm::Sha256, &data);
        let mut put = c.put(format!("{}{loc}?digest={d}", server.url));
        if (offset as usize) < *len {
            put = put
                .header("Content-Range", format!("{offset}-{}", len - 1))
                .body(data[offset as usize..].to_vec());
        }
        let r = put.send().await.unwrap();
        assert_eq!(r.status(), 201, "resuming {loc} at {offset} failed");
        let repo = format!("crash/w{}", seed / 1_000_000);
        let got = c
            .get(format!("{}/v2/{repo}/blobs/{d}", server.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), *len);
    }
}
