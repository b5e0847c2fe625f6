//! Two requests racing on one upload session: exactly one chunk wins, the loser is told where
//! the session stands (416 with `Range`), and the finished blob is always the winner's bytes.

use std::path::PathBuf;
use std::time::Duration;

use stowage_testkit::server::Server;

/// The digest of `data`, through the registry's own digest type.
fn sha256_hex(data: &[u8]) -> String {
    stowage_oci::Digest::of(stowage_oci::Algorithm::Sha256, data).to_string()
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stowage"))
}

/// A body that sends `data` in `parts` pieces with `pause` between them.
fn slow_body(data: Vec<u8>, parts: usize, pause: Duration) -> reqwest::Body {
    let step = data.len().div_ceil(parts);
    let chunks: Vec<Vec<u8>> = data.chunks(step).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), true),
        move |(mut it, first)| async move {
            let next = it.next()?;
            if !first {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<_, std::io::Error>(next), (it, false)))
        },
    );
    reqwest::Body::wrap_stream(stream)
}

async fn open_session(client: &reqwest::Client, base: &str) -> String {
    let resp = client
        .post(format!("{base}/v2/race/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    }
}

async fn patch(
    client: &reqwest::Client,
    url: &str,
    len: usize,
    body: reqwest::Body,
) -> reqwest::Response {
    client
        .patch(url)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", format!("0-{}", len - 1))
        .header("Content-Length", len.to_string())
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_chunks_at_one_offset_leave_the_winners_bytes() {
    let server = Server::spawn(&bin(), &[]);
    let base = format!("http://{}", server.addr);
    let client = reqwest::Client::new();
    const LEN: usize = 256 * 1024;
    for round in 0..8u8 {
        let url = open_session(&client, &base).await;
        let a = vec![b'a' ^ round; LEN];
        let b = vec![b'b' ^ round; LEN];
        // Even rounds: one writer is slow, so the other arrives while it writes. Odd rounds:
        // both at full speed, whichever the scheduler lets in first.
        let pause = if round % 2 == 0 {
            Duration::from_millis(40)
        } else {
            Duration::ZERO
        };
        let (ra, rb) = tokio::join!(
            patch(&client, &url, LEN, slow_body(a.clone(), 8, pause)),
            async {
                if round % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                }
                patch(&client, &url, LEN, b.clone().into()).await
            }
        );
        let (sa, sb) = (ra.status().as_u16(), rb.status().as_u16());
        let (winner, loser, lost) = match (sa, sb) {
            (202, 416) => (&a, &b, rb),
            (416, 202) => (&b, &a, ra),
            other => panic!("round {round}: exactly one chunk must win, got {other:?}"),
        };
        // The loser learns where the session stands: nothing acknowledged yet, or the winner's
        // bytes if it had already finished.
        let range = lost.headers()["range"].to_str().unwrap().to_string();
        assert!(
            range == "0-0" || range == format!("0-{}", LEN - 1),
            "round {round}: {range}"
        );
        let finish = |digest: String| {
            let sep = if url.contains('?') { '&' } else { '?' };
            client.put(format!("{url}{sep}digest={digest}")).send()
        };
        if round % 4 < 2 {
            // The session finishes as the winner's bytes, and the blob is exactly those.
            let digest = sha256_hex(winner);
            let done = finish(digest.clone()).await.unwrap();
            assert_eq!(done.status(), 201, "round {round}");
            let got = client
                .get(format!("{base}/v2/race/app/blobs/{digest}"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(&got[..], &winner[..], "round {round}");
        } else {
            // The loser's bytes were never stored: its digest does not match.
            let resp = finish(sha256_hex(loser)).await.unwrap();
            assert_eq!(resp.status(), 400, "round {round}");
            let body = resp.text().await.unwrap();
            assert!(body.contains("DIGEST_INVALID"), "round {round}: {body}");
        }
    }
}
