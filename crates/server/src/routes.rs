//! Every request the server answers, parsed once into an [`Endpoint`]: method, path, query
//! parameters and the headers that shape the request, validated here and nowhere else.
//!
//! Repository names contain slashes, so instead of one route per name depth the whole path is
//! parsed here: the last segment is the tag, digest or upload id, and the segment(s) before it
//! say which endpoint it is. Tags, digests and upload ids never contain `/`, so this split is
//! unambiguous even for names like `a/blobs/b`. Validation errors carry their OCI code; a
//! method an endpoint does not answer is 405, decided before anything else.
//!
//! [`Endpoint::requirement`] is the one exhaustive statement of what each endpoint needs; the auth
//! gate applies it and the handlers never decide access themselves.

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use stowage_oci::range::parse_content_range;
use stowage_oci::reference::ReferenceError;
use stowage_oci::{Algorithm, Digest, ErrorCode, Reference, RepoName, Tag};
use stowage_registry::session_id::UploadId;
use stowage_registry::uploads::ChunkRange;

use crate::auth::decide::Need;
use crate::error::{Error, Result};
use stowage_auth::Action;
use stowage_identity::admin::AdminRoute;

/// A page request of a listing (`?n=&last=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub n: Option<usize>,
    pub last: Option<String>,
}

/// The parameters of an upload POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStart {
    /// `?digest=`: a single-request (monolithic) upload when the POST carries a body.
    pub digest: Option<Digest>,
    /// `?mount=` with optional `?from=`: a cross-repository mount.
    pub mount: Option<Digest>,
    pub from: Option<RepoName>,
    /// `?digest-algorithm=`: the algorithm the session hashes with.
    pub algorithm: Option<Algorithm>,
    /// Whether the request has a body at all.
    pub has_body: bool,
}

