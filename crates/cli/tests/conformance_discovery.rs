//! OCI conformance, category "Content Discovery": tag listing and the repository catalog,
//! with ordering and `n`/`last`/`Link` pagination. The referrers API is in
//! `conformance_referrers.rs`.
//!
//! Spec: "the tags **MUST** be sorted in lexical ... or “ASCIIbetical” order"; "If `n=0`, the
//! registry **must** return an empty list and **must not** include a `Link` header"; "`<tagname>`
//! itself is **not** included in the results". Issue: "tags sorted in byte (ASCII) order (e.g.
//! "B" < "a" < "b"; "1" < "10" < "9"); `n`/`last` pagination with RFC 5988 `Link:
//! </v2/<name>/tags/list?n=..&last=..>; rel="next"`; without `n` a page cap (config
//! listing.page_size; set it to 3 in a test) with `Link`; `n=0` gives an empty list; invalid `n`
//! (e.g. `abc`, `-1`) gives 400; unknown repo -> 404 NAME_UNKNOWN. `/v2/_catalog` the same way."

mod common;

use common::*;

const TAGS: [&str; 7] = ["b", "a", "B", "10", "9", "1", "a.b_c-d"];
const SORTED: [&str; 7] = ["1", "10", "9", "B", "a", "a.b_c-d", "b"];

async fn tagged_repo(reg: &Reg, repo: &str) {
    let img = reg.push_image(repo, TAGS[0]).await;
    for t in &TAGS[1..] {
        reg.push_manifest(repo, t, OCI_MANIFEST, &img.manifest)
            .await;
    }
}

/// Follow `Link` headers from `first`, checking each page, and return all entries.
async fn follow(reg: &Reg, first: &str, key: &str, link_prefix: &str, page: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut next = Some(first.to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages < 50, "pagination does not terminate");
        let r = reg.get(&url).await;
        r.expect_status(200);
        let items = string_list(&r.json()[key]);
        next = next_link(&r);
        if let Some(link) = &next {
            let path = strip_origin(link);
            assert!(
                path.starts_with(link_prefix),
                "Link {link} should start with {link_prefix}:\n{r}"
            );
            assert!(path.contains("last="), "Link {link} has no `last`:\n{r}");
            assert_eq!(
                items.len(),
                page,
                "a page followed by a Link should be full:\n{r}"
            );
        }
        all.extend(items);
    }
    all
}

/// Spec: "If the list is not empty, the tags **MUST** be sorted in lexical ... or
/// “ASCIIbetical” order"; issue: "tags sorted in byte (ASCII) order (e.g. "B" < "a" < "b";
/// "1" < "10" < "9")". The response carries `name` and `tags`.
#[tokio::test]
async fn tags_sorted_in_byte_order() {
    let reg = Reg::start();
    tagged_repo(&reg, "disc/sorted").await;
    let r = reg.get("/v2/disc/sorted/tags/list").await;
    r.expect_status(200);
    let v = r.json();
    assert_eq!(v["name"], "disc/sorted", "tags list `name`:\n{r}");
    assert_eq!(
        string_list(&v["tags"]),
        SORTED,
        "tags not in byte order:\n{r}"
    );
    assert!(
        r.header("link").is_none(),
        "no Link when everything fits:\n{r}"
    );
}

/// Spec: "It **returns up to `<int>` tags** ... If more tags are available, the registry
/// **may** include a `Link` header (RFC5988) with `rel="next"`"; issue: "`n`/`last` pagination
/// with RFC 5988 `Link: </v2/<name>/tags/list?n=..&last=..>; rel="next"`".
#[tokio::test]
async fn tags_paginate_with_n_and_link() {
    let reg = Reg::start();
    tagged_repo(&reg, "disc/pages").await;
    let r = reg.get("/v2/disc/pages/tags/list?n=2").await;
    r.expect_status(200);
    assert_eq!(
        string_list(&r.json()["tags"]),
        ["1", "10"],
        "first page:\n{r}"
    );
    let link = next_link(&r).unwrap_or_else(|| panic!("no Link header with more tags left:\n{r}"));
    let path = strip_origin(&link);
    assert!(
        path.starts_with("/v2/disc/pages/tags/list?"),
        "Link target:\n{r}"
    );
    assert!(
        path.contains("n=2") && path.contains("last=10"),
        "Link should carry n=2 and last=10:\n{r}"
    );

    let all = follow(
        &reg,
        "/v2/disc/pages/tags/list?n=2",
        "tags",
        "/v2/disc/pages/tags/list?",
        2,
    )
    .await;
    assert_eq!(all, SORTED);
    let all = follow(
        &reg,
        "/v2/disc/pages/tags/list?n=3",
        "tags",
        "/v2/disc/pages/tags/list?",
        3,
    )
    .await;
    assert_eq!(all, SORTED);
}

