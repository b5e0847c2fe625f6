//! A running server's certificate files are swapped (`[tls] reload_interval`) under a client
//! that stays connected over HTTP/2 with an upload in flight: that connection keeps working,
//! while new clients (skopeo, verifying) must trust the new CA and no longer the old one.
//! Missing tools fail the tests: CI installs them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stowage_testkit::image::{self, ImageSpec, sha256_digest};
use stowage_testkit::server::Server;
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::tls::{Access, Trust};
use stowage_testkit::tools::{final_error, is_certificate_error};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");

/// Have the server make a development CA and certificate in `data` (`--tls-self-signed`), then
/// stop it; returns the `tls` directory (`ca.crt`, `server.crt`, `server.key`).
fn dev_certificate(data: &Path) -> PathBuf {
    let server = Server::spawn_with_data(Path::new(BIN), data, &["--tls-self-signed"]);
    let ca = server.ca_cert();
    drop(server);
    ca.parent().expect("tls dir").to_path_buf()
}

/// Replace `dest` the way a careful deployment tool does (temp file, then rename).
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("new");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dest).expect("rename");
}

/// What the connected client saw.
struct Connected {
    leaf_before: Vec<u8>,
    leaf_after: Vec<u8>,
    blob_back: Vec<u8>,
}

fn leaf_of(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

/// The `Location` of `resp` as an absolute URL.
fn location(base: &str, resp: &reqwest::Response) -> String {
    let loc = resp
        .headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .expect("ASCII Location");
    if loc.starts_with("https://") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

/// The state of [`upload_across_swap`]'s request body.
struct Feed {
    first: Option<Vec<u8>>,
    second: Option<Vec<u8>>,
    sent: Option<std::sync::mpsc::Sender<()>>,
    go: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// One HTTP/2 client trusting `ca_pem`: checks the connection, starts a blob upload, streams
/// `first`, says so on `sent`, waits for `go`, streams `second`, finishes the upload as
/// `digest`, and reads the blob back, all on the connection it opened first.
async fn upload_across_swap(
    base: String,
    ca_pem: Vec<u8>,
    (first, second, digest): (Vec<u8>, Vec<u8>, String),
    sent: std::sync::mpsc::Sender<()>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> Connected {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).expect("CA PEM")])
        .tls_info(true)
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let resp = client
        .get(format!("{base}/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "ALPN must pick h2"
    );
    let leaf_before = leaf_of(&resp);

    let resp = client
        .post(format!("{base}/v2/reload/blob/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(resp.status(), 202, "POST uploads");
    let upload = location(&base, &resp);

    // The body stream: `first`, then (when hyper comes back for more, so `first` has been
    // taken and the request is on the wire) tell the test, wait for `go`, then `second`.
    let feed = Feed {
        first: Some(first),
        second: Some(second),
        sent: Some(sent),
        go: Some(go),
    };
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(feed, |mut f| async move {
        if let Some(first) = f.first.take() {
            return Some((Ok::<_, std::io::Error>(first), f));
        }
        if let Some(sent) = f.sent.take() {
            let _ = sent.send(());
        }
        if let Some(go) = f.go.take() {
            let _ = go.await;
        }
        f.second.take().map(|second| (Ok(second), f))
    }));
    let resp = client
        .patch(&upload)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("PATCH across the certificate change");
    assert_eq!(resp.status(), 202, "PATCH");
    let upload = location(&base, &resp);
    let sep = if upload.contains('?') { '&' } else { '?' };
    let resp = client
        .put(format!("{upload}{sep}digest={digest}"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 201, "PUT");

    let resp = client
        .get(format!("{base}/v2/reload/blob/blobs/{digest}"))
        .send()
        .await
        .expect("GET blob");
    assert_eq!(resp.status(), 200, "GET blob");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let leaf_after = leaf_of(&resp);
    let blob_back = resp.bytes().await.expect("blob body").to_vec();
    Connected {
        leaf_before,
        leaf_after,
        blob_back,
    }
}

/// The server reloads `[tls] cert`/`key` (`reload_interval = "200ms"`) while a client stays
/// connected over HTTP/2 with an upload in flight. That connection keeps working on the old
/// certificate; a second later new connections present the new one: skopeo trusting the new
/// CA succeeds, and trusting the old CA fails with a certificate error.
#[test]
fn certificate_swap_under_a_connected_http2_client() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let old = dev_certificate(&tmp.path().join("gen-old"));
    let new = dev_certificate(&tmp.path().join("gen-new"));
    assert_ne!(
        std::fs::read(old.join("ca.crt")).unwrap(),
        std::fs::read(new.join("ca.crt")).unwrap(),
        "two data directories must get two CAs"
    );
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("cert.pem"), live.join("key.pem"));
    install(&old.join("server.key"), &key);
    install(&old.join("server.crt"), &cert);
    let config = tmp.path().join("stowage.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nreload_interval = \"200ms\"\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let server = Server::spawn_with_data(
        Path::new(BIN),
        &tmp.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let old_trust = Trust::ca(&server.addr, &old.join("ca.crt"));
    let new_trust = Trust::ca(&server.addr, &new.join("ca.crt"));
    let reference = format!("docker://{}/reload/app:v1", server.addr);

    let sk = Skopeo::new();
    let layout = tmp.path().join("layout");
    let info = image::write_oci_layout(&layout, "v1", &ImageSpec::new("reload"));
    sk.try_copy_verified(
        &format!("oci:{}:v1", layout.display()),
        None,
        &reference,
        Some(Access::new(&old_trust, None)),
        &["--preserve-digests"],
    )
    .ok();
    let raw = sk.inspect_raw_verified(&reference, Access::new(&old_trust, None));
    assert_eq!(sha256_digest(&raw), info.manifest_digest);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256_digest(&blob);
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let connected = rt.spawn(upload_across_swap(
        server.url.clone(),
        std::fs::read(old.join("ca.crt")).unwrap(),
        (
            blob[..100_000].to_vec(),
            blob[100_000..].to_vec(),
            digest.clone(),
        ),
        sent_tx,
        go_rx,
    ));
    sent_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the upload did not start");

    // Key first, like the server's own writer: a poll in between sees a mismatched pair and
    // keeps the old certificate.
    install(&new.join("server.key"), &key);
    install(&new.join("server.crt"), &cert);
    std::thread::sleep(Duration::from_secs(1));

    let raw = sk.inspect_raw_verified(&reference, Access::new(&new_trust, None));
    assert_eq!(sha256_digest(&raw), info.manifest_digest);
    let refused = sk.try_inspect_verified(&reference, Access::new(&old_trust, None), &["--raw"]);
    assert!(
        !refused.success(),
        "{}",
        refused.describe("the old CA still works")
    );
    let e = final_error(&refused);
    assert!(
        is_certificate_error(&e),
        "{}",
        refused.describe(&format!("expected a certificate error ({e})"))
    );

    let _ = go_tx.send(());
    let seen = rt
        .block_on(connected)
        .expect("the connected client panicked");
    assert_eq!(seen.blob_back, blob, "the blob uploaded across the change");
    assert_eq!(
        seen.leaf_after, seen.leaf_before,
        "the connection opened before the change must still be the one in use"
    );
}
