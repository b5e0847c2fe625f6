//! A TCP proxy on loopback with switchable network faults, to put in front of a server (the
//! stowage server in these tests; Garage, PostgreSQL and upstream registries later).
//!
//! Each new connection takes the fault set at the moment it is accepted ([`FaultProxy::set`]);
//! connections already open keep theirs. Faults: reset the connection at once or after some
//! response bytes, stall (accept and read, never answer), answer every request with an HTTP
//! status itself (a 5xx from a "load balancer"), trickle the response slowly, or cut the
//! response after some bytes with a clean close (a truncated body).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFault {
    /// Forward both ways untouched.
    Pass,
    /// Reset the client's connection (TCP RST) as soon as it is accepted.
    Reset,
    /// Forward, but reset the connection once this many response bytes went through.
    ResetAfter(u64),
    /// Accept and read the request, never answer, never close.
    Stall,
    /// Answer every request with this status (and `Retry-After: 1`), without forwarding it.
    Status(u16),
    /// Forward, delivering at most `bytes` of response every `every`.
    Slow { bytes: usize, every: Duration },
    /// Forward only the first this-many response bytes, then close cleanly.
    Truncate(u64),
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<Mutex<NetFault>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`, passing everything at first.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(Mutex::new(NetFault::Pass));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (m, a) = (mode.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            let mut open = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let fault = *m.lock().unwrap_or_else(|p| p.into_inner());
                open.spawn(handle(client, upstream, fault));
            }
        });
        FaultProxy {
            addr,
            mode,
            accepted,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault for connections accepted from now on.
    pub fn set(&self, fault: NetFault) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, fault: NetFault) {
    match fault {
        NetFault::Reset => {
            let _ = client.set_zero_linger();
            drop(client);
        }
        NetFault::Stall => {
            let mut buf = [0u8; 16 * 1024];
            while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
            // The client closed; hold our side until the proxy goes away.
            std::future::pending::<()>().await;
        }
        NetFault::Status(code) => answer(client, code).await,
        NetFault::Pass
        | NetFault::ResetAfter(_)
        | NetFault::Slow { .. }
        | NetFault::Truncate(_) => {
            let Ok(server) = TcpStream::connect(upstream).await else {
                let _ = client.set_zero_linger();
                return;
            };
            forward(client, server, fault).await;
        }
    }
}

/// Read one request head and answer it with `code`, then close without a reset.
async fn answer(mut client: TcpStream, code: u16) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buf).await {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let msg = format!(
        "HTTP/1.1 {code} Injected\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nRetry-After: 1\r\nConnection: close\r\n\r\ninjected\n"
    );
    let _ = client.write_all(msg.as_bytes()).await;
    let _ = client.shutdown().await;
    // Read what the client still sends (a body) so closing does not reset the answer away.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Forward both ways, applying `fault` to the response direction.
async fn forward(client: TcpStream, server: TcpStream, fault: NetFault) {
    let (mut cr, cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
        cr
    };
    let down = async move {
        let mut cw = cw;
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let ok = match fault {
                NetFault::Truncate(limit) | NetFault::ResetAfter(limit) => {
                    let room = limit.saturating_sub(sent) as usize;
                    if chunk.len() >= room {
                        let _ = cw.write_all(&chunk[..room]).await;
                        let reset = matches!(fault, NetFault::ResetAfter(_));
                        return (cw, reset);
                    }
                    cw.write_all(chunk).await.is_ok()
                }
                NetFault::Slow { bytes, every } => {
                    let mut ok = true;
                    for piece in chunk.chunks(bytes.max(1)) {
                        if cw.write_all(piece).await.is_err() {
                            ok = false;
                            break;
                        }
                        tokio::time::sleep(every).await;
                    }
                    ok
                }
                _ => cw.write_all(chunk).await.is_ok(),
            };
            if !ok {
                break;
            }
            sent += n as u64;
        }
        (cw, false)
    };
    tokio::pin!(up);
    tokio::pin!(down);
    let mut client_read = None;
    let (mut cw, reset) = loop {
        tokio::select! {
            cr = &mut up, if client_read.is_none() => client_read = Some(cr),
            out = &mut down => break out,
        }
    };
    if reset {
        let _ = cw.as_ref().set_zero_linger();
        return; // both halves drop here: the kernel sends RST
    }
    let _ = cw.shutdown().await;
    // Let the client finish and close first, so closing does not reset unread bytes away.
    if client_read.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut up).await;
    }
}
