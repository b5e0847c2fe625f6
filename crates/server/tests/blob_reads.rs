//! The blob read path over real TCP, through the production listener: a blob store that answers
//! reads with redirects (the seam for S3 presigned GETs), and blob files damaged on disk after
//! upload (truncated before or during a download, or corrupted), which must fail that response
//! only, never the process. HTTP/1.1 and HTTP/2 (prior knowledge) both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use stowage_metadata::sqlite::SqliteStore;
use stowage_oci::{Algorithm, Digest};
use stowage_registry::Registry;
use stowage_server::{Config, app_state, listener, open_registry, router};
use stowage_storage::fs::FsBlobStore;
use stowage_storage::suite::Redirecting;

struct Server {
    url: String,
    data: PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start(redirect_to: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let registry = match redirect_to {
        None => open_registry(&config, None).unwrap(),
        Some(base) => {
            let blobs = Redirecting {
                inner: FsBlobStore::open(dir.path()).unwrap(),
                base: base.to_string(),
            };
            let meta = SqliteStore::open(&dir.path().join("metadata.db")).unwrap();
            Registry::new(Arc::new(blobs), Arc::new(meta), config.registry_settings())
        }
    };
    let app = router(app_state(&config, registry));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(listener::serve_connections(tcp, None, app, rx));
    Server {
        url,
        data: dir.path().to_path_buf(),
        _stop: stop,
        _dir: dir,
    }
}

fn h1() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn h2() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// Push `bytes` to `repo` in one POST; returns the digest.
async fn push(s: &Server, repo: &str, bytes: Vec<u8>) -> Digest {
    let d = Digest::of(Algorithm::Sha256, &bytes);
    let r = h1()
        .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", s.url))
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "push {d}");
    d
}

fn blob_file(data: &Path, d: &Digest) -> PathBuf {
    data.join("blobs")
        .join("sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirecting_store_turns_gets_into_307_and_head_stays_local() {
    let base = "https://objects.example/bucket";
    let s = start(Some(base)).await;
    let d = push(&s, "r/app", b"hello redirect".to_vec()).await;
    let url = format!("{}/v2/r/app/blobs/{d}", s.url);
    for (client, proto) in [(h1(), "HTTP/1.1"), (h2(), "HTTP/2")] {
        for range in [None, Some("bytes=1-3")] {
            let mut req = client.get(&url);
            if let Some(r) = range {
                req = req.header("Range", r);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 307, "{proto} GET, range {range:?}");
            let want = format!("{base}/{d}");
            assert_eq!(header(&r, "location"), Some(want.as_str()));
            assert_eq!(
                header(&r, "docker-content-digest"),
                Some(d.to_string().as_str())
            );
            assert!(r.bytes().await.unwrap().is_empty());
        }
        // HEAD is answered from metadata, as without redirects: no round trip to the store.
        let r = client.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{proto} HEAD");
        assert_eq!(header(&r, "content-length"), Some("14"));
        assert_eq!(
            header(&r, "docker-content-digest"),
            Some(d.to_string().as_str())
        );
        assert_eq!(header(&r, "location"), None);
    }
    // Unknown blobs and other repositories stay 404, not redirects.
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    for u in [
        format!("{}/v2/r/app/blobs/{missing}", s.url),
        format!("{}/v2/r/other/blobs/{d}", s.url),
    ] {
        assert_eq!(h1().get(&u).send().await.unwrap().status(), 404, "{u}");
    }
    // An unsatisfiable range is still refused here.
    let r = h1()
        .get(&url)
        .header("Range", "bytes=100-200")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
}

/// Everything about a healthy blob still works: whole, ranged, over both protocols.
async fn check_healthy(s: &Server, d: &Digest, want: &[u8]) {
    let url = format!("{}/v2/d/app/blobs/{d}", s.url);
    for (client, proto) in [(h1(), "HTTP/1.1"), (h2(), "HTTP/2")] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        assert!(r.bytes().await.unwrap() == want, "{proto} whole blob");
        let r = client
            .get(&url)
            .header("Range", "bytes=1048570-3145739")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{proto}");
        assert!(
            r.bytes().await.unwrap() == want[1_048_570..3_145_740],
            "{proto} range"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_blob_files_fail_their_response_and_the_server_keeps_serving() {
    let s = start(None).await;
    let big = pattern(32 << 20, 1);
    let small = pattern(100_000, 2);
    let healthy = pattern(5 << 20, 3);
    let d_big = push(&s, "d/app", big.clone()).await;
    let d_small = push(&s, "d/app", small.clone()).await;
    let d_healthy = push(&s, "d/app", healthy.clone()).await;
    check_healthy(&s, &d_healthy, &healthy).await;

    // Corrupted in place (same length): served as stored, so the client's digest check is what
    // catches it; the server carries on.
    let path = blob_file(&s.data, &d_small);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50_000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let r = h1()
        .get(format!("{}/v2/d/app/blobs/{d_small}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), small.len());
    assert_ne!(Digest::of(Algorithm::Sha256, &got), d_small);

    // Truncated while being downloaded: the response is cut short with an error (HTTP/1.1: the
    // connection closes before Content-Length; HTTP/2: the stream is reset).
    let path = blob_file(&s.data, &d_big);
    for (client, proto) in [(h1(), "HTTP/1.1"), (h2(), "HTTP/2")] {
        std::fs::write(&path, &big).unwrap();
        let r = client
            .get(format!("{}/v2/d/app/blobs/{d_big}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        assert_eq!(r.content_length(), Some(big.len() as u64));
        let mut body = r.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(!first.is_empty());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let mut got = first.len();
        let mut failed = false;
        while let Some(c) = body.next().await {
            match c {
                Ok(c) => got += c.len(),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(
            failed && got < big.len(),
            "{proto}: a truncated blob gave {got} bytes and failed={failed}"
        );
        check_healthy(&s, &d_healthy, &healthy).await;
    }

    // Truncated before the request: refused before any byte, with a server error.
    let r = h1()
        .get(format!("{}/v2/d/app/blobs/{d_big}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    // Missing altogether: the blob is unknown.
    std::fs::remove_file(&path).unwrap();
    let r = h1()
        .get(format!("{}/v2/d/app/blobs/{d_big}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The process is alive and well.
    let r = h1().get(format!("{}/v2/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    check_healthy(&s, &d_healthy, &healthy).await;
}
