//! Resuming an interrupted blob download of `stowage pull`: cut for real by a loopback relay,
//! or left as a partial file, without ever publishing a corrupt blob. Each test has its own
//! server and its own `$DOCKER_CONFIG`.

use std::path::{Path, PathBuf};

use stowage_testkit::client::{StowageCli, TapProxy, assert_failed_cleanly, last_line};
use stowage_testkit::image::{
    self, ImageSpec, LayoutInfo, assert_same_image, layout_blob, layout_blob_files,
    manifest_blob_digests, oci,
};
use stowage_testkit::server::Server;

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

fn cli() -> StowageCli {
    StowageCli::new(BIN)
}

/// A registry holding one image with an 8 MiB (incompressible) layer, reached through a relay.
struct Big {
    server: Server,
    proxy: TapProxy,
    info: LayoutInfo,
    /// The big layer's digest and size.
    layer: String,
    size: u64,
    _tmp: tempfile::TempDir,
}

const PAYLOAD: usize = 8 << 20;

fn big_image(seed: &str) -> Big {
    let server = Server::spawn(Path::new(BIN), &[]);
    let tmp = tempfile::tempdir().unwrap();
    let info = image::write_oci_layout(
        &tmp.path().join("src"),
        "v1",
        &ImageSpec::new(seed).with_payload(PAYLOAD),
    );
    let c = cli();
    c.push_layout(&info, &format!("{}/team/big:v1", server.addr), &["-q"]);
    let manifest = layout_blob(&info.dir, &info.manifest_digest);
    let layer = manifest_blob_digests(&manifest)[1].clone();
    let size = layout_blob(&info.dir, &layer).len() as u64;
    assert!(size > PAYLOAD as u64, "the payload is incompressible");
    let proxy = TapProxy::start(&server.addr);
    Big {
        server,
        proxy,
        info,
        layer,
        size,
        _tmp: tmp,
    }
}

impl Big {
    fn reference(&self) -> String {
        format!("{}/team/big:v1", self.proxy.addr)
    }

    fn partial(&self, dir: &Path) -> PathBuf {
        let hex = self.layer.strip_prefix("sha256:").unwrap();
        dir.join("blobs/sha256").join(format!(".{hex}.partial"))
    }

    fn layer_bytes(&self) -> Vec<u8> {
        layout_blob(&self.info.dir, &self.layer)
    }

    /// The `Range` headers clients sent through the relay (lowercased).
    fn ranges(&self) -> Vec<String> {
        self.proxy
            .sent_text()
            .to_lowercase()
            .lines()
            .filter(|l| l.starts_with("range:"))
            .map(|l| l.trim().to_string())
            .collect()
    }
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    let big = big_image("client-resume-cut");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");

    // Every connection is cut after 1 MiB towards the client. The pull resumes within the run
    // (a few times, each from what it holds), then gives up with the bytes kept.
    big.proxy.cut_after(Some(1 << 20));
    let first = c.run(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert!(
        !first.success(),
        "{}",
        first.describe("the cut pull succeeded")
    );
    assert!(
        big.ranges().iter().any(|r| r.starts_with("range: bytes=")),
        "the pull resumed with Range requests within the run: {:?}",
        big.ranges()
    );
    assert!(first.stderr.contains("resuming"), "{}", first.stderr);
    assert!(!first.stderr.contains("panicked"), "{}", first.stderr);
    assert!(
        !image::layout_blob_path(&dest, &big.layer).exists(),
        "an incomplete blob was published"
    );
    let held = std::fs::metadata(big.partial(&dest))
        .unwrap_or_else(|e| {
            panic!(
                "no partial file after the cut ({e}): {:?}",
                layout_blob_files(&dest)
            )
        })
        .len();
    assert!(
        held > 0 && held < big.size,
        "partial file holds {held} of {} bytes",
        big.size
    );
    assert_eq!(
        std::fs::read(big.partial(&dest)).unwrap(),
        big.layer_bytes()[..held as usize],
        "the partial file holds a prefix of the blob"
    );

    big.proxy.cut_after(None);
    big.proxy.clear();
    let second = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&second), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    assert!(!big.partial(&dest).exists());
    let want = format!("range: bytes={held}-{}", big.size - 1);
    assert!(
        big.ranges().contains(&want),
        "expected `{want}` among {:?}",
        big.ranges()
    );
    drop(big.server);
}

#[test]
fn a_pull_resumes_from_a_partial_file() {
    let big = big_image("client-resume-half");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    let half = big.size / 2;
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    std::fs::write(big.partial(&dest), &big.layer_bytes()[..half as usize]).unwrap();

    let out = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&out), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    assert!(!big.partial(&dest).exists());
    let want = format!("range: bytes={half}-{}", big.size - 1);
    assert!(
        big.ranges().contains(&want),
        "expected `{want}` among {:?}",
        big.ranges()
    );
}

#[test]
fn a_corrupt_partial_file_never_becomes_a_blob() {
    let big = big_image("client-resume-corrupt");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    let half = (big.size / 2) as usize;
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    let mut wrong = big.layer_bytes()[..half].to_vec();
    for b in wrong.iter_mut().step_by(4096) {
        *b ^= 0xff;
    }
    std::fs::write(big.partial(&dest), &wrong).unwrap();

    let first = c.run(&["pull", &big.reference(), &oci(&dest, "v1")]);
    let layer_path = image::layout_blob_path(&dest, &big.layer);
    if first.success() {
        // Restarted cleanly: the content must be right.
        assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    } else {
        // Refused: with a digest error, nothing published, the bad partial file gone.
        assert_failed_cleanly(&first);
        assert!(
            first.stderr.contains("wrong content") || first.stderr.contains("digest"),
            "{}",
            first.describe("should be a digest error")
        );
        assert!(!layer_path.exists(), "a corrupt blob was published");
        assert!(
            !big.partial(&dest).exists(),
            "the corrupt partial file is kept"
        );
        assert!(
            image::layout_ref_digest(&dest, "v1").is_none(),
            "the tag points at an incomplete image"
        );
        // A second try starts over and succeeds.
        let second = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
        assert_eq!(last_line(&second), big.info.manifest_digest);
        assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
    }
    assert!(!big.partial(&dest).exists());
}

#[test]
fn a_corrupt_partial_file_is_restarted_in_the_same_run() {
    let big = big_image("client-resume-restart");
    let c = cli();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pulled");
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    std::fs::write(big.partial(&dest), vec![0u8; (big.size / 2) as usize]).unwrap();
    let out = c.ok(&["pull", &big.reference(), &oci(&dest, "v1")]);
    assert_eq!(last_line(&out), big.info.manifest_digest);
    assert_same_image(&big.info.dir, &dest, &big.info.manifest_digest);
}
