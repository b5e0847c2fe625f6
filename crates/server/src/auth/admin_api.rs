//! The HTTP side of the admin API under `/admin/v1/` that `stowage user`/`token --server URL`
//! drive: the route and JSON body of each request, and the answer. Who may do what, and the
//! operations themselves, are the identity service's (`stowage_identity::admin`); the request
//! and answer bodies are its shared types.
//!
//! Bodies are JSON; errors use the registry's error body. The API is documented in
//! docs/SECURITY.md.

use std::net::SocketAddr;

use crate::error::{Error, Result};
use axum::body::Body;
use axum::http::Response;
use axum::http::request::Parts;
use serde::Deserialize;
use stowage_identity::Need;
use stowage_identity::admin::{AccountError, AdminAnswer, AdminError, AdminRequest, AdminRoute};
use stowage_identity::decide::NoSessions;
use stowage_oci::ErrorCode;

use super::decide::credentials;
use super::{Auth, identity_error, json};

const MAX_BODY: usize = 1024 * 1024;

fn no_content() -> Response<Body> {
    Response::builder()
        .status(204)
        .body(Body::empty())
        .expect("valid response")
}

fn admin_error(e: AdminError) -> Error {
    match e {
        AdminError::Denied(m) => Error::new(ErrorCode::Denied, m),
        AdminError::Account(AccountError::Invalid(m)) => {
            Error::new(ErrorCode::NameInvalid, m).status(400)
        }
        AdminError::Account(AccountError::NotFound(m)) => Error::new(ErrorCode::NameUnknown, m),
        AdminError::Account(AccountError::Conflict(m)) => {
            Error::new(ErrorCode::Denied, m).status(409)
        }
        AdminError::Account(AccountError::Store(e)) => Error::from(e),
        AdminError::Account(AccountError::Internal(m)) => Error::internal(m),
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

/// The request of `route`, its body read and parsed.
async fn request(route: AdminRoute, body: Body) -> Result<AdminRequest> {
    Ok(match route {
        AdminRoute::ListUsers => AdminRequest::ListUsers,
        AdminRoute::AddUser => AdminRequest::AddUser(body_json(body).await?),
        AdminRoute::ImportUsers => AdminRequest::ImportUsers(body_json(body).await?),
        AdminRoute::ChangeUser(name) => AdminRequest::ChangeUser(name, body_json(body).await?),
        AdminRoute::RemoveUser(name) => AdminRequest::RemoveUser(name),
        AdminRoute::ListTokens(user) => AdminRequest::ListTokens(user),
        AdminRoute::CreateToken => AdminRequest::CreateToken(body_json(body).await?),
        AdminRoute::RevokeToken(id) => AdminRequest::RevokeToken(id),
    })
}

impl Auth {
    /// Handle a request under `/admin/v1/`.
    pub async fn admin_api(
        &self,
        route: AdminRoute,
        parts: &Parts,
        body: Body,
        peer: Option<SocketAddr>,
        secure: bool,
    ) -> Result<Response<Body>> {
        self.admin_same_origin_json(parts, peer, secure)?;
        let ip = self.client_ip(peer, &parts.headers);
        let who = self
            .identity
            .decide(&Need::Admin, credentials(parts), ip, &NoSessions)
            .await
            .map_err(identity_error)?
            .map_err(|denial| self.refusal(&denial, &Need::Admin, parts, peer, secure))?;
        self.identity.admit(&who, &route).map_err(admin_error)?;
        let request = request(route, body).await?;
        Ok(
            match self
                .identity
                .administer(&who, request)
                .await
                .map_err(admin_error)?
            {
                AdminAnswer::Users(users) => json(200, &users),
                AdminAnswer::UserCreated(user) => json(201, &user),
                AdminAnswer::User(user) => json(200, &user),
                AdminAnswer::Imported(counts) => json(200, &counts),
                AdminAnswer::Tokens(tokens) => json(200, &tokens),
                AdminAnswer::TokenCreated(token) => json(201, &token),
                AdminAnswer::Done => no_content(),
            },
        )
    }
}
