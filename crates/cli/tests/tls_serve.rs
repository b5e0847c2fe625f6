//! `stowage serve` over HTTPS end to end: the development certificate is made once and reused
//! across restarts, clients trusting the printed CA get HTTP/2 with `Strict-Transport-Security`,
//! the optional plain-HTTP listener redirects to HTTPS, and bad TLS settings stop the start
//! with a message naming the key.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use stowage_testkit::server::Server;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_stowage"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_hsts_redirect_and_a_stable_dev_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let redirect = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("[tls]\nself_signed = true\nredirect_listen = \"{redirect}\"\n"),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = ["--config", config.to_str().unwrap()];
    let mut server = Server::spawn_with_data(bin(), &data, &args);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = data.join("tls/ca.crt");
    let first_ca = std::fs::read(&ca).unwrap();
    let c = trusting(&ca);
    let r = c.get(format!("{}/v2/", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "HTTP/2 by ALPN");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    // The plain listener answers every request with a redirect to the HTTPS port.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{redirect}/v2/team/app/tags/list?n=1"))
        .header("Host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    let port = server.addr.rsplit(':').next().unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("https://localhost:{port}/v2/team/app/tags/list?n=1").as_str()
    );
    assert!(
        r.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    // A restart keeps the same CA: clients that trusted it keep working.
    server.terminate();
    let server = Server::spawn_with_data(bin(), &data, &args);
    assert_eq!(std::fs::read(&ca).unwrap(), first_ca);
    let r = trusting(&ca)
        .get(format!("{}/v2/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_tls_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        (
            "[tls]\ncert = \"/nonexistent/c.pem\"\n",
            "tls.cert and tls.key",
        ),
        (
            "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
            "/nonexistent/c.pem",
        ),
        ("[tls]\nredirect_listen = \"127.0.0.1:1\"\n", "needs HTTPS"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, toml).unwrap();
        let out = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("d"))
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}
