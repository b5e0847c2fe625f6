//! Spawn the `stowage` binary as a real server on 127.0.0.1 with a free port.
//!
//! The server prints `stowage listening on http://ADDR` on stdout once it accepts connections;
//! `spawn` waits for that line, so tests never race the listener. The process is killed (SIGKILL)
//! when the handle drops, and `terminate` sends SIGTERM for graceful-shutdown tests. Every
//! stdout line is kept, so a test can read what the server printed after that line, such as the
//! development CA of `--tls-self-signed` ([`Server::ca_cert`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// What `--tls-self-signed` prints before the CA certificate's path.
const CA_LINE: &str = "development CA certificate (trust it in clients): ";

/// A running `stowage serve` process.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The data directory the server uses.
    pub data_dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
    /// Every stdout line so far (trimmed).
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `bin serve --listen 127.0.0.1:0 --data <fresh temp dir>` plus `extra` arguments.
    pub fn spawn(bin: &Path, extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let mut s = Server::spawn_with_data(bin, &data, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Start a server on an existing data directory (for restart tests).
    pub fn spawn_with_data(bin: &Path, data: &Path, extra: &[&str]) -> Server {
        Server::spawn_at(bin, data, "127.0.0.1:0", extra)
    }

    /// Start a server on a given listen address and data directory.
    pub fn spawn_at(bin: &Path, data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--data")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("STOWAGE_CONFIG");
        let mut child = cmd.spawn().expect("spawn stowage");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        kept.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(line.trim().to_string());
                        if !sent
                            && let Some(rest) = line.trim().strip_prefix("stowage listening on ")
                        {
                            let _ = tx.send(rest.to_string());
                            sent = true;
                        }
                        // Keep draining so the server never blocks on a full pipe.
                        eprint!("[stowage] {line}");
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("stowage did not print its listening line within 30s");
            }
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        Server {
            url,
            addr,
            data_dir: data.to_path_buf(),
            child: Some(child),
            _tmp: None,
            lines,
        }
    }

    /// The rest of the first stdout line starting with `prefix`, waiting up to `timeout` for
    /// the server to print it.
    pub fn stdout_line(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find_map(|l| l.strip_prefix(prefix).map(str::to_string));
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The development CA certificate the server printed (`--tls-self-signed`); panics if it
    /// printed none within 10 seconds.
    pub fn ca_cert(&self) -> PathBuf {
        let path = self
            .stdout_line(CA_LINE, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{} printed no `{CA_LINE}` line", self.url));
        PathBuf::from(path)
    }

    /// Send SIGTERM and wait for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().ok()?;
        status.code()
    }

    /// SIGKILL the process (crash simulation) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Process id, if still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Keep the temp dir alive past this handle (for restarts on the same data).
    pub fn take_tempdir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
