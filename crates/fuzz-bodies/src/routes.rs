//! The server's request parser (`stowage_server::routes::parse`): method, path, query and the
//! headers that shape a request, into one `Endpoint` or an error answer.

use axum::http::Request;
use stowage_oci::ErrorCode;
use stowage_server::routes;

use crate::Target;
use crate::input::Input;

pub const ROUTES: Target = Target {
    name: "routes",
    body: route,
    outcomes: &[
        "not-http",
        "no-endpoint",
        "ok",
        "method-not-allowed",
        "name-invalid",
        "digest-invalid",
        "tag-invalid",
        "size-invalid",
        "unsupported",
        "blob-upload-invalid",
        "blob-upload-unknown",
        "manifest-unknown",
    ],
};

/// `<method>\n<path and query>\n<header>: <value>\n...`. What the HTTP layer itself would
/// refuse (a bad method token, URI or header) is `not-http` (a bad header line is dropped).
/// An endpoint states its requirement and template; an error is a 4xx with its OCI code, and a
/// 405 names the allowed methods.
pub fn route(data: &[u8]) -> &'static str {
    let mut input = Input::new(data);
    let method = input.line();
    let uri = input.line();
    let mut builder = Request::builder().method(method).uri(uri);
    while !input.is_empty() {
        let line = input.line();
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(&line[..colon]),
            axum::http::HeaderValue::from_bytes(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(()) else {
        return "not-http";
    };
    let (parts, ()) = request.into_parts();
    match routes::parse(&parts) {
        Ok(None) => "no-endpoint",
        Ok(Some(endpoint)) => {
            let _ = endpoint.requirement();
            assert!(endpoint.template().starts_with('/'));
            "ok"
        }
        Err(e) => {
            let status = e.http_status();
            assert!((400..500).contains(&status), "{e}: status {status}");
            if status == 405 {
                assert!(e.headers.iter().any(|(h, _)| *h == "Allow"), "{e}");
                return "method-not-allowed";
            }
            match e.code {
                Some(ErrorCode::NameInvalid) => "name-invalid",
                Some(ErrorCode::DigestInvalid) => "digest-invalid",
                Some(ErrorCode::TagInvalid) => "tag-invalid",
                Some(ErrorCode::SizeInvalid) => "size-invalid",
                Some(ErrorCode::Unsupported) => "unsupported",
                Some(ErrorCode::BlobUploadInvalid) => "blob-upload-invalid",
                Some(ErrorCode::BlobUploadUnknown) => "blob-upload-unknown",
                Some(ErrorCode::ManifestUnknown) => "manifest-unknown",
                // Not in `outcomes`: the replay test names it.
                _ => "unlisted-code",
            }
        }
    }
}
