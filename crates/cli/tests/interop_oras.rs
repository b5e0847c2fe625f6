//! Interop with the ORAS Python SDK (`oras` on PyPI): OCI artifacts that are not images.
//!
//! The test starts its own registry and runs a Python script (written to a temp dir) that
//! pushes a file as an artifact with a custom config media type and annotations and pulls it
//! back; pushes an OCI 1.1 artifact (`artifactType`, the empty config, a `subject` pointing at
//! the first artifact) and pulls that too; and pushes a third with a chunked upload (a PATCH with
//! Content-Range per chunk). The test compares the bytes, checks the stored manifest over HTTP
//! and with skopeo, and on stowage also checks the referrers API (the reference registry
//! predates it). A missing python3 or `oras` package fails the test: CI installs them.

use serde_json::Value;
use stowage_testkit::image::{OCI_INDEX, OCI_MANIFEST, sha256_digest};
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::target::{Kind, Registry};
use stowage_testkit::tools::{require_tool, run, try_run};
use stowage_testkit::wire;

const ARTIFACT_TYPE: &str = "application/vnd.stowage.test.sbom.v1+json";

const SCRIPT: &str = r#"
import json, os, sys
import oras.oci
import oras.provider

addr, work = sys.argv[1], sys.argv[2]
os.chdir(work)
reg = oras.provider.Registry(hostname=addr, insecure=True)

# 1. A classic ORAS artifact: one file, a custom config type, manifest annotations.
target = f"{addr}/interop/artifact:v1"
resp = reg.push(
    target=target,
    files=["payload.bin:application/vnd.stowage.test.payload"],
    manifest_config="config.json:application/vnd.stowage.test.config+json",
    manifest_annotations={"org.stowage.test": "oras-py"},
    disable_path_validation=True,
    quiet=True,
)
subject_digest = resp.headers["Docker-Content-Digest"]
pulled = reg.pull(target=target, outdir="pulled")

# 2. An OCI 1.1 artifact with artifactType and the empty config, referring to the first one.
container = reg.get_container(f"{addr}/interop/artifact:sbom")
empty = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
    "data": "e30=",
}
with open("empty.json", "wb") as f:
    f.write(b"{}")
reg._check_200_response(reg.upload_blob("empty.json", container, empty))
layer = oras.oci.NewLayer("sbom.json", media_type="application/spdx+json")
layer["annotations"] = {"org.opencontainers.image.title": "sbom.json"}
reg._check_200_response(reg.upload_blob("sbom.json", container, layer))
subject = reg.do_request(
    f"http://{addr}/v2/interop/artifact/manifests/{subject_digest}",
    "GET",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
)
reg._check_200_response(subject)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "artifactType": sys.argv[3],
    "config": empty,
    "layers": [layer],
    "subject": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": subject_digest,
        "size": len(subject.content),
    },
    "annotations": {"org.stowage.test": "artifact"},
}
resp = reg.upload_manifest(manifest, container)
reg._check_200_response(resp)
pulled_sbom = reg.pull(target=f"{addr}/interop/artifact:sbom", outdir="pulled-sbom")

# 3. A chunked upload (POST, PATCH with Content-Range per chunk, PUT with the digest).
chunked = f"{addr}/interop/chunked:v1"
reg.push(
    target=chunked,
    files=["chunked.bin"],
    do_chunked=True,
    chunk_size=32768,
    disable_path_validation=True,
    quiet=True,
)
reg.pull(target=chunked, outdir="pulled-chunked")

print(json.dumps({
    "subject_digest": subject_digest,
    "artifact_digest": resp.headers.get("Docker-Content-Digest"),
    "oci_subject": resp.headers.get("OCI-Subject"),
    "pulled": pulled,
    "pulled_sbom": pulled_sbom,
}))
"#;

