//! Every step of the write paths, with a fault injected at each backend call it makes: the
//! client gets a clean error (503 `UNAVAILABLE` with `Retry-After` for a transient fault, 507
//! for a full disk, 500 for a disk I/O error), never a 2xx when the fault hit before the
//! commit, and nothing changes; once the fault is gone the retry succeeds, and the store
//! checker finds the store consistent. A fault in cleanup after the commit still answers 2xx.
//!
//! Server in-process on real TCP, stores wrapped by `stowage_testkit::fault` (see `fault_rig`).

mod fault_rig;

use fault_rig::{ADMIN, Rig, assert_clean_error};
use stowage_oci::{Algorithm, Digest};
use stowage_storage::IoFault;
use stowage_testkit::fault::Fault;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const ETIMEDOUT: i32 = 110;

/// A transient fault, a full disk, and a connection lost after the call took effect.
const UNAVAILABLE: Fault = Fault::Unavailable;
const FULL: Fault = Fault::Full;
const LOST: Fault = Fault::LostConnection;

fn want(fault: Fault) -> u16 {
    match fault {
        Fault::Full | Fault::Io(IoFault::Partial { errno: ENOSPC, .. }) => 507,
        Fault::Io(IoFault::Fail(EIO) | IoFault::Partial { errno: EIO, .. }) => 500,
        _ => 503,
    }
}

impl Rig {
    async fn session(&self, repo: &str) -> String {
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        format!("{}{}", self.url, r.headers()["location"].to_str().unwrap())
    }

