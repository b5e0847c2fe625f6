//! The registry client's protocol core: the Distribution API calls, without local formats.
//!
//! Layout:
//! Protocol core (no local formats):
//! - `error`: client errors, carrying the registry's OCI error code and message.
//! - `auth`: `WWW-Authenticate` challenges, Docker token auth, Basic, the per-scope token cache.
//! - `image_ref`: image references as docker reads them.
//! - `api` (here): [`Client`], one method per protocol operation (ping, blob HEAD/GET, upload
//!   sessions, mounts, manifest HEAD/GET/PUT/DELETE, tag listing with `Link`).
//! - `send`: authorization per request (own origin only), the 401 retry, backoff retries.
//!
//! Local formats and workflows, on top of the core:
//! - `credentials`: docker's `config.json`, credential helpers, containers `auth.json`.
//! - `layout`, `archive`: OCI layouts, `oci-archive:` and `docker-archive:` tars.
//! - `location`: where images are (`oci:`, archives, references) and platforms.
//! - `transfer`: pull, push and copy between any two of those and registries (`blobs`: one
//!   blob's move, with resume and recovery).
//! - `unpack`: layers into a root filesystem.
//!
//! Connections are kept alive and shared by clones of a `Client`, so concurrent callers reuse
//! them. Bodies are streamed both ways; nothing here buffers a blob. The CLI, the benchmark and
//! (later) the server's pull-through cache use this crate.

pub mod archive;
pub mod auth;
mod send;

use send::send_retrying;
pub mod credentials;
pub mod error;
pub mod image_ref;
pub mod layout;
pub mod location;
pub mod transfer;
pub mod unpack;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION, RANGE};
use stowage_oci::Digest;

pub use error::ClientError;

/// The Accept list sent for manifests: every manifest and index type, Docker and OCI.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A client for one registry.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `scheme://host:port`, no trailing slash.
    base: String,
    /// Authentication for this registry (challenges, tokens, credentials), when enabled.
    auth: Option<std::sync::Arc<auth::Authenticator>>,
}

/// An open upload session.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Absolute URL of the session (the latest `Location`).
    pub location: String,
    /// The token scope its requests need.
    pub scope: Vec<String>,
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Option<String>,
    pub bytes: Bytes,
}

