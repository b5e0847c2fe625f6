//! Turning a request path into an [`Endpoint`].
//!
//! Repository names contain slashes, so instead of one route per name depth the whole path is
//! parsed here: the last segment is the tag, digest or upload id, and the segment(s) before it
//! say which endpoint it is. Tags, digests and upload ids never contain `/`, so this split is
//! unambiguous even for names like `a/blobs/b`. Validation errors carry their OCI code.

use axum::http::Method;
use stowage_oci::reference::ReferenceError;
use stowage_oci::{Digest, ErrorCode, Reference, RepoName};
use stowage_registry::Error;

/// A parsed registry endpoint (method not yet considered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, Digest),
}

impl Endpoint {
    /// The route template used in logs and metrics (never the repository name).
    pub fn template(&self) -> &'static str {
        match self {
            Endpoint::Base => "/v2/",
            Endpoint::Catalog => "/v2/_catalog",
            Endpoint::Tags(_) => "/v2/{name}/tags/list",
            Endpoint::Manifest(..) => "/v2/{name}/manifests/{reference}",
            Endpoint::Blob(..) => "/v2/{name}/blobs/{digest}",
            Endpoint::UploadStart(_) => "/v2/{name}/blobs/uploads/",
            Endpoint::Upload(..) => "/v2/{name}/blobs/uploads/{id}",
            Endpoint::Referrers(..) => "/v2/{name}/referrers/{digest}",
        }
    }
}

fn name(s: &str) -> Result<RepoName, Error> {
    RepoName::parse(s).ok_or_else(|| {
        Error::new(ErrorCode::NameInvalid, "invalid repository name")
            .detail(serde_json::json!({ "name": s.chars().take(300).collect::<String>() }))
    })
}

fn digest(s: &str) -> Result<Digest, Error> {
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

/// Parse a path under `/v2`. `Ok(None)` means "not a registry endpoint" (404).
///
/// The method matters in one place: a GET or HEAD of a manifest reference that is neither a
/// valid tag nor a valid digest names something that cannot exist, so it is `MANIFEST_UNKNOWN`
/// (404), as the spec's conformance suite and distribution answer; writing or deleting one is
/// still `TAG_INVALID` / `DIGEST_INVALID` (400).
pub fn parse(method: &Method, path: &str) -> Result<Option<Endpoint>, Error> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Endpoint::Base));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    if rest == "_catalog" {
        return Ok(Some(Endpoint::Catalog));
    }
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Some(Endpoint::Tags(name(n)?)));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Some(Endpoint::UploadStart(name(n)?)));
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Ok(None);
    };
    let last = percent_decode(last)
        .ok_or_else(|| Error::new(ErrorCode::NameInvalid, "invalid percent-encoding in path"))?;
    if let Some(n) = head.strip_suffix("/manifests") {
        let n = name(n)?;
        if matches!(*method, Method::GET | Method::HEAD) && Reference::parse(&last).is_err() {
            return Err(Error::new(
                ErrorCode::ManifestUnknown,
                "manifest unknown: the reference is neither a valid tag nor a valid digest",
            )
            .status(404));
        }
        let r = Reference::parse(&last).map_err(|e| match e {
            ReferenceError::Digest(d) => Error::new(ErrorCode::DigestInvalid, d.to_string()),
            ReferenceError::Tag => Error::new(
                ErrorCode::TagInvalid,
                "invalid tag: use up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ),
        })?;
        return Ok(Some(Endpoint::Manifest(n, r)));
    }
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        return Ok(Some(Endpoint::Upload(name(n)?, last)));
    }
    if let Some(n) = head.strip_suffix("/blobs") {
        let n = name(n)?;
        return Ok(Some(Endpoint::Blob(n, digest(&last)?)));
    }
    if let Some(n) = head.strip_suffix("/referrers") {
        let n = name(n)?;
        return Ok(Some(Endpoint::Referrers(n, digest(&last)?)));
    }
    Ok(None)
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

    fn parse(path: &str) -> Result<Option<Endpoint>, Error> {
        super::parse(&Method::PUT, path)
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse("/v2/").unwrap(), Some(Endpoint::Base));
        assert_eq!(parse("/v2").unwrap(), Some(Endpoint::Base));
        assert_eq!(parse("/v2/_catalog").unwrap(), Some(Endpoint::Catalog));
        assert!(
            matches!(parse("/v2/a/b/tags/list").unwrap(), Some(Endpoint::Tags(n)) if n.as_str() == "a/b")
        );
        assert!(matches!(
            parse("/v2/a/manifests/latest").unwrap(),
            Some(Endpoint::Manifest(..))
        ));
        assert!(matches!(
            parse(&format!("/v2/a/blobs/{D}")).unwrap(),
            Some(Endpoint::Blob(..))
        ));
        assert!(matches!(
            parse(&format!("/v2/a/blobs/{}", D.replace(':', "%3A"))).unwrap(),
            Some(Endpoint::Blob(..))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/").unwrap(),
            Some(Endpoint::UploadStart(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads").unwrap(),
            Some(Endpoint::UploadStart(_))
        ));
        assert!(
            matches!(parse("/v2/a/blobs/uploads/abc").unwrap(), Some(Endpoint::Upload(_, id)) if id == "abc")
        );
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")).unwrap(),
            Some(Endpoint::Referrers(..))
        ));
        // Names that contain endpoint words.
        assert!(
            matches!(parse("/v2/x/blobs/y/manifests/v1").unwrap(), Some(Endpoint::Manifest(n, _)) if n.as_str() == "x/blobs/y")
        );
        assert!(
            matches!(parse("/v2/manifests/tags/list").unwrap(), Some(Endpoint::Tags(n)) if n.as_str() == "manifests")
        );
    }

    #[test]
    fn bad_paths() {
        assert_eq!(parse("/v3/").unwrap(), None);
        assert_eq!(parse("/v2x").unwrap(), None);
        assert_eq!(parse("/v2/a/unknown/x").unwrap(), None);
        assert_eq!(
            parse("/v2/A/tags/list").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/manifests/sha256:totallywrong")
                .unwrap_err()
                .code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("/v2/a/manifests/-bad").unwrap_err().code,
            ErrorCode::TagInvalid
        );
        assert_eq!(
            parse("/v2/a/blobs/notadigest").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("/v2/a/blobs/%zz").unwrap_err().code,
            ErrorCode::NameInvalid
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:x").unwrap_err().code,
            ErrorCode::DigestInvalid
        );
        assert_eq!(
            parse("/v2/../etc/tags/list").unwrap_err().code,
            ErrorCode::NameInvalid
        );
    }

    #[test]
    fn impossible_manifest_references_are_unknown_to_reads() {
        for m in [Method::GET, Method::HEAD] {
            for path in [
                "/v2/a/manifests/.INVALID_MANIFEST_NAME",
                "/v2/a/manifests/sha256:totallywrong",
            ] {
                let e = super::parse(&m, path).unwrap_err();
                assert_eq!(e.code, ErrorCode::ManifestUnknown, "{m} {path}");
                assert_eq!(e.http_status(), 404, "{m} {path}");
            }
        }
        assert_eq!(
            super::parse(&Method::DELETE, "/v2/a/manifests/-bad")
                .unwrap_err()
                .code,
            ErrorCode::TagInvalid
        );
        // A bad repository name is still a bad name, whatever the method.
        assert_eq!(
            super::parse(&Method::GET, "/v2/A/manifests/.x")
                .unwrap_err()
                .code,
            ErrorCode::NameInvalid
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
