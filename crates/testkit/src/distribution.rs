//! Spawn the reference registry (CNCF distribution, Debian's `docker-registry`) on loopback.
//!
//! Owns: a throwaway filesystem-backed distribution instance on a free 127.0.0.1 port, with
//! deletes enabled, waited for until `GET /v2/` answers, and killed when the handle drops. Tests
//! use it as a known-good peer: to check a client test's own logic, and as a baseline for
//! benchmarks and behaviour comparisons. [`Distribution::spawn_with_htpasswd`] starts one that
//! demands HTTP Basic credentials from an htpasswd file (distribution's only built-in auth
//! without a token server). The binary is `docker-registry` on PATH unless
//! `STOWAGE_DISTRIBUTION_BIN` names another.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running distribution registry.
pub struct Distribution {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Its storage root directory.
    pub root: PathBuf,
    child: Child,
    _tmp: tempfile::TempDir,
}

impl Distribution {
    /// Start a fresh, empty registry. Panics if the binary is missing or never becomes ready.
    pub fn spawn() -> Distribution {
        Distribution::start(None)
    }

    /// Start a fresh, empty registry that requires HTTP Basic auth for every request.
    /// `htpasswd` is the file's content: `user:hash` lines, with bcrypt hashes (`$2y$`/`$2b$`,
    /// as `htpasswd -B` or the `bcrypt` crate make them). The registry still speaks plain HTTP.
    pub fn spawn_with_htpasswd(htpasswd: &str) -> Distribution {
        Distribution::start(Some(htpasswd))
    }

    fn start(htpasswd: Option<&str>) -> Distribution {
        let bin =
            std::env::var("STOWAGE_DISTRIBUTION_BIN").unwrap_or_else(|_| "docker-registry".into());
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("storage");
        std::fs::create_dir_all(&root).expect("storage dir");
        let htpasswd_file = htpasswd.map(|content| {
            let path = tmp.path().join("htpasswd");
            std::fs::write(&path, content).expect("write htpasswd");
            path
        });
        // The port is free when we look, but another process may take it before the registry
        // binds it; then the registry exits and we try another port.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = tmp.path().join("config.yml");
            std::fs::write(&config, config_yaml(&root, &addr, htpasswd_file.as_deref()))
                .expect("write config");
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start `{bin}` (install Debian's docker-registry): {e}")
                });
            if wait_ready(&mut child, &addr) {
                return Distribution {
                    url: format!("http://{addr}"),
                    addr,
                    root,
                    child,
                    _tmp: tmp,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not become ready");
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        // 401: up, and asking for the credentials it was configured with.
        if crate::wire::get_blocking(addr, "/v2/", &[])
            .is_ok_and(|r| r.status == 200 || r.status == 401)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn config_yaml(root: &std::path::Path, addr: &str, htpasswd: Option<&std::path::Path>) -> String {
    let auth = htpasswd
        .map(|p| {
            format!(
                "auth:\n  htpasswd:\n    realm: stowage-testkit\n    path: {}\n",
                p.display()
            )
        })
        .unwrap_or_default();
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: stowage-testkit-not-a-secret\n{auth}",
        root = root.display()
    )
}
