//! Driving `podman` against a loopback registry, with throwaway storage.
//!
//! Owns: a podman invocation whose image store, run state, temp dir and configuration files all
//! live in one temp dir (vfs storage driver: no overlay mounts, no fuse; cgroupfs and file
//! events: no systemd or journald needed), so tests never touch the host's images and can run
//! in parallel. Only image pull/push/inspect and registry login/logout are used; no container
//! is ever started. `pull`/`push` speak plain HTTP (`--tls-verify=false`); the `*_verified`
//! helpers and `try_login` reach an HTTPS registry with verification on, trusting what an
//! [`Access`](crate::tls::Access) names. Logins are stored in this instance's own auth file.

use std::path::PathBuf;
use std::process::Command;

use crate::tls::{Access, Trust};
use crate::tools::{Output, require_tool, run, try_run};

pub struct Podman {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Podman {
    /// Panics (fails the test) if podman is not installed.
    pub fn new() -> Podman {
        let bin = require_tool("podman");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for sub in ["root", "runroot", "tmp", "imagetmp"] {
            std::fs::create_dir_all(d.join(sub)).expect("podman dirs");
        }
        std::fs::write(
            d.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("policy");
        std::fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("registries");
        // containers/image insists that an explicitly named auth file exists.
        std::fs::write(d.join("auth.json"), r#"{"auths":{}}"#).expect("auth.json");
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                d.join("runroot").display(),
                d.join("root").display()
            ),
        )
        .expect("storage.conf");
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 image_copy_tmp_dir = \"{}\"\n",
                d.join("imagetmp").display()
            ),
        )
        .expect("containers.conf");
        Podman { bin, dir }
    }

    /// `podman` with every piece of state inside this instance's temp dir.
    pub fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.bin);
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(["--log-level", "debug"])
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"));
        c
    }

    fn policy(&self) -> String {
        self.dir.path().join("policy.json").display().to_string()
    }

    /// `podman pull --tls-verify=false REF` (`extra` flags before the operand).
    pub fn pull(&self, reference: &str, extra: &[&str]) -> Output {
        run(self
            .cmd()
            .args([
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &self.policy(),
            ])
            .args(extra)
            .arg(reference))
    }

    /// `podman push --tls-verify=false SRC DST` (`extra` flags before the operands).
    pub fn push(&self, src: &str, dst: &str, extra: &[&str]) -> Output {
        run(self
            .cmd()
            .args([
                "push",
                "--tls-verify=false",
                "--signature-policy",
                &self.policy(),
            ])
            .args(extra)
            .args([src, dst]))
    }

    /// `podman image inspect --format FORMAT REF`, trimmed.
    pub fn image_format(&self, reference: &str, format: &str) -> String {
        run(self
            .cmd()
            .args(["image", "inspect", "--format", format, reference]))
        .stdout
        .trim()
        .to_string()
    }

    /// `podman pull --signature-policy P [verified TLS flags] [extra] REF`, whatever its exit
    /// status. Without an [`Access`] no TLS or credential flag is given (for `oci:` sources).
    pub fn try_pull_verified(
        &self,
        reference: &str,
        access: Option<Access<'_>>,
        extra: &[&str],
    ) -> Output {
        let mut c = self.cmd();
        c.args(["pull", "--signature-policy", &self.policy()]);
        if let Some(a) = access {
            c.args(a.containers_args(""));
        }
        try_run(c.args(extra).arg(reference))
    }

    /// `podman push --signature-policy P --tls-verify=true --cert-dir D [--creds C] [extra] SRC
    /// DST`, whatever its exit status.
    pub fn try_push_verified(
        &self,
        src: &str,
        dst: &str,
        access: Access<'_>,
        extra: &[&str],
    ) -> Output {
        try_run(
            self.cmd()
                .args(["push", "--signature-policy", &self.policy()])
                .args(access.containers_args(""))
                .args(extra)
                .args([src, dst]),
        )
    }

    /// `podman login --tls-verify=true --cert-dir D -u USER -p PASSWORD HOST`, whatever its exit
    /// status; a success stores the credentials in this instance's auth file.
    pub fn try_login(&self, host: &str, trust: &Trust, user: &str, password: &str) -> Output {
        try_run(
            self.cmd()
                .args(["login", "--tls-verify=true", "--cert-dir"])
                .arg(trust.cert_dir())
                .args(["-u", user, "-p", password, host]),
        )
    }

    /// `podman logout --all`: forget every stored login.
    pub fn logout_all(&self) -> Output {
        run(self.cmd().args(["logout", "--all"]))
    }
}
