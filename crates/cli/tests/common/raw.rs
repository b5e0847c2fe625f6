//! A minimal HTTP/1.1 client over a raw TCP socket.
//!
//! reqwest (through the `url` crate) normalises paths such as `/v2/a/../b/...` and refuses
//! malformed header values, so requests that must reach the server byte-for-byte go through
//! here. Every request is sent with `Connection: close` and the response is read to EOF.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed raw response.
pub struct RawResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub request: String,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self}"))
    }

    /// First error code of an OCI error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code:\n{self}"))
            .to_string()
    }
}

impl std::fmt::Display for RawResp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  request:  {}", self.request.escape_debug())?;
        writeln!(f, "  response: {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "    {k}: {v}")?;
        }
        write!(f, "    body: {}", String::from_utf8_lossy(&self.body))
    }
}

/// Send `head` (request line + headers, without the blank line) and `body` to `addr`.
/// `Host`, `Connection: close` and, when `body` is non-empty and no framing header is
/// present, `Content-Length` are added.
pub async fn send(addr: &str, head: &str, body: &[u8]) -> RawResp {
    let mut req = head.trim_end_matches("\r\n").to_string();
    req.push_str(&format!("\r\nHost: {addr}\r\nConnection: close"));
    let lower = head.to_ascii_lowercase();
    if !body.is_empty()
        && !lower.contains("content-length:")
        && !lower.contains("transfer-encoding:")
    {
        req.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    req.push_str("\r\n\r\n");
    send_bytes(addr, &[req.as_bytes(), body].concat()).await
}

/// Send exact bytes and parse whatever comes back.
pub async fn send_bytes(addr: &str, bytes: &[u8]) -> RawResp {
    let request = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    let is_head = bytes.starts_with(b"HEAD ");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no response within 60s to {request:?}"))
        .unwrap_or_else(|e| panic!("read error {e} for {request:?}"));
    parse(&buf, is_head, request)
}

fn parse(buf: &[u8], is_head: bool, request: String) -> RawResp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "incomplete response {:?} to {request:?}",
                String::from_utf8_lossy(buf)
            )
        });
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw_body = &buf[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if is_head {
        Vec::new()
    } else if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    RawResp {
        status,
        headers,
        body,
        request,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// Encode `parts` as an HTTP/1.1 chunked body (with the terminating zero chunk).
pub fn chunked_body(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
