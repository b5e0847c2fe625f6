//! `[limits]` per request, end to end against the `stowage` binary over real TCP: a request
//! head over `max_header_size` is 431 (HTTP/1.1 and HTTP/2); pushes naming a repository or tag
//! longer than `max_name_length` / `max_tag_length` are 400 `NAME_INVALID` / `TAG_INVALID`
//! while reads are not held to them; a manifest nested deeper than `max_manifest_depth` or
//! with more than `max_manifest_descriptors` descriptors is 400 `MANIFEST_INVALID`; a user
//! with `max_uploads_per_principal` live sessions gets 429 with `Retry-After`, counted in the
//! metadata store (it survives a restart, and two first chunks racing for the last place
//! cannot both win); with authentication on, anonymous requests past `anonymous_rate` /
//! `anonymous_burst` per client address get 429 with `Retry-After`. Every answer names the key
//! that sets the limit. Without authentication neither per-user nor per-address limits apply.

mod common;

use common::auth::{ALICE_PW, AuthReg, TEAM_RW, Who, alice, auth_toml, bob, user};
use common::*;
use reqwest::Method;
use stowage_testkit::wire::{Framing, H1};

/// A `[limits]` section with `lines`.
fn limits(lines: &str) -> String {
    format!("[limits]\n{lines}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_over_http1_and_http2() {
    let reg = Reg::start_with_config(&limits("max_header_size = 8192"));
    let addr = reg.server.addr.clone();
    let under = "u".repeat(7000);
    let over = "o".repeat(9000);

    let mut c = H1::connect(&addr).await.unwrap();
    let (resp, _) = c
        .request("GET", "/v2/", &[("X-Filler", &under)], b"", Framing::Length)
        .await;
    assert_eq!(resp.expect("an answer").status, 200);
    let (resp, _) = c
        .request("GET", "/v2/", &[("X-Filler", &over)], b"", Framing::Length)
        .await;
    let resp = resp.expect("an answer");
    assert_eq!(resp.status, 431, "{resp:?}");
    assert!(
        resp.text().contains("limits.max_header_size"),
        "{}",
        resp.text()
    );
    // The answer does not cost the connection.
    let (resp, _) = c.request("GET", "/v2/", &[], b"", Framing::Length).await;
    assert_eq!(resp.expect("the connection still serves").status, 200);

    // A long request target counts too.
    let long_path = format!("/v2/{}/tags/list", "a".repeat(9000));
    let (resp, _) = c
        .request("GET", &long_path, &[], b"", Framing::Length)
        .await;
    assert_eq!(resp.expect("an answer").status, 431);

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("http://{addr}/v2/");
    let ok = h2
        .get(&url)
        .header("x-filler", &under)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.version(), reqwest::Version::HTTP_2);
    assert_eq!(ok.status(), 200);
    let refused = h2.get(&url).header("x-filler", &over).send().await.unwrap();
    assert_eq!(refused.status(), 431);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("limits.max_header_size")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_and_tags_are_refused_in_pushes_only() {
    let reg = Reg::start();
    // Pushed before the caps are lowered.
    let long_repo = format!("old/{}", "n".repeat(30));
    let long_tag = "t".repeat(40);
    let img = reg.push_image(&long_repo, &long_tag).await;
    let mut reg = reg;
    reg.restart_with_config(&limits("max_name_length = 20\nmax_tag_length = 16"));

    let long_name = format!("team/{}", "x".repeat(16));
    assert_eq!(long_name.len(), 21);
    reg.send(
        reg.req(Method::POST, &format!("/v2/{long_name}/blobs/uploads/"))
            .header("content-length", "0"),
    )
    .await
    .expect_error(400, "NAME_INVALID");
    let r = reg
        .put_manifest(&long_name, "v1", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "NAME_INVALID");
    assert!(r.text().contains("limits.max_name_length"), "{}", r.text());

    // A name at the cap pushes; a tag over it does not, nor in `?tag=`.
    let name = format!("team/{}", "y".repeat(15));
    assert_eq!(name.len(), 20);
    let pushed = reg.push_image(&name, &"v".repeat(16)).await;
    let r = reg
        .put_manifest(&name, &"w".repeat(17), OCI_MANIFEST, &pushed.manifest)
        .await;
    r.expect_error(400, "TAG_INVALID");
    assert!(r.text().contains("limits.max_tag_length"), "{}", r.text());
    let by_digest = format!("{}?tag=ok&tag={}", pushed.digest, "z".repeat(17));
    reg.put_manifest(&name, &by_digest, OCI_MANIFEST, &pushed.manifest)
        .await
        .expect_error(400, "TAG_INVALID");
    assert!(!reg.tags(&name).await.contains(&"ok".to_string()));

    // What was pushed before stays readable and deletable.
    reg.get_manifest(&long_repo, &long_tag)
        .await
        .expect_status(200);
    reg.delete(&format!("/v2/{long_repo}/manifests/{long_tag}"))
        .await
        .expect_status(202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_or_crowded_manifests_are_invalid() {
    let reg = Reg::start_with_config(&limits(
        "max_manifest_depth = 8\nmax_manifest_descriptors = 3",
    ));
    let repo = "shape/app";
    let config = unique_config();
    let config_d = reg.push_blob(repo, &config).await;
    let mut layers = Vec::new();
    for _ in 0..3 {
        let l = random_bytes(64);
        let d = reg.push_blob(repo, &l).await;
        layers.push(format!(
            r#"{{"mediaType":"{OCI_LAYER}","digest":"{d}","size":64}}"#
        ));
    }
    let manifest = |n: usize, extra: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{config_d}","size":{}}},"layers":[{}]{extra}}}"#,
            config.len(),
            layers[..n].join(",")
        )
    };
    // Config + 2 layers = 3 descriptors, nested 8 deep: accepted.
    let deep8 = format!(r#","x":{}1{}"#, "[".repeat(7), "]".repeat(7));
    reg.put_manifest(repo, "ok", OCI_MANIFEST, manifest(2, &deep8).as_bytes())
        .await
        .expect_status(201);
    let deep9 = format!(r#","x":{}1{}"#, "[".repeat(8), "]".repeat(8));
    let r = reg
        .put_manifest(repo, "deep", OCI_MANIFEST, manifest(2, &deep9).as_bytes())
        .await;
    r.expect_error(400, "MANIFEST_INVALID");
    assert!(
        r.text().contains("limits.max_manifest_depth"),
        "{}",
        r.text()
    );
    // Deep nesting far past the JSON parser's own limit is the same clear answer.
    let very_deep = format!(r#","x":{}1{}"#, "[".repeat(100_000), "]".repeat(100_000));
    reg.put_manifest(
        repo,
        "deeper",
        OCI_MANIFEST,
        manifest(2, &very_deep).as_bytes(),
    )
    .await
    .expect_error(400, "MANIFEST_INVALID");
    let r = reg
        .put_manifest(repo, "crowded", OCI_MANIFEST, manifest(3, "").as_bytes())
        .await;
    r.expect_error(400, "MANIFEST_INVALID");
    assert!(
        r.text().contains("limits.max_manifest_descriptors"),
        "{}",
        r.text()
    );
    assert_eq!(reg.tags(repo).await, vec!["ok".to_string()]);
}

/// Open a session as `who` and acknowledge one chunk of it (so it is live); the location.
async fn live_session(reg: &AuthReg, who: &Who, repo: &str) -> String {
    let started = reg.start_upload_as(who, repo, "").await;
    started.expect_status(202);
    let loc = started.location();
    reg.patch_as(who, &loc, 0, b"first chunk")
        .await
        .expect_status(202);
    loc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_sessions_per_user_are_capped_in_the_store() {
    let toml = format!(
        "{}{}",
        auth_toml(""),
        limits("max_uploads_per_principal = 2")
    );
    let mut reg = AuthReg::start_toml(
        &toml,
        &[
            user("alice", ALICE_PW, TEAM_RW),
            user("bob", common::auth::BOB_PW, TEAM_RW),
        ],
    );
    let a = alice();
    let first = live_session(&reg, &a, "team/a").await;
    let _second = live_session(&reg, &a, "team/b").await;
    let r = reg.start_upload_as(&a, "team/c", "").await;
    r.expect_error(429, "TOOMANYREQUESTS");
    assert!(r.header("retry-after").is_some(), "{r}");
    assert!(
        r.text().contains("limits.max_uploads_per_principal"),
        "{}",
        r.text()
    );
    // Other users have their own count; a single-request push (`POST ?digest=` with the body)
    // leaves no session behind and is not refused.
    live_session(&reg, &bob(), "team/a").await;
    let body = b"single request".to_vec();
    let digest = sha256_digest(&body);
    reg.send_as(
        &a,
        reg.req(
            Method::POST,
            &format!("/v2/team/a/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(body),
    )
    .await
    .expect_status(201);

    // The count lives in the metadata store: a restarted server still refuses.
    reg.reg.restart(true);
    reg.start_upload_as(&a, "team/c", "")
        .await
        .expect_error(429, "TOOMANYREQUESTS");
    // Cancelling a session frees its place.
    reg.send_as(&a, reg.req(Method::DELETE, &first))
        .await
        .expect_status(204);
    live_session(&reg, &a, "team/c").await;
    reg.start_upload_as(&a, "team/d", "")
        .await
        .expect_error(429, "TOOMANYREQUESTS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_chunks_cannot_exceed_the_cap() {
    let toml = format!(
        "{}{}",
        auth_toml(""),
        limits("max_uploads_per_principal = 1")
    );
    let reg = AuthReg::start_toml(&toml, &[user("alice", ALICE_PW, TEAM_RW)]);
    let a = alice();
    // Both opened while nothing is live: the POSTs pass, the first chunks decide.
    let mut locations = Vec::new();
    for repo in ["team/x", "team/y", "team/z"] {
        let r = reg.start_upload_as(&a, repo, "").await;
        r.expect_status(202);
        locations.push(r.location());
    }
    let answers = join_all(
        locations
            .iter()
            .map(|loc| reg.patch_as(&a, loc, 0, b"racing chunk")),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    let all: Vec<String> = answers.iter().map(|r| r.to_string()).collect();
    assert_eq!(statuses, vec![202, 429, 429], "{all:#?}");
    for r in answers.iter().filter(|r| r.status == 429) {
        r.expect_error(429, "TOOMANYREQUESTS");
    }
    // A refused session acknowledged nothing: its status is still empty.
    let refused = locations
        .iter()
        .zip(&answers)
        .find(|(_, r)| r.status == 429)
        .map(|(l, _)| l.clone())
        .unwrap();
    let status = reg.send_as(&a, reg.req(Method::GET, &refused)).await;
    status.expect_status(204);
    assert_eq!(status.header("range"), Some("0-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_no_user_or_address_limits_apply() {
    let reg = Reg::start_with_config(&limits(
        "max_uploads_per_principal = 1\nanonymous_rate = 1\nanonymous_burst = 1",
    ));
    for repo in ["open/a", "open/b", "open/c"] {
        let loc = reg.start_upload(repo).await;
        reg.patch_chunk(&loc, 0, b"chunk").await.expect_status(202);
    }
    for _ in 0..20 {
        reg.get("/v2/").await.expect_status(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_are_rate_limited_per_address() {
    let toml = format!(
        "{}{}",
        auth_toml("public = [\"library/**\"]\ntrusted_proxies = [\"127.0.0.1\"]"),
        limits("anonymous_rate = 0.2\nanonymous_burst = 3")
    );
    let reg = AuthReg::start_toml(&toml, &[user("alice", ALICE_PW, TEAM_RW)]);
    for _ in 0..3 {
        reg.get("/v2/").await.expect_status(401);
    }
    let r = reg.get("/v2/").await;
    r.expect_error(429, "TOOMANYREQUESTS");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert!(r.text().contains("limits.anonymous_rate"), "{}", r.text());
    // Anonymous tokens (for public pulls) come from the same bucket.
    reg.send(reg.req(
        Method::GET,
        "/auth/token?service=stowage&scope=repository:library/x:pull",
    ))
    .await
    .expect_error(429, "TOOMANYREQUESTS");

    // Credentials are never held to it, nor are health checks.
    reg.get_as(&alice(), "/v2/").await.expect_status(200);
    reg.get("/healthz").await.expect_status(200);

    // Behind a trusted proxy, the client address it names has its own bucket.
    let via = |ip: &str| {
        reg.req(Method::GET, "/v2/")
            .header("x-forwarded-for", ip.to_string())
    };
    for _ in 0..3 {
        reg.send(via("203.0.113.7")).await.expect_status(401);
    }
    reg.send(via("203.0.113.7"))
        .await
        .expect_error(429, "TOOMANYREQUESTS");
    reg.send(via("203.0.113.8")).await.expect_status(401);
}
