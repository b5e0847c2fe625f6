//! Client errors: transport failures, protocol violations, and registry answers with their OCI
//! error code and message, so callers can print what the registry said and act on the code.

use std::fmt;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request never got an HTTP answer.
    #[error("{what}: {}{}", chain(.source), tls_hint(&chain(.source)))]
    Transport {
        what: String,
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{what}: {status}{}", fmt_codes(*.status, .codes))]
    Registry {
        what: String,
        status: u16,
        codes: Vec<(String, String)>,
    },
    /// The answer broke the protocol (missing header, invalid JSON...).
    #[error("{what}: {message}")]
    Protocol { what: String, message: String },
}

/// An error with its causes (`error sending request: ... : invalid peer certificate: UnknownIssuer`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// What to do about a certificate the client does not trust (a development CA, a private CA).
fn tls_hint(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let untrusted = e.contains("invalid peer certificate")
        || e.contains("unknownissuer")
        || e.contains("certificate verify failed")
        || e.contains("self-signed")
        || e.contains("self signed");
    if untrusted {
        " (the registry's TLS certificate is not trusted: pass --ca-file FILE with the CA \
         certificate that signed it, e.g. the one `stowage serve --tls-self-signed` prints, or \
         --insecure to skip verification for testing)"
    } else {
        ""
    }
}

fn fmt_codes(status: u16, codes: &[(String, String)]) -> String {
    if codes.is_empty() {
        // HEAD answers carry no body: say what the status means.
        return match status {
            401 => " UNAUTHORIZED (authentication required: log in with `stowage login HOST` or pass --creds)".into(),
            403 => " DENIED (the credentials lack the right for this repository)".into(),
            404 => " (not found)".into(),
            429 => " TOOMANYREQUESTS (retry later)".into(),
            _ => String::new(),
        };
    }
    codes.iter().fold(String::new(), |mut s, (c, m)| {
        use fmt::Write;
        let _ = write!(s, " {c}: {m}");
        s
    })
}

impl ClientError {
    pub(crate) fn transport(what: &str, source: reqwest::Error) -> ClientError {
        ClientError::Transport {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn protocol(what: &str, message: &str) -> ClientError {
        ClientError::Protocol {
            what: what.to_string(),
            message: message.to_string(),
        }
    }

    /// Read an error response: status plus the OCI `errors` array when there is one.
    pub(crate) async fn from_response(what: &str, resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        let codes = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        (
                            e["code"].as_str().unwrap_or("UNKNOWN").to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ClientError::Registry {
            what: what.to_string(),
            status,
            codes,
        }
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Registry { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first OCI error code, when the registry sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Registry { codes, .. } => codes.first().map(|(c, _)| c.as_str()),
            _ => None,
        }
    }
}
