//! A private Docker engine (`dockerd`) for `docker` CLI interop tests.
//!
//! Owns: starting a `dockerd` whose data root, exec root, pid file, trust key and API socket all
//! live in one short temp dir under `/tmp` (unix socket paths are limited to 108 bytes), with
//! the vfs storage driver and no networking (no bridge, no iptables): the tests only move images,
//! they never run a container. dockerd 20.10 starts a managed containerd of its own whose config,
//! state and content also live under the exec and data roots, so nothing is shared with the host
//! or with another test's daemon, and several can run at once. The daemon logs at debug level to
//! a file that failures quote; readiness is polled on the API socket (`GET /_ping`), and drop
//! stops the daemon (SIGTERM, then SIGKILL), its containerd and any mount left behind.
//!
//! Also: the `docker` CLI pointed at that daemon with a private `DOCKER_CONFIG` (so `docker
//! login` writes a temp `config.json`, never `~/.docker`), thin helpers for import, tag, push,
//! pull, rmi, inspect, login/logout and `manifest inspect`, a rootfs tarball for `docker import`,
//! and [`CertsD`], which puts a CA at dockerd's fixed `/etc/docker/certs.d/ADDR/ca.crt` and
//! removes it on drop. A missing `dockerd` or `docker` fails the test: CI installs them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::{DEFAULT_TIMEOUT, Output, require_tool, run, run_with_input, try_run};

