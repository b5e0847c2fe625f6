//! `stowage fsck` on the data directory of a running server: consistent after real pushes
//! (text and JSON), exit 1 naming the blob when bytes go missing or rot (`--deep`), orphans
//! reported only past the grace period and removed by `--repair` without touching anything a
//! record names, and exit 2 where there is no store.

use std::path::{Path, PathBuf};

use stowage_testkit::client::{StowageCli, assert_failed_cleanly, assert_usage_error};
use stowage_testkit::image::{self, ImageSpec};
use stowage_testkit::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn blob_file(data: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn json(out: &stowage_testkit::tools::Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.describe("not JSON")))
}

#[test]
fn fsck_checks_a_live_store_and_repairs_only_orphans() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::spawn_with_data(Path::new(BIN), &data, &[]);
    let c = StowageCli::new(BIN);
    let mut layers = Vec::new();
    for (i, repo) in ["team/app", "team/db"].iter().enumerate() {
        let info = image::write_oci_layout(
            &tmp.path().join(format!("l{i}")),
            "v1",
            &ImageSpec::new(&format!("fsck-{i}")).with_layers(2),
        );
        c.push_layout(&info, &format!("{}/{repo}:v1", server.addr), &["-q"]);
        let manifest = image::layout_blob(&info.dir, &info.manifest_digest);
        layers.extend(image::manifest_blob_digests(&manifest));
    }
    let d = data.to_str().unwrap();

    // Consistent while the server runs, in both formats.
    let out = c.ok(&["fsck", "--data", d, "--deep"]);
    assert!(
        out.stdout.contains("consistent: no integrity errors"),
        "{}",
        out.stdout
    );
    let report = json(&c.ok(&["fsck", "--data", d, "--json"]));
    assert_eq!(report["consistent"], true);
    assert_eq!(report["counts"]["tags"], 2);
    assert_eq!(report["counts"]["manifests"], 2);
    assert_eq!(report["counts"]["blob_records"], layers.len() as u64);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);

    // Bytes a record names vanish: exit 1, the blob named, in text and JSON.
    let gone = layers[1].clone();
    let gone_file = blob_file(&data, &gone);
    let saved = std::fs::read(&gone_file).unwrap();
    std::fs::remove_file(&gone_file).unwrap();
    let out = c.run(&["fsck", "--data", d]);
    assert_failed_cleanly(&out);
    assert!(
        out.stdout.contains("blob_missing") && out.stdout.contains(&gone),
        "{}",
        out.stdout
    );
    let out = c.run(&["fsck", "--data", d, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["consistent"], false);
    assert_eq!(report["errors"][0]["kind"], "blob_missing");
    assert_eq!(report["errors"][0]["digest"], gone.as_str());

    // Put back rotten: same size, so only --deep sees it.
    let mut rotten = saved.clone();
    rotten[saved.len() / 2] ^= 1;
    std::fs::write(&gone_file, &rotten).unwrap();
    c.ok(&["fsck", "--data", d]);
    let out = c.run(&["fsck", "--data", d, "--deep", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe("deep"));
    assert_eq!(json(&out)["errors"][0]["kind"], "blob_corrupt");
    std::fs::write(&gone_file, &saved).unwrap();

    // An orphan: bytes no record names. Young, it is in flight; past the grace period it is a
    // warning (exit 0), and --repair removes it and nothing else.
    let orphan = image::sha256_digest(b"orphan bytes");
    let orphan_file = blob_file(&data, &orphan);
    std::fs::create_dir_all(orphan_file.parent().unwrap()).unwrap();
    std::fs::write(&orphan_file, b"orphan bytes").unwrap();
    let report = json(&c.ok(&["fsck", "--data", d, "--json"]));
    assert_eq!(report["counts"]["in_flight"], 1);
    assert_eq!(report["warnings"].as_array().unwrap().len(), 0);
    let out = c.ok(&["fsck", "--data", d, "--grace", "0s"]);
    assert!(
        out.stdout.contains("orphan_blob") && out.stdout.contains("--repair"),
        "{}",
        out.stdout
    );
    assert!(orphan_file.exists());
    let report = json(&c.ok(&[
        "fsck", "--data", d, "--grace", "0s", "--repair", "--deep", "--json",
    ]));
    assert_eq!(report["repaired"][0]["digest"], orphan.as_str());
    assert!(!orphan_file.exists());
    assert!(layers.iter().all(|l| blob_file(&data, l).exists()));
    let report = json(&c.ok(&["fsck", "--data", d, "--grace", "0s", "--json"]));
    assert_eq!(report["warnings"].as_array().unwrap().len(), 0);

    // The server still serves everything.
    let out = c.ok(&[
        "pull",
        &format!("{}/team/app:v1", server.addr),
        &format!("oci:{}", tmp.path().join("pulled").display()),
    ]);
    assert!(out.success());
}

#[test]
fn fsck_without_a_store_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let c = StowageCli::new(BIN);
    let out = c.run(&["fsck", "--data", tmp.path().to_str().unwrap()]);
    assert_usage_error(&out);
    assert!(out.stderr.contains("no registry here"), "{}", out.stderr);
    let out = c.run(&[
        "fsck",
        "--data",
        tmp.path().to_str().unwrap(),
        "--grace",
        "soon",
    ]);
    assert_usage_error(&out);
}
