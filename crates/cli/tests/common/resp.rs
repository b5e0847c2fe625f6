//! The recorded response type used by every conformance test, with the assertions on it.
//!
//! A `Resp` keeps a description of the request that produced it, so a failing assertion prints
//! the whole exchange (request line, headers, body prefix; response status, headers, body).

use reqwest::header::HeaderMap;
use serde_json::Value;

/// Spec code-1..code-14, plus the two legacy codes the v1.1.1 conformance suite still accepts.
pub const OCI_ERROR_CODES: [&str; 16] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "TAG_INVALID",
    "MANIFEST_UNVERIFIED",
];

/// A recorded response plus a description of the request that produced it.
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub request: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header, with comma-separated values split apart.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location header:\n{self}"))
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self}"))
    }

    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "unexpected status:\n{self}");
        self
    }

    #[track_caller]
    pub fn expect_header(&self, name: &str, value: &str) -> &Resp {
        assert_eq!(self.header(name), Some(value), "header {name}:\n{self}");
        self
    }

    /// Assert an OCI error response: `status`, a JSON `{"errors":[...]}` body whose entries
    /// all have a well-formed `code` and a string `message`, and whose first code is `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Resp {
        self.expect_error_any(status, &[code])
    }

    /// Like `expect_error` but any of `codes` is acceptable as the first code.
    #[track_caller]
    pub fn expect_error_any(&self, status: u16, codes: &[&str]) -> &Resp {
        self.expect_status(status);
        let first = self.error_code();
        assert!(
            codes.contains(&first.as_str()),
            "error code {first:?}, expected one of {codes:?}:\n{self}"
        );
        self
    }

    /// Validate the error body shape and return the first code.
    #[track_caller]
    pub fn error_code(&self) -> String {
        let v = self.json();
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("error body without `errors` array:\n{self}"));
        assert!(!errors.is_empty(), "empty `errors` array:\n{self}");
        for e in errors {
            let code = e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("error without string `code`:\n{self}"));
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "code {code:?} is not uppercase letters and `_`:\n{self}"
            );
            assert!(
                OCI_ERROR_CODES.contains(&code),
                "code {code:?} is not one of the spec's error codes (\"The `code` field MUST be \
                 one of the following\"):\n{self}"
            );
            assert!(
                e.get("message").is_none_or(Value::is_string),
                "`message` must be a string:\n{self}"
            );
        }
        errors[0]["code"].as_str().unwrap_or_default().to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  request:  {}", self.request)?;
        writeln!(f, "  response: {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "    {k}: {}", String::from_utf8_lossy(v.as_bytes()))?;
        }
        let shown: String = String::from_utf8_lossy(&self.body)
            .chars()
            .take(1500)
            .collect();
        write!(f, "    body ({} bytes): {shown}", self.body.len())
    }
}

pub(crate) fn describe_request(req: &reqwest::Request) -> String {
    let mut s = format!("{} {}", req.method(), req.url());
    for (k, v) in req.headers() {
        s.push_str(&format!(
            "\n    {k}: {}",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    if let Some(b) = req.body().and_then(|b| b.as_bytes()) {
        let shown: String = String::from_utf8_lossy(b).chars().take(600).collect();
        s.push_str(&format!("\n    body ({} bytes): {shown}", b.len()));
    }
    s
}

/// Parse a `Link: <url>; rel="next"` header into its URL.
pub fn next_link(r: &Resp) -> Option<String> {
    let v = r.header("link")?;
    assert!(
        v.contains("rel=\"next\"") || v.contains("rel=next"),
        "Link without rel=\"next\": {v}\n{r}"
    );
    let start = v
        .find('<')
        .unwrap_or_else(|| panic!("Link without <url>: {v}"));
    let end = v
        .find('>')
        .unwrap_or_else(|| panic!("Link without <url>: {v}"));
    Some(v[start + 1..end].to_string())
}

/// A JSON array of strings as a Vec.
#[track_caller]
pub fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}
