//! The one raw HTTP client of the tests, for requests that must reach the server byte for
//! byte (reqwest, through the `url` crate, normalises paths such as `/v2/a/../b` and refuses
//! malformed header values) and for watching connections:
//!
//! - [`send`] and [`send_bytes`]: one request on its own connection (`Connection: close`),
//!   panicking with the whole exchange when anything fails; [`request`] is the fallible form and
//!   [`get_blocking`] the one for code without a runtime.
//! - [`H1`]: an HTTP/1.1 keep-alive connection over a raw socket (it writes a body while reading
//!   the answer, as Go clients do).
//! - [`h2`]: a minimal HTTP/2 frame reader and writer.
//! - [`CountingProxy`]: a TCP proxy that counts the connections passing through it (to tell
//!   whether a client reused its connection).
//!
//! Loopback only; never for production code.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a one-shot request ([`send`], [`request`]) may take.
const ONE_SHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP/1.1 response read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The start of the request that produced it (one-shot requests only), for messages.
    pub request: String,
}

impl Response {
    /// First header value named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server said it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The body as JSON; panics with the exchange if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self}"))
    }

    /// First error code of an OCI error body; panics with the exchange if there is none.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code:\n{self}"))
            .to_string()
    }

    /// The body, lossily as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  request:  {}", self.request.escape_debug())?;
        writeln!(f, "  response: {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "    {k}: {v}")?;
        }
        write!(f, "    body: {}", String::from_utf8_lossy(&self.body))
    }
}

/// Send `head` (request line and headers, without the blank line) and `body` to `addr` on a new
/// connection, and read the response; panics on any failure. `Host`, `Connection: close` and,
/// when `body` is non-empty and no framing header is present, `Content-Length` are added.
pub async fn send(addr: &str, head: &str, body: &[u8]) -> Response {
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

/// Send exact bytes on a new connection and read the response; panics on any failure.
pub async fn send_bytes(addr: &str, bytes: &[u8]) -> Response {
    let request = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    try_send_bytes(addr, bytes)
        .await
        .unwrap_or_else(|e| panic!("{e} for {request:?}"))
}

/// Send exact bytes on a new connection and read one response (within a minute).
async fn try_send_bytes(addr: &str, bytes: &[u8]) -> io::Result<Response> {
    let request = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    let is_head = bytes.starts_with(b"HEAD ");
    let exchange = async {
        let mut c = H1::connect(addr).await?;
        c.write(bytes).await?;
        c.read_response(is_head).await
    };
    let mut resp = tokio::time::timeout(ONE_SHOT_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no response within {ONE_SHOT_TIMEOUT:?}"),
            )
        })??;
    resp.request = request;
    Ok(resp)
}

/// `method path` with `headers` and `body` on a new connection (`Host`, `Connection: close` and
/// `Content-Length` added); errors are returned, not panicked on.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    try_send_bytes(addr, &[head.as_bytes(), body].concat()).await
}

/// `GET http://{addr}{path}` with extra headers, for code without a runtime (it runs one on a
/// thread of its own, so it may be called from inside another).
pub fn get_blocking(addr: &str, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(request(addr, "GET", path, headers, &[]))
        })
        .join()
        .expect("request thread")
    })
}

/// One HTTP/1.1 connection; requests are sent one after another on it.
pub struct H1 {
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
    host: String,
}

/// How a request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length,
    /// `Transfer-Encoding: chunked`, in chunks of 64 KiB.
    Chunked,
}

impl H1 {
    pub async fn connect(addr: &str) -> io::Result<H1> {
        Ok(H1 {
            stream: TcpStream::connect(addr).await?,
            buf: Vec::new(),
            host: addr.to_string(),
        })
    }

    /// Write raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Send `method path` with `headers` and `body`, writing the body while reading the answer
    /// (a server may answer before it read the body). Returns the response and the error the
    /// write ran into, if any. `Host` is added, and the framing header for a non-empty body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing,
    ) -> (io::Result<Response>, Option<io::Error>) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = match framing {
            Framing::Length => {
                if !body.is_empty() || method != "GET" {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                body.to_vec()
            }
            Framing::Chunked => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                chunked(body)
            }
        };
        head.push_str("\r\n");
        let is_head = method == "HEAD";
        let (mut r, mut w) = self.stream.split();
        let buf = &mut self.buf;
        let write = async {
            w.write_all(head.as_bytes()).await?;
            w.write_all(&body).await?;
            w.flush().await
        };
        let read = read_response(&mut r, buf, is_head);
        let (written, read) = tokio::join!(write, read);
        (read, written.err())
    }

    /// Read one response (after writing a request with [`H1::write`]).
    pub async fn read_response(&mut self, is_head: bool) -> io::Result<Response> {
        read_response(&mut self.stream, &mut self.buf, is_head).await
    }

    /// Wait up to `limit` for the server to close the connection (EOF or reset), dropping
    /// whatever else it sends; returns how long that took, or None if it is still open.
    pub async fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut scratch = vec![0u8; 16 * 1024];
        let closed = tokio::time::timeout(limit, async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed.ok().map(|()| started.elapsed())
    }

    /// The socket, for tests that need it.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// `body` as HTTP/1.1 chunks of 64 KiB with the terminating chunk.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    chunked_body(&body.chunks(64 * 1024).collect::<Vec<_>>())
}

