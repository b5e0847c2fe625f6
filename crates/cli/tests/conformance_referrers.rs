//! OCI conformance, the referrers API (end-12a/12b) and `OCI-Subject`.
//!
//! Spec: "A registry that supports the referrers API **MUST NOT** return `404 Not Found` for
//! referrers requests. If the request is invalid (for example, `<digest>` has invalid syntax),
//! the registry **MUST** return `400 Bad Request`"; the response is an OCI image index with
//! `Content-Type: application/vnd.oci.image.index.v1+json`; each descriptor "**MUST** include
//! `artifactType` if the referenced manifest or index defines one. If the referenced
//! **manifest** has no `artifactType`, the descriptor's `artifactType` **MUST** be set to the
//! config descriptor's `mediaType`. If the referenced **index** has no `artifactType`, the
//! descriptor's `artifactType` **MUST** be omitted. **MUST** include all annotations".
//! Issue: "`?artifactType=` filter with `OCI-Filters-Applied: artifactType`; `OCI-Subject`
//! header on manifest PUT with a subject; empty index (never 404) for unknown subjects; invalid
//! digest -> 400."

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const REPO: &str = "refs/app";
const SBOM: &str = "application/vnd.example.sbom.v1";
const SIG_CONFIG: &str = "application/vnd.example.sig.config.v1+json";
const BUNDLE: &str = "application/vnd.example.bundle.v1";

struct Pushed {
    media_type: &'static str,
    body: Vec<u8>,
    digest: String,
    artifact_type: Option<&'static str>,
    annotations: Value,
}

/// Push a referrer (manifest or index) with `subject`, asserting `OCI-Subject` on the PUT.
async fn push_referrer(reg: &Reg, repo: &str, subject: &Value, kind: &str, n: u32) -> Pushed {
    let annotations = json!({"org.example.n": n.to_string(), "org.opencontainers.image.created": "2024-05-01T00:00:00Z"});
    let (media_type, artifact_type, body) = match kind {
        "artifact" => {
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
                "config": empty_descriptor(), "layers": [empty_descriptor()], "subject": subject,
                "annotations": annotations});
            (OCI_MANIFEST, Some(SBOM), doc)
        }
        "config-typed" => {
            let config = format!("{{\"n\":{n}}}").into_bytes();
            reg.push_blob(repo, &config).await;
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(SIG_CONFIG, &config), "layers": [], "subject": subject,
                "annotations": annotations});
            (OCI_MANIFEST, Some(SIG_CONFIG), doc)
        }
        "index-typed" => {
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": BUNDLE,
                "manifests": [], "subject": subject, "annotations": annotations});
            (OCI_INDEX, Some(BUNDLE), doc)
        }
        _ => {
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                "subject": subject, "annotations": annotations});
            (OCI_INDEX, None, doc)
        }
    };
    let body = serde_json::to_vec(&body).unwrap();
    let digest = sha256_digest(&body);
    let r = reg.put_manifest(repo, &digest, media_type, &body).await;
    r.expect_status(201);
    let want = subject["digest"].as_str().unwrap();
    assert_eq!(
        r.header("oci-subject"),
        Some(want),
        "OCI-Subject on a PUT with a subject:\n{r}"
    );
    Pushed {
        media_type,
        body,
        digest,
        artifact_type,
        annotations,
    }
}

async fn setup(reg: &Reg) -> (Image, Vec<Pushed>) {
    reg.push_blob(REPO, b"{}").await;
    let subject_img = reg.push_image(REPO, "v1").await;
    let subject = manifest_descriptor(OCI_MANIFEST, &subject_img.manifest);
    let mut pushed = Vec::new();
    for (i, kind) in ["artifact", "config-typed", "index-typed", "index-untyped"]
        .iter()
        .enumerate()
    {
        pushed.push(push_referrer(reg, REPO, &subject, kind, i as u32).await);
    }
    (subject_img, pushed)
}

async fn referrers(reg: &Reg, repo: &str, digest: &str, query: &str) -> Resp {
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    let r = reg.get(&format!("/v2/{repo}/referrers/{digest}{q}")).await;
    r.expect_status(200)
        .expect_header("content-type", OCI_INDEX);
    let v = r.json();
    assert_eq!(v["schemaVersion"], 2, "referrers index schemaVersion:\n{r}");
    assert_eq!(v["mediaType"], OCI_INDEX, "referrers index mediaType:\n{r}");
    assert!(
        v["manifests"].is_array(),
        "referrers index without a manifests array:\n{r}"
    );
    r
}