/// Every request the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET`/`HEAD /v2/`.
    Base { head: bool },
    /// `GET /v2/_catalog`.
    Catalog { page: Paging },
    /// `GET /v2/<name>/tags/list`.
    Tags { name: RepoName, page: Paging },
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        name: RepoName,
        subject: Digest,
        artifact_type: Option<String>,
    },
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    ManifestGet {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    /// `PUT /v2/<name>/manifests/<reference>[?tag=...]`.
    ManifestPut {
        name: RepoName,
        reference: Reference,
        tags: Vec<Tag>,
        content_type: Option<String>,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`.
    ManifestDelete {
        name: RepoName,
        reference: Reference,
    },
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`, with the `Range` header (its meaning needs the
    /// blob's size, so the registry applies it).
    BlobGet {
        name: RepoName,
        digest: Digest,
        head: bool,
        range: Option<String>,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    BlobDelete { name: RepoName, digest: Digest },
    /// `POST /v2/<name>/blobs/uploads/`.
    UploadStart { name: RepoName, start: UploadStart },
    /// `GET <upload location>`.
    UploadStatus { name: RepoName, id: UploadId },
    /// `PATCH <upload location>`.
    UploadChunk {
        name: RepoName,
        id: UploadId,
        range: Option<ChunkRange>,
        length: Option<u64>,
    },
    /// `PUT <upload location>?digest=`.
    UploadFinish {
        name: RepoName,
        id: UploadId,
        digest: Digest,
        range: Option<ChunkRange>,
        length: Option<u64>,
        has_body: bool,
    },
    /// `DELETE <upload location>`.
    UploadCancel { name: RepoName, id: UploadId },
    /// `GET` (Docker token auth) or `POST` (OAuth2) `/auth/token`.
    Token,
    /// `GET /auth/jwks` or `/.well-known/jwks.json`.
    Jwks,
    /// `/admin/v1/...`.
    Admin(AdminRoute),
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `GET /metrics`.
    Metrics,
}

/// What a request must prove before its handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: the endpoint is public, or checks credentials as its very purpose (the token
    /// endpoint), or has its own address allow-list (metrics).
    Open,
    /// The admin API's gate: the `registry:admin:*` scope or the user's password.
    Admin,
    /// A registry right, checked by `auth::decide`.
    Registry(Need),
}

impl Endpoint {
    /// What this endpoint needs. Exhaustive: a new endpoint cannot be added without saying.
    pub fn requirement(&self) -> Requirement {
        let on = |n: &RepoName, a| Requirement::Registry(Need::Repo(n.clone(), a));
        match self {
            Endpoint::Base { .. } => Requirement::Registry(Need::Login),
            Endpoint::Catalog { .. } => Requirement::Registry(Need::Catalog),
            Endpoint::Tags { name, .. }
            | Endpoint::Referrers { name, .. }
            | Endpoint::ManifestGet { name, .. }
            | Endpoint::BlobGet { name, .. } => on(name, Action::Pull),
            Endpoint::ManifestPut { name, .. } | Endpoint::UploadStart { name, .. } => {
                on(name, Action::Push)
            }
            Endpoint::ManifestDelete { name, .. } | Endpoint::BlobDelete { name, .. } => {
                on(name, Action::Delete)
            }
            Endpoint::UploadStatus { name, id }
            | Endpoint::UploadChunk { name, id, .. }
            | Endpoint::UploadFinish { name, id, .. }
            | Endpoint::UploadCancel { name, id } => {
                Requirement::Registry(Need::Upload(name.clone(), id.clone()))
            }
            Endpoint::Admin(_) => Requirement::Admin,
            Endpoint::Token
            | Endpoint::Jwks
            | Endpoint::Health
            | Endpoint::Ready
            | Endpoint::Metrics => Requirement::Open,
        }
    }

    /// Whether anonymous requests to it count against the anonymous request rate: all but
    /// the probes of load balancers and monitoring (health, readiness, metrics).
    pub fn rate_limited(&self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::Ready | Endpoint::Metrics)
    }

    /// The route template used in logs and metrics (never the repository name).
    pub fn template(&self) -> &'static str {
        match self {
            Endpoint::Base { .. } => "/v2/",
            Endpoint::Catalog { .. } => "/v2/_catalog",
            Endpoint::Tags { .. } => "/v2/{name}/tags/list",
            Endpoint::ManifestGet { .. }
            | Endpoint::ManifestPut { .. }
            | Endpoint::ManifestDelete { .. } => "/v2/{name}/manifests/{reference}",
            Endpoint::BlobGet { .. } | Endpoint::BlobDelete { .. } => "/v2/{name}/blobs/{digest}",
            Endpoint::UploadStart { .. } => "/v2/{name}/blobs/uploads/",
            Endpoint::UploadStatus { .. }
            | Endpoint::UploadChunk { .. }
            | Endpoint::UploadFinish { .. }
            | Endpoint::UploadCancel { .. } => "/v2/{name}/blobs/uploads/{id}",
            Endpoint::Referrers { .. } => "/v2/{name}/referrers/{digest}",
            Endpoint::Token => "/auth/token",
            Endpoint::Jwks => "/auth/jwks",
            Endpoint::Admin(_) => "/admin/v1",
            Endpoint::Health => "/healthz",
            Endpoint::Ready => "/readyz",
            Endpoint::Metrics => "/metrics",
        }
    }
}

fn name(s: &str) -> Result<RepoName> {
    RepoName::parse(s).ok_or_else(|| {
        Error::new(ErrorCode::NameInvalid, "invalid repository name")
            .detail(serde_json::json!({ "name": s.chars().take(300).collect::<String>() }))
    })
}

fn digest(s: &str) -> Result<Digest> {
    s.parse().map_err(|e: stowage_oci::digest::DigestError| {
        Error::new(ErrorCode::DigestInvalid, e.to_string())
    })
}

