//! The admin API's gate: refusing what a browser could be made to send from another site, and
//! working out who the caller is there and with what standing.
//!
//! - A present `Origin` must be `auth.external_url`'s origin or the request's own
//!   `scheme://host`; a request with a body must say `Content-Type: application/json`. Both are
//!   checked before any credential is, so a cross-site `<form>` never costs a login attempt.
//! - Using the API needs `registry:admin:*`: the user's password as Basic, an access token whose
//!   scopes include `admin` as Basic, or a bearer JWT whose `access` lists `registry:admin:*`
//!   (the token endpoint grants it only on request, to such credentials). A JWT's credential
//!   alone is not enough: a pull token cannot act as its user's password here.
//! - The 401 is a Bearer challenge naming the token endpoint and `scope="registry:admin:*"`,
//!   never `Basic` (which would make a browser prompt, then replay the login for other sites).

use std::net::SocketAddr;

use crate::error::{Error, Result};
use axum::http::request::Parts;
use axum::http::{Method, header};
use stowage_oci::ErrorCode;

use super::decide::{Presented, presented, too_many};
use super::snapshot::Token;
use super::{Auth, Cred, LoginError, normalize_origin, now};

/// The caller of an admin request, once admitted.
pub struct Caller {
    pub cred: Cred,
    /// An administrator: its password, or an access token with `admin` of an administrator.
    pub admin: bool,
    /// Acting with the user's password (Basic, or a JWT minted from a password login): the
    /// standing needed to manage users and to change the user's own password.
    pub password: bool,
    /// For a credential that comes from an access token: that token (its scopes and expiry
    /// bound the tokens the caller may create).
    pub token: Option<Token>,
}

impl Caller {
    /// The user the caller acts as.
    pub fn me(&self) -> &str {
        self.cred.subject()
    }
}

/// The media type of a `Content-Type` value, lowercase, parameters dropped.
fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the request carries (or, by its method, must carry) a body.
fn has_body(parts: &Parts) -> bool {
    let h = &parts.headers;
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
        || h.contains_key(header::TRANSFER_ENCODING)
        || length.is_some_and(|l| l != "0")
}

