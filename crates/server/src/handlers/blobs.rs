//! Blob and upload endpoints: GET/HEAD/DELETE of blobs, and the upload session lifecycle
//! (POST, PATCH, GET status, PUT, DELETE).

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Response, header};
use futures_util::StreamExt;
use stowage_oci::range::parse_content_range;
use stowage_oci::{Algorithm, Digest, ErrorCode, RepoName};
use stowage_registry::blobs::BlobContent;
use stowage_registry::uploads::{ChunkRange, StartRequest, Started};
use stowage_registry::{Error, Registry, Result};

use super::{body_stream, content_length, empty, has_body, header_str, param, query};
use crate::AppState;
use crate::auth::decide::Principal;

pub(super) async fn get(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    parts: &Parts,
    head: bool,
) -> Result<Response<Body>> {
    let digest_hdr = d.to_string();
    if head {
        let size = state.registry.blob_size(name, d).await?;
        return Ok(Response::builder()
            .status(200)
            .header(header::CONTENT_LENGTH, size)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes")
            .header("Docker-Content-Digest", digest_hdr)
            .body(Body::empty())
            .expect("valid response"));
    }
    let range = header_str(&parts.headers, header::RANGE);
    let blob = state.registry.blob_get(name, d, range).await?;
    let stream = match blob.content {
        BlobContent::Stream(stream) => stream,
        // The blob store serves the bytes itself (an S3 presigned GET): the client follows
        // with its own Range. HEAD never gets here: it is answered from metadata above.
        BlobContent::Redirect { url, .. } => {
            let location = axum::http::HeaderValue::try_from(url).map_err(|_| {
                Error::internal("the blob store gave a redirect URL that is no header value")
            })?;
            return Ok(Response::builder()
                .status(307)
                .header(header::LOCATION, location)
                .header("Docker-Content-Digest", digest_hdr)
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("valid response"));
        }
    };
    let metrics = state.metrics.clone();
    let stream = stream.inspect(move |c| {
        if let Ok(c) = c {
            metrics.add_out(c.len() as u64);
        }
    });
    let mut b = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header("Docker-Content-Digest", digest_hdr);
    b = match blob.partial {
        Some((start, end)) => b
            .status(206)
            .header(
                header::CONTENT_LENGTH,
                stowage_oci::range::range_len(start, end).unwrap_or(0),
            )
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{}", blob.size),
            ),
        None => b.status(200).header(header::CONTENT_LENGTH, blob.size),
    };
    Ok(b.body(Body::from_stream(stream)).expect("valid response"))
}

pub(super) async fn delete(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
) -> Result<Response<Body>> {
    state.registry.blob_delete(name, d).await?;
    Ok(empty(202, &[]))
}

fn digest_param(q: &[(String, String)], key: &str) -> Result<Option<Digest>> {
    param(q, key)
        .map(|v| {
            v.parse().map_err(|e: stowage_oci::digest::DigestError| {
                Error::new(ErrorCode::DigestInvalid, e.to_string())
            })
        })
        .transpose()
}

fn session_headers(name: &RepoName, id: &str, offset: u64) -> [(&'static str, String); 3] {
    [
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", Registry::upload_range_header(offset)),
        ("Docker-Upload-UUID", id.to_string()),
    ]
}

fn created(name: &RepoName, d: &Digest) -> Response<Body> {
    empty(
        201,
        &[
            ("Location", format!("/v2/{name}/blobs/{d}")),
            ("Docker-Content-Digest", d.to_string()),
        ],
    )
}

pub(super) async fn start(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    parts: &Parts,
    body: Body,
) -> Result<Response<Body>> {
    let q = query(parts);
    let digest = digest_param(&q, "digest")?;
    let mount = digest_param(&q, "mount")?;
    let from = match param(&q, "from") {
        None | Some("") => None,
        Some(f) => Some(RepoName::parse(f).ok_or_else(|| {
            Error::new(ErrorCode::NameInvalid, "invalid repository name in from")
        })?),
    };
    let algorithm = param(&q, "digest-algorithm")
        .map(|a| {
            Algorithm::parse(a).map_err(|e| Error::new(ErrorCode::DigestInvalid, e.to_string()))
        })
        .transpose()?;
    let body =
        (digest.is_some() && has_body(&parts.headers)?).then(|| body_stream(state, body, None));
    let req = StartRequest {
        digest,
        mount,
        from,
        algorithm,
        body,
        owner: who.owner(),
        readable: who.readable(),
    };
    match state.registry.upload_start(name, req).await? {
        Started::Session { id } => {
            let mut h = session_headers(name, &id, 0).to_vec();
            h.push((
                "OCI-Chunk-Min-Length",
                state.registry.preferred_chunk_size().to_string(),
            ));
            Ok(empty(202, &h))
        }
        Started::Mounted { digest } | Started::Created { digest } => Ok(created(name, &digest)),
    }
}

fn chunk_range(parts: &Parts) -> Result<Option<ChunkRange>> {
    match header_str(&parts.headers, header::CONTENT_RANGE) {
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

pub(super) async fn status(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>> {
    let offset = state.registry.upload_status(name, id, &who.owner()).await?;
    Ok(empty(204, &session_headers(name, id, offset)))
}

pub(super) async fn patch(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &str,
    parts: &Parts,
    body: Body,
) -> Result<Response<Body>> {
    let range = chunk_range(parts)?;
    let len = content_length(&parts.headers)?;
    let offset = state
        .registry
        .upload_patch(
            name,
            id,
            &who.owner(),
            range,
            len,
            body_stream(state, body, None),
        )
        .await?;
    Ok(empty(202, &session_headers(name, id, offset)))
}

pub(super) async fn finish(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &str,
    parts: &Parts,
    body: Body,
) -> Result<Response<Body>> {
    let q = query(parts);
    let digest = digest_param(&q, "digest")?.ok_or_else(|| {
        Error::new(
            ErrorCode::DigestInvalid,
            "the final PUT of an upload needs ?digest=<digest>",
        )
    })?;
    let range = chunk_range(parts)?;
    let len = content_length(&parts.headers)?;
    let body = has_body(&parts.headers)?.then(|| body_stream(state, body, None));
    state
        .registry
        .upload_finish(name, id, &who.owner(), &digest, range, len, body)
        .await?;
    Ok(created(name, &digest))
}

pub(super) async fn cancel(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &str,
) -> Result<Response<Body>> {
    state.registry.upload_cancel(name, id, &who.owner()).await?;
    Ok(empty(204, &[]))
}