/// Decode `%XX` escapes (clients sometimes escape the `:` of a digest).
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parse a request's method, path, query and shaping headers. `Ok(None)` means "no such
/// endpoint" (404).
pub fn parse(parts: &Parts) -> Result<Option<Endpoint>> {
    let path = parts.uri.path();
    let query = Query(query_pairs(parts.uri.query()));
    let m = &parts.method;
    let h = &parts.headers;
    match path {
        "/auth/token" => {
            return only(
                m,
                &[Method::GET, Method::POST],
                "GET, POST",
                Some(Endpoint::Token),
            );
        }
        "/auth/jwks" | "/.well-known/jwks.json" => {
            return only(
                m,
                &[Method::GET, Method::HEAD],
                "GET, HEAD",
                Some(Endpoint::Jwks),
            );
        }
        "/healthz" => {
            return only(
                m,
                &[Method::GET, Method::HEAD],
                "GET, HEAD",
                Some(Endpoint::Health),
            );
        }
        "/readyz" => {
            return only(
                m,
                &[Method::GET, Method::HEAD],
                "GET, HEAD",
                Some(Endpoint::Ready),
            );
        }
        "/metrics" => return only(m, &[Method::GET], "GET", Some(Endpoint::Metrics)),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/admin/v1/") {
        return admin(m, rest, &query).map(|op| op.map(Endpoint::Admin));
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        let head = reading(m, "GET, HEAD")?;
        return Ok(Some(Endpoint::Base { head }));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    if rest == "_catalog" {
        only(m, &[Method::GET], "GET", ())?;
        return Ok(Some(Endpoint::Catalog {
            page: query.paging()?,
        }));
    }
    if let Some(n) = rest.strip_suffix("/tags/list") {
        let name = name(n)?;
        only(m, &[Method::GET], "GET", ())?;
        return Ok(Some(Endpoint::Tags {
            name,
            page: query.paging()?,
        }));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        let name = name(n)?;
        only(m, &[Method::POST], "POST", ())?;
        return Ok(Some(Endpoint::UploadStart {
            name,
            start: UploadStart {
                digest: query.digest("digest")?,
                mount: query.digest("mount")?,
                from: match query.get("from") {
                    None | Some("") => None,
                    Some(f) => Some(RepoName::parse(f).ok_or_else(|| {
                        Error::new(ErrorCode::NameInvalid, "invalid repository name in from")
                    })?),
                },
                algorithm: query
                    .get("digest-algorithm")
                    .map(|a| {
                        Algorithm::parse(a)
                            .map_err(|e| Error::new(ErrorCode::DigestInvalid, e.to_string()))
                    })
                    .transpose()?,
                has_body: has_body(h)?,
            },
        }));
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Ok(None);
    };
    let last = percent_decode(last)
        .ok_or_else(|| Error::new(ErrorCode::NameInvalid, "invalid percent-encoding in path"))?;
    if let Some(n) = head.strip_suffix("/manifests") {
        return manifest(m, name(n)?, &last, &query, h).map(Some);
    }
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        return upload(m, name(n)?, &last, &query, h).map(Some);
    }
    if let Some(n) = head.strip_suffix("/blobs") {
        let name = name(n)?;
        let digest = digest(&last)?;
        return Ok(Some(match *m {
            Method::GET | Method::HEAD => Endpoint::BlobGet {
                name,
                digest,
                head: *m == Method::HEAD,
                range: header_str(h, header::RANGE).map(str::to_string),
            },
            Method::DELETE => Endpoint::BlobDelete { name, digest },
            _ => return Err(Error::method_not_allowed("GET, HEAD, DELETE")),
        }));
    }
    if let Some(n) = head.strip_suffix("/referrers") {
        let name = name(n)?;
        let subject = digest(&last)?;
        only(m, &[Method::GET], "GET", ())?;
        return Ok(Some(Endpoint::Referrers {
            name,
            subject,
            artifact_type: query
                .get("artifactType")
                .filter(|a| !a.is_empty())
                .map(str::to_string),
        }));
    }
    Ok(None)
}

/// `value` when the method is one of `allowed`; 405 otherwise.
fn only<T>(m: &Method, allowed: &[Method], allow: &'static str, value: T) -> Result<T> {
    if allowed.contains(m) {
        Ok(value)
    } else {
        Err(Error::method_not_allowed(allow))
    }
}

/// For GET/HEAD endpoints: whether it is a HEAD; 405 for other methods.
fn reading(m: &Method, allow: &'static str) -> Result<bool> {
    only(m, &[Method::GET, Method::HEAD], allow, *m == Method::HEAD)
}

