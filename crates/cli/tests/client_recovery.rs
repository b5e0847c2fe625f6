//! The client when things go wrong or point elsewhere: a push whose upload is cut midway
//! completes (against Stowage and CNCF distribution); a registry's credentials never reach
//! another host named by an upload `Location` or a tags `Link`; `copy` between two registries
//! does not hand the destination's `--creds` to the source; crafted whiteouts that name a
//! directory itself or its parent are refused; and an unprivileged unpack copes with
//! read-only directories (as Fedora's `/usr/bin`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use stowage_testkit::client::{StowageCli, TapProxy};
use stowage_testkit::distribution::Distribution;
use stowage_testkit::image::{ImageSpec, write_oci_layout};
use stowage_testkit::server::Server;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

#[test]
fn a_push_cut_midway_completes() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("big");
    let info = write_oci_layout(
        &layout,
        "v1",
        &ImageSpec::new("recovery").with_payload(6 << 20),
    );
    let server = Server::spawn(bin(), &[]);
    let dist = Distribution::spawn();
    for upstream in [server.addr.clone(), dist.addr.clone()] {
        let proxy = TapProxy::start(&upstream);
        // The connection carrying the 3 MiB-th uploaded byte is cut, once.
        proxy.cut_upload_once_after(3 << 20);
        let cli = StowageCli::new(bin());
        let out = cli.run(&[
            "push",
            &format!("oci:{}:v1", layout.display()),
            &format!("{}/team/cut:v1", proxy.addr),
        ]);
        assert!(
            out.success(),
            "{}",
            out.describe(&format!("push through a cut ({upstream})"))
        );
        assert_eq!(out.stdout.trim(), info.manifest_digest);
        assert!(
            out.stderr.contains("starting it again") || out.stderr.contains("resuming"),
            "the cut was noticed and recovered from: {}",
            out.stderr
        );
        // The registry holds the exact image.
        let check = cli.ok(&["digest", &format!("{upstream}/team/cut:v1")]);
        assert_eq!(check.stdout.trim(), info.manifest_digest);
        let pulled = dir.path().join(format!("p{}", upstream.replace(':', "_")));
        cli.ok(&[
            "pull",
            "-q",
            &format!("{upstream}/team/cut:v1"),
            pulled.to_str().unwrap(),
        ]);
    }
}

