//! Manifest endpoints: GET/HEAD by tag or digest, PUT (with `?tag=`), DELETE.
//!
//! A manifest PUT is the one request whose whole body is held in memory and parsed, so large
//! ones take a share of a byte budget first ([`ManifestBudget`]): a burst of 4 MiB manifests
//! waits its turn instead of multiplying the peak (and what the allocator keeps afterwards).

use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::http::{Response, header};
use stowage_oci::{Reference, RepoName, Tag};

use super::{empty, read_body};
use crate::AppState;
use crate::error::Result;

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
    tags: &[Tag],
    content_type: Option<&str>,
    body: Body,
) -> Result<Response<Body>> {
    let limit = state.registry.settings().max_manifest_size;
    let declared = body.size_hint().exact();
    let _turn = state.manifest_budget.take(declared, limit).await;
    let bytes = read_body(state, body, limit).await?;
    let pushed = state
        .registry
        .manifest_put(name, r, content_type, bytes, tags)
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

/// A byte budget for manifest bodies buffered and parsed at the same time, in KiB permits.
/// Bodies declared at most [`ManifestBudget::FREE`] bytes (nearly every manifest) never wait;
/// larger ones, or ones of unknown length (counted at the limit), take their size from the
/// budget until their request is answered. The budget always fits one body of the limit. When
/// the last large body of a burst is done, the heap is trimmed (`memory::trim_heap`), so the
/// memory they used goes back to the OS instead of staying with the allocator.
pub(crate) struct ManifestBudget {
    permits: Arc<tokio::sync::Semaphore>,
    total: u32,
}

/// A large body's share of the budget; giving the last one back trims the heap.
pub(crate) struct Turn {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    total: u32,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let permits = permit.semaphore().clone();
        drop(permit);
        if permits.available_permits() == self.total as usize
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn_blocking(crate::memory::trim_heap);
        }
    }
}

impl ManifestBudget {
    /// Bodies up to this size are not counted.
    const FREE: u64 = 256 * 1024;
    /// Bytes of large manifest bodies in flight at once (raised to the size limit if larger):
    /// two bodies of the spec's 4 MiB minimum limit.
    const BYTES: u64 = 8 * 1024 * 1024;

    pub(crate) fn new(limit: u64) -> ManifestBudget {
        let total = u32::try_from(Self::BYTES.max(limit).div_ceil(1024)).unwrap_or(u32::MAX >> 3);
        ManifestBudget {
            permits: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Wait for room for a body of `declared` bytes (unknown: `limit`); a small body does not
    /// count. Over-limit declarations count as the limit (they are refused as soon as the
    /// limit is passed).
    pub(crate) async fn take(&self, declared: Option<u64>, limit: u64) -> Turn {
        let size = declared.unwrap_or(limit).min(limit);
        let permit = if size <= Self::FREE {
            None
        } else {
            let want = u32::try_from(size.div_ceil(1024))
                .unwrap_or(u32::MAX)
                .min(self.total);
            self.permits.clone().acquire_many_owned(want).await.ok()
        };
        Turn {
            permit,
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ManifestBudget;

    #[tokio::test]
    async fn small_bodies_pass_large_ones_share_the_budget() {
        let b = ManifestBudget::new(4 * 1024 * 1024);
        assert!(b.take(Some(1000), 4 << 20).await.permit.is_none());
        // Two 4 MiB bodies fill the 8 MiB budget; a third waits until one is answered.
        let mut held = Vec::new();
        for _ in 0..2 {
            let turn = b.take(Some(4 << 20), 4 << 20).await;
            assert!(turn.permit.is_some(), "a large body is counted");
            held.push(turn);
        }
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.take(None, 4 << 20)).await;
        assert!(third.is_err(), "a third large body must wait");
        held.pop();
        assert!(b.take(None, 4 << 20).await.permit.is_some());
        drop(held);
        assert_eq!(b.permits.available_permits(), b.total as usize);
        // A limit above the budget still admits one body of the limit.
        let big = ManifestBudget::new(64 << 20);
        assert!(big.take(Some(64 << 20), 64 << 20).await.permit.is_some());
    }
}
