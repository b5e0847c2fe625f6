//! Shared harness for the OCI Distribution conformance tests (`tests/conformance_*.rs`).
//!
//! Owns: starting a real `stowage` process per test (optionally with a TOML config), a thin
//! HTTP client that records every exchange so a failing assertion prints the exact request and
//! response, and assertions that hold for *every* registry response (the
//! `Docker-Distribution-API-Version` header on `/v2` routes, never a 5xx).
//!
//! Content helpers (digests computed independently of the server, manifest builders) live in
//! `content`; requests reqwest would normalise go through `stowage_testkit::wire`.
//! Nothing here knows stowage internals: only the spec and the observable behaviour.
#![allow(dead_code)]

pub mod auth;
pub mod content;
pub mod resp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use stowage_testkit::server::Server;

pub use content::*;
pub use resp::*;

/// The `stowage` binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

/// One running registry plus an HTTP client pointed at it.
pub struct Reg {
    pub server: Server,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    pub client: reqwest::Client,
    args: Vec<String>,
    data_dir: PathBuf,
    // Kept alive for the whole test: the data dir of the first server and the config file.
    _keep: Vec<tempfile::TempDir>,
}

impl Reg {
    /// A registry with the default configuration and a fresh data directory.
    pub fn start() -> Reg {
        Reg::start_args(Vec::new(), Vec::new())
    }

    /// A registry started with `--config FILE` holding `toml`.
    pub fn start_with_config(toml: &str) -> Reg {
        let dir = tempfile::tempdir().expect("config temp dir");
        let path = dir.path().join("stowage.toml");
        std::fs::write(&path, toml).expect("write config");
        let args = vec!["--config".to_string(), path.display().to_string()];
        Reg::start_args(args, vec![dir])
    }

    fn start_args(args: Vec<String>, mut keep: Vec<tempfile::TempDir>) -> Reg {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Server::spawn(bin(), &argv);
        if let Some(t) = server.take_tempdir() {
            keep.push(t);
        }
        let base = server.url.trim_end_matches('/').to_string();
        let data_dir = server.data_dir.clone();
        Reg {
            server,
            base,
            client: client(),
            args,
            data_dir,
            _keep: keep,
        }
    }

    /// Stop the server (SIGTERM when `graceful`, else SIGKILL) and start a new process on the
    /// same data directory and configuration. The port changes; `base` follows it.
    pub fn restart(&mut self, graceful: bool) {
        if graceful {
            self.server.terminate();
        } else {
            self.server.kill9();
        }
        let argv: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Server::spawn_with_data(bin(), &self.data_dir, &argv);
        self.base = self.server.url.trim_end_matches('/').to_string();
    }

    /// Stop the server gracefully and start a new one on the same data directory with the
    /// configuration `toml` instead.
    pub fn restart_with_config(&mut self, toml: &str) {
        let dir = tempfile::tempdir().expect("config temp dir");
        let path = dir.path().join("stowage.toml");
        std::fs::write(&path, toml).expect("write config");
        self.args = vec!["--config".to_string(), path.display().to_string()];
        self._keep.push(dir);
        self.restart(true);
    }

