//! The shared `MetadataStore` test suite: every backend's tests call [`run`] so SQLite and
//! PostgreSQL are held to the same behaviour, byte-order paging included.

use stowage_oci::{Algorithm, Digest};

use crate::{Advance, MetadataStore, NewManifest, SessionCap, Upload};

fn manifest(body: &str, subject: Option<&Digest>, artifact_type: Option<&str>) -> NewManifest {
    let d = Digest::of(Algorithm::Sha256, body.as_bytes());
    NewManifest {
        digest: d.clone(),
        sha256: d,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: body.as_bytes().to_vec(),
        subject: subject.cloned(),
        artifact_type: artifact_type.map(str::to_string),
        annotations: Some(r#"{"k":"v"}"#.into()),
        references: vec![],
    }
}

/// Run every check against `store` (which must be empty). Panics on the first failure.
pub async fn run(store: &dyn MetadataStore) {
    let blob = Digest::of(Algorithm::Sha256, b"blob");
    // Links are per repository.
    assert_eq!(store.blob_in_repo("a", &blob).await.unwrap(), None);
    store.link_blob("a", &blob, 4).await.unwrap();
    store.link_blob("a", &blob, 4).await.unwrap();
    assert_eq!(store.blob_in_repo("a", &blob).await.unwrap(), Some(4));
    assert_eq!(store.blob_in_repo("b", &blob).await.unwrap(), None);
    assert_eq!(
        store.repos_with_blob(&blob, 10).await.unwrap(),
        vec![("a".to_string(), 4)]
    );
    assert_eq!(
        store
            .blobs_in_repo("a", std::slice::from_ref(&blob))
            .await
            .unwrap(),
        vec![(blob.clone(), 4)]
    );

    // Uploads.
    let up = Upload {
        id: "u1".into(),
        repo: "b".into(),
        algorithm: Algorithm::Sha512,
        offset: 0,
        hash_state: None,
        ended: false,
        created: 10,
        updated: 10,
        owner: "alice".into(),
    };
    store.save_upload(&up).await.unwrap();
    assert_eq!(store.get_upload("u1").await.unwrap(), Some(up.clone()));
    let progressed = Upload {
        offset: 42,
        hash_state: Some(vec![1, 2, 3]),
        updated: 20,
        ..up.clone()
    };
    store.save_upload(&progressed).await.unwrap();
    let got = store.get_upload("u1").await.unwrap().unwrap();
    assert_eq!((got.offset, got.hash_state), (42, Some(vec![1, 2, 3])));
    assert_eq!(store.stale_uploads(15).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        store.stale_uploads(25).await.unwrap(),
        vec!["u1".to_string()]
    );
    let stale = Upload {
        offset: 41,
        ..progressed.clone()
    };
    assert!(
        !store
            .finish_upload(Some(&stale), "b", &blob, 4)
            .await
            .unwrap(),
        "finishing from a stale offset changes nothing"
    );
    assert_eq!(store.blob_in_repo("b", &blob).await.unwrap(), None);
    assert!(
        store
            .finish_upload(Some(&progressed), "b", &blob, 4)
            .await
            .unwrap()
    );
    assert!(
        store.get_upload("u1").await.unwrap().unwrap().ended,
        "a finished session leaves a tombstone"
    );
    store.delete_upload("u1").await.unwrap();
    assert_eq!(store.get_upload("u1").await.unwrap(), None);
    assert!(store.finish_upload(None, "b", &blob, 4).await.unwrap());
    assert!(store.unlink_blob("b", &blob).await.unwrap());

    // A session's offset moves only by compare-and-set: of two writers that both started from
    // the same offset, exactly one moves it; an ended session never moves again.
    let fresh = Upload {
        id: "u2".into(),
        ..up.clone()
    };
    let to = |offset: u64, state: u8| Upload {
        offset,
        hash_state: Some(vec![state]),
        ..fresh.clone()
    };
    assert!(
        !store.advance_upload(&to(5, 1), 3).await.unwrap(),
        "no row yet: it holds 0"
    );
    assert!(
        store.advance_upload(&to(5, 1), 0).await.unwrap(),
        "the first chunk"
    );
    assert!(
        !store.advance_upload(&to(9, 2), 0).await.unwrap(),
        "the loser of the race"
    );
    let got = store.get_upload("u2").await.unwrap().unwrap();
    assert_eq!((got.offset, got.hash_state), (5, Some(vec![1])));
    assert!(store.advance_upload(&to(9, 3), 5).await.unwrap());
    let ended = Upload {
        ended: true,
        ..to(9, 3)
    };
    assert!(store.advance_upload(&ended, 9).await.unwrap());
    assert!(
        !store.advance_upload(&to(12, 4), 9).await.unwrap(),
        "ended for good"
    );
    store.delete_upload("u2").await.unwrap();
    session_caps(store).await;
    assert!(store.finish_upload(None, "b", &blob, 4).await.unwrap());
    assert_eq!(store.blob_in_repo("b", &blob).await.unwrap(), Some(4));
    assert!(store.unlink_blob("b", &blob).await.unwrap());
    assert!(!store.unlink_blob("b", &blob).await.unwrap());
    assert_eq!(store.blob_in_repo("b", &blob).await.unwrap(), None);

    // Secrets: the first candidate wins, for good.
    assert_eq!(store.secret("k", vec![1]).await.unwrap(), vec![1]);
    assert_eq!(store.secret("k", vec![2]).await.unwrap(), vec![1]);

    // Manifests and tags, byte order.
    let m1 = manifest("{\"m\":1}", None, None);
    store
        .put_manifest(
            "a",
            m1.clone(),
            &["b".into(), "B".into(), "a".into(), "10".into(), "9".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_tags("a", None, 100).await.unwrap().unwrap(),
        vec!["10", "9", "B", "a", "b"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store.list_tags("a", Some("9"), 2).await.unwrap().unwrap(),
        vec!["B".to_string(), "a".to_string()]
    );
    assert_eq!(store.list_tags("nope", None, 10).await.unwrap(), None);
    let got = store
        .manifest_by_tag("a", "a", true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, m1.digest);
    assert_eq!(got.body.as_deref(), Some(m1.body.as_slice()));
    assert_eq!(
        store
            .manifest_by_tag("a", "a", false)
            .await
            .unwrap()
            .unwrap()
            .body,
        None
    );
    assert!(
        store
            .manifest_by_digest("a", &m1.digest, false)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .manifest_by_digest("b", &m1.digest, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .manifests_in_repo("a", std::slice::from_ref(&m1.digest))
            .await
            .unwrap(),
        vec![(m1.digest.clone(), m1.body.len() as u64)]
    );

    // sha512-pushed manifests are reachable by sha256.
    let body = b"{\"m\":512}";
    let mut m2 = manifest("{\"m\":512}", None, None);
    m2.digest = Digest::of(Algorithm::Sha512, body);
    store.put_manifest("a", m2.clone(), &[]).await.unwrap();
    let by256 = store
        .manifest_by_digest("a", &m2.sha256, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by256.digest, m2.sha256);
    assert!(
        store
            .manifest_by_digest("a", &m2.digest, false)
            .await
            .unwrap()
            .is_some()
    );

    // Tag delete keeps the manifest; manifest delete takes its tags.
    assert!(store.delete_tag("a", "b").await.unwrap());
    assert!(!store.delete_tag("a", "b").await.unwrap());
    assert!(
        store
            .manifest_by_digest("a", &m1.digest, false)
            .await
            .unwrap()
            .is_some()
    );
    let del = store
        .delete_manifest("a", &m1.digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(del.tags, vec!["10", "9", "B", "a"]);
    assert!(
        store
            .manifest_by_digest("a", &m1.digest, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.delete_manifest("a", &m1.digest).await.unwrap(), None);
    assert_eq!(store.list_tags("a", None, 10).await.unwrap(), Some(vec![]));

    // Referrers.
    let subject = Digest::of(Algorithm::Sha256, b"subject");
    store
        .put_manifest(
            "a",
            manifest("{\"r\":1}", Some(&subject), Some("x/sig")),
            &[],
        )
        .await
        .unwrap();
    store
        .put_manifest(
            "a",
            manifest("{\"r\":2}", Some(&subject), Some("x/sbom")),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.referrers("a", &subject, None).await.unwrap().len(), 2);
    let sig = store.referrers("a", &subject, Some("x/sig")).await.unwrap();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0].annotations.as_deref(), Some(r#"{"k":"v"}"#));
    assert!(
        store
            .referrers("b", &subject, None)
            .await
            .unwrap()
            .is_empty()
    );

    // Catalog: repositories holding something; an emptied one drops out.
    store.link_blob("emptied", &blob, 4).await.unwrap();
    assert!(
        store
            .list_repos(None, 10)
            .await
            .unwrap()
            .contains(&"emptied".to_string())
    );
    store.unlink_blob("emptied", &blob).await.unwrap();
    // "b" was emptied above too; give it a blob again so it is listed.
    store.link_blob("b", &blob, 4).await.unwrap();
    assert_eq!(
        store.list_repos(None, 10).await.unwrap(),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(
        store.list_repos(Some("a"), 10).await.unwrap(),
        vec!["b".to_string()]
    );

    // Concurrent writes share commits and all land.
    let digests: Vec<Digest> = (0..64)
        .map(|i| Digest::of(Algorithm::Sha256, format!("c{i}").as_bytes()))
        .collect();
    futures_util::future::join_all(digests.iter().map(|d| store.link_blob("c", d, 2)))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    assert_eq!(store.blobs_in_repo("c", &digests).await.unwrap().len(), 64);
}

/// The [`crate::Inventory`] walks, against an empty `store`: every row once, in key order,
/// across pages, with the facts judged in the same read. Panics on the first failure.
pub async fn run_inventory(store: &dyn MetadataStore) {
    let blobs: Vec<Digest> = (0..5u8)
        .map(|i| Digest::of(Algorithm::Sha256, &[i]))
        .collect();
    for (i, d) in blobs.iter().enumerate() {
        store.link_blob("b/two", d, i as u64).await.unwrap();
    }
    store.link_blob("a/one", &blobs[0], 0).await.unwrap();
    let m1 = manifest(r#"{"m":1}"#, None, None);
    let m2 = manifest(r#"{"m":2}"#, None, None);
    store
        .put_manifest("a/one", m1.clone(), &["v1".into(), "latest".into()])
        .await
        .unwrap();
    store
        .put_manifest("b/two", m2.clone(), &["x".into()])
        .await
        .unwrap();

    // Blob records, by digest, paged two at a time.
    let mut sorted = blobs.clone();
    sorted.sort_by_key(|d| d.to_string());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.walk_blobs(after.clone(), 2).await.unwrap();
        seen.extend(page.iter().map(|b| (b.digest.clone(), b.size)));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.digest.clone()),
            _ => break,
        }
    }
    let want: Vec<(Digest, u64)> = sorted
        .iter()
        .map(|d| (d.clone(), blobs.iter().position(|b| b == d).unwrap() as u64))
        .collect();
    assert_eq!(seen, want, "every blob record once, in digest order");
    assert_eq!(
        store
            .blob_records(&[blobs[3].clone(), Digest::of(Algorithm::Sha256, b"none")])
            .await
            .unwrap(),
        vec![(blobs[3].clone(), 3)]
    );

    // Links, by (repository, digest), with their blob's size.
    let mut links = Vec::new();
    let mut after = None;
    loop {
        let page = store.walk_links(after.clone(), 4).await.unwrap();
        links.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 4 => after = Some((last.repo.clone(), last.digest.clone())),
            _ => break,
        }
    }
    assert_eq!(links.len(), 6);
    assert_eq!(
        (links[0].repo.as_str(), &links[0].digest, links[0].blob_size),
        ("a/one", &blobs[0], Some(0))
    );
    let two: Vec<String> = links[1..].iter().map(|l| l.digest.to_string()).collect();
    let want: Vec<String> = sorted.iter().map(|d| d.to_string()).collect();
    assert_eq!(two, want, "links of one repository in digest order");
    assert!(
        links[1..]
            .iter()
            .all(|l| l.repo == "b/two" && l.blob_size.is_some())
    );

    // Tags, by (repository, tag), each saying whether its manifest is stored.
    let tags = store.walk_tags(None, 2).await.unwrap();
    let names: Vec<(&str, &str)> = tags
        .iter()
        .map(|t| (t.repo.as_str(), t.tag.as_str()))
        .collect();
    assert_eq!(names, vec![("a/one", "latest"), ("a/one", "v1")]);
    assert!(
        tags.iter()
            .all(|t| t.digest == m1.digest && t.manifest_stored)
    );
    let rest = store
        .walk_tags(Some(("a/one".into(), "v1".into())), 2)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].repo.as_str(), rest[0].tag.as_str()),
        ("b/two", "x")
    );
    assert!(rest[0].manifest_stored);

    // Manifests with their bytes.
    let all = store.walk_manifests(None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].repo.as_str(), &all[0].digest),
        ("a/one", &m1.digest)
    );
    assert_eq!(all[0].body, m1.body);
    assert_eq!(all[0].size, m1.body.len() as u64);
    assert_eq!(all[0].sha256, m1.sha256);
    assert_eq!(
        (all[1].repo.as_str(), &all[1].digest),
        ("b/two", &m2.digest)
    );
    let after_first = store
        .walk_manifests(Some(("a/one".into(), m1.digest.clone())), 10)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].digest, m2.digest);
}