/// `parts` as an HTTP/1.1 chunked body, one chunk each, with the terminating zero chunk.
pub fn chunked_body(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 16).sum::<usize>() + 8);
    for part in parts {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn fill(r: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = r.read(&mut chunk).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Read up to and including the next CRLF (or the blank line ending a head).
async fn take_until(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    pat: &[u8],
) -> io::Result<Vec<u8>> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            let line = buf[..i].to_vec();
            buf.drain(..i + pat.len());
            return Ok(line);
        }
        fill(r, buf).await?;
    }
}

async fn take_exact(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    n: usize,
) -> io::Result<Vec<u8>> {
    while buf.len() < n {
        fill(r, buf).await?;
    }
    Ok(buf.drain(..n).collect())
}

/// Read one HTTP/1.1 response (skipping `100 Continue`).
pub async fn read_response(
    r: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    is_head: bool,
) -> io::Result<Response> {
    loop {
        let head = take_until(r, buf, b"\r\n\r\n").await?;
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
            request: String::new(),
        };
        if is_head || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let size_line = take_until(r, buf, b"\r\n").await?;
                let size_line = String::from_utf8_lossy(&size_line).into_owned();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| io::Error::other(format!("bad chunk size {size_line:?}")))?;
                if size == 0 {
                    take_until(r, buf, b"\r\n").await?;
                    break;
                }
                let data = take_exact(r, buf, size + 2).await?;
                resp.body.extend_from_slice(&data[..size]);
            }
        } else if let Some(n) = resp.header("content-length") {
            let n: usize = n
                .parse()
                .map_err(|_| io::Error::other("bad Content-Length"))?;
            resp.body = take_exact(r, buf, n).await?;
        } else {
            loop {
                match fill(r, buf).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(buf);
        }
        return Ok(resp);
    }
}

/// HTTP/2 framing, enough to open a connection and watch it.
pub mod h2 {
    use super::*;

    /// The client connection preface.
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const ACK: u8 = 0x1;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    /// An HPACK header block of literal fields without indexing (no Huffman coding): enough
    /// for requests with short names and values (under 127 bytes each).
    pub fn literal_headers(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            assert!(name.len() < 127 && value.len() < 127, "short fields only");
            out.push(0x00);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Read frames, acknowledging SETTINGS and PINGs, until `done` says so (true) or the
    /// connection ends (false); every frame read is pushed to `seen`.
    pub async fn read_until(
        s: &mut TcpStream,
        seen: &mut Vec<Frame>,
        mut done: impl FnMut(&Frame) -> bool,
    ) -> bool {
        while let Ok(Some(f)) = read_frame(s).await {
            let reply = match (f.kind, f.flags & ACK) {
                (SETTINGS, 0) => Some(frame(SETTINGS, ACK, 0, &[])),
                (PING, 0) => Some(frame(PING, ACK, 0, &f.payload)),
                _ => None,
            };
            if let Some(reply) = reply {
                let _ = s.write_all(&reply).await;
            }
            let stop = done(&f);
            seen.push(f);
            if stop {
                return true;
            }
        }
        false
    }

    /// One frame.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub stream: u32,
        pub payload: Vec<u8>,
    }

    /// Encode a frame.
    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Read one frame; None at EOF (or a reset).
    pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        Ok(Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }))
    }

    /// Open an HTTP/2 connection with prior knowledge (preface and empty SETTINGS), then play
    /// a well-behaved idle client: acknowledge SETTINGS and PINGs and send nothing else. Returns
    /// every frame the server sent and how long until it closed the connection, or None for the
    /// time if it was still open after `limit`.
    pub async fn idle_client(addr: &str, limit: Duration) -> (Vec<Frame>, Option<Duration>) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.expect("write preface");
        let mut frames = Vec::new();
        let closed = tokio::time::timeout(limit, read_until(&mut s, &mut frames, |_| false)).await;
        (frames, closed.ok().map(|_| started.elapsed()))
    }
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that counts connections, and how many of
/// them the upstream side closed. Lives until dropped.
pub struct CountingProxy {
    /// `127.0.0.1:PORT` to connect to.
    pub addr: String,
    accepted: Arc<AtomicUsize>,
    closed_by_upstream: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(upstream: &str) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_upstream = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let task = tokio::spawn({
            let accepted = accepted.clone();
            let closed = closed_by_upstream.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let closed = closed.clone();
                    tokio::spawn(async move {
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut cr, &mut sw).await;
                            let _ = sw.shutdown().await;
                        });
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        closed.fetch_add(1, Ordering::SeqCst);
                        let _ = cw.shutdown().await;
                        up.abort();
                    });
                }
            }
        });
        CountingProxy {
            addr,
            accepted,
            closed_by_upstream,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections the upstream (the server) has closed so far.
    pub fn closed_by_upstream(&self) -> usize {
        self.closed_by_upstream.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
