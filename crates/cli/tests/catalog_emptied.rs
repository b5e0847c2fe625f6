//! `/v2/_catalog` lists repositories that hold something: one whose last blob link and
//! manifest are deleted drops out, and comes back when content is pushed again.

use std::path::PathBuf;

use stowage_oci::{Algorithm, Digest};
use stowage_testkit::server::Server;

async fn catalog(c: &reqwest::Client, url: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(
        &c.get(format!("{url}/v2/_catalog"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn emptied_repository_leaves_the_catalog() {
    let s = Server::spawn(&PathBuf::from(env!("CARGO_BIN_EXE_stowage")), &[]);
    let c = reqwest::Client::new();
    let body = b"catalog test".to_vec();
    let d = Digest::of(Algorithm::Sha256, &body);
    for repo in ["cat/keep", "cat/empty"] {
        let r = c
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", s.url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert_eq!(catalog(&c, &s.url).await, ["cat/empty", "cat/keep"]);
    let r = c
        .delete(format!("{}/v2/cat/empty/blobs/{d}", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(catalog(&c, &s.url).await, ["cat/keep"]);
    let r = c
        .post(format!("{}/v2/cat/empty/blobs/uploads/?digest={d}", s.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(catalog(&c, &s.url).await, ["cat/empty", "cat/keep"]);
}
