//! `stowage unpack` against `umoci unpack`: on the same OCI layout both must produce the same
//! root filesystem: every path, file type, content, mode (setuid included), owner, symlink
//! target, hard-link grouping, device number, extended attribute and modification time. The
//! image has two layers exercising whiteouts, an opaque directory, an absolute symlink that the
//! second layer writes through, a FIFO and (as root) a device node and `security.capability`.
//! Malicious layers (escaping names and hard links) must be refused. Also pulled from a live
//! registry, to cover `unpack REF` with a registry reference.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use stowage_testkit::image::{Blob, Image, ImageSpec, Layer, sha256_digest, write_image_layout};
use stowage_testkit::server::Server;
use stowage_testkit::tools::{require_tool, run};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A PAX extended header body.
fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        let rest = 1 + k.len() + 1 + v.len() + 1;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

struct T {
    b: tar::Builder<Vec<u8>>,
}

impl T {
    fn new() -> T {
        T {
            b: tar::Builder::new(Vec::new()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raw(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        body: &[u8],
        link: Option<&str>,
    ) -> &mut T {
        let mut h = tar::Header::new_ustar();
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_650_000_000 + name.len() as u64);
        h.set_size(body.len() as u64);
        h.set_cksum();
        self.b.append(&h, body).unwrap();
        self
    }

    fn dir(&mut self, n: &str, mode: u32) -> &mut T {
        self.raw(n, tar::EntryType::Directory, mode, 0, 0, b"", None)
    }

    fn file(&mut self, n: &str, mode: u32, uid: u64, gid: u64, body: &[u8]) -> &mut T {
        self.raw(n, tar::EntryType::Regular, mode, uid, gid, body, None)
    }

    fn xattrs(&mut self, records: &[(&str, &[u8])]) -> &mut T {
        let body = pax(records);
        self.raw(
            "PaxHeaders/x",
            tar::EntryType::XHeader,
            0o644,
            0,
            0,
            &body,
            None,
        )
    }

    fn done(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OCI image from uncompressed layer tars.
fn image(tars: &[Vec<u8>]) -> Image {
    let layers: Vec<Layer> = tars
        .iter()
        .map(|t| Layer {
            blob: Blob::new("application/vnd.oci.image.layer.v1.tar+gzip", gzip(t)),
            diff_id: sha256_digest(t),
        })
        .collect();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
    });
    Image {
        spec: ImageSpec::new("unpack"),
        layers,
        config,
        manifest: Blob::new(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&manifest).unwrap(),
        ),
    }
}

fn rich_image() -> Image {
    let cap: &[u8] = &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut l1 = T::new();
    l1.dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("run", 0o755)
        .dir("var", 0o755)
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .dir("dev", 0o755)
        .xattrs(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.security.capability", cap),
        ])
        .file("bin/tool", 0o4755, 0, 0, b"#!/bin/sh\necho tool\n")
        .raw(
            "bin/tool2",
            tar::EntryType::Link,
            0o4755,
            0,
            0,
            b"",
            Some("bin/tool"),
        )
        .file("etc/shadow", 0o640, 0, 42, b"root:*:1::::::\n")
        .file("etc/keep", 0o644, 1000, 1000, b"kept\n")
        .file("usr/lib/old", 0o644, 0, 0, b"old\n")
        .dir("usr/lib/olddir", 0o700)
        .raw(
            "var/run",
            tar::EntryType::Symlink,
            0o777,
            0,
            0,
            b"",
            Some("/run"),
        )
        .raw("dev/fifo", tar::EntryType::Fifo, 0o600, 0, 0, b"", None);
    if is_root() {
        let mut h = tar::Header::new_ustar();
        h.set_path("dev/null").unwrap();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mtime(1_650_000_000);
        h.set_size(0);
        h.set_cksum();
        l1.b.append(&h, std::io::empty()).unwrap();
    }
    let l1 = l1.done();
    let mut l2 = T::new();
    let l2 = l2
        .file("var/run/app.pid", 0o644, 0, 0, b"42\n")
        .file("etc/.wh.shadow", 0o644, 0, 0, b"")
        .file("usr/lib/new", 0o644, 0, 0, b"new\n")
        .file("usr/lib/.wh..wh..opq", 0o644, 0, 0, b"")
        .file("etc/keep", 0o600, 1000, 1000, b"kept, changed\n")
        .done();
    image(&[l1, l2])
}

#[derive(Debug, PartialEq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    rdev: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names) else {
        return BTreeMap::new();
    };
    names[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|name| {
            let name = String::from_utf8_lossy(name).to_string();
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, name.as_str(), &mut v).unwrap_or(0);
            v.truncate(len);
            (name, v)
        })
        .collect()
}

