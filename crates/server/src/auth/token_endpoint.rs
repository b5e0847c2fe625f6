//! The Docker token endpoint (`/auth/token`) and the signing keys' JWKS (`/auth/jwks`).
//!
//! GET takes Basic credentials (optional: anonymous callers get tokens for public
//! repositories only), repeated `scope`, `service`, `account` and `offline_token`; the OAuth2
//! POST takes `grant_type=password|refresh_token`. The granted access is the intersection of
//! what was asked and what the credential holds now; asking for more is not an error.
//! `registry:admin:*` (the admin API) is granted only when asked for, to a password or a
//! refresh token minted from one, or to an access token whose scopes include `admin`. A
//! refresh token is handed out only on request (`offline_token=true`, `access_type=offline`)
//! and is stored hashed, bound to its user, the service and the credential that minted it.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, Response};
use bytes::Bytes;
use stowage_auth::pattern::{Access, grant_requested};
use stowage_auth::scope::{Actions, Resource, Scope, parse_scopes};
use stowage_auth::{jwt, secret};
use stowage_metadata::RefreshRecord;
use stowage_oci::ErrorCode;
use stowage_registry::{Error, Result};

use super::decide::{Presented, presented, too_many};
use super::{Auth, Cred, LoginError, json, now};

/// Largest form body accepted.
const MAX_FORM: usize = 64 * 1024;

fn unauthorized(message: &str) -> Error {
    Error::new(ErrorCode::Unauthorized, message.to_string())
        .header("WWW-Authenticate", "Basic realm=\"stowage\"".to_string())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds.
pub use stowage_oci::time::rfc3339;

impl Auth {
    /// `GET /auth/jwks`.
    pub fn jwks(&self) -> Response<Body> {
        json(200, &jwt::jwks(&self.snapshot().public_keys))
    }

    /// `GET` or `POST /auth/token`.
    pub async fn token_endpoint(
        &self,
        parts: &Parts,
        body: Body,
        peer: Option<SocketAddr>,
    ) -> Result<Response<Body>> {
        let ip = self.client_ip(peer, &parts.headers);
        if parts.method == Method::GET {
            let q = crate::routes::query_pairs(parts.uri.query());
            let mut scopes = Vec::new();
            for (k, v) in &q {
                if k == "scope" {
                    scopes.extend(parse_scopes(v).map_err(invalid_scope)?);
                }
            }
            let offline = q.iter().any(|(k, v)| k == "offline_token" && v == "true");
            let cred = match presented(parts) {
                Some(Presented::Basic { user, password }) => {
                    self.login_or_error(ip, &user, &password).await?
                }
                _ => Cred::Anonymous,
            };
            return self.answer(&cred, &scopes, offline, false).await;
        }
        if parts.method != Method::POST {
            return Err(Error::new(ErrorCode::Unsupported, "use GET or POST"));
        }
        let form = read_form(body).await?;
        let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let scopes = match get("scope") {
            Some(s) => parse_scopes(s).map_err(invalid_scope)?,
            None => Vec::new(),
        };
        let offline = get("access_type") == Some("offline");
        let cred = match get("grant_type") {
            Some("password") => {
                let user = get("username").unwrap_or_default();
                let password = get("password").unwrap_or_default();
                self.login_or_error(ip, user, password).await?
            }
            Some("refresh_token") => {
                let token = get("refresh_token").unwrap_or_default();
                self.redeem_refresh(token).await?
            }
            _ => {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    "grant_type must be password or refresh_token",
                )
                .status(400));
            }
        };
        self.answer(&cred, &scopes, offline, true).await
    }

    async fn login_or_error(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Cred> {
        match self.login(ip, user, password).await {
            Ok(c) => Ok(c),
            Err(LoginError::Limited(wait)) => Err(too_many(wait)),
            Err(LoginError::Invalid) => Err(unauthorized("invalid user name or password")),
        }
    }

    async fn redeem_refresh(&self, token: &str) -> Result<Cred> {
        if secret::split_refresh_token(token).is_none() {
            return Err(unauthorized("invalid refresh token"));
        }
        let record = self
            .store()
            .refresh(&secret::hash_secret(token))
            .await
            .map_err(Error::from)?;
        let now = now();
        let cred = record
            .filter(|r| r.expires > now && r.service == self.cfg.service)
            .and_then(|r| self.snapshot().decode(&r.cred, now));
        match cred {
            Some(c) => Ok(c),
            None => {
                tracing::warn!("auth: refused a refresh token (unknown, expired or revoked)");
                Err(unauthorized("invalid refresh token"))
            }
        }
    }

    async fn answer(
        &self,
        cred: &Cred,
        scopes: &[Scope],
        offline: bool,
        oauth: bool,
    ) -> Result<Response<Body>> {
        let snap = self.snapshot();
        let access: Vec<Access> = grant_requested(scopes, |r: &Resource| match r {
            Resource::Repository(n) => snap.actions_on(cred, n),
            Resource::Catalog => {
                if snap.catalog(cred) {
                    Actions::ALL
                } else {
                    Actions::NONE
                }
            }
            // Only when asked for, and only to a credential that holds it (a password, or a
            // token with the `admin` scope): a JWT for pulling never opens the admin API.
            Resource::Admin => {
                if snap.admin_api(cred) {
                    Actions::ALL
                } else {
                    Actions::NONE
                }
            }
        });
        let granted_scope = access
            .iter()
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let (token, expires_in, issued) = self.issue_jwt(cred, access).map_err(Error::internal)?;
        let mut out = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": rfc3339(issued),
        });
        if oauth {
            out["scope"] = granted_scope.into();
        }
        // Refresh tokens are stored against a store user: htpasswd users (outside the store)
        // get none, and clients such as `docker login` then keep the password instead.
        let stored = snap
            .users
            .get(cred.subject())
            .is_some_and(|u| !u.from_htpasswd);
        if offline && *cred != Cred::Anonymous && stored {
            out["refresh_token"] = self.mint_refresh(cred).await?.into();
        }
        tracing::info!(subject = cred.subject(), "auth: token issued");
        Ok(json(200, &out))
    }

    async fn mint_refresh(&self, cred: &Cred) -> Result<String> {
        let fresh = secret::new_refresh_token();
        let record = RefreshRecord {
            user: cred.subject().to_string(),
            service: self.cfg.service.clone(),
            cred: cred.encode(),
            created: now(),
            expires: now() + self.cfg.refresh_ttl.as_secs() as i64,
        };
        self.store()
            .create_refresh(&fresh.hash, &record)
            .await
            .map_err(Error::from)?;
        Ok(fresh.secret)
    }
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