fn find<'a>(r: &'a Value, digest: &str) -> Option<&'a Value> {
    r["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == digest)
}

/// All referrers are listed with mediaType, size, artifactType per the rules and annotations.
#[tokio::test]
async fn referrers_list_descriptors() {
    let reg = Reg::start();
    let (subject, pushed) = setup(&reg).await;
    let r = referrers(&reg, REPO, &subject.digest, "").await;
    let v = r.json();
    assert_eq!(
        v["manifests"].as_array().unwrap().len(),
        pushed.len(),
        "number of referrers:\n{r}"
    );
    for p in &pushed {
        let d =
            find(&v, &p.digest).unwrap_or_else(|| panic!("referrer {} missing:\n{r}", p.digest));
        assert_eq!(d["mediaType"], p.media_type, "descriptor mediaType:\n{r}");
        assert_eq!(d["size"], p.body.len(), "descriptor size:\n{r}");
        match p.artifact_type {
            Some(at) => assert_eq!(d["artifactType"], at, "descriptor artifactType:\n{r}"),
            None => assert!(
                d.get("artifactType").is_none(),
                "index without artifactType must omit it:\n{r}"
            ),
        }
        assert_eq!(
            d["annotations"], p.annotations,
            "descriptor annotations:\n{r}"
        );
    }
}

