//! The gate every registry request passes when authentication is on: the credentials it
//! presents (Basic password or token, a bearer JWT, or nothing), what its endpoint needs, and
//! the HTTP answer when the identity service refuses it.
//!
//! The answers follow the token spec: `Unauthorized` is 401 with a Bearer challenge naming the
//! scope; `Forbidden` is 403 DENIED, whose detail names the access as the 401's does;
//! `TooManyAttempts` is 429 with `Retry-After`.

use std::net::SocketAddr;

use axum::http::header;
use axum::http::request::Parts;

use stowage_identity::{Credentials, Denial, IdentityError, SessionLookup};
use stowage_oci::{ErrorCode, RepoName, UploadId};
use stowage_registry::Registry;

pub use stowage_identity::{Need, Principal};

use super::{Auth, identity_error};
use crate::error::{Error, Result};

/// The error detail naming the access needed, in the shape of distribution's
/// (`[{"Type":"repository","Name":..,"Action":..}]`); null when no repository is involved.
fn detail(need: &Need) -> serde_json::Value {
    match need.access() {
        Some((n, action)) => serde_json::json!([{
            "Type": "repository",
            "Name": n.as_str(),
            "Action": action,
        }]),
        None => serde_json::Value::Null,
    }
}

/// The credentials of an `Authorization` header (none when absent or of another scheme).
pub fn credentials(parts: &Parts) -> Credentials {
    let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let Some((scheme, rest)) = v.trim().split_once(' ') else {
        return Credentials::None;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        basic(rest).unwrap_or(Credentials::None)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::None
    }
}

fn basic(encoded: &str) -> Option<Credentials> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Upload sessions as the registry knows them.
struct Sessions<'a>(&'a Registry);

impl SessionLookup for Sessions<'_> {
    async fn opened_at(
        &self,
        repo: &RepoName,
        id: &UploadId,
        subject: &str,
    ) -> std::result::Result<Option<i64>, IdentityError> {
        self.0
            .upload_opened_at(repo, id, subject)
            .await
            .map_err(|e| IdentityError::Sessions(e.to_string()))
    }
}

impl Auth {
    /// The answer to a refusal of `need`.
    pub fn refusal(
        &self,
        denial: &Denial,
        need: &Need,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
    ) -> Error {
        let message = denial.message(need);
        match denial {
            Denial::Unauthorized(error) => {
                let realm = self.realm(peer, &parts.uri, &parts.headers, secure);
                let mut value = format!(
                    "Bearer realm=\"{realm}\",service=\"{}\"",
                    self.identity.service()
                );
                if let Some(scope) = need.scope() {
                    value.push_str(&format!(",scope=\"{scope}\""));
                }
                if let Some(e) = error {
                    value.push_str(&format!(",error=\"{}\"", e.as_str()));
                }
                Error::new(ErrorCode::Unauthorized, message)
                    .detail(detail(need))
                    .header("WWW-Authenticate", value)
            }
            Denial::BadLogin | Denial::BadRefreshToken => {
                Error::new(ErrorCode::Unauthorized, message)
                    .header("WWW-Authenticate", "Basic realm=\"stowage\"".to_string())
            }
            // The detail names the access that was refused. It also keeps docker from
            // retrying: its client turns an error with the code's stock message and a null
            // detail into a bare code, which its retry filter does not recognise, so a denied
            // blob upload was retried four times with back-off (50 s) before docker gave up.
            Denial::Forbidden => Error::new(ErrorCode::Denied, message).detail(detail(need)),
            Denial::TooManyAttempts { retry_after } => {
                Error::new(ErrorCode::TooManyRequests, message)
                    .header("Retry-After", retry_after.to_string())
            }
        }
    }

    /// Decide a request that needs `need`. Returns the caller, or the error to answer with.
    pub async fn authorize(
        &self,
        registry: &Registry,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
        need: &Need,
    ) -> Result<Principal> {
        let ip = self.client_ip(peer, &parts.headers);
        self.identity
            .decide(need, credentials(parts), ip, &Sessions(registry))
            .await
            .map_err(identity_error)?
            .map_err(|denial| self.refusal(&denial, need, parts, peer, secure))
    }
}
