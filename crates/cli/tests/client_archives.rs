//! `oci-archive:` and `docker-archive:` with the client: archives written by `stowage pull` /
//! `copy` are imported by `ctr images import` (with the same image digest) and read by skopeo;
//! archives are pushed back with their digests preserved; a docker archive in the classic
//! `docker save` layout (uncompressed layer tars, `manifest.json` only) is pushed too; an archive
//! with an entry escaping its directory is refused.

use std::path::Path;
use std::process::Command;

use stowage_testkit::containerd::Containerd;
use stowage_testkit::image::{ImageSpec, write_oci_layout};
use stowage_testkit::server::Server;
use stowage_testkit::tools::{require_tool, run};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

fn stowage(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(args: &[&str]) -> String {
    let (good, out, err) = stowage(args);
    assert!(good, "stowage {args:?} failed:\n{err}");
    out
}

#[test]
fn archives_round_trip_and_import_into_containerd() {
    require_tool("ctr");
    require_tool("skopeo");
    let server = Server::spawn(bin(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let info = write_oci_layout(&layout, "v1", &ImageSpec::new("archives").with_layers(2));
    let reg = format!("{}/team/arch:v1", server.addr);
    assert_eq!(
        ok(&["push", "-q", &format!("oci:{}:v1", layout.display()), &reg]),
        info.manifest_digest
    );

    let oci = dir.path().join("img-oci.tar");
    let docker = dir.path().join("img-docker.tar");
    assert_eq!(
        ok(&[
            "pull",
            "-q",
            &reg,
            &format!("oci-archive:{}:v1", oci.display())
        ]),
        info.manifest_digest
    );
    assert_eq!(
        ok(&[
            "copy",
            "-q",
            &reg,
            &format!("docker-archive:{}", docker.display())
        ]),
        info.manifest_digest
    );

    // skopeo reads both.
    run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:v1", oci.display()),
    ]))
    .ok();
    run(Command::new("skopeo").args(["inspect", &format!("docker-archive:{}", docker.display())]))
        .ok();

    // containerd imports both, keeping the manifest digest.
    let ctrd = Containerd::start();
    for (archive, name) in [(&oci, "oci"), (&docker, "docker")] {
        let out = run(ctrd
            .ctr()
            .args([
                "images",
                "import",
                "--snapshotter",
                "native",
                "--base-name",
                &format!("import.local/{name}"),
            ])
            .arg(archive));
        assert!(
            out.success(),
            "{}",
            out.describe(&format!("ctr import of the {name} archive"))
        );
        let list = run(ctrd.ctr().args(["images", "ls"]));
        let text = &list.stdout;
        assert!(
            text.contains(&info.manifest_digest),
            "{name} archive: digest not in\n{text}"
        );
    }
    let listed = run(ctrd.ctr().args(["images", "ls", "-q"])).stdout;
    assert!(
        listed.contains(&reg),
        "docker archive named after the image: {listed}"
    );

    // Both push back with the digest preserved.
    for (archive, kind, repo) in [
        (&oci, "oci-archive", "back-oci"),
        (&docker, "docker-archive", "back-docker"),
    ] {
        let dest = format!("{}/team/{repo}:v1", server.addr);
        let suffix = if kind == "oci-archive" { ":v1" } else { "" };
        assert_eq!(
            ok(&[
                "push",
                "-q",
                &format!("{kind}:{}{suffix}", archive.display()),
                &dest
            ]),
            info.manifest_digest,
            "{kind}"
        );
    }
}

#[test]
fn classic_docker_save_archives_are_pushed() {
    let server = Server::spawn(bin(), &[]);
    let dir = tempfile::tempdir().unwrap();
    // `docker save` of old: uncompressed layer tars under <id>/layer.tar and manifest.json.
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("hello.txt").unwrap();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_cksum();
    layer.append(&h, &b"hello\n"[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = stowage_testkit::image::sha256_digest(&layer);
    let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[diff_id]},"config":{}});
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = stowage_testkit::image::sha256_digest(&config)
        .trim_start_matches("sha256:")
        .to_string();
    let save = dir.path().join("save");
    std::fs::create_dir_all(save.join("abc")).unwrap();
    std::fs::write(save.join("abc/layer.tar"), &layer).unwrap();
    std::fs::write(save.join(format!("{config_hex}.json")), &config).unwrap();
    std::fs::write(
        save.join("manifest.json"),
        serde_json::json!([{"Config": format!("{config_hex}.json"), "RepoTags": ["old:save"], "Layers": ["abc/layer.tar"]}]).to_string(),
    )
    .unwrap();
    let archive = dir.path().join("old.tar");
    let f = std::fs::File::create(&archive).unwrap();
    let mut t = tar::Builder::new(f);
    t.append_dir_all(".", &save).unwrap();
    t.into_inner().unwrap();
    let dest = format!("{}/team/old:v1", server.addr);
    let digest = ok(&[
        "push",
        "-q",
        &format!("docker-archive:{}", archive.display()),
        &dest,
    ]);
    // Unpacked from the registry, the file is there (the layer and diff_id agree).
    let root = dir.path().join("root");
    assert_eq!(ok(&["unpack", "-q", &dest, root.to_str().unwrap()]), digest);
    assert_eq!(std::fs::read(root.join("hello.txt")).unwrap(), b"hello\n");
}

#[test]
fn archives_with_escaping_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("evil.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    let name = b"../escaped";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let (good, _, err) = stowage(&["inspect", &format!("oci-archive:{}", archive.display())]);
    assert!(!good);
    assert!(err.contains("refused"), "{err}");
    assert!(!dir.path().join("escaped").exists());
}