/// A minimal HTTP/1.1 server on a thread, answering with `respond` and recording every
/// request head.
struct Fake {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

fn fake(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (h, respond) = (heads.clone(), Arc::new(respond));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let (h, respond) = (h.clone(), respond.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    h.lock().unwrap().push(head.clone());
                    let resp = respond(&head);
                    if conn.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Fake { addr, heads }
}

fn http(status: &str, headers: &[(&str, String)], body: &str) -> String {
    let mut s = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s
}

#[test]
fn credentials_never_reach_another_host() {
    // B is "somewhere else": it answers uploads and tag pages and records what it is sent.
    let other = fake(|head| {
        if head.starts_with("PUT") {
            let digest = head
                .split("digest=")
                .nth(1)
                .and_then(|r| r.split([' ', '&']).next())
                .unwrap_or_default()
                .replace("%3A", ":");
            http("201 Created", &[("Docker-Content-Digest", digest)], "")
        } else {
            http(
                "200 OK",
                &[("Content-Type", "application/json".into())],
                r#"{"name":"team/app","tags":["b"]}"#,
            )
        }
    });
    let b = other.addr.clone();
    // A is the registry, asking for Basic credentials and pointing elsewhere.
    let registry = fake(move |head| {
        let authed = head.to_ascii_lowercase().contains("authorization: basic");
        let first = head.lines().next().unwrap_or_default().to_string();
        if !authed {
            return http(
                "401 Unauthorized",
                &[("WWW-Authenticate", "Basic realm=\"fake\"".into())],
                "",
            );
        }
        if first.starts_with("GET /v2/team/app/tags/list") {
            return http(
                "200 OK",
                &[
                    ("Content-Type", "application/json".into()),
                    (
                        "Link",
                        format!("<http://{b}/v2/team/app/tags/list?last=a>; rel=\"next\""),
                    ),
                ],
                r#"{"name":"team/app","tags":["a"]}"#,
            );
        }
        if first.starts_with("HEAD") {
            return http("404 Not Found", &[], "");
        }
        if first.starts_with("POST /v2/team/app/blobs/uploads/") {
            return http(
                "202 Accepted",
                &[("Location", format!("http://{b}/upload/1"))],
                "",
            );
        }
        if first.starts_with("PUT /v2/team/app/manifests/") {
            return http("201 Created", &[], "");
        }
        if first.starts_with("GET /v2/") {
            return http("200 OK", &[], "{}");
        }
        http("404 Not Found", &[], "")
    });
    let cli = StowageCli::new(bin());
    let tags = cli.ok(&[
        "tags",
        "--creds",
        "user:secret-pw",
        &format!("{}/team/app", registry.addr),
    ]);
    assert_eq!(tags.stdout.lines().collect::<Vec<_>>(), ["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("img");
    write_oci_layout(&layout, "v1", &ImageSpec::new("origin"));
    let push = cli.run(&[
        "push",
        "-q",
        "--creds",
        "user:secret-pw",
        &format!("oci:{}:v1", layout.display()),
        &format!("{}/team/app:v1", registry.addr),
    ]);
    assert!(push.success(), "{}", push.describe("push"));
    let seen = other.heads.lock().unwrap().join("\n---\n");
    assert!(
        seen.contains("PUT /upload/1"),
        "uploads went to the other host: {seen}"
    );
    assert!(seen.contains("GET /v2/team/app/tags/list?last=a"), "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("authorization"),
        "credentials reached another host:\n{seen}"
    );
    assert!(
        registry
            .heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("authorization: basic")),
        "the registry itself got them"
    );
}

#[test]
fn copy_keeps_each_registrys_credentials_to_itself() {
    let source = Server::spawn(bin(), &[]);
    let dest = Server::spawn(bin(), &[]);
    let tap = TapProxy::start(&source.addr);
    let cli = StowageCli::new(bin());
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("img");
    write_oci_layout(&layout, "v1", &ImageSpec::new("two-registries"));
    cli.ok(&[
        "push",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        &format!("{}/team/app:v1", source.addr),
    ]);
    tap.clear();
    cli.ok(&[
        "copy",
        "-q",
        "--creds",
        "destuser:dest-secret",
        &format!("{}/team/app:v1", tap.addr),
        &format!("{}/team/app:v1", dest.addr),
    ]);
    let sent = tap.sent_text().to_ascii_lowercase();
    assert!(sent.contains("get /v2/team/app/manifests/v1"), "{sent}");
    assert!(
        !sent.contains("authorization"),
        "the destination's --creds went to the source:\n{sent}"
    );
}

fn tar_layer(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, body) in entries {
        let mut h = tar::Header::new_ustar();
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, *body).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout holding one image made of `layers` (uncompressed tars).
fn layout_of(dir: &Path, layers: &[Vec<u8>]) {
    use stowage_testkit::image::{Blob, Image, Layer, sha256_digest, write_image_layout};
    let layers: Vec<Layer> = layers
        .iter()
        .map(|t| Layer {
            blob: Blob::new("application/vnd.oci.image.layer.v1.tar", t.clone()),
            diff_id: sha256_digest(t),
        })
        .collect();
    let config = serde_json::json!({"architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()}});
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(), "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>()});
    let image = Image {
        spec: ImageSpec::new("crafted"),
        layers,
        config,
        manifest: Blob::new(
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&manifest).unwrap(),
        ),
    };
    write_image_layout(dir, "v1", &image);
}

#[test]
fn whiteouts_naming_a_directory_or_its_parent_are_refused() {
    for evil in [".wh..", ".wh...", ".wh.", "a/.wh...", "a/.wh.."] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sentinel"), b"keep").unwrap();
        let layout = dir.path().join("img");
        layout_of(
            &layout,
            &[
                tar_layer(&[
                    ("a/", tar::EntryType::Directory, 0o755, b""),
                    ("a/f", tar::EntryType::Regular, 0o644, b"x"),
                ]),
                tar_layer(&[(evil, tar::EntryType::Regular, 0o644, b"")]),
            ],
        );
        let root = dir.path().join("root");
        let out = Command::new(bin())
            .args([
                "unpack",
                "-q",
                &format!("oci:{}:v1", layout.display()),
                root.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{evil}: unpacked");
        assert!(err.contains("refused"), "{evil}: {err}");
        assert!(
            dir.path().join("sentinel").exists(),
            "{evil}: deleted outside the root"
        );
        assert!(
            !root.exists(),
            "{evil}: a failed unpack leaves nothing half-written"
        );
    }
}

#[test]
fn an_unprivileged_unpack_copes_with_read_only_directories() {
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("setpriv is not installed: skipping");
        return;
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: cannot drop to another user; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let layout = dir.path().join("img");
    layout_of(
        &layout,
        &[
            tar_layer(&[
                ("usr/", tar::EntryType::Directory, 0o755, b""),
                ("usr/bin/", tar::EntryType::Directory, 0o555, b""),
                ("usr/bin/tool", tar::EntryType::Regular, 0o755, b"t"),
            ]),
            tar_layer(&[
                ("usr/bin/second", tar::EntryType::Regular, 0o755, b"s"),
                ("usr/bin/.wh.tool", tar::EntryType::Regular, 0o644, b""),
            ]),
        ],
    );
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&layout)
        .status();
    let root = dir.path().join("root");
    let out = Command::new(setpriv)
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin())
        .args([
            "unpack",
            "-q",
            &format!("oci:{}:v1", layout.display()),
            root.to_str().unwrap(),
        ])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(root.join("usr/bin/second").exists() && !root.join("usr/bin/tool").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.join("usr/bin"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o555, "the directory ends with its own mode");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
