//! The HTTP side of the Docker token endpoint (`/auth/token`) and the signing keys' JWKS
//! (`/auth/jwks`): what the identity service grants is decided there (`Identity::issue`).
//!
//! GET takes Basic credentials (optional: anonymous callers get tokens for public
//! repositories only), repeated `scope`, `service`, `account` and `offline_token`; the OAuth2
//! POST takes `grant_type=password|refresh_token`. A refresh token is handed out only on
//! request (`offline_token=true`, `access_type=offline`).

use std::net::SocketAddr;

use crate::error::{Error, Result};
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, Response};
use bytes::Bytes;
use stowage_auth::scope::{Scope, parse_scopes};
use stowage_identity::decide::NoSessions;
use stowage_identity::{Credentials, Need};
use stowage_oci::ErrorCode;

use super::decide::credentials;
use super::{Auth, identity_error, json};

/// Largest form body accepted.
const MAX_FORM: usize = 64 * 1024;

impl Auth {
    /// `GET /auth/jwks`.
    pub fn jwks(&self) -> Response<Body> {
        json(200, &stowage_auth::jwt::jwks(&self.snapshot().public_keys))
    }

    /// `GET` or `POST /auth/token`.
    pub async fn token_endpoint(
        &self,
        parts: &Parts,
        body: Body,
        peer: Option<SocketAddr>,
    ) -> Result<Response<Body>> {
        let (creds, scopes, offline, oauth) = if parts.method == Method::GET {
            let q = crate::routes::query_pairs(parts.uri.query());
            let mut scopes = Vec::new();
            for (k, v) in &q {
                if k == "scope" {
                    scopes.extend(parse_scopes(v).map_err(invalid_scope)?);
                }
            }
            let offline = q.iter().any(|(k, v)| k == "offline_token" && v == "true");
            let creds = match credentials(parts) {
                basic @ Credentials::Basic { .. } => basic,
                _ => Credentials::None,
            };
            (creds, scopes, offline, false)
        } else if parts.method == Method::POST {
            let (creds, scopes, offline) = read_grant(body).await?;
            (creds, scopes, offline, true)
        } else {
            return Err(Error::new(ErrorCode::Unsupported, "use GET or POST"));
        };
        let ip = self.client_ip(peer, &parts.headers);
        let who = self
            .identity
            .decide(&Need::Token, creds, ip, &NoSessions)
            .await
            .map_err(identity_error)?
            .map_err(|denial| self.refusal(&denial, &Need::Token, parts, peer, false))?;
        let issued = self
            .identity
            .issue(&who.cred, &scopes, offline, oauth)
            .await
            .map_err(identity_error)?;
        Ok(json(200, &issued))
    }
}

/// The OAuth2 form: the credentials, the scopes asked for, and whether a refresh token is.
async fn read_grant(body: Body) -> Result<(Credentials, Vec<Scope>, bool)> {
    let form = read_form(body).await?;
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let scopes = match get("scope") {
        Some(s) => parse_scopes(s).map_err(invalid_scope)?,
        None => Vec::new(),
    };
    let offline = get("access_type") == Some("offline");
    let creds = match get("grant_type") {
        Some("password") => Credentials::Basic {
            user: get("username").unwrap_or_default().to_string(),
            password: get("password").unwrap_or_default().to_string(),
        },
        Some("refresh_token") => {
            Credentials::Refresh(get("refresh_token").unwrap_or_default().to_string())
        }
        _ => {
            return Err(Error::new(
                ErrorCode::Unsupported,
                "grant_type must be password or refresh_token",
            )
            .status(400));
        }
    };
    Ok((creds, scopes, offline))
}

fn invalid_scope(e: stowage_auth::scope::ScopeError) -> Error {
    Error::new(ErrorCode::NameInvalid, format!("invalid scope: {e}")).status(400)
}

async fn read_form(body: Body) -> Result<Vec<(String, String)>> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| Error::new(ErrorCode::SizeInvalid, "form body too large").status(400))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::new(ErrorCode::Unsupported, "form body is not UTF-8").status(400))?;
    Ok(crate::routes::query_pairs(Some(text)))
}
