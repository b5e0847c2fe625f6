//! `stowage fsck`, the binary, on the data directory of a server whose blob and metadata stores
//! failed under it at 10% of their calls (transient errors, full disk, lost connections, torn
//! writes, links whose answers were lost) while a client pushed blobs and manifests with
//! retries: the store is consistent (`--deep`: every byte hashed) and holds every acknowledged
//! blob; and the same check does catch a blob lost afterwards.
//!
//! The server runs in-process over wrapped stores (the rig of the server crate's fault tests).

#[path = "../../server/tests/fault_rig/mod.rs"]
mod fault_rig;

use std::collections::BTreeSet;

use fault_rig::Rig;
use stowage_oci::{Algorithm, Digest};
use stowage_storage::IoFault;
use stowage_testkit::fault::{Fault, Rng};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");
const SEED: u64 = 21;

fn fsck(data: &std::path::Path) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(BIN)
        .args(["fsck", "--data", data.to_str().unwrap(), "--deep", "--json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// Send until the answer is not a clean 503/507 (any other answer ends the loop).
async fn until_done(rig: &Rig, make: impl Fn() -> reqwest::RequestBuilder) -> u16 {
    for _ in 0..20 {
        let r = make().send().await.unwrap();
        let s = r.status().as_u16();
        match s {
            503 => assert!(r.headers().contains_key("retry-after")),
            507 => {}
            _ => return s,
        }
    }
    panic!(
        "still failing after 20 attempts (seed {SEED}): {:?}",
        rig.plan.injected()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fsck_binary_finds_a_store_that_survived_faults_consistent() {
    let rig = Rig::start(SEED, false).await;
    rig.plan.random(
        None,
        0.10,
        &[
            Fault::Unavailable,
            Fault::Full,
            Fault::LostConnection,
            Fault::Io(IoFault::Partial {
                keep: 5,
                errno: 110,
            }),
            Fault::Io(IoFault::AfterEffect(110)),
        ],
    );
    let mut rng = Rng::new(SEED);
    let mut acked = BTreeSet::new();
    let mut layers = Vec::new();
    for i in 0..60 {
        let len = 50 + rng.below(40_000) as usize;
        let data = rng.bytes(len);
        let d = Digest::of(Algorithm::Sha256, &data);
        let url = format!("{}/v2/app/blobs/uploads/?digest={d}", rig.url);
        let status = until_done(&rig, || rig.http.post(&url).body(data.clone())).await;
        assert_eq!(status, 201, "push {i}");
        acked.insert(d.clone());
        layers.push((d, data.len()));
        if layers.len() == 3 {
            let descs: Vec<String> = layers
                .iter()
                .map(|(d, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#))
                .collect();
            let (cd, cn) = &layers[0];
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cn}}},"layers":[{}]}}"#,
                descs[1..].join(",")
            );
            let url = format!("{}/v2/app/manifests/t{i}", rig.url);
            let status = until_done(&rig, || {
                rig.http
                    .put(&url)
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .body(m.clone())
            })
            .await;
            assert_eq!(status, 201, "manifest {i}");
            layers.clear();
        }
    }
    rig.plan.clear();
    assert!(
        rig.plan.injected().len() > 20,
        "too few faults: {:?}",
        rig.plan.injected()
    );

    let (code, report) = fsck(rig.dir.path());
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["consistent"], true, "{report:#}");
    assert_eq!(
        report["counts"]["blob_records"],
        acked.len() as u64,
        "{report:#}"
    );
    assert_eq!(report["counts"]["tags"], 20, "{report:#}");

    // The check is real: a blob lost afterwards is an integrity error naming it.
    let lost = acked.iter().next().unwrap();
    let hex = lost.hex();
    std::fs::remove_file(
        rig.dir
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex),
    )
    .unwrap();
    let (code, report) = fsck(rig.dir.path());
    assert_eq!(code, 1, "{report:#}");
    assert!(report.to_string().contains(&lost.to_string()), "{report:#}");
}