/// Spec: "The registry returns up to `<int>` tags that appear **after** `<tagname>`"; "When
/// using `last`, the `n` parameter is optional."
#[tokio::test]
async fn tags_last_is_exclusive() {
    let reg = Reg::start();
    tagged_repo(&reg, "disc/last").await;
    let r = reg.get("/v2/disc/last/tags/list?n=2&last=9").await;
    assert_eq!(
        string_list(&r.expect_status(200).json()["tags"]),
        ["B", "a"],
        "{r}"
    );
    let r = reg.get("/v2/disc/last/tags/list?last=a").await;
    assert_eq!(
        string_list(&r.expect_status(200).json()["tags"]),
        ["a.b_c-d", "b"],
        "{r}"
    );
    // `last` need not be an existing tag.
    let r = reg.get("/v2/disc/last/tags/list?last=A").await;
    assert_eq!(
        string_list(&r.expect_status(200).json()["tags"]),
        ["B", "a", "a.b_c-d", "b"],
        "{r}"
    );
    let r = reg.get("/v2/disc/last/tags/list?last=b").await;
    assert!(
        string_list(&r.expect_status(200).json()["tags"]).is_empty(),
        "{r}"
    );
    assert!(r.header("link").is_none(), "{r}");
}

/// Spec: "If `n=0`, the registry **must** return an empty list and **must not** include a
/// `Link` header."
#[tokio::test]
async fn tags_n_zero_is_empty() {
    let reg = Reg::start();
    tagged_repo(&reg, "disc/zero").await;
    let r = reg.get("/v2/disc/zero/tags/list?n=0").await;
    r.expect_status(200);
    assert!(
        string_list(&r.json()["tags"]).is_empty(),
        "n=0 must give an empty list:\n{r}"
    );
    assert!(
        r.header("link").is_none(),
        "n=0 must not carry a Link:\n{r}"
    );
}

/// Issue: "invalid `n` (e.g. `abc`, `-1`) gives 400".
#[tokio::test]
async fn tags_invalid_n_is_400() {
    let reg = Reg::start();
    tagged_repo(&reg, "disc/badn").await;
    for n in ["abc", "-1", "1.5", "", "99999999999999999999999"] {
        let r = reg.get(&format!("/v2/disc/badn/tags/list?n={n}")).await;
        assert_eq!(r.status, 400, "n={n:?} should be 400:\n{r}");
        r.error_code();
    }
}

/// Issue: "without `n` a page cap (config listing.page_size; set it to 3 in a test) with
/// `Link`".
#[tokio::test]
async fn tags_page_size_cap_without_n() {
    let reg = Reg::start_with_config("[listing]\npage_size = 3\n");
    tagged_repo(&reg, "disc/cap").await;
    let r = reg.get("/v2/disc/cap/tags/list").await;
    r.expect_status(200);
    assert_eq!(
        string_list(&r.json()["tags"]),
        ["1", "10", "9"],
        "first capped page:\n{r}"
    );
    assert!(next_link(&r).is_some(), "capped page without Link:\n{r}");
    let all = follow(
        &reg,
        "/v2/disc/cap/tags/list",
        "tags",
        "/v2/disc/cap/tags/list?",
        3,
    )
    .await;
    assert_eq!(all, SORTED);
    // A larger n is capped too, still with a Link.
    let r = reg.get("/v2/disc/cap/tags/list?n=100").await;
    let tags = string_list(&r.expect_status(200).json()["tags"]);
    assert!(
        tags.len() == 7 || (tags.len() == 3 && next_link(&r).is_some()),
        "n above the cap:\n{r}"
    );
}

