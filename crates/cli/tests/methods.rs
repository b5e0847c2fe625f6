//! A method an endpoint does not answer is 405 `UNSUPPORTED` with `Allow`, decided before
//! authentication: it used to be treated as a pull, so a pull-only credential got further
//! than an unknown method deserves.

use std::path::PathBuf;

use stowage_testkit::server::Server;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn check(base: &str) {
    let client = reqwest::Client::new();
    let cases = [
        ("POST", "/v2/team/app/manifests/latest".to_string(), "PUT"),
        (
            "PROPFIND",
            "/v2/team/app/manifests/latest".to_string(),
            "GET",
        ),
        ("PATCH", format!("/v2/team/app/blobs/{D}"), "DELETE"),
        ("PUT", "/v2/team/app/tags/list".to_string(), "GET"),
        ("DELETE", "/v2/_catalog".to_string(), "GET"),
        ("GET", "/v2/team/app/blobs/uploads/".to_string(), "POST"),
        (
            "POST",
            "/v2/team/app/blobs/uploads/abc".to_string(),
            "PATCH",
        ),
        ("PUT", "/admin/v1/users".to_string(), "POST"),
        ("DELETE", "/auth/token".to_string(), "GET"),
    ];
    for (method, path, allowed) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client
            .request(m, format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        let allow = resp.headers()["allow"].to_str().unwrap().to_string();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        assert!(!allow.contains(method), "{method} {path}: Allow {allow}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("UNSUPPORTED"), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn unanswered_methods_are_405_with_allow_with_and_without_auth() {
    let open = Server::spawn(&bin(), &[]);
    check(open.url.trim_end_matches('/')).await;
    let guarded = Server::spawn(&bin(), &["--auth"]);
    check(guarded.url.trim_end_matches('/')).await;
}