/// `/v2/<name>/manifests/<reference>`.
///
/// A GET or HEAD of a reference that is neither a valid tag nor a valid digest names something
/// that cannot exist, so it is `MANIFEST_UNKNOWN` (404), as the spec's conformance suite and
/// distribution answer; writing or deleting one is still `TAG_INVALID` / `DIGEST_INVALID` (400).
fn manifest(
    m: &Method,
    name: RepoName,
    last: &str,
    query: &Query,
    h: &HeaderMap,
) -> Result<Endpoint> {
    let reading = matches!(*m, Method::GET | Method::HEAD);
    if !reading && !matches!(*m, Method::PUT | Method::DELETE) {
        return Err(Error::method_not_allowed("GET, HEAD, PUT, DELETE"));
    }
    let reference = match Reference::parse(last) {
        Ok(r) => r,
        Err(_) if reading => {
            return Err(Error::new(
                ErrorCode::ManifestUnknown,
                "manifest unknown: the reference is neither a valid tag nor a valid digest",
            )
            .status(404));
        }
        Err(ReferenceError::Digest(d)) => {
            return Err(Error::new(ErrorCode::DigestInvalid, d.to_string()));
        }
        Err(ReferenceError::Tag) => {
            return Err(Error::new(
                ErrorCode::TagInvalid,
                "invalid tag: use up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
    };
    Ok(match *m {
        Method::PUT => {
            let mut tags = Vec::new();
            for v in query.all("tag") {
                tags.push(Tag::parse(v).ok_or_else(|| {
                    Error::new(ErrorCode::TagInvalid, format!("invalid tag {v:?} in ?tag="))
                })?);
            }
            Endpoint::ManifestPut {
                name,
                reference,
                tags,
                content_type: header_str(h, header::CONTENT_TYPE).map(str::to_string),
            }
        }
        Method::DELETE => Endpoint::ManifestDelete { name, reference },
        _ => Endpoint::ManifestGet {
            name,
            reference,
            head: *m == Method::HEAD,
        },
    })
}

/// `/v2/<name>/blobs/uploads/<id>`. An id of the wrong form names no session: 404.
fn upload(
    m: &Method,
    name: RepoName,
    last: &str,
    query: &Query,
    h: &HeaderMap,
) -> Result<Endpoint> {
    if !matches!(
        *m,
        Method::GET | Method::PATCH | Method::PUT | Method::DELETE
    ) {
        return Err(Error::method_not_allowed("GET, PATCH, PUT, DELETE"));
    }
    let id = UploadId::parse(last).ok_or_else(|| {
        Error::new(
            ErrorCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    })?;
    Ok(match *m {
        Method::GET => Endpoint::UploadStatus { name, id },
        Method::DELETE => Endpoint::UploadCancel { name, id },
        Method::PATCH => Endpoint::UploadChunk {
            name,
            id,
            range: chunk_range(h)?,
            length: content_length(h)?,
        },
        _ => Endpoint::UploadFinish {
            name,
            id,
            digest: query.digest("digest")?.ok_or_else(|| {
                Error::new(
                    ErrorCode::DigestInvalid,
                    "the final PUT of an upload needs ?digest=<digest>",
                )
            })?,
            range: chunk_range(h)?,
            length: content_length(h)?,
            has_body: has_body(h)?,
        },
    })
}

/// `/admin/v1/<rest>`: the operations `stowage user`/`token --server` send (the same
/// [`AdminRoute`] type builds their requests).
fn admin(m: &Method, rest: &str, query: &Query) -> Result<Option<AdminRoute>> {
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s).unwrap_or_default())
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match (m.clone(), seg.as_slice()) {
        (Method::GET, ["users"]) => AdminRoute::ListUsers,
        (Method::POST, ["users"]) => AdminRoute::AddUser,
        (Method::POST, ["users", "import"]) => AdminRoute::ImportUsers,
        (Method::PATCH, ["users", name]) => AdminRoute::ChangeUser(name.to_string()),
        (Method::DELETE, ["users", name]) => AdminRoute::RemoveUser(name.to_string()),
        (Method::GET, ["tokens"]) => AdminRoute::ListTokens(query.get("user").map(str::to_string)),
        (Method::POST, ["tokens"]) => AdminRoute::CreateToken,
        (Method::DELETE, ["tokens", id]) => AdminRoute::RevokeToken(id.to_string()),
        (_, ["users"] | ["tokens"]) => return Err(Error::method_not_allowed("GET, POST")),
        (_, ["users", "import"]) => return Err(Error::method_not_allowed("POST")),
        (_, ["users", _]) => return Err(Error::method_not_allowed("PATCH, DELETE")),
        (_, ["tokens", _]) => return Err(Error::method_not_allowed("DELETE")),
        _ => return Ok(None),
    };
    Ok(Some(route))
}

/// Decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    /// The first value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn digest(&self, key: &str) -> Result<Option<Digest>> {
        self.get(key).map(digest).transpose()
    }

    fn paging(&self) -> Result<Paging> {
        let n = match self.get("n") {
            None => None,
            Some(v) => Some(v.parse::<usize>().map_err(|_| {
                Error::new(
                    ErrorCode::Unsupported,
                    format!("invalid n={v:?}: use a non-negative integer"),
                )
                .status(400)
            })?),
        };
        Ok(Paging {
            n,
            last: self
                .get("last")
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        })
    }
}

