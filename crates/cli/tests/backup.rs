//! `stowage backup` against a running, writing server: images pushed before the backup come
//! back from a server started on the backup with the same digests, users, tokens and signing
//! keys (a JWT the original server issued is accepted by the restore) while another push was
//! in flight; the backup is private (0700, database 0600); a non-empty destination is a usage
//! error (exit 2) and is left alone.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use stowage_testkit::client::{StowageCli, add_user};
use stowage_testkit::image::{self, ImageSpec};
use stowage_testkit::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");
const USER: &str = "alice";
const PASSWORD: &str = "alice-password-1";

fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

#[test]
fn backup_while_serving_restores_every_image_and_account() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_user(
        BIN,
        &data,
        USER,
        PASSWORD,
        &["team/**:pull,push,delete", "registry:catalog:*"],
    );
    let server = Server::spawn_with_data(Path::new(BIN), &data, &["--auth"]);
    let c = StowageCli::new(BIN);
    let mut pushed = Vec::new();
    for (i, repo) in ["team/app", "team/db", "team/app"].iter().enumerate() {
        let layout = tmp.path().join(format!("layout{i}"));
        let info = image::write_oci_layout(
            &layout,
            "v1",
            &ImageSpec::new(&format!("backup-{i}")).with_layers(2),
        );
        let reference = format!("{}/{repo}:t{i}", server.addr);
        c.ok(&[
            "push",
            "-q",
            "--creds",
            &creds(),
            &format!("oci:{}:v1", layout.display()),
            &reference,
        ]);
        pushed.push((format!("{repo}:t{i}"), info.manifest_digest));
    }
    let token = c.ok_line(&[
        "token",
        "create",
        "--user",
        USER,
        "--scope",
        "repository:team/**:pull",
        "--data",
        data.to_str().unwrap(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jwt = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/auth/token?service=stowage&scope=repository:team/app:pull",
                server.url
            ))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["token"].as_str().unwrap().to_string()
    });

    // An upload session left half done, and a big push in flight while the backup runs.
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/v2/team/app/blobs/uploads/", server.url))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let url = if location.starts_with('/') {
            format!("{}{location}", server.url)
        } else {
            location
        };
        let r = http
            .patch(url)
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/octet-stream")
            .body(vec![7u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    });
    let big = tmp.path().join("big");
    let big_info = image::write_oci_layout(
        &big,
        "v1",
        &ImageSpec::new("backup-big").with_payload(48 << 20),
    );
    let big_ref = format!("{}/team/big:v1", server.addr);
    let pusher = {
        let (c2, src, dst) = (
            StowageCli::new(BIN),
            format!("oci:{}:v1", big.display()),
            big_ref.clone(),
        );
        std::thread::spawn(move || c2.run(&["push", "-q", "--creds", &creds(), &src, &dst]))
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let dest = tmp.path().join("backup");
    let out = c.run(&[
        "backup",
        "--data",
        data.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    assert!(out.success(), "{}", out.describe("backup failed"));
    assert!(
        out.stdout.contains("every digest verified"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("upload session(s) in progress were not backed up"),
        "{}",
        out.describe("the skipped upload session is reported")
    );
    eprintln!("backup: {}{}", out.stdout, out.stderr);
    let big_pushed = pusher.join().unwrap().success();

    // Private.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dest), 0o700);
    assert_eq!(mode(&dest.join("metadata.db")), 0o600);

    // The original server goes away; the backup is served.
    drop(server);
    let restored = Server::spawn_with_data(Path::new(BIN), &dest, &["--auth"]);
    for (name, digest) in &pushed {
        let to = tmp
            .path()
            .join(format!("pulled-{}", name.replace(['/', ':'], "-")));
        let got = c.ok_line(&[
            "pull",
            "-q",
            "--creds",
            &creds(),
            &format!("{}/{name}", restored.addr),
            &format!("oci:{}:x", to.display()),
        ]);
        assert_eq!(&got, digest, "{name}");
    }
    // The in-flight push is either whole in the backup or absent, never half there.
    let big_tags = c.run(&[
        "tags",
        "--creds",
        &creds(),
        &format!("{}/team/big", restored.addr),
    ]);
    if big_tags.success() && big_tags.stdout.contains("v1") {
        let got = c.ok_line(&[
            "pull",
            "-q",
            "--creds",
            &creds(),
            &format!("{}/team/big:v1", restored.addr),
            &format!("oci:{}:x", tmp.path().join("pulled-big").display()),
        ]);
        assert_eq!(got, big_info.manifest_digest);
    }
    eprintln!("the concurrent push finished: {big_pushed}");
    // The access token and the signing keys came along.
    let got = c.ok_line(&[
        "digest",
        "--token",
        &token,
        "--creds",
        USER,
        &format!("{}/team/db:t1", restored.addr),
    ]);
    assert_eq!(got, pushed[1].1);
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{}/v2/team/app/tags/list", restored.url))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a JWT of the original server is valid on the restore"
        );
    });
}

#[test]
fn backup_refuses_a_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::spawn_with_data(Path::new(BIN), &data, &[]);
    assert_eq!(server.terminate(), Some(0));
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), b"mine").unwrap();
    let c = StowageCli::new(BIN);
    let out = c.run(&[
        "backup",
        "--data",
        data.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.describe("exit code"));
    assert!(out.stderr.contains("not empty"), "{}", out.stderr);
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"mine");
    // No registry at the source is a failure (1), and writes nothing.
    let out = c.run(&[
        "backup",
        "--data",
        tmp.path().join("nothing").to_str().unwrap(),
        tmp.path().join("d2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe("exit code"));
    assert!(!tmp.path().join("d2").exists());
    // An empty existing directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    c.ok(&[
        "backup",
        "-q",
        "--data",
        data.to_str().unwrap(),
        empty.to_str().unwrap(),
    ]);
    assert!(empty.join("metadata.db").exists());
}
