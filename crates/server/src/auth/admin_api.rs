//! The admin HTTP API under `/admin/v1/` that `stowage user`/`token --server URL` drive.
//!
//! `admin_gate` admits the caller (it must hold `registry:admin:*`) and refuses cross-site
//! requests; this module decides each operation:
//! - managing users (add, import, remove, rights, another's password) needs an administrator
//!   acting with its password (Basic, or a JWT from a password login);
//! - a user's own password needs that user's password (never an access token);
//! - tokens: administrators list, create and revoke anyone's, other users their own; a
//!   caller that comes from an access token creates only tokens within that token's scopes
//!   and lifetime, so a token can never be widened.
//!
//! Bodies are JSON; errors use the registry's error body. The API is documented in
//! docs/SECURITY.md.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};
use axum::body::Body;
use axum::http::Response;
use axum::http::request::Parts;
use serde::Deserialize;
use stowage_oci::ErrorCode;

use stowage_auth::pattern::Grant;

use super::admin_gate::Caller;
use super::snapshot::is_admin_scope;
use super::{Auth, json, now};
use crate::accounts::{AccountError, Accounts, canonical_scopes};
use crate::routes::AdminOp;

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

/// An operation that changes what an account may do, attempted with an access token.
fn needs_password(what: &str) -> Error {
    Error::new(
        ErrorCode::Denied,
        format!("{what} needs the password (Basic, or a login made with it), not an access token"),
    )
}

/// What a caller that comes from an access token may put in a new token: scopes its own
/// scopes cover, and no longer a life than its own. Returns the expiry (seconds from now) to
/// use: the request's, or, when it asked for none, what is left of the caller's token.
fn within_token(
    caller: &Caller,
    scopes: &[String],
    expires_in: Option<u64>,
) -> Result<Option<u64>> {
    let Some(tok) = &caller.token else {
        return Ok(expires_in);
    };
    let canonical = canonical_scopes(scopes).map_err(account_error)?;
    for s in &canonical {
        let covered = if is_admin_scope(s) {
            tok.admin
        } else {
            Grant::parse(s).is_ok_and(|g| tok.rights.covers(&g))
        };
        if !covered {
            return Err(Error::new(
                ErrorCode::Denied,
                format!(
                    "an access token can only create tokens within its own scopes, and {s:?} is not within them"
                ),
            ));
        }
    }
    let Some(until) = tok.expires else {
        return Ok(expires_in);
    };
    let left = u64::try_from(until - now()).unwrap_or(0);
    match expires_in {
        None => Ok(Some(left)),
        Some(e) if e <= left => Ok(Some(e)),
        Some(_) => Err(Error::new(
            ErrorCode::Denied,
            format!(
                "an access token cannot create a token that outlives it (at most {left} seconds)"
            ),
        )),
    }
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
        op: AdminOp,
        parts: &Parts,
        body: Body,
        peer: Option<SocketAddr>,
        secure: bool,
    ) -> Result<Response<Body>> {
        self.admin_same_origin_json(parts, peer, secure)?;
        let caller = self.admin_caller(parts, peer, secure).await?;
        let changes = !matches!(op, AdminOp::ListUsers | AdminOp::ListTokens { .. });
        let result = self.admin_operation(op, body, &caller).await;
        if result.is_ok() && changes {
            // Apply the change here at once, not at the next poll.
            let _ = self.reload(false).await;
        }
        result
    }

    async fn admin_operation(&self, op: AdminOp, body: Body, c: &Caller) -> Result<Response<Body>> {
        let admin = c.admin;
        // Managing users: an administrator with its password.
        let manage_users = || {
            if c.admin && !c.password {
                Err(needs_password("managing users"))
            } else if !c.admin {
                Err(denied())
            } else {
                Ok(())
            }
        };
        let me = c.me().to_string();
        let accounts = Accounts::new(self.store().clone());
        match op {
            AdminOp::ListUsers if admin => Ok(json(
                200,
                &accounts.list_users().await.map_err(account_error)?,
            )),
            AdminOp::ListUsers => Err(denied()),
            AdminOp::AddUser => {
                manage_users()?;
                let u: NewUser = body_json(body).await?;
                let made = accounts
                    .add_user(&u.name, &u.password, u.admin, &u.grants)
                    .await
                    .map_err(account_error)?;
                Ok(json(201, &made))
            }
            AdminOp::ImportUsers => {
                manage_users()?;
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
            AdminOp::ChangeUser(name) => {
                let name = name.as_str();
                let own = name == me;
                if !(own && c.password) {
                    manage_users().map_err(|e| {
                        if own && !c.password {
                            needs_password("changing your own account")
                        } else {
                            e
                        }
                    })?;
                }
                let change: UserChange = body_json(body).await?;
                let changes_rights =
                    !change.grant.is_empty() || !change.revoke.is_empty() || change.admin.is_some();
                if changes_rights {
                    manage_users()?;
                }
                if let Some(pw) = &change.password {
                    accounts
                        .set_password(name, pw)
                        .await
                        .map_err(account_error)?;
                }
                let info = accounts
                    .change_rights(name, &change.grant, &change.revoke, change.admin)
                    .await
                    .map_err(account_error)?;
                Ok(json(200, &info))
            }
            AdminOp::RemoveUser(name) => {
                manage_users()?;
                accounts.remove_user(&name).await.map_err(account_error)?;
                Ok(no_content())
            }
            AdminOp::ListTokens { user: wanted } => {
                let wanted = wanted.as_deref();
                let user = if admin { wanted } else { Some(me.as_str()) };
                if !admin && wanted.is_some_and(|w| w != me) {
                    return Err(denied());
                }
                Ok(json(
                    200,
                    &accounts.list_tokens(user).await.map_err(account_error)?,
                ))
            }
            AdminOp::CreateToken => {
                let t: NewTokenReq = body_json(body).await?;
                let user = t.user.unwrap_or_else(|| me.clone());
                if !admin && user != me {
                    return Err(denied());
                }
                let expires_in = within_token(c, &t.scopes, t.expires_in)?;
                let made = accounts
                    .create_token(
                        &user,
                        &t.scopes,
                        expires_in.map(Duration::from_secs),
                        &t.name,
                    )
                    .await
                    .map_err(account_error)?;
                Ok(json(201, &made))
            }
            AdminOp::RevokeToken(id) => {
                let id = id.as_str();
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
        }
    }
}