    async fn put_blob(&self, loc: &str, d: &Digest, body: Vec<u8>) -> reqwest::Response {
        let sep = if loc.contains('?') { '&' } else { '?' };
        self.http
            .put(format!("{loc}{sep}digest={d}"))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn patch(&self, loc: &str, start: usize, body: Vec<u8>) -> reqwest::Response {
        let end = start + body.len() - 1;
        self.http
            .patch(loc)
            .header("Content-Range", format!("{start}-{end}"))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn status_of(&self, method: reqwest::Method, path: &str) -> u16 {
        self.http
            .request(method, format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// GET the blob and check every byte.
    async fn assert_blob(&self, repo: &str, d: &Digest, data: &[u8]) {
        let r = self
            .http
            .get(format!("{}/v2/{repo}/blobs/{d}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
        let got = r.bytes().await.unwrap();
        assert_eq!(Digest::of(Algorithm::Sha256, &got), *d);
        assert_eq!(&got[..], data);
    }

    /// Push a small blob without faults.
    async fn push(&self, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, data);
        let loc = self.session(repo).await;
        assert_eq!(self.put_blob(&loc, &d, data.to_vec()).await.status(), 201);
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, body: &str) -> reqwest::Response {
        self.http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url))
            .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// The digest a tag points at, if any.
    async fn tag_target(&self, repo: &str, tag: &str) -> Option<String> {
        let r = self
            .http
            .head(format!("{}/v2/{repo}/manifests/{tag}", self.url))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        (r.status() == 200).then(|| {
            r.headers()["docker-content-digest"]
                .to_str()
                .unwrap()
                .into()
        })
    }

    /// Arm one fault at the first call of `op`, and check afterwards that it fired.
    fn arm(&self, op: &'static str, fault: Fault) {
        self.plan.clear();
        self.plan.at(op, 1, fault);
    }

    fn assert_fired(&self, what: &str) {
        assert!(!self.plan.pending(), "{what}: the fault was never reached");
        self.plan.clear();
    }
}

fn manifest(config: &Digest, config_len: usize, layers: &[(&Digest, usize)]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[{}]}}"#,
        layers.join(",")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn monolithic_blob_upload_faults() {
    let rig = Rig::start(1, false).await;
    let cases: &[(&str, Fault)] = &[
        ("get_upload", UNAVAILABLE),
        ("upload_append", UNAVAILABLE),
        ("upload_append", FULL),
        ("upload_append", LOST),
        (
            "fs.write",
            Fault::Io(IoFault::Partial {
                keep: 10,
                errno: ETIMEDOUT,
            }),
        ),
        (
            "fs.write",
            Fault::Io(IoFault::Partial {
                keep: 10,
                errno: ENOSPC,
            }),
        ),
        (
            "fs.write",
            Fault::Io(IoFault::Partial {
                keep: 10,
                errno: EIO,
            }),
        ),
        ("upload_commit", UNAVAILABLE),
        ("upload_commit", FULL),
        ("fs.fsync", Fault::Io(IoFault::Fail(EIO))),
        ("fs.dirsync", UNAVAILABLE),
        ("fs.link", UNAVAILABLE),
        ("fs.link", LOST),
        ("finish_upload", UNAVAILABLE),
        ("finish_upload", FULL),
        ("finish_upload", LOST),
    ];
    for (i, &(op, fault)) in cases.iter().enumerate() {
        let what = format!("PUT blob, {fault:?} at {op}");
        let data = format!("monolithic blob {i} {what}")
            .repeat(100)
            .into_bytes();
        let d = Digest::of(Algorithm::Sha256, &data);
        let loc = rig.session("mono").await;
        rig.arm(op, fault);
        assert_clean_error(
            rig.put_blob(&loc, &d, data.clone()).await,
            want(fault),
            &what,
        )
        .await;
        rig.assert_fired(&what);
        if fault != LOST {
            let head = rig
                .status_of(reqwest::Method::HEAD, &format!("/v2/mono/blobs/{d}"))
                .await;
            assert_eq!(head, 404, "{what}: the blob became visible");
        }
        // The client's retry of the same request.
        let r = rig.put_blob(&loc, &d, data.clone()).await;
        assert_eq!(
            r.status(),
            201,
            "{what}: retry: {}",
            r.text().await.unwrap()
        );
        rig.assert_blob("mono", &d, &data).await;
    }
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_post_upload_and_cleanup_faults() {
    let rig = Rig::start(2, false).await;
    for (op, fault) in [
        ("upload_commit", UNAVAILABLE),
        ("finish_upload", FULL),
        ("upload_append", LOST),
    ] {
        let what = format!("single POST, {fault:?} at {op}");
        let data = what.clone().into_bytes();
        let d = Digest::of(Algorithm::Sha256, &data);
        let post = || {
            rig.http
                .post(format!("{}/v2/single/blobs/uploads/?digest={d}", rig.url))
                .body(data.clone())
                .send()
        };
        rig.arm(op, fault);
        assert_clean_error(post().await.unwrap(), want(fault), &what).await;
        rig.assert_fired(&what);
        assert_eq!(post().await.unwrap().status(), 201, "{what}: retry");
        rig.assert_blob("single", &d, &data).await;
    }
    // Removing the upload file after the commit is cleanup: the push is acknowledged anyway.
    let data = b"cleanup fault".to_vec();
    let d = Digest::of(Algorithm::Sha256, &data);
    let loc = rig.session("single").await;
    rig.arm("upload_abort", UNAVAILABLE);
    assert_eq!(rig.put_blob(&loc, &d, data.clone()).await.status(), 201);
    rig.assert_fired("cleanup");
    rig.assert_blob("single", &d, &data).await;
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_append_faults() {
    let rig = Rig::start(3, false).await;
    let cases: &[(&str, Fault)] = &[
        ("get_upload", UNAVAILABLE),
        ("upload_append", UNAVAILABLE),
        ("upload_append", FULL),
        ("upload_append", LOST),
        (
            "fs.write",
            Fault::Io(IoFault::Partial {
                keep: 100,
                errno: ETIMEDOUT,
            }),
        ),
        ("fs.fsync", UNAVAILABLE),
        ("fs.dirsync", UNAVAILABLE),
        ("advance_upload", UNAVAILABLE),
        ("advance_upload", FULL),
        ("advance_upload", LOST),
    ];
    for (i, &(op, fault)) in cases.iter().enumerate() {
        let what = format!("PATCH, {fault:?} at {op}");
        let data: Vec<u8> = format!("chunked {i} {what} ").repeat(500).into_bytes();
        let half = data.len() / 2;
        let loc = rig.session("chunks").await;
        // The first chunk creates the upload file (the directory sync happens then).
        let first_fault = op == "fs.dirsync";
        if !first_fault {
            assert_eq!(
                rig.patch(&loc, 0, data[..half].to_vec()).await.status(),
                202
            );
        }
        let start = if first_fault { 0 } else { half };
        let chunk = data[start..].to_vec();
        rig.arm(op, fault);
        assert_clean_error(
            rig.patch(&loc, start, chunk.clone()).await,
            want(fault),
            &what,
        )
        .await;
        rig.assert_fired(&what);
        let r = rig.patch(&loc, start, chunk.clone()).await;
        match r.status().as_u16() {
            202 => {}
            // The lost answer's chunk was committed: the session says so, and the client
            // carries on from there.
            416 if fault == LOST => {
                assert_eq!(
                    r.headers()["range"],
                    format!("0-{}", data.len() - 1),
                    "{what}"
                );
            }
            s => panic!("{what}: retry answered {s}: {}", r.text().await.unwrap()),
        }
        if first_fault {
            // This case sent everything in one chunk.
        }
        let d = Digest::of(Algorithm::Sha256, &data);
        let r = rig.put_blob(&loc, &d, Vec::new()).await;
        assert_eq!(
            r.status(),
            201,
            "{what}: finish: {}",
            r.text().await.unwrap()
        );
        rig.assert_blob("chunks", &d, &data).await;
    }
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_faults() {
    let rig = Rig::start(4, false).await;
    let cases: &[(&str, Fault)] = &[
        ("upload_append", UNAVAILABLE),
        ("upload_commit", UNAVAILABLE),
        ("upload_commit", LOST),
        ("fs.fsync", UNAVAILABLE),
        ("fs.link", Fault::Io(IoFault::Fail(ENOSPC))),
        ("fs.dirsync", LOST),
        ("finish_upload", UNAVAILABLE),
        ("finish_upload", LOST),
    ];
    for (i, &(op, fault)) in cases.iter().enumerate() {
        let what = format!("final PUT, {fault:?} at {op}");
        let data: Vec<u8> = format!("publish {i} {what} ").repeat(300).into_bytes();
        let half = data.len() / 2;
        let d = Digest::of(Algorithm::Sha256, &data);
        let loc = rig.session("publish").await;
        assert_eq!(
            rig.patch(&loc, 0, data[..half].to_vec()).await.status(),
            202
        );
        let put = || {
            let sep = if loc.contains('?') { '&' } else { '?' };
            rig.http
                .put(format!("{loc}{sep}digest={d}"))
                .header("Content-Range", format!("{half}-{}", data.len() - 1))
                .body(data[half..].to_vec())
                .send()
        };
        rig.arm(op, fault);
        let expected = if op == "fs.link" { 507 } else { want(fault) };
        assert_clean_error(put().await.unwrap(), expected, &what).await;
        rig.assert_fired(&what);
        let r = put().await.unwrap();
        assert_eq!(
            r.status(),
            201,
            "{what}: retry: {}",
            r.text().await.unwrap()
        );
        rig.assert_blob("publish", &d, &data).await;
    }
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_put_and_tag_move_faults() {
    let rig = Rig::start(5, false).await;
    let cfg = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
    let cd = rig.push("app", &cfg).await;
    let layer = b"layer bytes".to_vec();
    let ld = rig.push("app", &layer).await;
    let cases: &[(&str, Fault)] = &[
        ("blobs_in_repo", UNAVAILABLE),
        ("put_manifest", UNAVAILABLE),
        ("put_manifest", FULL),
        ("put_manifest", LOST),
    ];
    let mut current: Option<String> = None;
    for (i, &(op, fault)) in cases.iter().enumerate() {
        let layers: Vec<(&Digest, usize)> = (0..=i).map(|_| (&ld, layer.len())).collect();
        let m = manifest(&cd, cfg.len(), &layers);
        let md = Digest::of(Algorithm::Sha256, m.as_bytes()).to_string();
        let what = format!("manifest PUT moving tag v1, {fault:?} at {op}");
        rig.arm(op, fault);
        assert_clean_error(rig.put_manifest("app", "v1", &m).await, want(fault), &what).await;
        rig.assert_fired(&what);
        if fault != LOST {
            assert_eq!(
                rig.tag_target("app", "v1").await,
                current,
                "{what}: the tag moved"
            );
            let by_digest = rig
                .status_of(reqwest::Method::HEAD, &format!("/v2/app/manifests/{md}"))
                .await;
            assert_eq!(by_digest, 404, "{what}: the manifest was stored");
        }
        let r = rig.put_manifest("app", "v1", &m).await;
        assert_eq!(
            r.status(),
            201,
            "{what}: retry: {}",
            r.text().await.unwrap()
        );
        assert_eq!(
            rig.tag_target("app", "v1").await.as_deref(),
            Some(md.as_str())
        );
        current = Some(md);
    }
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_faults() {
    let rig = Rig::start(6, false).await;
    let cfg = b"{\"os\":\"linux\"}".to_vec();
    let cd = rig.push("del", &cfg).await;
    for fault in [UNAVAILABLE, FULL, LOST] {
        let what = format!("deletes, {fault:?}");
        let m = manifest(&cd, cfg.len(), &[]).replace("linux", "x")
            + &" ".repeat(format!("{fault:?}").len());
        let md = Digest::of(Algorithm::Sha256, m.as_bytes());
        assert_eq!(rig.put_manifest("del", "t", &m).await.status(), 201);
        assert_eq!(
            rig.put_manifest("del", &md.to_string(), &m).await.status(),
            201
        );
        // Tag delete, manifest delete, blob unlink: refused cleanly, then retried.
        for (op, path, after) in [
            (
                "delete_tag",
                "/v2/del/manifests/t".to_string(),
                "/v2/del/manifests/t".to_string(),
            ),
            (
                "delete_manifest",
                format!("/v2/del/manifests/{md}"),
                format!("/v2/del/manifests/{md}"),
            ),
        ] {
            rig.arm(op, fault);
            let r = rig
                .http
                .delete(format!("{}{path}", rig.url))
                .send()
                .await
                .unwrap();
            assert_clean_error(r, want(fault), &format!("{what} at {op}")).await;
            rig.assert_fired(&what);
            if fault != LOST {
                let still = rig.status_of(reqwest::Method::HEAD, &after).await;
                assert_eq!(still, 200, "{what}: {op} took effect before its error");
            }
            let retry = rig.status_of(reqwest::Method::DELETE, &path).await;
            // A lost answer's delete was done: the retry finds nothing to delete.
            let ok = if fault == LOST {
                [202, 404]
            } else {
                [202, 202]
            };
            assert!(ok.contains(&retry), "{what}: {op} retry answered {retry}");
            assert_eq!(rig.status_of(reqwest::Method::HEAD, &after).await, 404);
        }
    }
    // Unlinking a blob.
    let bd = rig.push("del", b"unlink me").await;
    rig.arm("unlink_blob", UNAVAILABLE);
    let path = format!("/v2/del/blobs/{bd}");
    let r = rig
        .http
        .delete(format!("{}{path}", rig.url))
        .send()
        .await
        .unwrap();
    assert_clean_error(r, 503, "blob delete").await;
    rig.assert_fired("blob delete");
    assert_eq!(rig.status_of(reqwest::Method::HEAD, &path).await, 200);
    assert_eq!(rig.status_of(reqwest::Method::DELETE, &path).await, 202);
    assert_eq!(rig.status_of(reqwest::Method::HEAD, &path).await, 404);
    // Cancelling an upload: the commit refused, then retried; a failure to remove the
    // upload file after the commit is cleanup (the purge removes it).
    for (op, fault, status) in [
        ("save_upload", UNAVAILABLE, 503),
        ("upload_abort", UNAVAILABLE, 204),
    ] {
        let loc = rig.session("del").await;
        assert_eq!(rig.patch(&loc, 0, b"partial".to_vec()).await.status(), 202);
        rig.arm(op, fault);
        let r = rig.http.delete(&loc).send().await.unwrap();
        if status == 204 {
            assert_eq!(r.status(), 204, "cancel with a cleanup fault");
        } else {
            assert_clean_error(r, status, "cancel").await;
            assert_eq!(rig.http.get(&loc).send().await.unwrap().status(), 204);
            assert_eq!(rig.http.delete(&loc).send().await.unwrap().status(), 204);
        }
        rig.assert_fired(op);
        assert_eq!(rig.http.get(&loc).send().await.unwrap().status(), 404);
    }
    rig.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_token_change_faults() {
    let rig = Rig::start(7, true).await;
    let admin = |m: reqwest::Method, path: &str| {
        rig.http
            .request(m, format!("{}/admin/v1/{path}", rig.url))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("Content-Type", "application/json")
    };
    let new_user = serde_json::json!({"name": "alice", "password": "alice-has-a-long-password", "grants": ["repository:a/**:pull"]});
    let change = serde_json::json!({"grant": ["repository:b/**:pull"]});
    let token =
        serde_json::json!({"user": "alice", "scopes": ["repository:a/**:pull"], "name": "ci"});
    for fault in [UNAVAILABLE, FULL] {
        let what = |op: &str| format!("{fault:?} at {op}");
        rig.arm("create_user", fault);
        let r = admin(reqwest::Method::POST, "users")
            .body(new_user.to_string())
            .send()
            .await
            .unwrap();
        assert_clean_error(r, want(fault), &what("create_user")).await;
        rig.assert_fired("create_user");
        let users = admin(reqwest::Method::GET, "users")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !users.contains("alice"),
            "{}: the user exists: {users}",
            what("create_user")
        );
        let r = admin(reqwest::Method::POST, "users")
            .body(new_user.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "create_user retry: {}",
            r.text().await.unwrap()
        );

        rig.arm("update_user", fault);
        let r = admin(reqwest::Method::PATCH, "users/alice")
            .body(change.to_string())
            .send()
            .await
            .unwrap();
        assert_clean_error(r, want(fault), &what("update_user")).await;
        rig.assert_fired("update_user");
        let users = admin(reqwest::Method::GET, "users")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !users.contains("repository:b/"),
            "{}: {users}",
            what("update_user")
        );
        let r = admin(reqwest::Method::PATCH, "users/alice")
            .body(change.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "update_user retry: {}", r.status());

        rig.arm("create_token", fault);
        let r = admin(reqwest::Method::POST, "tokens")
            .body(token.to_string())
            .send()
            .await
            .unwrap();
        assert_clean_error(r, want(fault), &what("create_token")).await;
        rig.assert_fired("create_token");
        let r = admin(reqwest::Method::POST, "tokens")
            .body(token.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create_token retry");
        let id = serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();

        rig.arm("revoke_token", fault);
        let r = admin(reqwest::Method::DELETE, &format!("tokens/{id}"))
            .send()
            .await
            .unwrap();
        assert_clean_error(r, want(fault), &what("revoke_token")).await;
        rig.assert_fired("revoke_token");
        let listed = admin(reqwest::Method::GET, "tokens")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            listed.contains(&id),
            "{}: the token is gone",
            what("revoke_token")
        );
        let r = admin(reqwest::Method::DELETE, &format!("tokens/{id}"))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "revoke_token retry: {}",
            r.status()
        );

        rig.arm("remove_user", fault);
        let r = admin(reqwest::Method::DELETE, "users/alice")
            .send()
            .await
            .unwrap();
        assert_clean_error(r, want(fault), &what("remove_user")).await;
        rig.assert_fired("remove_user");
        let r = admin(reqwest::Method::DELETE, "users/alice")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "remove_user retry: {}", r.status());
    }
    rig.assert_consistent().await;
}
