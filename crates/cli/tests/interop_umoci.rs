//! Interop with umoci: layer contents survive a trip through the registry intact.
//!
//! The test pushes a testkit image with skopeo, pulls it back into a fresh OCI layout, and has
//! umoci (an independent OCI implementation) validate and unpack it into a root filesystem whose
//! files, modes and symlink are then checked. A missing umoci or skopeo fails the test.

use stowage_testkit::image::{self, ImageSpec};
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::target::Registry;
use stowage_testkit::tools::{require_tool, run};

#[test]
fn umoci_unpacks_an_image_pulled_from_the_registry() {
    let umoci = require_tool("umoci");
    let reg = Registry::start(env!("CARGO_BIN_EXE_stowage"));
    let sk = Skopeo::new();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let spec = ImageSpec::new("umoci").with_layers(3).with_payload(300_000);
    let info = image::write_oci_layout(&src, "v1", &spec);

    let remote = reg.docker_ref("interop/umoci", "v1");
    sk.copy(&format!("oci:{}:v1", src.display()), &remote, &[]);
    let out = tmp.path().join("pulled");
    sk.copy(
        &remote,
        &format!("oci:{}:v1", out.display()),
        &["--preserve-digests"],
    );
    assert_eq!(
        image::layout_ref_digest(&out, "v1"),
        Some(info.manifest_digest.clone())
    );

    let bundle = tmp.path().join("bundle");
    run(std::process::Command::new(&umoci)
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", out.display()))
        .arg(&bundle));
    image::assert_rootfs(&bundle.join("rootfs"), &spec);
}