/// Every path under `root` with what matters about it, plus hard-link groups.
fn tree(root: &Path) -> (BTreeMap<PathBuf, Node>, Vec<Vec<PathBuf>>) {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else {
                "special"
            };
            if ft.is_file() {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            out.insert(
                rel,
                Node {
                    kind: kind.into(),
                    mode: if ft.is_symlink() { 0 } else { m.mode() },
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: m.mtime(),
                    content: ft.is_file().then(|| std::fs::read(&p).unwrap()),
                    link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
                    rdev: m.rdev(),
                    xattrs: if ft.is_symlink() {
                        BTreeMap::new()
                    } else {
                        xattrs(&p)
                    },
                },
            );
        }
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).map(|mut g| {
        g.sort();
        g
    });
    let mut groups: Vec<Vec<PathBuf>> = groups.collect();
    groups.sort();
    (out, groups)
}

fn stowage(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

#[test]
fn unpack_matches_umoci() {
    require_tool("umoci");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_image_layout(&layout, "v1", &rich_image());
    let ours = dir.path().join("ours");
    let out = stowage(&[
        "unpack",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        ours.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle));
    let (a, ga) = tree(&ours);
    let (b, gb) = tree(&bundle.join("rootfs"));
    let keys_a: Vec<_> = a.keys().collect();
    let keys_b: Vec<_> = b.keys().collect();
    assert_eq!(keys_a, keys_b, "same paths");
    for (k, na) in &a {
        assert_eq!(Some(na), b.get(k), "{}", k.display());
    }
    assert_eq!(ga, gb, "same hard links");
    // What the image says, checked directly too.
    assert_eq!(std::fs::read(ours.join("run/app.pid")).unwrap(), b"42\n");
    assert!(!ours.join("etc/shadow").exists());
    assert!(!ours.join("usr/lib/old").exists() && ours.join("usr/lib/new").exists());
    assert_eq!(a[Path::new("bin/tool")].mode & 0o7777, 0o4755);
    if is_root() {
        assert_eq!(a[Path::new("etc/keep")].uid, 1000);
        assert!(
            a[Path::new("bin/tool")]
                .xattrs
                .contains_key("security.capability")
        );
    }
}

#[test]
fn malicious_layers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bad) in [
        T::new().file("../outside", 0o644, 0, 0, b"x").done(),
        T::new()
            .file("ok", 0o644, 0, 0, b"x")
            .raw(
                "link",
                tar::EntryType::Link,
                0o644,
                0,
                0,
                b"",
                Some("../../../../etc/passwd"),
            )
            .done(),
    ]
    .into_iter()
    .enumerate()
    {
        let layout = dir.path().join(format!("bad{i}"));
        write_image_layout(&layout, "v1", &image(&[bad]));
        let target = dir.path().join(format!("root{i}"));
        let out = stowage(&[
            "unpack",
            "-q",
            &format!("oci:{}:v1", layout.display()),
            target.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "malicious layer {i} was unpacked");
        assert!(err.contains("refused"), "{err}");
        assert!(!dir.path().join("outside").exists());
    }
}

#[test]
fn unpack_from_a_registry() {
    let server = Server::spawn(bin(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_image_layout(&layout, "v1", &rich_image());
    let dest = format!("{}/team/rich:v1", server.addr);
    let out = stowage(&["push", "-q", &format!("oci:{}:v1", layout.display()), &dest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_registry = dir.path().join("r");
    let from_layout = dir.path().join("l");
    for (src, to) in [
        (dest.clone(), &from_registry),
        (format!("oci:{}:v1", layout.display()), &from_layout),
    ] {
        let out = stowage(&["unpack", "-q", &src, to.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(tree(&from_registry), tree(&from_layout));
}

/// `umoci insert` writes a layer that ends right after its last file's bytes: no padding to a
/// tar block and no end-of-archive blocks. umoci itself unpacks it; so must `stowage unpack`.
#[test]
fn unpack_accepts_layers_written_by_umoci_insert() {
    require_tool("umoci");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
    // 700 bytes: the layer stops 324 bytes short of a block boundary.
    std::fs::write(src.join("sub/last"), vec![b'x'; 700]).unwrap();
    run(Command::new("umoci")
        .args(["insert", "--rootless", "--image", &image])
        .arg(&src)
        .arg("/opt/app"));
    let ours = dir.path().join("ours");
    let out = stowage(&[
        "unpack",
        "-q",
        &format!("oci:{image}"),
        ours.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for f in ["opt/app/a.txt", "opt/app/sub/last"] {
        assert_eq!(
            std::fs::read(ours.join(f)).unwrap(),
            std::fs::read(rootfs.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(
        std::fs::read(ours.join("opt/app/sub/last")).unwrap(),
        vec![b'x'; 700]
    );
}