/// One page of a tag listing.
#[derive(Debug, Clone)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// The `Link` target of the next page, as an absolute URL.
    pub next: Option<String>,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:5000`) with a default connection pool.
    pub fn new(base: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::transport("build HTTP client", e))?;
        Ok(Client::with_http(base, http))
    }

    /// A client over an existing HTTP client (shared pools, custom TLS).
    pub fn with_http(base: &str, http: reqwest::Client) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth: None,
        }
    }

    /// Answer the registry's challenges (Docker token auth or Basic) with `cred`, or
    /// anonymously when None. Tokens are cached per scope and renewed before they expire.
    pub fn with_auth(mut self, cred: Option<credentials::Credential>) -> Client {
        self.auth = Some(std::sync::Arc::new(auth::Authenticator::new(
            self.http.clone(),
            cred,
        )));
        self
    }

    /// The underlying HTTP client. It carries no credentials: use it for URLs outside the
    /// registry (foreign layers' `urls`), which must never see the registry's credentials.
    pub fn plain_http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The authenticator, when authentication is on.
    pub fn authenticator(&self) -> Option<&auth::Authenticator> {
        self.auth.as_deref()
    }

    /// A request to this registry.
    fn request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// The registry's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Resolve a `Location` or `Link` target (absolute, or relative to the registry).
    fn resolve(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else {
            format!("{}{}", self.base, loc)
        }
    }

    async fn check(what: &str, resp: reqwest::Response, ok: &[u16]) -> Result<reqwest::Response> {
        if ok.contains(&resp.status().as_u16()) {
            return Ok(resp);
        }
        Err(ClientError::from_response(what, resp).await)
    }

    /// `GET /v2/`.
    pub async fn ping(&self) -> Result<()> {
        let scope: [String; 0] = [];
        let r = self
            .go(
                self.request(reqwest::Method::GET, format!("{}/v2/", self.base)),
                "ping",
                &scope,
            )
            .await?;
        Self::check("ping", r, &[200]).await.map(|_| ())
    }

    /// `GET /v2/` without any credentials: the raw answer (its challenge, when it is 401).
    pub async fn ping_response(&self) -> Result<reqwest::Response> {
        send_retrying(self.http.get(format!("{}/v2/", self.base)), "ping").await
    }

    /// `HEAD` a blob: its size, or None when the registry does not have it.
    pub async fn blob_head(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let scope = [pull_scope(repo)];
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let r = self
            .go(
                self.request(reqwest::Method::HEAD, url),
                "blob HEAD",
                &scope,
            )
            .await?;
        if r.status() == 404 {
            return Ok(None);
        }
        let r = Self::check("blob HEAD", r, &[200]).await?;
        Ok(content_length(&r))
    }

    /// `GET` a blob (optionally a byte range), returning the streaming response.
    pub async fn blob_get(
        &self,
        repo: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
    ) -> Result<reqwest::Response> {
        let scope = [pull_scope(repo)];
        let mut req = self.request(
            reqwest::Method::GET,
            format!("{}/v2/{repo}/blobs/{digest}", self.base),
        );
        if let Some((a, b)) = range {
            req = req.header(RANGE, format!("bytes={a}-{b}"));
        }
        let r = self.go(req, "blob GET", &scope).await?;
        Self::check("blob GET", r, &[200, 206]).await
    }

    /// `POST /v2/<repo>/blobs/uploads/`: open a session.
    pub async fn upload_start(&self, repo: &str) -> Result<Upload> {
        let scope = [push_scope(repo)];
        let r = self
            .go(
                self.request(
                    reqwest::Method::POST,
                    format!("{}/v2/{repo}/blobs/uploads/", self.base),
                )
                .header(CONTENT_LENGTH, 0),
                "upload start",
                &scope,
            )
            .await?;
        let r = Self::check("upload start", r, &[202]).await?;
        Ok(Upload {
            location: self.location(&r, "upload start")?,
            scope: scope.to_vec(),
        })
    }

    fn location(&self, r: &reqwest::Response, what: &str) -> Result<String> {
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::protocol(what, "response has no Location header"))?;
        Ok(self.resolve(loc))
    }

    /// `PATCH` a chunk (with `Content-Range` when `start` is given); returns the new offset.
    pub async fn upload_patch(
        &self,
        up: &mut Upload,
        body: reqwest::Body,
        range: Option<(u64, u64)>,
    ) -> Result<u64> {
        let scope = up.scope.clone();
        let mut req = self
            .request(reqwest::Method::PATCH, &up.location)
            .header(CONTENT_TYPE, "application/octet-stream");
        if let Some((a, b)) = range {
            req = req
                .header(CONTENT_RANGE, format!("{a}-{b}"))
                .header(CONTENT_LENGTH, b - a + 1);
        }
        let r = self.go(req.body(body), "upload chunk", &scope).await?;
        let r = Self::check("upload chunk", r, &[202]).await?;
        up.location = self.location(&r, "upload chunk")?;
        let end = r
            .headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('-').next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                ClientError::protocol("upload chunk", "response has no valid Range header")
            })?;
        Ok(end + 1)
    }

    /// The closing `PUT ?digest=`, optionally with a last chunk.
    pub async fn upload_finish(
        &self,
        up: Upload,
        digest: &Digest,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<()> {
        let scope = up.scope.clone();
        let sep = if up.location.contains('?') { '&' } else { '?' };
        let mut req = self.request(
            reqwest::Method::PUT,
            format!("{}{sep}digest={digest}", up.location),
        );
        req = match body {
            Some((b, len)) => req
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len)
                .body(b),
            None => req.header(CONTENT_LENGTH, 0),
        };
        let r = self.go(req, "upload finish", &scope).await?;
        Self::check("upload finish", r, &[201]).await.map(|_| ())
    }

    /// `GET` an upload session: the number of bytes the registry holds.
    pub async fn upload_status(&self, up: &Upload) -> Result<u64> {
        let scope = up.scope.clone();
        let r = self
            .go(
                self.request(reqwest::Method::GET, &up.location),
                "upload status",
                &scope,
            )
            .await?;
        let r = Self::check("upload status", r, &[204, 200]).await?;
        Ok(r.headers()
            .get(RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('-').next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |end| end + 1))
    }

    /// Mount `digest` from repository `from` into `repo` (same registry). True when mounted;
    /// false when the registry opened an upload instead (that session is cancelled).
    pub async fn blob_mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        let scope = [push_scope(repo), pull_scope(from)];
        let url = format!(
            "{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}",
            self.base
        );
        let r = self
            .go(
                self.request(reqwest::Method::POST, url)
                    .header(CONTENT_LENGTH, 0),
                "blob mount",
                &scope,
            )
            .await?;
        let r = Self::check("blob mount", r, &[201, 202]).await?;
        if r.status() == 201 {
            return Ok(true);
        }
        if let Ok(loc) = self.location(&r, "blob mount") {
            let _ = self
                .go(
                    self.request(reqwest::Method::DELETE, loc),
                    "cancel upload",
                    &scope,
                )
                .await;
        }
        Ok(false)
    }

    /// `DELETE` a manifest by tag or digest.
    pub async fn manifest_delete(&self, repo: &str, reference: &str) -> Result<()> {
        let scope = [format!("repository:{repo}:delete")];
        let r = self
            .go(
                self.request(
                    reqwest::Method::DELETE,
                    format!("{}/v2/{repo}/manifests/{reference}", self.base),
                ),
                "manifest DELETE",
                &scope,
            )
            .await?;
        Self::check("manifest DELETE", r, &[202, 200, 204])
            .await
            .map(|_| ())
    }

    /// Push a blob the way docker does: POST a session, then one PUT with the whole body.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        body: reqwest::Body,
        len: u64,
    ) -> Result<()> {
        let up = self.upload_start(repo).await?;
        self.upload_finish(up, digest, Some((body, len))).await
    }

    /// Push a small blob in one request (`POST ?digest=` with the body). Registries that do not
    /// support this answer 202 with a session, which is then finished with a PUT.
    pub async fn push_blob_single_post(
        &self,
        repo: &str,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        let scope = [push_scope(repo)];
        let len = bytes.len() as u64;
        let r = self
            .go(
                self.request(
                    reqwest::Method::POST,
                    format!("{}/v2/{repo}/blobs/uploads/?digest={digest}", self.base),
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, len)
                .body(bytes.clone()),
                "single-POST upload",
                &scope,
            )
            .await?;
        let r = Self::check("single-POST upload", r, &[201, 202]).await?;
        if r.status() == 201 {
            return Ok(());
        }
        let up = Upload {
            location: self.location(&r, "single-POST upload")?,
            scope: scope.to_vec(),
        };
        self.upload_finish(up, digest, Some((reqwest::Body::from(bytes), len)))
            .await
    }

    /// `HEAD` a manifest: (digest, size), or None when unknown.
    pub async fn manifest_head(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(Option<String>, u64)>> {
        let scope = [pull_scope(repo)];
        let r = self
            .go(
                self.request(
                    reqwest::Method::HEAD,
                    format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT),
                "manifest HEAD",
                &scope,
            )
            .await?;
        if r.status() == 404 {
            return Ok(None);
        }
        let r = Self::check("manifest HEAD", r, &[200]).await?;
        Ok(Some((docker_digest(&r), content_length(&r).unwrap_or(0))))
    }

    /// `GET` a manifest with the full Accept list.
    pub async fn manifest_get(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let scope = [pull_scope(repo)];
        let r = self
            .go(
                self.request(
                    reqwest::Method::GET,
                    format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(reqwest::header::ACCEPT, MANIFEST_ACCEPT),
                "manifest GET",
                &scope,
            )
            .await?;
        let r = Self::check("manifest GET", r, &[200]).await?;
        let media_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let digest = docker_digest(&r);
        let bytes = r
            .bytes()
            .await
            .map_err(|e| ClientError::transport("manifest GET body", e))?;
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// `PUT` a manifest under a tag or digest; returns the digest the registry reports.
    pub async fn manifest_put(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<String>> {
        let scope = [push_scope(repo)];
        let r = self
            .go(
                self.request(
                    reqwest::Method::PUT,
                    format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(CONTENT_TYPE, media_type)
                .body(bytes),
                "manifest PUT",
                &scope,
            )
            .await?;
        let r = Self::check("manifest PUT", r, &[201]).await?;
        Ok(docker_digest(&r))
    }

    /// One page of `GET /v2/<repo>/tags/list` (`n` and `last` optional), or the page at `url`.
    pub async fn tags_page(
        &self,
        repo: &str,
        n: Option<usize>,
        url: Option<&str>,
    ) -> Result<TagPage> {
        let scope = [pull_scope(repo)];
        let url = match url {
            Some(u) => self.resolve(u),
            None => match n {
                Some(n) => format!("{}/v2/{repo}/tags/list?n={n}", self.base),
                None => format!("{}/v2/{repo}/tags/list", self.base),
            },
        };
        let r = self
            .go(self.request(reqwest::Method::GET, url), "tag list", &scope)
            .await?;
        let r = Self::check("tag list", r, &[200]).await?;
        let next = r
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_link)
            .map(|l| self.resolve(&l));
        let body = r
            .bytes()
            .await
            .map_err(|e| ClientError::transport("tag list body", e))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ClientError::protocol("tag list", &format!("invalid JSON: {e}")))?;
        let tags = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TagPage { tags, next })
    }

    /// Every tag of `repo`, following `Link` headers from page to page.
    pub async fn all_tags(&self, repo: &str, n: Option<usize>) -> Result<Vec<String>> {
        let mut page = self.tags_page(repo, n, None).await?;
        let mut out = std::mem::take(&mut page.tags);
        while let Some(next) = page.next.take() {
            page = self.tags_page(repo, None, Some(&next)).await?;
            out.append(&mut page.tags);
        }
        Ok(out)
    }
}

/// The `WWW-Authenticate` values of a response.
pub fn www_authenticate(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The token scope for pulling from `repo`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// The token scope for pushing to `repo`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn content_length(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn docker_digest(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The target of an RFC 8288 `Link: <url>; rel="next"` header.
pub fn parse_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.to_string())
            .or_else(|| params.contains("rel=next").then(|| target.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            parse_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_link("<https://x/y>; rel=next").as_deref(),
            Some("https://x/y")
        );
        assert_eq!(parse_link("<https://x/y>; rel=\"prev\""), None);
        assert_eq!(parse_link("garbage"), None);
    }
}
