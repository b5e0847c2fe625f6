//! The two registries under test as child processes, and what `/proc` says about them.
//!
//! Both run on loopback with filesystem storage, deletes enabled and no auth, and both log to a
//! file in the work directory (request logging stays on for both, as deployed). CPU time comes
//! from `/proc/<pid>/stat`, memory from `VmRSS`/`VmHWM` in `/proc/<pid>/status`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Which registry a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stowage,
    Distribution,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stowage => "stowage",
            Kind::Distribution => "distribution",
        }
    }
}

/// A running registry.
pub struct Registry {
    pub kind: Kind,
    pub url: String,
    /// With token authentication on: the administrator the workloads log in as.
    pub creds: Option<(String, String)>,
    child: Child,
}

impl Registry {
    /// Start Stowage from `bin` with its data under `dir`; with `auth`, token authentication
    /// is on and an administrator is created first (the workloads then use bearer tokens).
    pub fn stowage(bin: &Path, dir: &Path, auth: bool) -> Result<Registry> {
        let log = std::fs::File::create(dir.join("stowage.log"))?;
        let creds = if auth {
            let pass = "bench-password-1".to_string();
            let mut add = Command::new(bin)
                .args([
                    "user",
                    "add",
                    "bench",
                    "--admin",
                    "--password-stdin",
                    "--data",
                ])
                .arg(dir.join("data"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()?;
            add.stdin
                .take()
                .context("stdin")?
                .write_all(format!("{pass}\n").as_bytes())?;
            if !add.wait()?.success() {
                bail!("stowage user add failed");
            }
            Some(("bench".to_string(), pass))
        } else {
            None
        };
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(if auth { &["--auth"][..] } else { &[][..] })
            .arg("--data")
            .arg(dir.join("data"))
            .env_remove("STOWAGE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("stowage listening on ")
            .context("no listening line")?
            .to_string();
        Ok(Registry {
            kind: Kind::Stowage,
            url,
            creds,
            child,
        })
    }

    /// Start CNCF distribution (`docker-registry`) with filesystem storage under `dir`.
    pub fn distribution(bin: &str, dir: &Path) -> Result<Registry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let root = dir.join("storage");
        std::fs::create_dir_all(&root)?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: stowage-bench\n",
                root.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("distribution.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("cannot start {bin}: install Debian's docker-registry package")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let reg = Registry {
            kind: Kind::Distribution,
            url,
            creds: None,
            child,
        };
        reg.wait_ready()?;
        Ok(reg)
    }

    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = self.url.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not start listening", self.kind.name())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let status = self.child.wait()?;
        ensure!(
            status.success(),
            "{} exited with {status}",
            self.kind.name()
        );
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&PathBuf::from(format!("/proc/{}/stat", self.pid())))
    }

    /// Current and peak resident memory in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second for `/proc` CPU fields (100 on every Linux we run on; `getconf`
/// confirms it when available).
fn ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime from a `/proc/.../stat` file, in seconds.
pub fn cpu_seconds(stat: &Path) -> f64 {
    let s = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / ticks()
}