/// How long dockerd may take to answer `/_ping` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables of the host that would point the CLI or the daemon elsewhere.
const FOREIGN_ENV: &[&str] = &[
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_API_VERSION",
    "DOCKER_CONTENT_TRUST",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// A running private dockerd; stopped and cleaned up when dropped.
pub struct Docker {
    cli: PathBuf,
    /// The daemon's API socket.
    pub socket: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Docker {
    /// Start the daemon; panics (failing the test) if dockerd or the docker CLI is missing, or
    /// the daemon does not answer within a minute.
    pub fn start() -> Docker {
        let dockerd = require_tool("dockerd");
        let cli = docker_cli(&dockerd);
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path();
        let socket = d.join("d.sock");
        std::fs::create_dir_all(d.join("cfg")).expect("docker config dir");
        std::fs::create_dir_all(d.join("work")).expect("work dir");
        // dockerd 20.10 keeps its trust key in /etc/docker/key.json unless told otherwise (only
        // in the config file); two daemons creating it at once could read it half written.
        let config = serde_json::json!({ "deprecated-key-path": d.join("key.json") });
        std::fs::write(d.join("daemon.json"), config.to_string()).expect("daemon.json");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log file");
        let mut cmd = Command::new(&dockerd);
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .args([
                "--debug",
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for k in FOREIGN_ENV {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().expect("spawn dockerd");
        let mut docker = Docker {
            cli,
            socket,
            child: Some(child),
            dir,
        };
        docker.wait_ready();
        docker
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("dockerd exited early ({status}):\n{}", self.log_tail());
            }
            if ping(&self.socket) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `docker` CLI talking to this daemon, with its own config dir (`DOCKER_CONFIG`) and
    /// the experimental commands (`docker manifest`) enabled.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.cli);
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.config_dir())
            .env("DOCKER_CLI_EXPERIMENTAL", "enabled");
        for k in FOREIGN_ENV {
            c.env_remove(k);
        }
        c
    }

    /// The CLI binary in use (the one of dockerd's own release when there are several).
    pub fn cli_path(&self) -> &Path {
        &self.cli
    }

    /// `DOCKER_CONFIG`: where `docker login` keeps `config.json`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("cfg")
    }

    /// The CLI's `config.json` as JSON (`{}` when nothing was written yet).
    pub fn cli_config(&self) -> serde_json::Value {
        match std::fs::read(self.config_dir().join("config.json")) {
            Ok(b) => serde_json::from_slice(&b).expect("config.json is JSON"),
            Err(_) => serde_json::json!({}),
        }
    }

    /// A scratch directory that lives as long as the daemon.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The daemon's whole log so far (its managed containerd logs there too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages (the debug log is long).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    }

    /// Run `docker ARGS` within the default timeout; panics (with the daemon's log) unless it
    /// succeeds.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.try_run(args);
        if !out.success() {
            panic!(
                "{}\n--- dockerd log (tail) ---\n{}",
                out.describe("docker command failed"),
                self.log_tail()
            );
        }
        out
    }

    /// Run `docker ARGS`, whatever its exit status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        try_run(self.cmd().args(args))
    }

    /// `docker import TARBALL REF`: a one-layer image of the root filesystem in `tarball`;
    /// returns its image id (`sha256:...`).
    pub fn import(&self, tarball: &Path, reference: &str) -> String {
        let out = self.run(&["import", &tarball.display().to_string(), reference]);
        let id = out.stdout.trim().to_string();
        assert!(id.starts_with("sha256:"), "{}", out.describe("no image id"));
        id
    }

    /// `docker push REF`, whatever its exit status.
    pub fn try_push(&self, reference: &str) -> Output {
        self.try_run(&["push", reference])
    }

    /// `docker push REF`; returns the manifest digest docker printed (`TAG: digest: D size: N`).
    pub fn push(&self, reference: &str) -> String {
        let out = self.run(&["push", reference]);
        pushed_digest(&out.stdout).unwrap_or_else(|| panic!("{}", out.describe("no digest")))
    }

    /// `docker pull REF`, whatever its exit status.
    pub fn try_pull(&self, reference: &str) -> Output {
        self.try_run(&["pull", reference])
    }

    /// `docker pull REF`; returns the manifest digest docker printed (`Digest: D`).
    pub fn pull(&self, reference: &str) -> String {
        let out = self.run(&["pull", reference]);
        out.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("Digest: "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{}", out.describe("no digest")))
    }

    /// `docker rmi --force ID`: removes the image and every name it has; panics unless it is
    /// gone afterwards.
    pub fn remove_image(&self, id: &str) {
        self.run(&["rmi", "--force", id]);
        assert!(
            self.image_id(id).is_none(),
            "image {id} still present after rmi"
        );
    }

    /// `docker image inspect --format {{.Id}} REF`, or `None` if there is no such image.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.try_run(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.success().then(|| out.stdout.trim().to_string())
    }

    /// The `repo@digest` names docker recorded for a local image (`RepoDigests`).
    pub fn repo_digests(&self, reference: &str) -> Vec<String> {
        let out = self.run(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            reference,
        ]);
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {}", out.describe("RepoDigests is not JSON")))
    }

    /// `docker login -u USER --password-stdin HOST`, whatever its exit status.
    pub fn try_login(&self, host: &str, user: &str, password: &str) -> Output {
        run_with_input(
            self.cmd()
                .args(["login", "--username", user, "--password-stdin"])
                .arg(host),
            Some(&format!("{password}\n")),
            DEFAULT_TIMEOUT,
        )
    }

    /// `docker logout HOST`; panics unless it succeeds.
    pub fn logout(&self, host: &str) -> Output {
        run(self.cmd().args(["logout", host]))
    }

    /// Whether the CLI's `config.json` holds credentials for `host`.
    pub fn has_login(&self, host: &str) -> bool {
        self.cli_config()["auths"]
            .get(host)
            .is_some_and(|a| a.get("auth").is_some())
    }

    /// `docker manifest inspect [--insecure] [extra] REF`, whatever its exit status. The CLI
    /// itself talks to the registry here, not the daemon.
    pub fn try_manifest_inspect(&self, reference: &str, insecure: bool, extra: &[&str]) -> Output {
        let mut args = vec!["manifest", "inspect"];
        if insecure {
            args.push("--insecure");
        }
        args.extend_from_slice(extra);
        args.push(reference);
        self.try_run(&args)
    }

    /// Stop the daemon: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]; then make sure its
    /// managed containerd is gone and nothing stays mounted under the temp dir.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_managed_containerd();
        self.unmount_leftovers();
    }

    /// SIGKILL the containerd dockerd started, if it outlived dockerd (only after a SIGKILL).
    fn kill_managed_containerd(&self) {
        let d = self.dir.path();
        let pidfile = d.join("exec").join("containerd").join("containerd.pid");
        let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return;
        };
        // Only if that pid is still our containerd (its command line names our temp dir).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&d.display().to_string()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }

    /// dockerd bind-mounts its data root onto itself and unmounts it on a clean exit; after a
    /// SIGKILL it stays, and the temp dir could not be removed.
    fn unmount_leftovers(&self) {
        let d = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&d))
            .collect();
        // Innermost first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["--lazy", p]).status();
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /_ping` on the daemon's socket answered `OK`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.") && resp.contains(" 200 ") && resp.ends_with("OK")
}

/// The docker CLI to drive dockerd with: `STOWAGE_DOCKER_CLI` if set, else the first `docker`
/// on PATH of the same release as `dockerd` (a machine may have a newer standalone CLI earlier
/// on PATH than the distribution's client), else the first `docker` on PATH.
fn docker_cli(dockerd: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("STOWAGE_DOCKER_CLI") {
        return PathBuf::from(p);
    }
    let first = require_tool("docker");
    let version = |bin: &Path| {
        try_run(Command::new(bin).arg("--version"))
            .stdout
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let wanted = version(dockerd);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .filter(|p| p.is_file())
        .find(|p| !wanted.is_empty() && version(p) == wanted)
        .unwrap_or(first)
}

/// The digest in docker push's last line, `TAG: digest: sha256:... size: N`.
pub fn pushed_digest(stdout: &str) -> Option<String> {
    stdout.lines().rev().find_map(|l| {
        let rest = l.split_once("digest: ")?.1;
        let d = rest.split_whitespace().next()?;
        d.starts_with("sha256:").then(|| d.to_string())
    })
}

/// Write a small root filesystem tarball for `docker import` at `path`: a few files, a
/// directory and a symlink, with `label` in `/etc/motd` so each test's image is its own, plus
/// `payload` incompressible bytes in `/data/payload.bin` when it is not zero.
pub fn write_rootfs_tarball(path: &Path, label: &str, payload: usize) {
    let file = std::fs::File::create(path).expect("tarball");
    let mut tar = tar::Builder::new(file);
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(target) = link {
            h.set_link_name(target).expect("link name");
        }
        tar.append_data(&mut h, name, data).expect("tar entry");
    };
    add("etc/", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "etc/motd",
        tar::EntryType::Regular,
        0o644,
        format!("stowage docker interop: {label}\n").as_bytes(),
        None,
    );
    add(
        "etc/greeting",
        tar::EntryType::Symlink,
        0o777,
        b"",
        Some("motd"),
    );
    add("usr/", tar::EntryType::Directory, 0o755, b"", None);
    add("usr/bin/", tar::EntryType::Directory, 0o755, b"", None);
    add(
        "usr/bin/hello",
        tar::EntryType::Regular,
        0o755,
        b"#!/bin/sh\necho hello\n",
        None,
    );
    if payload > 0 {
        add("data/", tar::EntryType::Directory, 0o755, b"", None);
        let bytes = crate::image::pseudo_random(label, payload);
        add(
            "data/payload.bin",
            tar::EntryType::Regular,
            0o644,
            &bytes,
            None,
        );
    }
    tar.into_inner().expect("finish tarball");
}

/// A CA certificate installed where dockerd looks for a registry's CA,
/// `/etc/docker/certs.d/ADDR/ca.crt`; the `ADDR` directory is removed on drop. Registry ports
/// are unique per test, so tests never share a directory.
pub struct CertsD {
    dir: PathBuf,
}

impl CertsD {
    /// dockerd's fixed certificate directory.
    pub const ROOT: &'static str = "/etc/docker/certs.d";

    /// Copy the PEM CA at `ca` to `/etc/docker/certs.d/ADDR/ca.crt`.
    pub fn install(addr: &str, ca: &Path) -> CertsD {
        let pem = std::fs::read_to_string(ca)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", ca.display()));
        CertsD::install_pem(addr, &pem)
    }

    /// Write the PEM text `pem` as `/etc/docker/certs.d/ADDR/ca.crt`.
    pub fn install_pem(addr: &str, pem: &str) -> CertsD {
        let dir = Path::new(Self::ROOT).join(addr);
        // The address is a live registry's, so a directory already there was left by a run that
        // was killed before its drop ran: stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {} (needs root): {e}", dir.display()));
        let c = CertsD { dir };
        std::fs::write(c.dir.join("ca.crt"), pem).expect("ca.crt");
        c
    }

    /// The `ADDR` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::pushed_digest;

    #[test]
    fn reads_the_digest_docker_push_prints() {
        let out = "The push refers to repository [127.0.0.1:5000/team/app]\n\
                   134ca1d02f1b: Pushed\n\
                   1.0: digest: sha256:b491e48c4ba098d2b396aec3f0f1a04b1cb736497df563c0fb2b99ab224addd8 size: 523\n";
        assert_eq!(
            pushed_digest(out).as_deref(),
            Some("sha256:b491e48c4ba098d2b396aec3f0f1a04b1cb736497df563c0fb2b99ab224addd8")
        );
        assert_eq!(pushed_digest("134ca1d02f1b: Pushed\n"), None);
    }
}
