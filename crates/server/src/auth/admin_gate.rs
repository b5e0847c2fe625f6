//! The admin API's gate: refusing what a browser could be made to send from another site.
//!
//! - A present `Origin` must be `auth.external_url`'s origin or the request's own
//!   `scheme://host`; a request with a body must say `Content-Type: application/json`. Both are
//!   checked before any credential is, so a cross-site `<form>` never costs a login attempt.
//! - Who may use the API is the identity service's decision (`Need::Admin`); its 401 is a
//!   Bearer challenge naming the token endpoint and `scope="registry:admin:*"`, never `Basic`
//!   (which would make a browser prompt, then replay the login for other sites).

use std::net::SocketAddr;

use crate::error::{Error, Result};
use axum::http::request::Parts;
use axum::http::{Method, header};
use stowage_oci::ErrorCode;

use super::{Auth, normalize_origin};

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
            if origin != own && Some(origin.as_str()) != self.external_origin() {
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
