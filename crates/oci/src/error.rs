//! OCI error codes (distribution-spec "Error Codes" table) and the JSON error body.
//!
//! Only the mapping from code to HTTP status and wire string lives here; deciding which code a
//! situation deserves is the registry's job, and rendering a response is the server's.

use serde::Serialize;

/// The error codes of the OCI distribution spec, plus the Docker-era `TAG_INVALID` and
/// distribution's `UNAVAILABLE` (503: a backend is unreachable for a moment; the spec has no
/// code for it, and clients that know distribution already recognise this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    TagInvalid,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The wire string, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status the spec pairs with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => 404,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Denied => 403,
            ErrorCode::Unsupported => 405,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// One entry of the `errors` array.
#[derive(Debug, Serialize)]
pub struct ErrorEntry<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub detail: serde_json::Value,
}

/// Render `{"errors":[{"code","message","detail"}]}`.
pub fn error_body(code: ErrorCode, message: &str, detail: serde_json::Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        errors: [ErrorEntry<'a>; 1],
    }
    let body = Body {
        errors: [ErrorEntry {
            code: code.as_str(),
            message,
            detail,
        }],
    };
    serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_spec_shape() {
        let b = error_body(
            ErrorCode::BlobUnknown,
            "blob unknown to registry",
            serde_json::json!({"digest":"x"}),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"]["digest"], "x");
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorCode::NameUnknown.status(), 404);
        assert_eq!(ErrorCode::Unsupported.status(), 405);
        assert_eq!(ErrorCode::ManifestBlobUnknown.status(), 400);
        assert_eq!(ErrorCode::TooManyRequests.status(), 429);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
        assert_eq!(ErrorCode::Unavailable.as_str(), "UNAVAILABLE");
    }
}