#[test]
fn oras_pushes_and_pulls_artifacts() {
    let python = require_tool("python3");
    let check = try_run(std::process::Command::new(&python).args(["-c", "import oras.provider"]));
    assert!(
        check.success(),
        "{}",
        check.describe("the `oras` Python package is missing (.ci/run installs it)")
    );

    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let payload: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"stowage-interop"}"#;
    std::fs::write(work.join("payload.bin"), &payload).unwrap();
    std::fs::write(
        work.join("config.json"),
        br#"{"created_by":"stowage interop"}"#,
    )
    .unwrap();
    std::fs::write(work.join("sbom.json"), sbom).unwrap();
    let chunked: Vec<u8> = payload.iter().rev().copied().chain(*b"tail").collect();
    std::fs::write(work.join("chunked.bin"), &chunked).unwrap();
    std::fs::write(work.join("push_pull.py"), SCRIPT).unwrap();

    let out = run(std::process::Command::new(&python)
        .arg(work.join("push_pull.py"))
        .args([reg.addr.as_str(), work.to_str().unwrap(), ARTIFACT_TYPE]));
    let last = out.stdout.lines().last().unwrap_or_default();
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{}", out.describe(&format!("no JSON result ({e})"))));
    let subject_digest = result["subject_digest"]
        .as_str()
        .expect("subject digest")
        .to_string();
    let artifact_digest = result["artifact_digest"]
        .as_str()
        .expect("artifact digest")
        .to_string();

    // Pulled bytes equal pushed bytes.
    assert_eq!(
        std::fs::read(work.join("pulled/payload.bin")).unwrap(),
        payload
    );
    assert_eq!(
        std::fs::read(work.join("pulled-sbom/sbom.json")).unwrap(),
        sbom
    );
    assert_eq!(
        std::fs::read(work.join("pulled-chunked/chunked.bin")).unwrap(),
        chunked
    );

    // The classic artifact keeps its config media type and annotations.
    let sk = Skopeo::new();
    let raw = sk.inspect_raw(&reg.docker_ref("interop/artifact", "v1"));
    assert_eq!(sha256_digest(&raw), subject_digest);
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.stowage.test.config+json"
    );
    assert_eq!(m["annotations"]["org.stowage.test"], "oras-py");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.stowage.test.payload"
    );

    // The OCI 1.1 artifact is stored byte-exact with its artifactType and subject.
    let resp = wire::get_blocking(
        &reg.addr,
        "/v2/interop/artifact/manifests/sbom",
        &[("Accept", OCI_MANIFEST)],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(
        resp.header("Docker-Content-Digest"),
        Some(artifact_digest.as_str())
    );
    assert_eq!(sha256_digest(&resp.body), artifact_digest);
    let artifact = resp.json();
    assert_eq!(artifact["artifactType"], ARTIFACT_TYPE);
    assert_eq!(artifact["subject"]["digest"], subject_digest.as_str());
    let raw = sk.inspect_raw(&reg.docker_ref("interop/artifact", "sbom"));
    assert_eq!(
        serde_json::from_slice::<Value>(&raw).unwrap()["artifactType"],
        ARTIFACT_TYPE
    );

    if reg.kind == Kind::Stowage {
        check_referrers(&reg, &subject_digest, &artifact_digest, &result);
    }
}

/// OCI 1.1: the push answered with OCI-Subject and the referrers API lists the artifact.
fn check_referrers(reg: &Registry, subject: &str, artifact: &str, result: &Value) {
    assert_eq!(
        result["oci_subject"], subject,
        "manifest PUT with a subject must answer OCI-Subject"
    );
    let path = format!("/v2/interop/artifact/referrers/{subject}");
    let resp = wire::get_blocking(&reg.addr, &path, &[]).unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.header("Content-Type"), Some(OCI_INDEX));
    let index = resp.json();
    let found: Vec<&Value> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .collect();
    assert_eq!(found.len(), 1, "{index}");
    assert_eq!(found[0]["digest"], artifact);
    assert_eq!(found[0]["artifactType"], ARTIFACT_TYPE);
    assert_eq!(found[0]["annotations"]["org.stowage.test"], "artifact");

    // '+' must be percent-encoded in a query, or it reads as a space.
    let query = ARTIFACT_TYPE.replace('+', "%2B");
    let filtered =
        wire::get_blocking(&reg.addr, &format!("{path}?artifactType={query}"), &[]).unwrap();
    assert_eq!(filtered.status, 200);
    assert_eq!(filtered.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(filtered.json()["manifests"].as_array().unwrap().len(), 1);
    let other = wire::get_blocking(
        &reg.addr,
        &format!("{path}?artifactType=application/x-none"),
        &[],
    )
    .unwrap();
    assert_eq!(other.status, 200);
    assert!(other.json()["manifests"].as_array().unwrap().is_empty());
}
