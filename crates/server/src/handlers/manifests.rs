//! Manifest endpoints: GET/HEAD by tag or digest, PUT (with `?tag=`), DELETE.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Response, header};
use stowage_oci::{ErrorCode, Reference, RepoName, Tag};
use stowage_registry::{Error, Result};

use super::{empty, header_str, query, read_body};
use crate::AppState;

pub(super) async fn get(
    state: &AppState,
    name: &RepoName,
    r: &Reference,
    head: bool,
) -> Result<Response<Body>> {
    let m = state.registry.manifest_get(name, r, !head).await?;
    let b = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, &m.media_type)
        .header(header::CONTENT_LENGTH, m.size)
        .header("Docker-Content-Digest", m.digest.to_string())
        .header(header::ETAG, format!("\"{}\"", m.digest));
    let body = match m.body {
        Some(bytes) if !head => {
            state.metrics.add_out(bytes.len() as u64);
            Body::from(bytes)
        }
        _ => Body::empty(),
    };
    Ok(b.body(body).expect("valid response"))
}

pub(super) async fn put(
    state: &AppState,
    name: &RepoName,
    r: &Reference,
    parts: &Parts,
    body: Body,
) -> Result<Response<Body>> {
    let limit = state.registry.settings().max_manifest_size;
    let q = query(parts);
    let mut tags = Vec::new();
    for (k, v) in &q {
        if k == "tag" {
            tags.push(Tag::parse(v).ok_or_else(|| {
                Error::new(ErrorCode::TagInvalid, format!("invalid tag {v:?} in ?tag="))
            })?);
        }
    }
    let bytes = read_body(state, body, limit).await?;
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
    let pushed = state
        .registry
        .manifest_put(name, r, content_type, bytes, &tags)
        .await?;
    let mut h = vec![
        (
            "Location",
            format!("/v2/{name}/manifests/{}", pushed.digest),
        ),
        ("Docker-Content-Digest", pushed.digest.to_string()),
    ];
    if let Some(s) = &pushed.subject {
        h.push(("OCI-Subject", s.to_string()));
    }
    for t in &pushed.tags {
        h.push(("OCI-Tag", t.clone()));
    }
    Ok(empty(201, &h))
}

pub(super) async fn delete(
    state: &AppState,
    name: &RepoName,
    r: &Reference,
) -> Result<Response<Body>> {
    state.registry.manifest_delete(name, r).await?;
    Ok(empty(202, &[]))
}
