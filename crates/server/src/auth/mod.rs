//! The HTTP side of authentication for `stowage serve --auth`; the decisions, accounts and
//! token issuing are the identity service's (`stowage-identity`).
//!
//! Layout:
//! - `decide`: the gate of registry requests: the credentials a request presents, what its
//!   endpoint needs, and the 401/403/429 answers (challenges, `WWW-Authenticate`).
//! - `token_endpoint`: the Docker token endpoint (GET and OAuth2 POST) and the JWKS.
//! - `admin_gate`: the refusal of cross-site requests to the admin API, and its challenge.
//! - `admin_api`: the authenticated HTTP API behind `stowage user`/`token --server`.
//!
//! This module (`Auth`) works out the client's address and the origin it addressed (trusting
//! `X-Forwarded-*` only from `auth.trusted_proxies`) and the token realm.

pub mod admin_api;
pub mod admin_gate;
pub mod decide;
pub mod token_endpoint;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::error::Error;
use axum::http::HeaderMap;
use stowage_identity::{Identity, IdentityError, Snapshot};
use stowage_metadata::AuthStore;

pub use crate::config::normalize_origin;
use crate::config::{AuthConfig, Cidr, ExternalUrl};

/// A JSON answer that no cache may keep (it may carry a secret).
pub(crate) fn json<T: serde::Serialize>(status: u16, v: &T) -> axum::response::Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    axum::response::Response::builder()
        .status(status)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CONTENT_LENGTH, body.len())
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::from(body))
        .expect("valid response")
}

/// An identity failure as a registry error: store errors keep their rendering (507 for a full
/// disk), the rest are internal.
pub(crate) fn identity_error(e: IdentityError) -> Error {
    match e {
        IdentityError::Store(m) => Error::from(m),
        other => Error::internal(other),
    }
}

/// Authentication over HTTP, shared by every request.
pub struct Auth {
    identity: Arc<Identity>,
    external_url: Option<ExternalUrl>,
    trusted: Vec<Cidr>,
}

impl Auth {
    /// Load the auth state (creating a signing key if there is none).
    pub async fn open(
        cfg: &AuthConfig,
        store: Arc<dyn AuthStore>,
    ) -> Result<Arc<Auth>, IdentityError> {
        let identity = Identity::open(cfg.identity_settings(), store).await?;
        Ok(Arc::new(Auth {
            identity,
            external_url: cfg.external_url.clone(),
            trusted: cfg.trusted_proxies.clone(),
        }))
    }

    /// The identity service.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.identity.snapshot()
    }

    /// Poll for changes, flush token last-use times and purge expired records, forever.
    pub fn spawn_background(&self) {
        self.identity.spawn_background();
    }

    fn trusted_peer(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.trusted.iter().any(|c| c.contains(p.ip())))
    }

    /// The client's address: the peer, or, behind a trusted proxy, the last address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let fallback = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        if !self.trusted_peer(peer) {
            return fallback;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusted.iter().any(|c| c.contains(**ip)))
            .copied()
            .unwrap_or(fallback)
    }

    /// The token realm URL clients are sent to.
    pub fn realm(
        &self,
        peer: Option<SocketAddr>,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        secure: bool,
    ) -> String {
        if let Some(url) = &self.external_url {
            return format!("{}/auth/token", url.base());
        }
        format!(
            "{}/auth/token",
            self.request_origin(peer, uri, headers, secure)
        )
    }

    /// The origin (`scheme://host[:port]`, lowercase, default port left out) of
    /// `auth.external_url`, when configured.
    pub fn external_origin(&self) -> Option<&str> {
        self.external_url.as_ref().map(ExternalUrl::origin)
    }

    /// The origin the client addressed this request to: the listener's scheme and the `Host`
    /// (or HTTP/2 `:authority`), or, from `auth.trusted_proxies`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host`. As sent (compare through [`normalize_origin`]).
    pub fn request_origin(
        &self,
        peer: Option<SocketAddr>,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        secure: bool,
    ) -> String {
        let clean = |s: &str| -> Option<String> {
            let s = s.split(',').next()?.trim();
            (!s.is_empty()
                && s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)))
            .then(|| s.to_string())
        };
        let mut scheme = if secure { "https" } else { "http" }.to_string();
        // HTTP/2 carries the host as the `:authority` pseudo-header (the URI's authority),
        // HTTP/1.1 as `Host`.
        let mut host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                headers
                    .get(axum::http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .and_then(clean)
            .unwrap_or_else(|| "localhost".into());
        if self.trusted_peer(peer) {
            if let Some(p) = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(clean)
                .filter(|p| p == "http" || p == "https")
            {
                scheme = p;
            }
            if let Some(h) = headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok())
                .and_then(clean)
            {
                host = h;
            }
        }
        format!("{scheme}://{host}")
    }
}
