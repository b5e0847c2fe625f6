//! OCI conformance, manifest references and tagging: referenced blobs must exist in the
//! repository with the stated size (except `subject` and allowed foreign `urls`), index
//! children must exist, repository isolation of blobs, `?tag=` on push by digest, and tags
//! moving between manifests and indexes.
//!
//! Spec: "A registry **may** reject a manifest if it contains descriptors (other than the
//! `subject` field) that reference blobs or manifests that do not exist in the repository. When
//! a manifest is rejected for this reason, the registry **must** return one or more
//! `MANIFEST_BLOB_UNKNOWN` errors." Issue: "Every referenced blob must exist in the repository
//! with the size the descriptor states (missing -> 400 MANIFEST_BLOB_UNKNOWN, wrong size -> 400
//! MANIFEST_INVALID), except `subject` (may be missing) and descriptors with `urls` matching the
//! allow-list; index children must exist (default) -> MANIFEST_BLOB_UNKNOWN otherwise."

mod common;

use common::*;
use serde_json::json;

/// Missing config or layer -> 400 MANIFEST_BLOB_UNKNOWN; nothing is stored.
#[tokio::test]
async fn missing_blob_is_manifest_blob_unknown() {
    let reg = Reg::start();
    let config = unique_config();
    let layer = random_bytes(100);
    reg.push_blob("ref/missing", &config).await;
    let manifest = image_manifest(
        &descriptor(OCI_CONFIG, &config),
        &[descriptor(OCI_LAYER, &layer)],
    );
    reg.put_manifest("ref/missing", "t", OCI_MANIFEST, &manifest)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let no_config = image_manifest(&descriptor(OCI_CONFIG, b"never pushed"), &[]);
    reg.put_manifest("ref/missing", "t", OCI_MANIFEST, &no_config)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get_manifest("ref/missing", "t")
        .await
        .expect_status(404);

    reg.push_blob("ref/missing", &layer).await;
    reg.push_manifest("ref/missing", "t", OCI_MANIFEST, &manifest)
        .await;
}

/// Issue: "wrong size -> 400 MANIFEST_INVALID".
#[tokio::test]
async fn wrong_descriptor_size_is_manifest_invalid() {
    let reg = Reg::start();
    let config = unique_config();
    let layer = random_bytes(100);
    reg.push_blob("ref/size", &config).await;
    reg.push_blob("ref/size", &layer).await;
    let mut bad = descriptor(OCI_LAYER, &layer);
    bad["size"] = json!(101);
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[bad]);
    reg.put_manifest("ref/size", "t", OCI_MANIFEST, &manifest)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    let mut bad_config = descriptor(OCI_CONFIG, &config);
    bad_config["size"] = json!(1);
    let manifest = image_manifest(&bad_config, &[]);
    reg.put_manifest("ref/size", "t", OCI_MANIFEST, &manifest)
        .await
        .expect_error(400, "MANIFEST_INVALID");
}

/// Issue: "A blob pushed to repo A is NOT usable by a manifest in repo B unless mounted."
#[tokio::test]
async fn blob_of_other_repository_not_usable() {
    let reg = Reg::start();
    let img = reg.push_image("ref/a", "v1").await;
    let r = reg
        .put_manifest("ref/b", "v1", OCI_MANIFEST, &img.manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get_manifest("ref/b", "v1").await.expect_status(404);
}

/// Spec: "A registry **must** accept a manifest that includes a `subject` field referencing
/// another manifest that does not yet exist in the repository."
#[tokio::test]
async fn missing_subject_is_accepted() {
    let reg = Reg::start();
    reg.push_blob("ref/subject", b"{}").await;
    let subject = descriptor(OCI_MANIFEST, b"{\"never\":\"pushed\"}");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": empty_descriptor(),
        "layers": [empty_descriptor()],
        "subject": subject,
    }))
    .unwrap();
    let r = reg
        .put_manifest(
            "ref/subject",
            &sha256_digest(&manifest),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    r.expect_status(201);
}

fn foreign_manifest(config: &[u8], url: &str, layer: &[u8]) -> Vec<u8> {
    let mut l = descriptor(OCI_LAYER_NONDIST, layer);
    l["urls"] = json!([url]);
    image_manifest(&descriptor(OCI_CONFIG, config), &[l])
}

