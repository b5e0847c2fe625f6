//! Operational endpoints the issue requires next to the OCI API: health, readiness and
//! Prometheus metrics.
//!
//! Issue: "`/healthz` and `/readyz` 200; `/metrics` Prometheus text with request counters
//! labelled by route template, never containing repository names."

mod common;

use common::*;

/// Issue: "`/healthz` and `/readyz` 200".
#[tokio::test]
async fn health_and_readiness() {
    let reg = Reg::start();
    reg.get("/healthz").await.expect_status(200);
    reg.get("/readyz").await.expect_status(200);
}

/// Issue: "`Docker-Distribution-API-Version: registry/2.0` on every response" - the operational
/// endpoints included.
#[tokio::test]
async fn api_version_header_on_ops_endpoints() {
    let reg = Reg::start();
    for path in ["/healthz", "/readyz", "/metrics", "/no-such-page"] {
        let r = reg.get(path).await;
        r.expect_header("docker-distribution-api-version", "registry/2.0");
    }
}

/// Issue: "`/metrics` Prometheus text with request counters labelled by route template, never
/// containing repository names" (nor tags or digests, which are as unbounded).
#[tokio::test]
async fn metrics_are_prometheus_text_without_repository_names() {
    let reg = Reg::start();
    let img = reg.push_image("secretteam/privateproject", "v1").await;
    reg.get_manifest("secretteam/privateproject", "v1")
        .await
        .expect_status(200);
    reg.get(&format!(
        "/v2/secretteam/privateproject/blobs/{}",
        img.layer["digest"].as_str().unwrap()
    ))
    .await;
    reg.get("/v2/secretteam/privateproject/tags/list").await;
    reg.get_manifest("secretteam/privateproject", "missing-tag")
        .await
        .expect_status(404);

    let r = reg.get("/metrics").await;
    r.expect_status(200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "metrics Content-Type:\n{r}"
    );
    let text = r.text();
    assert!(text.contains("# TYPE"), "no Prometheus TYPE lines:\n{r}");
    for secret in [
        "secretteam",
        "privateproject",
        "missing-tag",
        &img.digest[7..],
    ] {
        assert!(!text.contains(secret), "metrics leak {secret:?}:\n{text}");
    }
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('{'))
        .collect();
    let counter = samples
        .iter()
        .find(|l| l.contains("manifests") && !l.contains("secretteam"))
        .unwrap_or_else(|| {
            panic!("no request counter labelled with a manifest route template:\n{text}")
        });
    let value: f64 = counter
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(-1.0);
    assert!(
        value >= 1.0,
        "counter {counter:?} should count the requests made"
    );
}
