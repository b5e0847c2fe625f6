//! A full disk: the push that runs out of space gets 507 (never a 500 or a reset), nothing it
//! wrote stays visible or takes space, earlier blobs stay intact, and the registry keeps working
//! (also after a restart) once space is available again.
//!
//! The data directory is a small tmpfs mounted for the test, so this test needs root (as CI has).

use std::path::{Path, PathBuf};
use std::process::Command;

use stowage_oci::{Algorithm, Digest};
use stowage_testkit::server::Server;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// A tmpfs of `mib` MiB, unmounted on drop (before its temp directory goes).
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("fs");
        std::fs::create_dir(&mnt).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs failed: this test needs root"
        );
        Tmpfs { mnt, _dir: dir }
    }

    fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn push(c: &reqwest::Client, url: &str, repo: &str, body: Vec<u8>) -> u16 {
    let d = Digest::of(Algorithm::Sha256, &body);
    let r = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    c.put(format!("{url}{loc}?digest={d}"))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_disk_gets_507_and_loses_nothing() {
    let fs = Tmpfs::mount(24);
    let data_dir = fs.path().join("data");
    let mut server = Server::spawn_with_data(&bin(), &data_dir, &[]);
    let c = reqwest::Client::new();
    let a = data(1 << 20, 1);
    let ad = Digest::of(Algorithm::Sha256, &a);
    assert_eq!(push(&c, &server.url, "full/a", a.clone()).await, 201);

    // A chunked upload: the first chunk fits, the second does not.
    let r = c
        .post(format!("{}/v2/full/b/blobs/uploads/", server.url))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let first = data(8 << 20, 2);
    let r = c
        .patch(format!("{}{loc}", server.url))
        .header("Content-Range", format!("0-{}", first.len() - 1))
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let second = data(20 << 20, 3);
    let r = c
        .patch(format!("{}{loc}", server.url))
        .header(
            "Content-Range",
            format!("{}-{}", first.len(), first.len() + second.len() - 1),
        )
        .body(second)
        .send()
        .await
        .expect("the server answers instead of resetting the connection");
    assert_eq!(r.status(), 507, "a full disk is 507");
    // The failed chunk was rolled back: the session still stands at the first chunk.
    let r = c.get(format!("{}{loc}", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", first.len() - 1).as_str()
    );
    // Cancelling frees the session's space; new pushes work again.
    assert_eq!(
        c.delete(format!("{}{loc}", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let small = data(4 << 20, 4);
    let sd = Digest::of(Algorithm::Sha256, &small);
    assert_eq!(push(&c, &server.url, "full/c", small.clone()).await, 201);
    // A monolithic push too big for what is left: 507, and its bytes do not linger.
    assert_eq!(
        push(&c, &server.url, "full/d", data(30 << 20, 5)).await,
        507
    );
    assert_eq!(push(&c, &server.url, "full/e", data(2 << 20, 6)).await, 201);

    // Everything acknowledged is intact, before and after a restart.
    for (repo, d, bytes) in [("full/a", &ad, &a), ("full/c", &sd, &small)] {
        let got = c
            .get(format!("{}/v2/{repo}/blobs/{d}", server.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &bytes[..]);
    }
    server.terminate();
    let server = Server::spawn_with_data(&bin(), &data_dir, &[]);
    for (repo, d, bytes) in [("full/a", &ad, &a), ("full/c", &sd, &small)] {
        let got = c
            .get(format!("{}/v2/{repo}/blobs/{d}", server.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &bytes[..]);
    }
}
