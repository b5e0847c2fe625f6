//! A private `containerd` daemon for `ctr` interop tests.
//!
//! Owns: generating a config whose root, state, plugin and socket paths all live in one temp dir
//! (with the CRI plugin and the snapshotters that need kernel features disabled: tests use the
//! `native` snapshotter, which only copies files), starting the daemon, waiting until `ctr`
//! answers on its socket, and stopping it on drop. Its log goes to a file that failures quote.
//! Also thin `ctr images` helpers: importing an OCI layout, pulling and pushing over verified
//! HTTPS with an [`Access`](crate::tls::Access) (`--hosts-dir`, `--user`), and reading the
//! digest an image name points at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::Access;
use crate::tools::{Output, require_tool, run, try_run};

/// The containerd namespace the tests' images live in.
pub const NAMESPACE: &str = "stowage-interop";

pub struct Containerd {
    ctr: PathBuf,
    /// The daemon's gRPC socket.
    pub socket: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Start the daemon; panics (failing the test) if containerd or ctr is missing or it does
    /// not come up within 30 seconds.
    pub fn start() -> Containerd {
        let bin = require_tool("containerd");
        let ctr = require_tool("ctr");
        // A short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = d.join("config.toml");
        std::fs::write(&config, config_toml(d, &socket)).expect("containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log file");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let mut c = Containerd {
            ctr,
            socket,
            child,
            dir,
        };
        c.wait_ready();
        c
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("containerd exited early ({status}):\n{}", self.log());
            }
            if self.socket.exists() && try_run(self.ctr().arg("version")).success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {} within 30s:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ctr --address SOCKET --namespace stowage-interop`
    pub fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(NAMESPACE);
        c
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Directory holding the daemon's root (content store, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `ctr images import --base-name NAME`: every tag `T` of the OCI layout at `layout`
    /// becomes the image `NAME:T` (unpacked with the native snapshotter).
    pub fn import_layout(&self, layout: &Path, base_name: &str) -> Output {
        let archive = self.dir.path().join(format!(
            "import-{}.tar",
            IMPORTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&archive).expect("archive file");
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all(".", layout).expect("tar the layout");
        tar.into_inner().expect("finish the archive");
        let out = run(self
            .ctr()
            .args(["images", "import", "--snapshotter", "native"])
            .args(["--base-name", base_name, &archive.display().to_string()]));
        let _ = std::fs::remove_file(&archive);
        out
    }

    /// `ctr images pull --snapshotter native --platform linux/amd64 --hosts-dir D [--user C]
    /// [extra] REF`, whatever its exit status.
    pub fn try_pull_verified(&self, reference: &str, access: Access<'_>, extra: &[&str]) -> Output {
        try_run(
            self.ctr()
                .args(["images", "pull", "--snapshotter", "native"])
                .args(["--platform", "linux/amd64"])
                .args(access.ctr_args())
                .args(extra)
                .arg(reference),
        )
    }

    /// `ctr images push --hosts-dir D [--user C] [extra] DST SRC` (pushes the local image `src`
    /// under the name `dst`), whatever its exit status.
    pub fn try_push_verified(
        &self,
        dst: &str,
        src: &str,
        access: Access<'_>,
        extra: &[&str],
    ) -> Output {
        try_run(
            self.ctr()
                .args(["images", "push"])
                .args(access.ctr_args())
                .args(extra)
                .args([dst, src]),
        )
    }

    /// The manifest (or index) digest the local image `name` points at, from `ctr images ls`.
    pub fn image_digest(&self, name: &str) -> Option<String> {
        let listed = run(self.ctr().args(["images", "ls"])).stdout;
        listed.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 3 && cols[0] == name).then(|| cols[2].to_string())
        })
    }
}

/// Numbers the archives of [`Containerd::import_layout`].
static IMPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_toml(d: &Path, socket: &Path) -> String {
    let p = |s: &str| d.join(s).display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
plugin_dir = ""
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = p("root"),
        state = p("state"),
        socket = socket.display(),
        opt = p("opt"),
    )
}