/// Issue: "except ... descriptors with `urls` matching the allow-list": with the default
/// allow-list an `https://` layer need not be pushed; a URL outside the list (`ftp://`,
/// `file://`) makes the layer an ordinary blob that must exist.
#[tokio::test]
async fn foreign_layers_with_allowed_urls() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("ref/foreign", &config).await;
    let allowed = foreign_manifest(
        &config,
        "https://cdn.example.com/layer.tgz",
        &random_bytes(50),
    );
    reg.push_manifest("ref/foreign", "ok", OCI_MANIFEST, &allowed)
        .await;
    for url in ["ftp://cdn.example.com/layer.tgz", "file:///etc/passwd"] {
        let denied = foreign_manifest(&config, url, &random_bytes(50));
        let r = reg
            .put_manifest("ref/foreign", "no", OCI_MANIFEST, &denied)
            .await;
        r.expect_error_any(400, &["MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID"]);
    }
}

/// `[manifests] foreign_url_allow` is configurable: only the listed prefixes are exempt.
#[tokio::test]
async fn foreign_url_allow_list_configurable() {
    let reg = Reg::start_with_config(
        "[manifests]\nforeign_url_allow = [\"https://mirror.example.com/\"]\n",
    );
    let config = unique_config();
    reg.push_blob("ref/allow", &config).await;
    let ok = foreign_manifest(
        &config,
        "https://mirror.example.com/x.tgz",
        &random_bytes(40),
    );
    reg.push_manifest("ref/allow", "ok", OCI_MANIFEST, &ok)
        .await;
    let other = foreign_manifest(&config, "https://evil.example.net/x.tgz", &random_bytes(40));
    let r = reg
        .put_manifest("ref/allow", "no", OCI_MANIFEST, &other)
        .await;
    r.expect_error_any(400, &["MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID"]);
}

/// Issue: "index children must exist (default) -> MANIFEST_BLOB_UNKNOWN otherwise".
#[tokio::test]
async fn index_children_must_exist() {
    let reg = Reg::start();
    let img = reg.push_image("ref/index", "a").await;
    let ghost = manifest_descriptor(OCI_MANIFEST, b"{\"schemaVersion\":2}");
    let index = image_index(&[manifest_descriptor(OCI_MANIFEST, &img.manifest), ghost]);
    reg.put_manifest("ref/index", "multi", OCI_INDEX, &index)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // A child manifest of another repository does not count either.
    let other = reg.push_image("ref/elsewhere", "x").await;
    let index = image_index(&[manifest_descriptor(OCI_MANIFEST, &other.manifest)]);
    reg.put_manifest("ref/index", "multi", OCI_INDEX, &index)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    // Wrong size of an existing child.
    let mut wrong = manifest_descriptor(OCI_MANIFEST, &img.manifest);
    wrong["size"] = json!(img.manifest.len() + 1);
    let index = image_index(&[wrong]);
    reg.put_manifest("ref/index", "multi", OCI_INDEX, &index)
        .await
        .expect_error(400, "MANIFEST_INVALID");
}

/// `[manifests] index_children_must_exist = false` lets an index name children that are not
/// (yet) pushed (sparse indexes, v1.2 suite data set "sparse").
#[tokio::test]
async fn sparse_index_allowed_when_configured() {
    let reg = Reg::start_with_config("[manifests]\nindex_children_must_exist = false\n");
    let ghost = manifest_descriptor(OCI_MANIFEST, b"{\"schemaVersion\":2}");
    let index = image_index(&[ghost]);
    reg.push_manifest("ref/sparse", "multi", OCI_INDEX, &index)
        .await;
}

