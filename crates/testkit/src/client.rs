//! Driving the `stowage` client commands (`login`, `push`, `pull`, `copy`, `inspect`...) from
//! tests, isolated from the host's logins.
//!
//! Owns: a [`StowageCli`] whose every run gets its own docker config directory
//! (`$DOCKER_CONFIG`, in a temp dir the handle keeps) and none of the host's containers auth
//! files, a deadline, and optional standard input (for `--password-stdin`); making users on a
//! server's data directory before it starts ([`add_user`]); and a [`TapProxy`], a loopback TCP
//! relay that records what clients send and can cut connections after some bytes, to check for
//! `Range` requests and to interrupt a download for real. It never reaches beyond 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::image::LayoutInfo;
use crate::tools::Output;

/// How long one client command may run before it is killed and the test fails.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// The `stowage` binary as a registry client, with its own (initially empty) docker config.
pub struct StowageCli {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl StowageCli {
    /// A client for `bin` (`env!("CARGO_BIN_EXE_stowage")`) with no stored logins.
    pub fn new(bin: impl AsRef<Path>) -> StowageCli {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("docker")).expect("docker config dir");
        StowageCli {
            bin: bin.as_ref().to_path_buf(),
            dir,
        }
    }

    /// The `$DOCKER_CONFIG` directory every command of this client runs with.
    pub fn docker_config_dir(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// `$DOCKER_CONFIG/config.json` (may not exist yet).
    pub fn config_json(&self) -> PathBuf {
        self.docker_config_dir().join("config.json")
    }

    /// A scratch path inside this client's temp dir (for auth files and layouts).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `stowage ARGS` with the isolated environment: `$DOCKER_CONFIG` set to this client's
    /// directory, `$HOME` inside it, no `$REGISTRY_AUTH_FILE`, no `$XDG_RUNTIME_DIR`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("DOCKER_CONFIG", self.docker_config_dir())
            .env("HOME", self.dir.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("STOWAGE_CONFIG")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        c
    }

    /// Run `stowage ARGS` (stdin closed), whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        run_cmd(&mut self.cmd(args), None)
    }

    /// Run `stowage ARGS` feeding `stdin`, whatever its exit status.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_cmd(&mut self.cmd(args), Some(stdin))
    }

    /// Run `stowage ARGS`; panics with the whole output unless it exits 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        self.run(args).ok()
    }

    /// Run `stowage ARGS`; panics unless it exits 0; returns its stdout's last line, trimmed
    /// (pull, push and copy print the digest there).
    #[track_caller]
    pub fn ok_line(&self, args: &[&str]) -> String {
        last_line(&self.ok(args))
    }

    /// `stowage push oci:DIR:TAG REFERENCE EXTRA...` of the layout `info`; panics unless it
    /// succeeds; returns the printed digest.
    #[track_caller]
    pub fn push_layout(&self, info: &LayoutInfo, reference: &str, extra: &[&str]) -> String {
        let src = crate::image::oci(&info.dir, &info.tag);
        let mut args = vec!["push", src.as_str(), reference];
        args.extend_from_slice(extra);
        self.ok_line(&args)
    }
}

/// A command that failed the way `stowage` fails on purpose (exit status 1, a clean `error:`
/// line, no panic).
#[track_caller]
pub fn assert_failed_cleanly(out: &Output) {
    assert_failed_with(out, 1);
}

/// Invalid usage (docs/CLI.md): exit status 2, with a clean `error:` line.
#[track_caller]
pub fn assert_usage_error(out: &Output) {
    assert_failed_with(out, 2);
}

/// A command that exited with `code`, said why on an `error:` line and did not panic.
#[track_caller]
pub fn assert_failed_with(out: &Output, code: i32) {
    assert!(!out.success(), "{}", out.describe("unexpectedly succeeded"));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        out.describe("exit code")
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{}",
        out.describe("panicked")
    );
    assert!(
        out.stderr.starts_with("error: ") || out.stderr.contains("\nerror: "),
        "{}",
        out.describe("no `error:` line")
    );
}

/// The last non-empty stdout line, trimmed.
pub fn last_line(out: &Output) -> String {
    out.stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{}", out.describe("no output")))
        .trim()
        .to_string()
}