/// The live sessions of an owner are counted in the store, and a session's first chunk is
/// refused when its owner is at the cap; ended, stale and other owners' sessions do not count,
/// and sessions without an owner are never capped.
async fn session_caps(store: &dyn MetadataStore) {
    let cap = SessionCap {
        max_open: 2,
        live_since: 100,
    };
    let session = |id: &str, owner: &str, offset: u64, updated: i64| Upload {
        id: id.into(),
        repo: "caps".into(),
        algorithm: Algorithm::Sha256,
        offset,
        hash_state: None,
        ended: false,
        created: updated,
        updated,
        owner: owner.into(),
    };
    assert_eq!(store.open_uploads("carol", 100).await.unwrap(), 0);
    // A stale session of carol's (updated before live_since) does not count.
    store
        .save_upload(&session("c-old", "carol", 7, 50))
        .await
        .unwrap();
    for id in ["c1", "c2"] {
        assert_eq!(
            store
                .advance_upload_capped(&session(id, "carol", 5, 200), 0, cap)
                .await
                .unwrap(),
            Advance::Done
        );
    }
    assert_eq!(store.open_uploads("carol", 100).await.unwrap(), 2);
    assert_eq!(store.open_uploads("carol", 201).await.unwrap(), 0);
    assert_eq!(
        store
            .advance_upload_capped(&session("c3", "carol", 5, 200), 0, cap)
            .await
            .unwrap(),
        Advance::Full { open: 2 },
        "a third live session is refused"
    );
    assert_eq!(
        store.get_upload("c3").await.unwrap(),
        None,
        "and gets no row"
    );
    assert_eq!(
        store
            .advance_upload_capped(&session("c1", "carol", 9, 201), 5, cap)
            .await
            .unwrap(),
        Advance::Done,
        "sessions already counted keep moving"
    );
    assert_eq!(
        store
            .advance_upload_capped(&session("c1", "carol", 12, 202), 5, cap)
            .await
            .unwrap(),
        Advance::Moved
    );
    assert_eq!(
        store
            .advance_upload_capped(&session("d1", "dave", 5, 200), 0, cap)
            .await
            .unwrap(),
        Advance::Done,
        "another owner has their own count"
    );
    for i in 0..4 {
        assert_eq!(
            store
                .advance_upload_capped(&session(&format!("anon{i}"), "", 5, 200), 0, cap)
                .await
                .unwrap(),
            Advance::Done,
            "no owner, no cap"
        );
    }
    // Ending a session frees its place.
    let ended = Upload {
        ended: true,
        ..session("c2", "carol", 5, 203)
    };
    assert!(store.advance_upload(&ended, 5).await.unwrap());
    assert_eq!(store.open_uploads("carol", 100).await.unwrap(), 1);
    assert_eq!(
        store
            .advance_upload_capped(&session("c3", "carol", 5, 204), 0, cap)
            .await
            .unwrap(),
        Advance::Done
    );
    for id in [
        "c-old", "c1", "c2", "c3", "d1", "anon0", "anon1", "anon2", "anon3",
    ] {
        store.delete_upload(id).await.unwrap();
    }
}