/// Spec v1.2 (end-7b): `PUT /v2/<name>/manifests/<digest>?tag=1&tag=2` answers 201 with
/// `OCI-Tag` header(s). Issue: "Push by digest with `?tag=a&tag=b` (several `OCI-Tag` response
/// headers; both tags then resolve)".
#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("ref/tags", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let digest = sha256_digest(&manifest);
    let r = reg
        .put_manifest(
            "ref/tags",
            &format!("{digest}?tag=a&tag=b"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    r.expect_status(201)
        .expect_header("docker-content-digest", &digest);
    let mut tags = r.header_values("oci-tag");
    tags.sort();
    assert_eq!(tags, ["a", "b"], "OCI-Tag headers:\n{r}");
    for t in ["a", "b"] {
        reg.get_manifest("ref/tags", t)
            .await
            .expect_status(200)
            .expect_header("docker-content-digest", &digest);
    }
    assert_eq!(reg.tags("ref/tags").await, ["a", "b"]);
}

/// Spec v1.2: registries "SHOULD accept at least 10 tags" in one push by digest.
#[tokio::test]
async fn push_by_digest_with_ten_tags() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("ref/ten", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let digest = sha256_digest(&manifest);
    let names: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let query = names
        .iter()
        .map(|t| format!("tag={t}"))
        .collect::<Vec<_>>()
        .join("&");
    let r = reg
        .put_manifest(
            "ref/ten",
            &format!("{digest}?{query}"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    r.expect_status(201);
    assert_eq!(
        r.header_values("oci-tag").len(),
        10,
        "OCI-Tag headers:\n{r}"
    );
    assert_eq!(reg.tags("ref/ten").await, names);
}

/// An invalid tag in `?tag=` is refused and nothing is tagged.
#[tokio::test]
async fn push_by_digest_with_invalid_tag_parameter() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("ref/badtag", &config).await;
    let manifest = image_manifest(&descriptor(OCI_CONFIG, &config), &[]);
    let digest = sha256_digest(&manifest);
    let r = reg
        .put_manifest(
            "ref/badtag",
            &format!("{digest}?tag=ok&tag=-bad"),
            OCI_MANIFEST,
            &manifest,
        )
        .await;
    assert_eq!(r.status, 400, "invalid ?tag= value:\n{r}");
    r.error_code();
    reg.get_manifest("ref/badtag", "ok")
        .await
        .expect_status(404);
}

/// Issue: "A tag may move between an index and a manifest"; GET by tag then answers with the
/// new media type and digest.
#[tokio::test]
async fn tag_moves_between_index_and_manifest() {
    let reg = Reg::start();
    let img = reg.push_image("ref/move", "img").await;
    let index = image_index(&[manifest_descriptor(OCI_MANIFEST, &img.manifest)]);
    let idx = reg
        .push_manifest("ref/move", "latest", OCI_INDEX, &index)
        .await;
    reg.get_manifest("ref/move", "latest")
        .await
        .expect_header("content-type", OCI_INDEX)
        .expect_header("docker-content-digest", &idx);

    reg.push_manifest("ref/move", "latest", OCI_MANIFEST, &img.manifest)
        .await;
    let r = reg.get_manifest("ref/move", "latest").await;
    r.expect_header("content-type", OCI_MANIFEST)
        .expect_header("docker-content-digest", &img.digest);
    assert!(r.body == img.manifest);

    reg.push_manifest("ref/move", "latest", OCI_INDEX, &index)
        .await;
    reg.get_manifest("ref/move", "latest")
        .await
        .expect_header("content-type", OCI_INDEX);
    reg.get_manifest("ref/move", &idx).await.expect_status(200);
}

/// Concurrent pushes of different manifests to one tag all succeed and leave the tag on one of
/// them, consistently for GET by tag, HEAD by tag and the tag list.
#[tokio::test]
async fn concurrent_pushes_to_one_tag() {
    let reg = Reg::start();
    let config = unique_config();
    reg.push_blob("ref/race", &config).await;
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| {
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config), "layers": [],
                "annotations": {"n": i.to_string()}});
            serde_json::to_vec(&doc).unwrap()
        })
        .collect();
    let pushes = bodies
        .iter()
        .map(|b| reg.put_manifest("ref/race", "latest", OCI_MANIFEST, b));
    let results = join_all(pushes).await;
    for r in &results {
        r.expect_status(201);
    }
    let get = reg.get_manifest("ref/race", "latest").await;
    get.expect_status(200);
    assert!(
        bodies.contains(&get.body),
        "tag points at none of the pushed manifests:\n{get}"
    );
    let head = reg.head_manifest("ref/race", "latest").await;
    assert_eq!(
        head.header("docker-content-digest"),
        get.header("docker-content-digest")
    );
    assert_eq!(reg.tags("ref/race").await, ["latest"]);
}

/// Docker manifest lists and schema 2 manifests follow the same rules: references must exist.
#[tokio::test]
async fn docker_references_must_exist() {
    let reg = Reg::start();
    let ghost = manifest_descriptor(DOCKER_MANIFEST, b"{\"schemaVersion\":2,\"ghost\":1}");
    let list = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [ghost]}),
    )
    .unwrap();
    let r = reg
        .put_manifest("ref/dlist", "multi", DOCKER_LIST, &list)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");

    // And a Docker schema 2 manifest whose layer was never pushed.
    let config = unique_config();
    reg.push_blob("ref/dlist", &config).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, b"never pushed")]}))
    .unwrap();
    let r = reg
        .put_manifest("ref/dlist", "single", DOCKER_MANIFEST, &manifest)
        .await;
    r.expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Re-pushing an existing manifest by digest with `?tag=` adds the tags (idempotent PUT).
#[tokio::test]
async fn repush_by_digest_adds_tags() {
    let reg = Reg::start();
    let img = reg.push_image("ref/repush", "first").await;
    let r = reg
        .put_manifest(
            "ref/repush",
            &format!("{}?tag=second", img.digest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    r.expect_status(201).expect_header("oci-tag", "second");
    assert_eq!(reg.tags("ref/repush").await, ["first", "second"]);
}
