//! The server under soak: `stowage serve` with authentication on and HTTPS from its own
//! development CA, on a fixed port so it can be killed (`SIGKILL`) and started again on the same
//! data directory while clients keep their URLs; what `/proc` says about it (resident memory,
//! open file descriptors, CPU time); and the store's users, made with `stowage user add`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A `stowage serve` child process, restartable.
pub struct SoakServer {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// One reading of the server's resources.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub cpu_s: f64,
}

impl SoakServer {
    /// A server for `data`, logging (JSON, appended across restarts) to `log`, on a free port.
    pub fn new(bin: &Path, data: &Path, log: &Path) -> Result<SoakServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(SoakServer {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            port,
            child: None,
        })
    }

    /// The registry's URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The development CA clients must trust (made by the first start).
    pub fn ca_file(&self) -> PathBuf {
        self.data.join("tls").join("ca.crt")
    }

    /// Create a user with `grants` on the store (`stowage user add`).
    pub fn add_user(&self, name: &str, password: &str, grants: &[&str]) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["user", "add", name, "--password-stdin", "--data"])
            .arg(&self.data);
        for g in grants {
            cmd.args(["--grant", g]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("stowage user add")?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(format!("{password}\n").as_bytes())?;
        ensure!(child.wait()?.success(), "stowage user add {name} failed");
        Ok(())
    }

    /// Start the server and wait until it listens (the port is retried for a few seconds: a
    /// killed process's port can take a moment to be free again).
    pub fn start(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)?;
            let mut child = Command::new(&self.bin)
                .args([
                    "serve",
                    "--auth",
                    "--tls-self-signed",
                    "--log-format",
                    "json",
                ])
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("--data")
                .arg(&self.data)
                .env_remove("STOWAGE_CONFIG")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", self.bin.display()))?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
            if line.starts_with("stowage listening on ") {
                self.child = Some(child);
                return Ok(());
            }
            let status = child.wait()?;
            if Instant::now() > deadline {
                bail!(
                    "stowage serve did not start ({status}); see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kill -9`, and reap the process.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (exit status 0).
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let status = child.wait()?;
        ensure!(status.success(), "stowage serve exited with {status}");
        Ok(())
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory, open descriptors, threads and CPU time of the running server.
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Usage {
            rss_kib: field("VmRSS:"),
            fds,
            threads: field("Threads:"),
            cpu_s: crate::procs::cpu_seconds(Path::new(&format!("/proc/{pid}/stat"))),
        })
    }

    /// `stowage fsck --deep` on the data directory (server stopped): its exit code and output,
    /// or None when this build has no `fsck` command.
    pub fn fsck_deep(&self) -> Result<Option<(i32, String)>> {
        let help = Command::new(&self.bin)
            .args(["fsck", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !help.success() {
            return Ok(None);
        }
        let out = Command::new(&self.bin)
            .args(["fsck", "--deep", "--data"])
            .arg(&self.data)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Some((out.status.code().unwrap_or(-1), text)))
    }
}

impl Drop for SoakServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Responses the server logged with status 500 or above, and with 429, from its JSON log.
pub fn logged_statuses(log: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut server_errors = 0;
    let mut too_many = 0;
    for line in text.lines() {
        if let Some(rest) = line.split("\"status\":").nth(1) {
            let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
            match code.parse::<u16>() {
                Ok(c) if c >= 500 => server_errors += 1,
                Ok(429) => too_many += 1,
                _ => {}
            }
        }
    }
    (server_errors, too_many)
}

/// The 1-minute load average of the machine.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}
