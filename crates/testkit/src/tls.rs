//! Making clients trust (or deliberately not trust) an HTTPS test registry's CA.
//!
//! Owns: the client-side trust files for one registry address: a containers/image certificate
//! directory (`ca.crt` inside, for `skopeo --cert-dir`/`--src-cert-dir`/`--dest-cert-dir` and
//! `podman --cert-dir`) and a containerd hosts directory (`ADDR/hosts.toml`, for
//! `ctr images pull/push --hosts-dir`), plus the flags that name them together with optional
//! `user:password` credentials ([`Access`]). TLS verification is always on: a [`Trust`] made
//! with [`Trust::system_only`] trusts the system roots alone, so a self-signed registry must be
//! refused (negative checks). It never generates certificates: the server under test does.

use std::path::{Path, PathBuf};

/// Trust material for one registry address, in the layouts the clients read.
pub struct Trust {
    dir: tempfile::TempDir,
    ca: Option<PathBuf>,
}

impl Trust {
    /// Trust the PEM CA certificate `ca_pem` for the registry at `addr` (`127.0.0.1:PORT`).
    pub fn ca(addr: &str, ca_pem: &Path) -> Trust {
        let t = Trust::make(addr);
        std::fs::copy(ca_pem, t.cert_dir().join("ca.crt"))
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", ca_pem.display()));
        let ca = t.cert_dir().join("ca.crt");
        t.write_hosts(addr, Some(&ca));
        Trust { ca: Some(ca), ..t }
    }

    /// Trust only the system roots for `addr`: an empty certificate directory and a hosts.toml
    /// without a CA. Verification stays on, so a development certificate must be refused.
    pub fn system_only(addr: &str) -> Trust {
        let t = Trust::make(addr);
        t.write_hosts(addr, None);
        t
    }

    fn make(addr: &str) -> Trust {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
        std::fs::create_dir_all(dir.path().join("hosts").join(addr)).expect("hosts dir");
        Trust { dir, ca: None }
    }

    fn write_hosts(&self, addr: &str, ca: Option<&Path>) {
        std::fs::write(
            self.hosts_dir().join(addr).join("hosts.toml"),
            hosts_toml(addr, ca),
        )
        .expect("hosts.toml");
    }

    /// The containers/image certificate directory (holds `ca.crt`, or nothing).
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// The containerd hosts directory (holds `ADDR/hosts.toml`).
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    /// The trusted CA file, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca.as_deref()
    }
}

/// A containerd `hosts.toml` (the format of containerd 1.6, the `ctr --hosts-dir` one) for an
/// HTTPS registry at `addr`, trusting `ca` when given.
///
/// containerd 1.6 insists on at least one `[host."..."]` table ("invalid `host` tree"
/// otherwise), and always tries the top-level `server` after the listed hosts, with the
/// top-level settings. So the CA is named in both places: with it only under `[host]`, a
/// request refused by the registry (403) is retried against `server` without the CA, and the
/// client reports a certificate error instead of the refusal.
pub fn hosts_toml(addr: &str, ca: Option<&Path>) -> String {
    let ca_line = ca
        .map(|p| format!("ca = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "server = \"https://{addr}\"\n{ca_line}\n[host.\"https://{addr}\"]\n\
         capabilities = [\"pull\", \"resolve\", \"push\"]\n{ca_line}"
    )
}

/// How a client reaches one HTTPS registry: whose certificates it trusts, and as whom.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub trust: &'a Trust,
    /// `user:password` (an access token works as the password); `None`: anonymous.
    pub creds: Option<&'a str>,
}

impl<'a> Access<'a> {
    pub fn new(trust: &'a Trust, creds: Option<&'a str>) -> Access<'a> {
        Access { trust, creds }
    }

    /// containers/image flags with a prefix (`""`, `"src-"` or `"dest-"`):
    /// `--{p}tls-verify=true --{p}cert-dir DIR [--{p}creds USER:PASSWORD]`.
    pub fn containers_args(&self, prefix: &str) -> Vec<String> {
        let mut args = vec![
            format!("--{prefix}tls-verify=true"),
            format!("--{prefix}cert-dir"),
            self.trust.cert_dir().display().to_string(),
        ];
        if let Some(c) = self.creds {
            args.push(format!("--{prefix}creds"));
            args.push(c.to_string());
        }
        args
    }

    /// `ctr images pull/push` flags: `--hosts-dir DIR [--user USER:PASSWORD]`.
    pub fn ctr_args(&self) -> Vec<String> {
        let mut args = vec![
            "--hosts-dir".to_string(),
            self.trust.hosts_dir().display().to_string(),
        ];
        if let Some(c) = self.creds {
            args.push("--user".to_string());
            args.push(c.to_string());
        }
        args
    }
}
