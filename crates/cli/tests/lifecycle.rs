//! The server's life cycle as an operator sees it: start-up output, configuration through file,
//! environment and flags, `config check`, and graceful shutdown on SIGTERM (in-flight requests
//! finish, the drain is bounded, the exit code is 0).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stowage_oci::{Algorithm, Digest};
use stowage_testkit::server::Server;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// A request body that sends `parts` with a pause before each, so the request is in flight.
fn slow_body(parts: Vec<Vec<u8>>, pause: Duration) -> reqwest::Body {
    let stream = futures_util::stream::unfold(parts.into_iter(), move |mut it| async move {
        tokio::time::sleep(pause).await;
        it.next().map(|p| (Ok::<_, std::io::Error>(p), it))
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_uploads_finish_and_exits_zero() {
    let mut server = Server::spawn(&bin(), &[]);
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/v2/life/blobs/uploads/", server.url))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let parts: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 10_000]).collect();
    let all: Vec<u8> = parts.concat();
    let url = format!("{}{loc}", server.url);
    let patch = tokio::spawn(async move {
        reqwest::Client::new()
            .patch(url)
            .body(slow_body(parts, Duration::from_millis(300)))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = server.pid().unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let resp = patch.await.unwrap().expect("in-flight PATCH completed");
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.headers()["range"],
        format!("0-{}", all.len() - 1).as_str()
    );
    assert_eq!(server.terminate(), Some(0));
    // The acknowledged bytes survive: restart on the same data and finish the upload.
    let mut tmp_holder = server;
    let _keep = tmp_holder.take_tempdir();
    let again = Server::spawn_with_data(&bin(), &tmp_holder.data_dir, &[]);
    let d = Digest::of(Algorithm::Sha256, &all);
    let r = c
        .put(format!("{}{loc}?digest={d}", again.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_is_bounded_by_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "drain_timeout = \"1s\"\nbody_idle_timeout = \"60s\"\n",
    )
    .unwrap();
    let mut server = Server::spawn(&bin(), &["--config", cfg.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/v2/life/blobs/uploads/", server.url))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // A body that stalls for far longer than the drain timeout.
    let url = format!("{}{loc}", server.url);
    let _stalled = tokio::spawn(async move {
        let parts = vec![vec![1u8; 100], vec![2u8; 100]];
        reqwest::Client::new()
            .patch(url)
            .body(slow_body(parts, Duration::from_secs(30)))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    assert_eq!(server.terminate(), Some(0));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?} despite drain_timeout = 1s"
    );
}

#[test]
fn config_file_environment_and_flags_layer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let file_data = dir.path().join("from-file");
    let env_data = dir.path().join("from-env");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"{}\"\n",
            file_data.display()
        ),
    )
    .unwrap();
    // The file says port 1 and file_data; the environment overrides both.
    let mut child = Command::new(bin())
        .arg("serve")
        .env("STOWAGE_CONFIG", &cfg)
        .env("STOWAGE_LISTEN", "127.0.0.1:0")
        .env("STOWAGE_DATA", &env_data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("stowage listening on http://127.0.0.1:"),
        "{first}"
    );
    assert!(!first.ends_with(":1"), "{first}");
    assert_eq!(second, format!("data directory: {}", env_data.display()));
    assert!(env_data.join("metadata.db").exists());
    assert!(!file_data.exists());
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn config_check_accepts_good_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"0.0.0.0:5000\"\n[manifests]\nmax_size = 8388608\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[manifests]\nmax_sise = 1\n").unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_sise"),
        "error should name the unknown key: {err}"
    );
    let out = Command::new(bin())
        .args(["config", "check", "/nonexistent/stowage.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn bad_flags_fail_with_a_message() {
    let out = Command::new(bin())
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_restricted_or_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let only_other = dir.path().join("a.toml");
    std::fs::write(&only_other, "[metrics]\nallow = [\"10.0.0.0/8\"]\n").unwrap();
    let s = Server::spawn(&bin(), &["--config", only_other.to_str().unwrap()]);
    let r = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(r.status(), 403);
    let loopback = dir.path().join("b.toml");
    std::fs::write(&loopback, "[metrics]\nallow = [\"127.0.0.0/8\", \"::1\"]\n").unwrap();
    let s = Server::spawn(&bin(), &["--config", loopback.to_str().unwrap()]);
    let r = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    let off = dir.path().join("c.toml");
    std::fs::write(&off, "[metrics]\nenabled = false\n").unwrap();
    let s = Server::spawn(&bin(), &["--config", off.to_str().unwrap()]);
    let r = reqwest::get(format!("{}/metrics", s.url)).await.unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("stowage listening on ")
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rid = rt.block_on(async {
        let r = reqwest::get(format!("{url}/v2/nope/tags/list"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        r.headers()["x-request-id"].to_str().unwrap().to_string()
    });
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains(&rid))
        .unwrap_or_else(|| panic!("no log line with request id {rid}: {stderr}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    assert_eq!(v["fields"]["route"], "/v2/{name}/tags/list");
    assert_eq!(v["fields"]["status"], 404);
    assert!(
        !line.contains("nope"),
        "logs carry the route template, not the repository name"
    );
}

/// Start `stowage serve` with `envs` and `args`, wait for the listening line; returns the child
/// and the base URL. Its stderr is piped (not a terminal).
fn spawn_serve(args: &[&str], envs: &[(&str, &str)]) -> (std::process::Child, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .args(args)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("stowage listening on ")
        .to_string();
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn sigterm(child: &std::process::Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

#[test]
fn stowage_public_lists_public_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url) = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "--data",
            data.to_str().unwrap(),
        ],
        &[("STOWAGE_PUBLIC", "library/**, team/base\tother/*")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Anonymous reads: a public repository answers (404: nothing there yet), a private one
        // asks for credentials.
        for (repo, status) in [
            ("library/x", 404),
            ("team/base", 404),
            ("other/y", 404),
            ("team/app", 401),
        ] {
            let r = reqwest::get(format!("{url}/v2/{repo}/manifests/latest"))
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{repo}");
        }
    });
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    // A bad pattern in the variable is refused like a bad flag.
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("STOWAGE_PUBLIC", "library/** Bad_Pattern")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Bad_Pattern"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (child, url) = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        reqwest::get(format!("{url}/v2/")).await.unwrap();
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("request"), "a request was logged: {stderr}");
    assert!(
        !out.stderr.contains(&0x1b),
        "ESC bytes in logs written to a pipe: {stderr:?}"
    );
}

#[test]
fn config_check_reports_every_problem_and_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("cert.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"nowhere\"\nunknown_top = 1\n[log]\nformat = \"xml\"\n[manifests]\nmax_sise = 1\n[tls]\ncert = {:?}\nkey = {:?}\n",
            junk.display().to_string(),
            dir.path().join("missing.key").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    for says in [
        "listen must be",
        "unknown_top",
        "log.format",
        "max_sise",
        "cert.pem",
        "missing.key",
    ] {
        assert_eq!(
            errors.iter().filter(|l| l.contains(says)).count(),
            1,
            "one line for {says:?}:\n{err}"
        );
    }
    assert_eq!(errors.len(), 6, "{err}");
    // A certificate and a key that parse but do not belong together.
    let ca = dir.path().join("ca");
    let (mut a, _) = spawn_serve(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-self-signed",
            "--data",
            ca.to_str().unwrap(),
        ],
        &[],
    );
    sigterm(&a);
    let _ = a.wait();
    // The server certificate with the CA's key.
    let (cert, key) = (ca.join("tls/server.crt"), ca.join("tls/ca.key"));
    assert!(cert.exists() && key.exists());
    let mismatched = dir.path().join("mismatched.toml");
    std::fs::write(
        &mismatched,
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&mismatched)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("do not match"), "{err}");
}

#[test]
fn a_taken_port_fails_before_the_data_directory_is_made() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-made");
    let out = Command::new(bin())
        .args(["serve", "--listen", &addr, "--data"])
        .arg(&data)
        .env_remove("STOWAGE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr), "names the address: {err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(!data.exists(), "the data directory was created: {err}");
}

#[test]
fn after_sigterm_metadata_db_alone_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::spawn_with_data(&bin(), &data, &[]);
    let layout = dir.path().join("layout");
    let info = stowage_testkit::image::write_oci_layout(
        &layout,
        "v1",
        &stowage_testkit::image::ImageSpec::new("checkpoint"),
    );
    let cli = stowage_testkit::client::StowageCli::new(bin());
    let reference = format!("{}/team/kept:v1", server.addr);
    cli.ok(&[
        "push",
        "-q",
        &format!("oci:{}:v1", layout.display()),
        &reference,
    ]);
    assert_eq!(server.terminate(), Some(0));
    let wal = data.join("metadata.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL still holds data after a clean shutdown"
    );
    // Only the .db file (no -wal, no -shm), plus the blobs, into a fresh data directory.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(data.join("metadata.db"), restored.join("metadata.db")).unwrap();
    let again = Server::spawn_with_data(&bin(), &restored, &[]);
    let digest = cli.ok_line(&["digest", &format!("{}/team/kept:v1", again.addr)]);
    assert_eq!(digest, info.manifest_digest);
}

/// `stowage user` and `stowage token` on a store (how the first administrator is made) leave
/// their writes in `metadata.db` too, not in a WAL file a backup of the `.db` would miss.
#[test]
fn account_commands_on_a_store_leave_no_wal_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let on_store = |store: &std::path::Path, args: &[&str], stdin: Option<&str>| {
        stowage_testkit::tools::stowage_on_store(&bin(), store, args, stdin).stdout
    };
    let run = |args: &[&str], stdin: &str| on_store(&data, args, Some(stdin));
    run(
        &["user", "add", "first-admin", "--admin", "--password-stdin"],
        "a long password\n",
    );
    run(
        &[
            "token",
            "create",
            "--user",
            "first-admin",
            "--scope",
            "repository:a/b:pull",
            "--name",
            "kept",
        ],
        "",
    );
    let wal = data.join("metadata.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL still holds data after the account commands"
    );
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(data.join("metadata.db"), copy.join("metadata.db")).unwrap();
    let run_copy = |args: &[&str]| on_store(&copy, args, None);
    assert!(run_copy(&["user", "list"]).contains("first-admin"));
    assert!(run_copy(&["token", "list"]).contains("kept"));
}

#[test]
fn serve_with_a_bad_file_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"x\"\n[log]\nformatt = \"json\"\n").unwrap();
    let data = dir.path().join("data");
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.formatt") && err.contains("listen must be"),
        "{err}"
    );
    assert!(!data.exists());
}
