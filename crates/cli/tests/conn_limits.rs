//! `[limits]` end to end: the `stowage` binary started with small timeouts and a small
//! connection cap closes silent, half-sent and idle connections (HTTP/1.1 and HTTP/2), never
//! cuts a push or pull that is in flight however slow, and queues clients past the cap while
//! serving the ones it has. Bounds are generous: the machine may be loaded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use stowage_testkit::wire::{Framing, H1, h2};

const SOON: Duration = Duration::from_secs(30);

fn small_limits() -> String {
    "[limits]\nfirst_byte_timeout = \"1s\"\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 4\n"
        .to_string()
}

async fn get_v2(c: &mut H1) -> u16 {
    let (resp, _) = c.request("GET", "/v2/", &[], b"", Framing::Length).await;
    resp.expect("an answer").status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_partial_and_idle_connections_are_closed() {
    let reg = Reg::start_with_config(&small_limits());
    let addr = reg.server.addr.clone();
    // Connected, nothing sent.
    let mut silent = H1::connect(&addr).await.unwrap();
    // Half a head; half an HTTP/2 preface.
    let mut half_head = H1::connect(&addr).await.unwrap();
    half_head
        .write(b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut half_preface = H1::connect(&addr).await.unwrap();
    half_preface.write(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // A keep-alive connection after one request.
    let mut idle = H1::connect(&addr).await.unwrap();
    assert_eq!(get_v2(&mut idle).await, 200);
    for (what, c) in [
        ("silent", &mut silent),
        ("half a head", &mut half_head),
        ("half a preface", &mut half_preface),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(
            c.closed_within(SOON).await.is_some(),
            "{what}: connection still open"
        );
    }
    // HTTP/2 idle after SETTINGS: GOAWAY, then closed.
    let (frames, closed) = h2::idle_client(&addr, SOON).await;
    assert!(closed.is_some(), "idle HTTP/2 still open: {frames:?}");
    assert!(
        frames.iter().any(|f| f.kind == h2::GOAWAY),
        "no GOAWAY: {frames:?}"
    );
    // Still serving.
    reg.get("/v2/").await.expect_status(200);
}

/// A chunk that trickles in over several idle timeouts, and a download the client stops
/// reading for longer than the idle timeout, both complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_push_and_pull_are_not_cut() {
    let reg = Reg::start_with_config(&small_limits());
    let loc = reg.start_upload("slow/up").await;
    let parts: Vec<Vec<u8>> = (0..6).map(|i| vec![b'a' + i as u8; 1024]).collect();
    let all: Vec<u8> = parts.concat();
    let started = Instant::now();
    let body = futures_util::stream::iter(parts).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok::<_, std::io::Error>(p)
    });
    let r = reg
        .send(
            reg.req(reqwest::Method::PATCH, &loc)
                .header("content-type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(body)),
        )
        .await;
    r.expect_status(202);
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(r.header("range"), Some("0-6143"));
    let r = reg
        .put_upload(&r.location(), &sha256_digest(&all), b"")
        .await;
    r.expect_status(201);

    let big = random_bytes(32 << 20);
    let digest = reg.push_blob("slow/down", &big).await;
    let mut resp = reg
        .client
        .get(reg.url(&format!("/v2/slow/down/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = resp.chunk().await.unwrap().expect("a first chunk").to_vec();
    // The server's writes block on full socket buffers meanwhile: in flight, not idle.
    tokio::time::sleep(Duration::from_secs(4)).await;
    while let Some(c) = resp.chunk().await.expect("download cut") {
        got.extend_from_slice(&c);
    }
    assert_eq!(got.len(), big.len());
    assert!(got == big, "download corrupted");
}

/// With `max_connections = 4`, a fifth client waits while the four are served, and is served
/// once one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_the_cap_wait_their_turn() {
    let toml = small_limits().replace("idle_timeout = \"2s\"", "idle_timeout = \"60s\"");
    let reg = Reg::start_with_config(&toml);
    let addr = reg.server.addr.clone();
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = H1::connect(&addr).await.unwrap();
        assert_eq!(get_v2(&mut c).await, 200);
        open.push(c);
    }
    let mut fifth = H1::connect(&addr).await.expect("queued in the backlog");
    fifth
        .write(format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), fifth.read_response(false)).await;
    assert!(early.is_err(), "served past the cap: {early:?}");
    for c in open.iter_mut() {
        assert_eq!(get_v2(c).await, 200, "a served client was disturbed");
    }
    drop(open.pop());
    let resp = tokio::time::timeout(SOON, fifth.read_response(false))
        .await
        .expect("the waiting client was never served")
        .unwrap();
    assert_eq!(resp.status, 200);
}