/// A header as a string, if present and valid.
fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The declared Content-Length; a malformed value is a client error.
fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::new(ErrorCode::SizeInvalid, "invalid Content-Length header")),
    }
}

/// Whether the request carries a body at all.
fn has_body(h: &HeaderMap) -> Result<bool> {
    Ok(content_length(h)?.is_some_and(|n| n > 0) || h.contains_key(header::TRANSFER_ENCODING))
}

/// A chunk's `Content-Range`, if it has one.
fn chunk_range(h: &HeaderMap) -> Result<Option<ChunkRange>> {
    match header_str(h, header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => parse_content_range(v)
            .map(|(start, end)| Some(ChunkRange { start, end }))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::BlobUploadInvalid,
                    "invalid Content-Range: expected <start>-<end>",
                )
            }),
    }
}

/// Parse a query string into decoded pairs (repeated keys kept, `+` as space).
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn req(m: Method, uri: &str) -> Parts {
        axum::http::Request::builder()
            .method(m)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn on(m: Method, uri: &str) -> Result<Option<Endpoint>> {
        super::parse(&req(m, uri))
    }

    fn parse(uri: &str) -> Result<Option<Endpoint>> {
        on(Method::PUT, uri)
    }

    fn get(uri: &str) -> Result<Option<Endpoint>> {
        on(Method::GET, uri)
    }

    #[test]
    fn endpoints() {
        assert_eq!(get("/v2/").unwrap(), Some(Endpoint::Base { head: false }));
        assert_eq!(
            on(Method::HEAD, "/v2").unwrap(),
            Some(Endpoint::Base { head: true })
        );
        assert!(matches!(
            get("/v2/_catalog?n=5&last=a").unwrap(),
            Some(Endpoint::Catalog { page }) if page.n == Some(5) && page.last.as_deref() == Some("a")
        ));
        assert!(
            matches!(get("/v2/a/b/tags/list").unwrap(), Some(Endpoint::Tags { name, .. }) if name.as_str() == "a/b")
        );
        assert!(matches!(
            parse("/v2/a/manifests/latest?tag=x&tag=y").unwrap(),
            Some(Endpoint::ManifestPut { tags, .. }) if tags.len() == 2
        ));
        assert!(matches!(
            get(&format!("/v2/a/blobs/{D}")).unwrap(),
            Some(Endpoint::BlobGet { head: false, .. })
        ));
        assert!(matches!(
            on(
                Method::DELETE,
                &format!("/v2/a/blobs/{}", D.replace(':', "%3A"))
            )
            .unwrap(),
            Some(Endpoint::BlobDelete { .. })
        ));
        assert!(matches!(
            on(Method::POST, &format!("/v2/a/blobs/uploads/?mount={D}&from=b")).unwrap(),
            Some(Endpoint::UploadStart { start, .. }) if start.mount.is_some() && start.from.is_some()
        ));
        assert!(matches!(
            on(Method::POST, "/v2/a/blobs/uploads").unwrap(),
            Some(Endpoint::UploadStart { .. })
        ));
        assert!(
            matches!(on(Method::PATCH, "/v2/a/blobs/uploads/abc").unwrap(), Some(Endpoint::UploadChunk { id, .. }) if id.as_str() == "abc")
        );
        assert!(matches!(
            parse(&format!("/v2/a/blobs/uploads/abc?digest={D}")).unwrap(),
            Some(Endpoint::UploadFinish { .. })
        ));
        assert!(matches!(
            get(&format!("/v2/a/referrers/{D}?artifactType=x")).unwrap(),
            Some(Endpoint::Referrers { artifact_type: Some(t), .. }) if t == "x"
        ));
        // Names that contain endpoint words.
        assert!(
            matches!(parse("/v2/x/blobs/y/manifests/v1").unwrap(), Some(Endpoint::ManifestPut { name, .. }) if name.as_str() == "x/blobs/y")
        );
        assert!(
            matches!(get("/v2/manifests/tags/list").unwrap(), Some(Endpoint::Tags { name, .. }) if name.as_str() == "manifests")
        );
        assert_eq!(get("/healthz").unwrap(), Some(Endpoint::Health));
        assert_eq!(
            on(Method::POST, "/auth/token").unwrap(),
            Some(Endpoint::Token)
        );
        assert_eq!(
            get("/admin/v1/tokens?user=bob").unwrap(),
            Some(Endpoint::Admin(AdminRoute::ListTokens(Some("bob".into()))))
        );
        assert_eq!(
            on(Method::PATCH, "/admin/v1/users/al%69ce").unwrap(),
            Some(Endpoint::Admin(AdminRoute::ChangeUser("alice".into())))
        );
    }

    #[test]
    fn bad_paths() {
        assert_eq!(parse("/v3/").unwrap(), None);
        assert_eq!(parse("/v2x").unwrap(), None);
        assert_eq!(parse("/v2/a/unknown/x").unwrap(), None);
        assert_eq!(get("/admin/v1/nothing").unwrap(), None);
        let code = |r: Result<Option<Endpoint>>| r.unwrap_err().code.unwrap();
        assert_eq!(code(get("/v2/A/tags/list")), ErrorCode::NameInvalid);
        assert_eq!(
            code(parse("/v2/a/manifests/sha256:totallywrong")),
            ErrorCode::DigestInvalid
        );
        assert_eq!(code(parse("/v2/a/manifests/-bad")), ErrorCode::TagInvalid);
        assert_eq!(
            code(get("/v2/a/blobs/notadigest")),
            ErrorCode::DigestInvalid
        );
        assert_eq!(code(get("/v2/a/blobs/%zz")), ErrorCode::NameInvalid);
        assert_eq!(
            code(get("/v2/a/referrers/sha256:x")),
            ErrorCode::DigestInvalid
        );
        assert_eq!(code(get("/v2/../etc/tags/list")), ErrorCode::NameInvalid);
        assert_eq!(code(get("/v2/_catalog?n=x")), ErrorCode::Unsupported);
        assert_eq!(
            code(parse("/v2/a/blobs/uploads/abc")),
            ErrorCode::DigestInvalid,
            "a final PUT needs ?digest="
        );
        assert_eq!(
            code(get("/v2/a/blobs/uploads/ABC")),
            ErrorCode::BlobUploadUnknown
        );
    }

    /// The paths and methods the command line sends are the ones the server routes.
    #[test]
    fn every_admin_route_round_trips() {
        for r in [
            AdminRoute::ListUsers,
            AdminRoute::AddUser,
            AdminRoute::ImportUsers,
            AdminRoute::ChangeUser("alice".into()),
            AdminRoute::RemoveUser("bob.x-1".into()),
            AdminRoute::ListTokens(None),
            AdminRoute::ListTokens(Some("alice".into())),
            AdminRoute::CreateToken,
            AdminRoute::RevokeToken("0123456789abcdef".into()),
        ] {
            let m = Method::from_bytes(r.method().as_bytes()).unwrap();
            assert_eq!(
                on(m, &r.path()).unwrap(),
                Some(Endpoint::Admin(r.clone())),
                "{r:?}"
            );
        }
    }

    #[test]
    fn methods_an_endpoint_does_not_answer_are_405() {
        for (m, uri) in [
            (Method::POST, "/v2/a/manifests/latest".to_string()),
            (Method::PATCH, format!("/v2/a/blobs/{D}")),
            (Method::PUT, "/v2/a/tags/list".to_string()),
            (Method::DELETE, "/v2/_catalog".to_string()),
            (Method::GET, "/v2/a/blobs/uploads/".to_string()),
            (Method::POST, "/v2/a/blobs/uploads/abc".to_string()),
            (Method::OPTIONS, "/v2/".to_string()),
            (
                Method::from_bytes(b"PROPFIND").unwrap(),
                "/v2/a/manifests/x".to_string(),
            ),
            (Method::PUT, "/auth/token".to_string()),
            (Method::PUT, "/admin/v1/users".to_string()),
            (Method::GET, "/admin/v1/users/x".to_string()),
            (Method::POST, "/metrics".to_string()),
        ] {
            let e = on(m.clone(), &uri).unwrap_err();
            assert_eq!(e.http_status(), 405, "{m} {uri}");
            assert!(e.headers.iter().any(|(k, _)| *k == "Allow"), "{m} {uri}");
        }
    }

    #[test]
    fn every_endpoint_states_its_need() {
        let upload = |m: Method| on(m, "/v2/a/blobs/uploads/abc").unwrap().unwrap();
        assert!(matches!(
            upload(Method::GET).requirement(),
            Requirement::Registry(Need::Upload(..))
        ));
        assert!(matches!(
            upload(Method::DELETE).requirement(),
            Requirement::Registry(Need::Upload(..))
        ));
        let need = |m: Method, uri: &str| on(m, uri).unwrap().unwrap().requirement();
        assert!(matches!(
            need(Method::HEAD, "/v2/a/manifests/x"),
            Requirement::Registry(Need::Repo(_, Action::Pull))
        ));
        assert!(matches!(
            need(Method::PUT, "/v2/a/manifests/x"),
            Requirement::Registry(Need::Repo(_, Action::Push))
        ));
        assert!(matches!(
            need(Method::DELETE, "/v2/a/manifests/x"),
            Requirement::Registry(Need::Repo(_, Action::Delete))
        ));
        assert!(matches!(
            need(Method::DELETE, &format!("/v2/a/blobs/{D}")),
            Requirement::Registry(Need::Repo(_, Action::Delete))
        ));
        assert!(matches!(
            need(Method::POST, "/v2/a/blobs/uploads/"),
            Requirement::Registry(Need::Repo(_, Action::Push))
        ));
        assert_eq!(
            need(Method::GET, "/v2/"),
            Requirement::Registry(Need::Login)
        );
        assert_eq!(
            need(Method::GET, "/v2/_catalog"),
            Requirement::Registry(Need::Catalog)
        );
        assert_eq!(
            need(Method::DELETE, "/admin/v1/tokens/x"),
            Requirement::Admin
        );
        assert_eq!(need(Method::GET, "/auth/token"), Requirement::Open);
        assert_eq!(need(Method::GET, "/metrics"), Requirement::Open);
    }

    #[test]
    fn impossible_manifest_references_are_unknown_to_reads() {
        for m in [Method::GET, Method::HEAD] {
            for path in [
                "/v2/a/manifests/.INVALID_MANIFEST_NAME",
                "/v2/a/manifests/sha256:totallywrong",
            ] {
                let e = on(m.clone(), path).unwrap_err();
                assert_eq!(e.code, Some(ErrorCode::ManifestUnknown), "{m} {path}");
                assert_eq!(e.http_status(), 404, "{m} {path}");
            }
        }
        assert_eq!(
            on(Method::DELETE, "/v2/a/manifests/-bad").unwrap_err().code,
            Some(ErrorCode::TagInvalid)
        );
        // A bad repository name is still a bad name, whatever the method.
        assert_eq!(
            get("/v2/A/manifests/.x").unwrap_err().code,
            Some(ErrorCode::NameInvalid)
        );
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some("tag=a&tag=b&n=10&last=x%2Fy&empty"));
        assert_eq!(q.len(), 5);
        assert_eq!(q[3], ("last".into(), "x/y".into()));
        assert_eq!(q[4], ("empty".into(), "".into()));
    }
}