/// Run `cmd` with [`CLI_TIMEOUT`], writing `stdin` (or closing it), whatever its exit status.
pub fn run_cmd(cmd: &mut Command, stdin: Option<&str>) -> Output {
    crate::tools::run_with_input(cmd, stdin, CLI_TIMEOUT)
}

/// `stowage user add NAME [--admin] [--grant G]... --password-stdin --data DATA`, on a store
/// no server is running on yet (so the user exists from the server's first request).
pub fn add_user(bin: impl AsRef<Path>, data: &Path, name: &str, password: &str, grants: &[&str]) {
    let data = data.display().to_string();
    let mut args = vec!["user", "add", name, "--password-stdin", "--data", &data];
    for g in grants {
        args.push("--grant");
        args.push(g);
    }
    let mut cmd = Command::new(bin.as_ref());
    cmd.args(&args).env_remove("STOWAGE_CONFIG");
    run_cmd(&mut cmd, Some(&format!("{password}\n"))).ok();
}

/// A loopback TCP relay in front of a registry: clients connect to [`TapProxy::addr`], bytes go
/// both ways unchanged. Everything clients send is recorded (to look for request headers such
/// as `Range`), and with [`TapProxy::cut_after`] every connection is closed once it has carried
/// that many bytes towards the client, like a network that drops mid-download. Stops accepting
/// when dropped; open relays end when either side closes.
pub struct TapProxy {
    /// `127.0.0.1:PORT`
    pub addr: String,
    sent: Arc<Mutex<Vec<u8>>>,
    cut: Arc<AtomicU64>,
    /// Bytes clients sent so far (all connections), and where to cut once.
    upload: Arc<Mutex<(u64, Option<u64>)>>,
    stop: Arc<AtomicBool>,
}

impl TapProxy {
    /// Relay 127.0.0.1:<free port> to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> TapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        listener.set_nonblocking(true).expect("nonblocking");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicU64::new(u64::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let upload = Arc::new(Mutex::new((0u64, None)));
        let upstream = upstream.to_string();
        let (s, c, st, up) = (sent.clone(), cut.clone(), stop.clone(), upload.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(&upstream) {
                            relay(client, server, s.clone(), c.clone(), up.clone());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        });
        TapProxy {
            addr,
            sent,
            cut,
            upload,
            stop,
        }
    }

    /// Close each connection made from now on once it has carried `bytes` towards the client
    /// (`None`: never).
    pub fn cut_after(&self, bytes: Option<u64>) {
        self.cut.store(bytes.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Cut the connection that carries the client's `bytes`-th byte from now on (counted over
    /// all connections), once: like a network failing in the middle of an upload.
    pub fn cut_upload_once_after(&self, bytes: u64) {
        let mut u = self.upload.lock().unwrap_or_else(|e| e.into_inner());
        *u = (0, Some(bytes));
    }

    /// Everything clients sent so far (request lines, headers, bodies), lossily as text.
    pub fn sent_text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Forget what was recorded so far.
    pub fn clear(&self) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for TapProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    sent: Arc<Mutex<Vec<u8>>>,
    cut: Arc<AtomicU64>,
    upload: Arc<Mutex<(u64, Option<u64>)>>,
) {
    let limit = cut.load(Ordering::SeqCst);
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    // Client to server, recorded.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let (n, cut_now) = {
                        let mut u = upload.lock().unwrap_or_else(|e| e.into_inner());
                        match u.1 {
                            Some(at) if u.0 + n as u64 >= at => {
                                let keep = (at - u.0.min(at)) as usize;
                                *u = (u.0 + keep as u64, None);
                                (keep, true)
                            }
                            _ => {
                                u.0 += n as u64;
                                (n, false)
                            }
                        }
                    };
                    sent.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if cut_now {
                        let _ = s_write.shutdown(Shutdown::Both);
                        let _ = c_read.shutdown(Shutdown::Both);
                        break;
                    }
                }
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    // Server to client, cut after `limit` bytes.
    let (mut s_read, mut c_write) = (server, client);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(total);
                    let n = n.min(usize::try_from(room).unwrap_or(usize::MAX));
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    total += n as u64;
                    if total >= limit {
                        let _ = c_write.shutdown(Shutdown::Both);
                        let _ = s_read.shutdown(Shutdown::Both);
                        break;
                    }
                }
            }
        }
        let _ = c_write.shutdown(Shutdown::Write);
    });
}