    /// Absolute URL for a path, or for a `Location` value (absolute or relative). Absolute
    /// locations are re-rooted on the current server, which matters after a restart.
    pub fn url(&self, path_or_location: &str) -> String {
        let path = strip_origin(path_or_location);
        if path.starts_with('/') {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/{}", self.base, path)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Send a request, record the exchange and check the invariants every response must meet.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let req = rb.build().expect("build request");
        let request = describe_request(&req);
        let is_v2 = req.url().path().starts_with("/v2");
        let method = req.method().clone();
        let res = self
            .client
            .execute(req)
            .await
            .unwrap_or_else(|e| panic!("{request}\n  -> transport error: {e:?}"));
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{request}\n  -> body error: {e:?}"))
            .to_vec();
        let resp = Resp {
            status,
            headers,
            body,
            request,
        };
        assert!(status < 500, "server error (never allowed):\n{resp}");
        if is_v2 {
            assert_eq!(
                resp.header("docker-distribution-api-version"),
                Some("registry/2.0"),
                "Docker-Distribution-API-Version missing on a /v2 response:\n{resp}"
            );
        }
        // Spec (Warnings): "`Warning` headers MUST specify a `warn-code` of `299` and a
        // `warn-agent` of `-`" and "MUST NOT send more than 4096 bytes of warning data".
        let warnings: Vec<&str> = resp
            .headers
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for w in &warnings {
            assert!(
                w.starts_with("299 - \""),
                "malformed Warning header {w:?}:\n{resp}"
            );
        }
        assert!(
            warnings.iter().map(|w| w.len()).sum::<usize>() <= 4096,
            "too much Warning data:\n{resp}"
        );
        // Spec (Error Codes): a JSON error body "MUST have the following format".
        let json_body = resp
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"));
        if is_v2 && status >= 400 && json_body && !resp.body.is_empty() {
            resp.error_code();
        }
        if method == Method::HEAD {
            assert!(
                resp.body.is_empty(),
                "HEAD response carried a body:\n{resp}"
            );
        }
        resp
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.req(Method::HEAD, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// `POST /v2/<repo>/blobs/uploads/` with an empty body; asserts 202 + Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        self.start_upload_query(repo, "").await
    }

    /// Like `start_upload` with a query string (`"digest-algorithm=sha512"`).
    pub async fn start_upload_query(&self, repo: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let r = self
            .send(
                self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/{q}"))
                    .header("content-length", "0"),
            )
            .await;
        r.expect_status(202);
        r.location()
    }

    /// PATCH a chunk with an explicit `Content-Range` (inclusive `start-end`).
    pub async fn patch_chunk(&self, location: &str, start: u64, chunk: &[u8]) -> Resp {
        let end = start + chunk.len() as u64 - 1;
        self.send(
            self.req(Method::PATCH, location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{end}"))
                .body(chunk.to_vec()),
        )
        .await
    }

    /// PATCH a chunk without `Content-Range` (docker's "streamed" upload).
    pub async fn patch_stream(&self, location: &str, chunk: &[u8]) -> Resp {
        self.send(
            self.req(Method::PATCH, location)
                .header("content-type", "application/octet-stream")
                .body(chunk.to_vec()),
        )
        .await
    }

    /// Closing `PUT <location>?digest=<digest>` with an optional final chunk.
    pub async fn put_upload(&self, location: &str, digest: &str, body: &[u8]) -> Resp {
        let url = with_query(location, &format!("digest={digest}"));
        self.send(
            self.req(Method::PUT, &url)
                .header("content-type", "application/octet-stream")
                .body(body.to_vec()),
        )
        .await
    }

    /// Monolithic POST + PUT of `data` under the digest `digest`; returns the PUT response.
    pub async fn upload_as(&self, repo: &str, data: &[u8], digest: &str) -> Resp {
        let loc = self.start_upload(repo).await;
        self.put_upload(&loc, digest, data).await
    }

    /// Push a blob (POST + PUT, sha256), assert 201, return its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        self.upload_as(repo, data, &digest).await.expect_status(201);
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the given Content-Type.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", media_type)
                .body(body.to_vec()),
        )
        .await
    }

    /// Push a manifest, assert the spec's success response, return its sha256 digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = self.put_manifest(repo, reference, media_type, body).await;
        r.expect_status(201);
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            sha256_digest(body)
        };
        assert_eq!(
            r.header("docker-content-digest"),
            Some(digest.as_str()),
            "manifest PUT digest header:\n{r}"
        );
        assert!(
            r.header("location").is_some(),
            "manifest PUT without Location:\n{r}"
        );
        digest
    }

    /// GET a manifest with an Accept header listing every manifest type.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.send(
            self.req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
                .header("accept", ACCEPT_ALL),
        )
        .await
    }

    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.send(
            self.req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
                .header("accept", ACCEPT_ALL),
        )
        .await
    }

    /// Push a config blob, one random layer and an OCI image manifest under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str) -> Image {
        let config_bytes = unique_config();
        let layer_bytes = random_bytes(1000 + (next_seed() % 500) as usize);
        self.push_blob(repo, &config_bytes).await;
        self.push_blob(repo, &layer_bytes).await;
        let config = descriptor(OCI_CONFIG, &config_bytes);
        let layer = descriptor(OCI_LAYER, &layer_bytes);
        let manifest = image_manifest(&config, std::slice::from_ref(&layer));
        let digest = self
            .push_manifest(repo, reference, OCI_MANIFEST, &manifest)
            .await;
        Image {
            manifest,
            digest,
            config_bytes,
            layer_bytes,
            config,
            layer,
        }
    }

    /// The full tag list of a repository (single unpaginated request with a large `n`).
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list?n=10000")).await;
        r.expect_status(200);
        string_list(&r.json()["tags"])
    }
}

/// An image pushed by `Reg::push_image`.
pub struct Image {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config_bytes: Vec<u8>,
    pub layer_bytes: Vec<u8>,
    pub config: Value,
    pub layer: Value,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("reqwest client")
}

/// Drop `scheme://authority` from an absolute URL; relative values pass through.
pub fn strip_origin(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map(|j| &rest[j..]).unwrap_or("/")
        }
        None => url,
    }
}

/// Append a query parameter to a location that may already carry a query.
pub fn with_query(location: &str, param: &str) -> String {
    if location.contains('?') {
        format!("{location}&{param}")
    } else {
        format!("{location}?{param}")
    }
}

/// The upload id in a location: the path segment after `/blobs/uploads/`.
pub fn upload_id(location: &str) -> String {
    let path = strip_origin(location).split('?').next().unwrap_or_default();
    let i = path
        .find("/blobs/uploads/")
        .unwrap_or_else(|| panic!("not an upload location: {location}"));
    path[i + "/blobs/uploads/".len()..]
        .trim_end_matches('/')
        .to_string()
}

/// Poll `f` every 250 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Run futures concurrently on the current task (no futures-util dependency needed).
pub async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}
