//! The network fault proxy (`stowage_testkit::fault::FaultProxy`) in front of the stowage
//! server: each fault reaches the client as it would from a real network (a reset, a stall, a
//! 5xx from something in between, a slow or truncated body), switching back to pass-through
//! heals it, and the server behind stays healthy and consistent.

mod fault_rig;

use std::time::Duration;

use fault_rig::Rig;
use stowage_oci::{Algorithm, Digest};
use stowage_testkit::fault::{FaultProxy, NetFault, Rng};

async fn push(rig: &Rig, data: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, data);
    let url = format!("{}/v2/p/blobs/uploads/?digest={d}", rig.url);
    let r = rig.http.post(url).body(data.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    d
}

fn client() -> reqwest::Client {
    // A fresh connection per request, so each one meets the proxy's current fault.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_network_fault_reaches_the_client_and_passing_heals_it() {
    let rig = Rig::start(11, false).await;
    let data = Rng::new(11).bytes(300_000);
    let d = push(&rig, &data).await;
    let proxy = FaultProxy::start(rig.addr).await;
    let blob = format!("{}/v2/p/blobs/{d}", proxy.url());
    let c = client();

    // Untouched.
    let got = c.get(&blob).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &data[..]);

    // A 503 from something in between, with its Retry-After.
    proxy.set(NetFault::Status(503));
    let r = c.get(&blob).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    // A reset before anything is answered.
    proxy.set(NetFault::Reset);
    let e = c.get(&blob).send().await.unwrap_err();
    assert!(e.is_request() || e.is_connect(), "{e:?}");

    // A reset, and a clean close, part-way through the body.
    for fault in [NetFault::ResetAfter(50_000), NetFault::Truncate(50_000)] {
        proxy.set(fault);
        let r = c.get(&blob).send().await.unwrap();
        assert_eq!(r.status(), 200, "{fault:?}");
        assert!(
            r.bytes().await.is_err(),
            "{fault:?}: a cut body must not read as complete"
        );
    }

    // Slow bytes arrive whole.
    proxy.set(NetFault::Slow {
        bytes: 16 * 1024,
        every: Duration::from_millis(1),
    });
    let got = c.get(&blob).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(Digest::of(Algorithm::Sha256, &got), d);

    // A stall: the client's own timeout is what ends it.
    proxy.set(NetFault::Stall);
    let stalled = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = stalled.get(&blob).send().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");

    // Healed.
    proxy.set(NetFault::Pass);
    let got = c.get(&blob).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &data[..]);
    assert!(proxy.connections() >= 8);
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_cut_by_the_network_leaves_the_server_resumable_and_consistent() {
    let rig = Rig::start(12, false).await;
    let proxy = FaultProxy::start(rig.addr).await;
    let c = client();
    let data = Rng::new(12).bytes(200_000);
    let d = Digest::of(Algorithm::Sha256, &data);
    let r = c
        .post(format!("{}/v2/p/blobs/uploads/", proxy.url()))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        c.patch(format!("{}{loc}", proxy.url()))
            .header("Content-Range", "0-99999")
            .body(data[..100_000].to_vec())
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    // The acknowledgement of the last chunk is lost in the network: the client cannot tell
    // whether it landed, and asks the session where it stands.
    proxy.set(NetFault::ResetAfter(0));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = format!("{}{loc}{sep}digest={d}", proxy.url());
    let lost = c
        .put(&put)
        .header("Content-Range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .await;
    assert!(lost.is_err(), "the answer should have been reset away");
    proxy.set(NetFault::Pass);
    // The PUT did complete: retrying it is answered 201 (the session ended with this blob).
    let r = c
        .put(&put)
        .header("Content-Range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = c
        .get(format!("{}/v2/p/blobs/{d}", proxy.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..]);
    rig.assert_consistent().await;
}
