//! Blob and upload endpoints: GET/HEAD/DELETE of blobs, and the upload session lifecycle
//! (POST, PATCH, GET status, PUT, DELETE).

use axum::body::Body;
use axum::http::{Response, header};
use futures_util::StreamExt;
use stowage_oci::{Digest, RepoName};
use stowage_registry::blobs::BlobContent;
use stowage_registry::session_id::UploadId;
use stowage_registry::uploads::{ChunkRange, StartRequest, Started};

use super::{body_stream, empty};
use crate::AppState;
use crate::auth::decide::Principal;
use crate::error::{Error, Result, upload_range};
use crate::routes::UploadStart;

/// The part of an upload request that carries bytes.
pub(super) struct Chunk {
    pub range: Option<ChunkRange>,
    pub length: Option<u64>,
    /// None when the request has no body at all.
    pub body: Option<Body>,
}

pub(super) async fn get(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    range: Option<&str>,
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

fn session_headers(name: &RepoName, id: &UploadId, offset: u64) -> [(&'static str, String); 3] {
    [
        ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("Range", upload_range(offset)),
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
    start: UploadStart,
    body: Body,
) -> Result<Response<Body>> {
    let (body, watch) = match (&start.digest, start.has_body) {
        (Some(_), true) => {
            let (stream, watch) = body_stream(state, body, None);
            (Some(stream), watch)
        }
        _ => (None, Default::default()),
    };
    let req = StartRequest {
        digest: start.digest,
        mount: start.mount,
        from: start.from,
        algorithm: start.algorithm,
        body,
        owner: who.owner(),
        readable: who.readable(),
    };
    let started = state
        .registry
        .upload_start(name, req)
        .await
        .map_err(|e| watch.explain(e))?;
    match started {
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

pub(super) async fn status(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response<Body>> {
    let offset = state.registry.upload_status(name, id, &who.owner()).await?;
    Ok(empty(204, &session_headers(name, id, offset)))
}

pub(super) async fn patch(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &UploadId,
    range: Option<ChunkRange>,
    length: Option<u64>,
    body: Body,
) -> Result<Response<Body>> {
    let (stream, watch) = body_stream(state, body, None);
    let offset = state
        .registry
        .upload_patch(name, id, &who.owner(), range, length, stream)
        .await
        .map_err(|e| watch.explain(e))?;
    Ok(empty(202, &session_headers(name, id, offset)))
}

pub(super) async fn finish(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &UploadId,
    digest: &Digest,
    chunk: Chunk,
) -> Result<Response<Body>> {
    let (body, watch) = match chunk.body {
        Some(body) => {
            let (stream, watch) = body_stream(state, body, None);
            (Some(stream), watch)
        }
        None => (None, Default::default()),
    };
    state
        .registry
        .upload_finish(
            name,
            id,
            &who.owner(),
            digest,
            chunk.range,
            chunk.length,
            body,
        )
        .await
        .map_err(|e| watch.explain(e))?;
    Ok(created(name, digest))
}

pub(super) async fn cancel(
    state: &AppState,
    who: &Principal,
    name: &RepoName,
    id: &UploadId,
) -> Result<Response<Body>> {
    state.registry.upload_cancel(name, id, &who.owner()).await?;
    Ok(empty(204, &[]))
}