impl Auth {
    /// Refuse requests a browser may have sent on another site's behalf: a foreign `Origin`
    /// (403), or a body that is not declared JSON (415; an HTML form cannot send that type
    /// across sites without a CORS preflight, which this API never approves).
    pub fn admin_same_origin_json(
        &self,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
    ) -> Result<()> {
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            let origin = origin.to_str().map(normalize_origin).unwrap_or_default();
            let own =
                normalize_origin(&self.request_origin(peer, &parts.uri, &parts.headers, secure));
            if origin != own && Some(&origin) != self.external_origin().as_ref() {
                tracing::warn!(origin = %origin, "auth: refused a cross-origin admin request");
                return Err(Error::new(
                    ErrorCode::Denied,
                    "cross-origin requests to the admin API are refused (the Origin header names another site)",
                ));
            }
        }
        if has_body(parts) {
            let ok = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| media_type(v) == "application/json");
            if !ok {
                return Err(Error::new(
                    ErrorCode::Unsupported,
                    "the admin API takes JSON: send the body with Content-Type: application/json",
                )
                .status(415));
            }
        }
        Ok(())
    }

    /// 401 with a Bearer challenge for `registry:admin:*` (and `error`, when given).
    pub fn admin_challenge(
        &self,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
        error: Option<&str>,
    ) -> Error {
        let realm = self.realm(peer, &parts.uri, &parts.headers, secure);
        let mut value = format!(
            "Bearer realm=\"{realm}\",service=\"{}\",scope=\"registry:admin:*\"",
            self.cfg.service
        );
        if let Some(e) = error {
            value.push_str(&format!(",error=\"{e}\""));
        }
        let message = match error {
            Some("insufficient_scope") => {
                "this token was not issued for the admin API: ask the token endpoint for the scope registry:admin:*"
            }
            Some(_) => "invalid, expired or revoked token",
            None => "authentication required",
        };
        Error::new(ErrorCode::Unauthorized, message).header("WWW-Authenticate", value)
    }

    /// Identify the caller of an admin request and check that it holds `registry:admin:*`.
    pub async fn admin_caller(
        &self,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
    ) -> Result<Caller> {
        let cred = match presented(parts) {
            Some(Presented::Basic { user, password }) => {
                let ip = self.client_ip(peer, &parts.headers);
                match self.login(ip, &user, &password).await {
                    Ok(c) => c,
                    Err(LoginError::Limited(wait)) => return Err(too_many(wait)),
                    Err(LoginError::Invalid) => {
                        return Err(self.admin_challenge(parts, peer, secure, None));
                    }
                }
            }
            Some(Presented::Bearer(token)) => {
                let snap = self.snapshot();
                let now = now();
                let verified = self.verify_jwt(&snap, &token, now).ok().and_then(|c| {
                    let cred = snap
                        .decode(&c.cred, now)
                        .filter(|cred| cred.subject() == c.sub)?;
                    Some((c, cred))
                });
                let Some((claims, cred)) = verified else {
                    tracing::warn!("auth: invalid or revoked bearer token on the admin API");
                    return Err(self.admin_challenge(parts, peer, secure, Some("invalid_token")));
                };
                if !claims.access.iter().any(|a| a.is_admin()) {
                    tracing::info!(
                        subject = cred.subject(),
                        "auth: admin request with a token lacking registry:admin:*"
                    );
                    if snap.admin_api(&cred) {
                        return Err(self.admin_challenge(
                            parts,
                            peer,
                            secure,
                            Some("insufficient_scope"),
                        ));
                    }
                    return Err(lacks_admin_scope());
                }
                cred
            }
            None => return Err(self.admin_challenge(parts, peer, secure, None)),
        };
        let snap = self.snapshot();
        if !snap.admin_api(&cred) {
            tracing::info!(
                subject = cred.subject(),
                "auth: admin request denied, no registry:admin:*"
            );
            return Err(lacks_admin_scope());
        }
        self.touch(&cred);
        let token = match &cred {
            Cred::Token { id, .. } => snap.tokens.get(id).cloned(),
            _ => None,
        };
        Ok(Caller {
            admin: snap.admin(&cred),
            password: matches!(cred, Cred::Password { .. }),
            token,
            cred,
        })
    }
}

fn lacks_admin_scope() -> Error {
    Error::new(
        ErrorCode::Denied,
        "this credential does not hold registry:admin:* (use the password, or an access token created with the scope admin)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri("/admin/v1/users");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn media_types_ignore_case_and_parameters() {
        assert_eq!(media_type("application/json"), "application/json");
        assert_eq!(
            media_type(" Application/JSON ; charset=utf-8"),
            "application/json"
        );
        assert_eq!(media_type("text/plain;x=application/json"), "text/plain");
        assert_eq!(media_type(""), "");
    }

    #[test]
    fn which_requests_carry_a_body() {
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            assert!(has_body(&parts(m.clone(), &[])), "{m}");
        }
        assert!(!has_body(&parts(Method::GET, &[])));
        assert!(!has_body(&parts(
            Method::DELETE,
            &[("content-length", "0")]
        )));
        assert!(has_body(&parts(Method::DELETE, &[("content-length", "3")])));
        assert!(has_body(&parts(
            Method::GET,
            &[("transfer-encoding", "chunked")]
        )));
    }

    #[test]
    fn origins_compare_without_case_or_default_ports() {
        use crate::auth::normalize_origin;
        assert_eq!(
            normalize_origin("HTTPS://Registry.Example.com:443"),
            "https://registry.example.com"
        );
        assert_eq!(normalize_origin("http://h:80"), "http://h");
        assert_eq!(normalize_origin("http://h:8080"), "http://h:8080");
        assert_eq!(normalize_origin("https://h:4430"), "https://h:4430");
        assert_eq!(normalize_origin("https://h:80"), "https://h:80");
        assert_eq!(normalize_origin("null"), "null");
    }
}
