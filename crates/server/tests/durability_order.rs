//! Records the storage and metadata operations behind each acknowledged push and asserts the
//! durable order: write, fsync, publish (the "rename": an atomic hard link into the content
//! address), directory fsync, metadata commit, and only then the 2xx.
//!
//! kill -9 cannot catch a missing fsync (the page cache survives it), so this test watches the
//! operations themselves. The server runs in-process on a real loopback socket so the observer
//! sees exactly what the request caused.

use std::sync::{Arc, Mutex};

use stowage_oci::{Algorithm, Digest};
use stowage_server::{Config, app_state, open_registry, router};
use stowage_storage::Op;

struct Harness {
    url: String,
    log: Arc<Mutex<Vec<Op>>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let registry = open_registry(
        &config,
        Some(Arc::new(move |op| l2.lock().unwrap().push(op))),
    )
    .unwrap();
    let app = router(app_state(&config, registry));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Harness {
        url,
        log,
        _dir: dir,
    }
}

/// Take the log, reduced to operation kinds (for readable assertions).
fn kinds(log: &Mutex<Vec<Op>>) -> Vec<&'static str> {
    log.lock()
        .unwrap()
        .drain(..)
        .map(|op| match op {
            Op::Write { .. } => "write",
            Op::FileSync { .. } => "fsync",
            Op::Publish { .. } => "publish",
            Op::DirSync { .. } => "dirsync",
            Op::Commit { .. } => "commit",
        })
        .collect()
}

/// Assert `seq` ends with the durable publish order and everything it needs came before.
fn assert_publish_order(seq: &[&str]) {
    let pos = |k: &str| {
        seq.iter()
            .rposition(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in {seq:?}"))
    };
    let (w, f, r, d, c) = (
        pos("write"),
        pos("fsync"),
        pos("publish"),
        pos("dirsync"),
        pos("commit"),
    );
    assert!(
        w < f && f < r && r < d && d < c,
        "operations out of order: {seq:?}"
    );
    assert_eq!(
        seq.last(),
        Some(&"commit"),
        "nothing may follow the commit before the 2xx: {seq:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_push_is_durable_before_201() {
    let h = start().await;
    let c = reqwest::Client::new();
    let data = vec![7u8; 300_000];
    let d = Digest::of(Algorithm::Sha256, &data);
    let r = c
        .post(format!("{}/v2/t/blobs/uploads/", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    kinds(&h.log);
    let r = c
        .put(format!("{}{loc}?digest={d}", h.url))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_publish_order(&kinds(&h.log));
}

#[tokio::test(flavor = "multi_thread")]
async fn single_post_push_is_durable_before_201() {
    let h = start().await;
    let c = reqwest::Client::new();
    let data = b"single post body".to_vec();
    let d = Digest::of(Algorithm::Sha256, &data);
    let r = c
        .post(format!("{}/v2/t/blobs/uploads/?digest={d}", h.url))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_publish_order(&kinds(&h.log));
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_push_acknowledges_only_durable_chunks() {
    let h = start().await;
    let c = reqwest::Client::new();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::of(Algorithm::Sha256, &data);
    let r = c
        .post(format!("{}/v2/t/blobs/uploads/", h.url))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    kinds(&h.log);
    let r = c
        .patch(format!("{}{loc}", h.url))
        .header("Content-Range", "0-49999")
        .body(data[..50_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // A chunk's 202 means: written, fsynced, offset committed.
    assert_eq!(kinds(&h.log), ["write", "fsync", "commit"]);
    let r = c
        .put(format!("{}{loc}?digest={d}", h.url))
        .header("Content-Range", "50000-99999")
        .body(data[50_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_publish_order(&kinds(&h.log));
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_push_commits_before_201() {
    let h = start().await;
    let c = reqwest::Client::new();
    let cfg = b"{}".to_vec();
    let cd = Digest::of(Algorithm::Sha256, &cfg);
    c.post(format!("{}/v2/t/blobs/uploads/?digest={cd}", h.url))
        .body(cfg)
        .send()
        .await
        .unwrap();
    kinds(&h.log);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{cd}","size":2}},"layers":[]}}"#
    );
    let r = c
        .put(format!("{}/v2/t/manifests/v1", h.url))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(kinds(&h.log), ["commit"]);
}
