//! The admin HTTP API under `/admin/v1/` that `stowage user`/`token --server URL` drive.
//!
//! Callers authenticate with Basic (password, or an access token that carries the `admin`
//! scope). Administrators manage everything; any user may change its own password and manage
//! its own tokens with its password (a token cannot mint tokens unless it carries `admin`, so
//! a leaked pull token cannot become a push token). Bodies are JSON; errors use the registry's
//! error body. The API is documented in docs/SECURITY.md.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, Response};
use serde::Deserialize;
use stowage_oci::ErrorCode;
use stowage_registry::{Error, Result};

use super::decide::{Presented, presented, too_many};
use super::{Auth, Cred, LoginError, json};
use crate::accounts::{AccountError, Accounts};

const MAX_BODY: usize = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct UserChange {
    password: Option<String>,
    grant: Vec<String>,
    revoke: Vec<String>,
    admin: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Import {
    htpasswd: String,
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenReq {
    user: Option<String>,
    scopes: Vec<String>,
    expires_in: Option<u64>,
    #[serde(default)]
    name: String,
}

fn no_content() -> Response<Body> {
    Response::builder()
        .status(204)
        .body(Body::empty())
        .expect("valid response")
}

fn account_error(e: AccountError) -> Error {
    match e {
        AccountError::Invalid(m) => Error::new(ErrorCode::NameInvalid, m).status(400),
        AccountError::NotFound(m) => Error::new(ErrorCode::NameUnknown, m),
        AccountError::Conflict(m) => Error::new(ErrorCode::Denied, m).status(409),
        AccountError::Store(m) => Error::internal(m),
    }
}

fn denied() -> Error {
    Error::new(
        ErrorCode::Denied,
        "this needs an administrator (or the user itself, with its password)",
    )
}

async fn body_json<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| Error::new(ErrorCode::SizeInvalid, "request body too large").status(413))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(ErrorCode::NameInvalid, format!("invalid JSON body: {e}")).status(400)
    })
}

impl Auth {
    /// Handle a request under `/admin/v1/`.
    pub async fn admin_api(
        &self,
        parts: &Parts,
        body: Body,
        peer: Option<SocketAddr>,
    ) -> Result<Response<Body>> {
        let cred = match presented(parts) {
            Some(Presented::Basic { user, password }) => {
                let ip = self.client_ip(peer, &parts.headers);
                match self.login(ip, &user, &password).await {
                    Ok(c) => c,
                    Err(LoginError::Limited(wait)) => return Err(too_many(wait)),
                    Err(LoginError::Invalid) => return Err(unauthorized()),
                }
            }
            // A bearer JWT (what `stowage login` leads to): the rights come from the
            // credential it names, as for any request.
            Some(Presented::Bearer(token)) => {
                let snap = self.snapshot();
                let now = super::now();
                match self.verify_jwt(&snap, &token, now) {
                    Ok(c) => snap
                        .decode(&c.cred, now)
                        .filter(|cred| cred.subject() == c.sub)
                        .ok_or_else(unauthorized)?,
                    Err(_) => return Err(unauthorized()),
                }
            }
            _ => return Err(unauthorized()),
        };
        let snap = self.snapshot();
        let admin = snap.admin(&cred);
        let own_password = matches!(cred, Cred::Password { .. });
        let me = cred.subject().to_string();
        let accounts = Accounts::new(self.store().clone());
        let path = parts.uri.path().trim_start_matches("/admin/v1");
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| crate::routes::percent_decode(s).unwrap_or_default())
            .collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let m = &parts.method;
        let result = match (m.clone(), seg.as_slice()) {
            (Method::GET, ["users"]) if admin => Ok(json(
                200,
                &accounts.list_users().await.map_err(account_error)?,
            )),
            (Method::POST, ["users"]) if admin => {
                let u: NewUser = body_json(body).await?;
                let made = accounts
                    .add_user(&u.name, &u.password, u.admin, &u.grants)
                    .await
                    .map_err(account_error)?;
                Ok(json(201, &made))
            }
            (Method::POST, ["users", "import"]) if admin => {
                let i: Import = body_json(body).await?;
                let (imported, skipped) = accounts
                    .import_htpasswd(&i.htpasswd, &i.grants)
                    .await
                    .map_err(account_error)?;
                Ok(json(
                    200,
                    &serde_json::json!({"imported": imported, "skipped": skipped}),
                ))
            }
            (Method::PATCH, ["users", name]) if admin || (own_password && *name == me) => {
                let c: UserChange = body_json(body).await?;
                let changes_rights =
                    !c.grant.is_empty() || !c.revoke.is_empty() || c.admin.is_some();
                if changes_rights && !admin {
                    return Err(denied());
                }
                if let Some(pw) = &c.password {
                    accounts
                        .set_password(name, pw)
                        .await
                        .map_err(account_error)?;
                }
                let info = accounts
                    .change_rights(name, &c.grant, &c.revoke, c.admin)
                    .await
                    .map_err(account_error)?;
                Ok(json(200, &info))
            }
            (Method::DELETE, ["users", name]) if admin => {
                accounts.remove_user(name).await.map_err(account_error)?;
                Ok(no_content())
            }
            (Method::GET, ["tokens"]) if admin || own_password => {
                let q = crate::routes::query_pairs(parts.uri.query());
                let wanted = q.iter().find(|(k, _)| k == "user").map(|(_, v)| v.as_str());
                let user = if admin { wanted } else { Some(me.as_str()) };
                if !admin && wanted.is_some_and(|w| w != me) {
                    return Err(denied());
                }
                Ok(json(
                    200,
                    &accounts.list_tokens(user).await.map_err(account_error)?,
                ))
            }
            (Method::POST, ["tokens"]) if admin || own_password => {
                let t: NewTokenReq = body_json(body).await?;
                let user = t.user.unwrap_or_else(|| me.clone());
                if !admin && user != me {
                    return Err(denied());
                }
                let made = accounts
                    .create_token(
                        &user,
                        &t.scopes,
                        t.expires_in.map(Duration::from_secs),
                        &t.name,
                    )
                    .await
                    .map_err(account_error)?;
                Ok(json(201, &made))
            }
            (Method::DELETE, ["tokens", id]) if admin || own_password => {
                if !admin
                    && accounts
                        .token_owner(id)
                        .await
                        .map_err(account_error)?
                        .as_deref()
                        != Some(me.as_str())
                {
                    return Err(Error::new(
                        ErrorCode::NameUnknown,
                        format!("no token with id {id:?}"),
                    ));
                }
                accounts.revoke_token(id).await.map_err(account_error)?;
                Ok(no_content())
            }
            (_, ["users"] | ["users", _] | ["tokens"] | ["tokens", _]) => Err(denied()),
            _ => Err(Error::new(ErrorCode::NameUnknown, "no such admin endpoint")),
        };
        if result.is_ok() && matches!(*m, Method::POST | Method::PATCH | Method::DELETE) {
            // Apply the change here at once, not at the next poll.
            let _ = self.reload(false).await;
        }
        result
    }
}

fn unauthorized() -> Error {
    Error::new(ErrorCode::Unauthorized, "authentication required").header(
        "WWW-Authenticate",
        "Basic realm=\"stowage admin\"".to_string(),
    )
}