/// Spec: "If the registry applies the filter: The response **MUST** include
/// `OCI-Filters-Applied: artifactType`".
#[tokio::test]
async fn referrers_filter_by_artifact_type() {
    let reg = Reg::start();
    let (subject, pushed) = setup(&reg).await;
    for (at, want) in [
        (SBOM, &pushed[0]),
        (SIG_CONFIG, &pushed[1]),
        (BUNDLE, &pushed[2]),
    ] {
        let r = referrers(
            &reg,
            REPO,
            &subject.digest,
            &format!("artifactType={}", encode_query(at)),
        )
        .await;
        r.expect_header("oci-filters-applied", "artifactType");
        let v = r.json();
        let list = v["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 1, "filter {at}:\n{r}");
        assert_eq!(list[0]["digest"], want.digest.as_str(), "filter {at}:\n{r}");
    }
    let r = referrers(
        &reg,
        REPO,
        &subject.digest,
        "artifactType=application%2Fnone",
    )
    .await;
    r.expect_header("oci-filters-applied", "artifactType");
    assert!(r.json()["manifests"].as_array().unwrap().is_empty(), "{r}");
}

/// Spec: "If no referrers exist, the registry **MUST** return an image index with an empty
/// `manifests` list" - for an unknown digest and for a manifest without referrers.
#[tokio::test]
async fn referrers_empty_never_404() {
    let reg = Reg::start();
    let img = reg.push_image(REPO, "alone").await;
    for d in [
        img.digest.clone(),
        sha256_digest(b"unknown subject"),
        sha512_digest(b"unknown"),
    ] {
        let r = referrers(&reg, REPO, &d, "").await;
        assert!(r.json()["manifests"].as_array().unwrap().is_empty(), "{r}");
    }
    // A repository that does not exist: an empty index, or 404 NAME_UNKNOWN at most.
    let r = reg
        .get(&format!("/v2/refs/nowhere/referrers/{}", img.digest))
        .await;
    match r.status {
        200 => assert!(r.json()["manifests"].as_array().unwrap().is_empty(), "{r}"),
        404 => {
            r.expect_error(404, "NAME_UNKNOWN");
        }
        _ => panic!("referrers of an unknown repository:\n{r}"),
    }
}

/// Spec: "If the request is invalid (for example, `<digest>` has invalid syntax), the
/// registry **MUST** return `400 Bad Request`."
#[tokio::test]
async fn referrers_invalid_digest_is_400() {
    let reg = Reg::start();
    reg.push_image(REPO, "v1").await;
    for d in [
        "sha256:abc",
        "v1",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:ZZZZ",
    ] {
        let r = reg.get(&format!("/v2/{REPO}/referrers/{d}")).await;
        assert_eq!(r.status, 400, "referrers/{d}:\n{r}");
        r.error_code();
    }
}

/// v1.1.1 suite: a referrer whose subject was never pushed is listed for that digest.
#[tokio::test]
async fn referrer_of_missing_subject_is_listed() {
    let reg = Reg::start();
    reg.push_blob(REPO, b"{}").await;
    let ghost = manifest_descriptor(OCI_MANIFEST, b"{\"ghost\":true}");
    let p = push_referrer(&reg, REPO, &ghost, "artifact", 9).await;
    let r = referrers(&reg, REPO, ghost["digest"].as_str().unwrap(), "").await;
    let v = r.json();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(find(&v, &p.digest).unwrap()["artifactType"], SBOM);
}

/// Referrers are per repository: a referrer in another repository is not listed.
#[tokio::test]
async fn referrers_scoped_to_repository() {
    let reg = Reg::start();
    let (subject, _) = setup(&reg).await;
    reg.push_blob("refs/other", b"{}").await;
    let subject_desc = manifest_descriptor(OCI_MANIFEST, &subject.manifest);
    let foreign = push_referrer(&reg, "refs/other", &subject_desc, "artifact", 77).await;
    let v = referrers(&reg, REPO, &subject.digest, "").await.json();
    assert!(
        find(&v, &foreign.digest).is_none(),
        "referrer from another repository listed: {v}"
    );
    let v = referrers(&reg, "refs/other", &subject.digest, "")
        .await
        .json();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{v}");
}

/// Deleting a referrer removes it from the list (spec, Deleting Manifests: once deleted the
/// manifest is gone; "Registries MUST include all newly pushed image manifests with a valid
/// `subject`" - and only those that exist).
#[tokio::test]
async fn deleted_referrer_disappears() {
    let reg = Reg::start();
    let (subject, pushed) = setup(&reg).await;
    reg.delete(&format!("/v2/{REPO}/manifests/{}", pushed[0].digest))
        .await
        .expect_status(202);
    let v = referrers(&reg, REPO, &subject.digest, "").await.json();
    assert_eq!(
        v["manifests"].as_array().unwrap().len(),
        pushed.len() - 1,
        "{v}"
    );
    assert!(
        find(&v, &pushed[0].digest).is_none(),
        "deleted referrer still listed: {v}"
    );
}

/// A manifest without `subject` gets no `OCI-Subject` header; a referrer pushed by tag still
/// gets one.
#[tokio::test]
async fn oci_subject_only_with_subject() {
    let reg = Reg::start();
    reg.push_blob(REPO, b"{}").await;
    let img = reg.push_image(REPO, "plain").await;
    let r = reg
        .put_manifest(REPO, "plain2", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_status(201);
    assert!(
        r.header("oci-subject").is_none(),
        "OCI-Subject without a subject:\n{r}"
    );

    let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
        "config": empty_descriptor(), "layers": [empty_descriptor()],
        "subject": manifest_descriptor(OCI_MANIFEST, &img.manifest)});
    let body = serde_json::to_vec(&doc).unwrap();
    let r = reg
        .send(
            reg.req(Method::PUT, &format!("/v2/{REPO}/manifests/sbom-tag"))
                .header("content-type", OCI_MANIFEST)
                .body(body),
        )
        .await;
    r.expect_status(201)
        .expect_header("oci-subject", &img.digest);
}

/// Spec: "If the registry cannot return all descriptors in a single response, it **MUST**
/// include a `Link` header pointing to the next page ... Each page is a valid image index
/// containing a different subset of descriptors." With a small page size every referrer is
/// still reachable, exactly once.
#[tokio::test]
async fn referrers_pages_cover_everything() {
    let reg = Reg::start_with_config("[listing]\npage_size = 3\n");
    reg.push_blob(REPO, b"{}").await;
    let img = reg.push_image(REPO, "v1").await;
    let subject = manifest_descriptor(OCI_MANIFEST, &img.manifest);
    let mut want = Vec::new();
    for n in 0..7 {
        want.push(
            push_referrer(&reg, REPO, &subject, "artifact", n)
                .await
                .digest,
        );
    }
    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{REPO}/referrers/{}", img.digest));
    while let Some(url) = next {
        assert!(
            seen.len() <= want.len(),
            "referrers pagination does not terminate"
        );
        let r = reg.get(&url).await;
        r.expect_status(200)
            .expect_header("content-type", OCI_INDEX);
        for d in r.json()["manifests"].as_array().unwrap() {
            seen.push(d["digest"].as_str().unwrap().to_string());
        }
        next = next_link(&r);
    }
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "referrers over all pages");
}
