//! Listing endpoints: tags, catalog (both paged in byte order with `Link`), referrers.

use axum::body::Body;
use axum::http::{Response, header};
use bytes::Bytes;
use stowage_oci::{Digest, RepoName, media};
use stowage_registry::listing::Page;

use super::json_response;
use crate::AppState;
use crate::auth::decide::Principal;
use crate::error::Result;
use crate::routes::Paging;

fn with_link(mut resp: Response<Body>, path: &str, page: &Page) -> Response<Body> {
    if let Some((n, last)) = &page.next {
        let link = format!("<{path}?n={n}&last={}>; rel=\"next\"", encode(last));
        if let Ok(v) = link.parse() {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

/// Percent-encode a query value (repository names carry `/`; tags are already safe).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) async fn tags(state: &AppState, name: &RepoName, p: Paging) -> Result<Response<Body>> {
    let page = state.registry.tags(name, p.n, p.last.as_deref()).await?;
    let body = serde_json::json!({ "name": name.as_str(), "tags": page.items });
    let resp = json_response(200, Bytes::from(body.to_string()), false);
    Ok(with_link(resp, &format!("/v2/{name}/tags/list"), &page))
}

pub(super) async fn catalog(
    state: &AppState,
    who: &Principal,
    p: Paging,
) -> Result<Response<Body>> {
    let readable = who.catalog_readable();
    let page = state
        .registry
        .catalog(p.n, p.last.as_deref(), readable.as_ref())
        .await?;
    let body = serde_json::json!({ "repositories": page.items });
    let resp = json_response(200, Bytes::from(body.to_string()), false);
    Ok(with_link(resp, "/v2/_catalog", &page))
}

pub(super) async fn referrers(
    state: &AppState,
    name: &RepoName,
    d: &Digest,
    filter: Option<&str>,
) -> Result<Response<Body>> {
    let body = state.registry.referrers(name, d, filter).await?;
    let mut resp = json_response(200, Bytes::from(body), false);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(media::OCI_INDEX),
    );
    if filter.is_some() {
        resp.headers_mut().insert(
            "OCI-Filters-Applied",
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