/// Spec: "If the repository exists, the registry **MUST** return `200 OK`"; issue: "unknown
/// repo -> 404 NAME_UNKNOWN".
#[tokio::test]
async fn tags_of_unknown_repository() {
    let reg = Reg::start();
    reg.get("/v2/disc/nobody/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    reg.get("/v2/disc/nobody/tags/list?n=1")
        .await
        .expect_error(404, "NAME_UNKNOWN");
}

/// A repository with blobs but no tags exists: 200 with an empty list (spec: "The list of tags
/// **MAY** be empty").
#[tokio::test]
async fn tags_of_repository_without_tags() {
    let reg = Reg::start();
    let img = reg.push_image("disc/untagged", "tmp").await;
    reg.push_manifest("disc/untagged", &img.digest, OCI_MANIFEST, &img.manifest)
        .await;
    reg.delete("/v2/disc/untagged/manifests/tmp")
        .await
        .expect_status(202);
    let r = reg.get("/v2/disc/untagged/tags/list").await;
    r.expect_status(200);
    let tags = &r.json()["tags"];
    assert!(
        tags.is_null() || string_list(tags).is_empty(),
        "no tags expected:\n{r}"
    );
}

const REPOS: [&str; 6] = [
    "zeta",
    "alpha/beta",
    "alpha",
    "alpha-x",
    "1repo",
    "alpha/beta/gamma",
];
const REPOS_SORTED: [&str; 6] = [
    "1repo",
    "alpha",
    "alpha-x",
    "alpha/beta",
    "alpha/beta/gamma",
    "zeta",
];

async fn catalog_repos(reg: &Reg) {
    for repo in REPOS {
        reg.push_image(repo, "v1").await;
    }
}

/// Docker V2 API (`GET /v2/_catalog`), as the issue requires: sorted in byte order.
#[tokio::test]
async fn catalog_sorted() {
    let reg = Reg::start();
    catalog_repos(&reg).await;
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert_eq!(
        string_list(&r.json()["repositories"]),
        REPOS_SORTED,
        "catalog order:\n{r}"
    );
}

/// `/v2/_catalog?n=&last=` paginates with `Link: </v2/_catalog?n=..&last=..>; rel="next"`.
#[tokio::test]
async fn catalog_paginated() {
    let reg = Reg::start();
    catalog_repos(&reg).await;
    let r = reg.get("/v2/_catalog?n=2").await;
    r.expect_status(200);
    assert_eq!(
        string_list(&r.json()["repositories"]),
        ["1repo", "alpha"],
        "{r}"
    );
    let link = next_link(&r).unwrap_or_else(|| panic!("catalog page without Link:\n{r}"));
    assert!(
        strip_origin(&link).starts_with("/v2/_catalog?") && link.contains("last=alpha"),
        "Link:\n{r}"
    );
    assert_eq!(
        follow(&reg, "/v2/_catalog?n=2", "repositories", "/v2/_catalog?", 2).await,
        REPOS_SORTED
    );
    let r = reg.get("/v2/_catalog?last=alpha-x").await;
    assert_eq!(
        string_list(&r.expect_status(200).json()["repositories"]),
        ["alpha/beta", "alpha/beta/gamma", "zeta"]
    );
    let r = reg.get("/v2/_catalog?n=0").await;
    assert!(
        string_list(&r.expect_status(200).json()["repositories"]).is_empty(),
        "{r}"
    );
    assert!(r.header("link").is_none(), "{r}");
    for n in ["abc", "-1"] {
        assert_eq!(
            reg.get(&format!("/v2/_catalog?n={n}")).await.status,
            400,
            "catalog n={n}"
        );
    }
}

/// The catalog page cap applies without `n` too.
#[tokio::test]
async fn catalog_page_size_cap() {
    let reg = Reg::start_with_config("[listing]\npage_size = 3\n");
    catalog_repos(&reg).await;
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert_eq!(string_list(&r.json()["repositories"]).len(), 3, "{r}");
    assert!(next_link(&r).is_some(), "{r}");
    assert_eq!(
        follow(&reg, "/v2/_catalog", "repositories", "/v2/_catalog?", 3).await,
        REPOS_SORTED
    );
}

/// An empty registry has an empty catalog.
#[tokio::test]
async fn catalog_empty() {
    let reg = Reg::start();
    let r = reg.get("/v2/_catalog").await;
    r.expect_status(200);
    assert!(string_list(&r.json()["repositories"]).is_empty(), "{r}");
}
