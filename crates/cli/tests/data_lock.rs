//! One `stowage serve` per data directory: a second one on the same directory refuses to start
//! and says why, and the directory is free again once the first is gone (even after kill -9).

use std::path::PathBuf;
use std::process::Command;

use stowage_testkit::server::Server;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

fn second_serve(data: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env_remove("STOWAGE_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_second_server_on_one_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Server::spawn_with_data(&bin(), &data, &[]);
    let out = second_serve(&data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by process"), "{err}");
    assert!(
        err.contains(&first.pid().unwrap().to_string()),
        "names the holder: {err}"
    );
    assert!(err.contains(&data.display().to_string()), "{err}");
    // The first one is unaffected.
    let resp = reqwest::get(format!("http://{}/v2/", first.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // kill -9 leaves no stale lock behind: the kernel releases it with the process.
    first.kill9();
    let mut again = Server::spawn_with_data(&bin(), &data, &[]);
    let resp = reqwest::get(format!("http://{}/v2/", again.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(again.terminate(), Some(0));
}
