//! The shared `AuthStore` test suite: every backend's tests call [`run`].

use crate::auth::{AuthStore, RefreshRecord, SigningKeyRecord, TokenRecord, UserRecord};

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: "$argon2id$x".into(),
        admin: false,
        grants: vec![
            "repository:team/**:pull,push".into(),
            "registry:catalog:*".into(),
        ],
        generation: 0,
        created: 100,
    }
}

fn token(id: &str, user: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        user: user.into(),
        name: "ci".into(),
        hash: vec![7; 32],
        scopes: vec!["repository:team/app:pull".into()],
        created: 200,
        expires: Some(9_999),
        last_used: None,
    }
}

/// Run every check against `store` (which must hold no users). Panics on the first failure.
pub async fn run(store: &dyn AuthStore) {
    let r0 = store.auth_revision().await.unwrap();
    assert!(store.users().await.unwrap().is_empty());

    // Users: create once, update, read back exactly.
    assert!(store.create_user(&user("bob")).await.unwrap());
    assert!(store.create_user(&user("alice")).await.unwrap());
    assert!(
        !store.create_user(&user("bob")).await.unwrap(),
        "name taken"
    );
    let r1 = store.auth_revision().await.unwrap();
    assert!(r1 > r0, "creating users moves the revision");
    let names: Vec<String> = store
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let mut bob = user("bob");
    bob.admin = true;
    bob.generation = 1;
    bob.grants = vec![];
    assert!(store.update_user(&bob, &user("bob")).await.unwrap());
    assert!(
        !store
            .update_user(&user("nobody"), &user("nobody"))
            .await
            .unwrap()
    );
    // Compare-and-set: a change based on a stale read is refused.
    let mut stale = user("bob");
    stale.grants = vec!["repository:x/**:pull".into()];
    assert!(!store.update_user(&stale, &user("bob")).await.unwrap());
    let got = store.users().await.unwrap();
    assert_eq!(got[1], bob);
    assert_eq!(got[0], user("alice"));
    assert!(store.auth_revision().await.unwrap() > r1);

    // Tokens belong to existing users only.
    assert!(!store.create_token(&token("t0", "nobody")).await.unwrap());
    assert!(store.create_token(&token("t1", "alice")).await.unwrap());
    assert!(store.create_token(&token("t2", "bob")).await.unwrap());
    assert_eq!(store.tokens(None).await.unwrap().len(), 2);
    assert_eq!(
        store.tokens(Some("alice")).await.unwrap(),
        vec![token("t1", "alice")]
    );

    // Last use is recorded without moving the revision, and never goes backwards.
    let r2 = store.auth_revision().await.unwrap();
    store.touch_tokens(&[("t1".into(), 500)]).await.unwrap();
    store.touch_tokens(&[("t1".into(), 400)]).await.unwrap();
    assert_eq!(
        store.tokens(Some("alice")).await.unwrap()[0].last_used,
        Some(500)
    );
    assert_eq!(store.auth_revision().await.unwrap(), r2);

    // Refresh tokens die with the token that minted them.
    let rec = RefreshRecord {
        user: "alice".into(),
        service: "svc".into(),
        cred: "tok:t1".into(),
        created: 1,
        expires: 1_000,
    };
    store.create_refresh(&[1; 32], &rec).await.unwrap();
    assert_eq!(store.refresh(&[1; 32]).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.refresh(&[2; 32]).await.unwrap(), None);
    assert!(store.revoke_token("t1").await.unwrap());
    assert!(!store.revoke_token("t1").await.unwrap());
    assert!(store.auth_revision().await.unwrap() > r2);
    assert_eq!(store.refresh(&[1; 32]).await.unwrap(), None);

    // Removing a user removes its tokens and refresh tokens.
    let pw = RefreshRecord {
        user: "bob".into(),
        cred: "pw:bob:1".into(),
        ..rec.clone()
    };
    store.create_refresh(&[3; 32], &pw).await.unwrap();
    assert!(store.remove_user("bob").await.unwrap());
    assert!(!store.remove_user("bob").await.unwrap());
    assert!(store.tokens(Some("bob")).await.unwrap().is_empty());
    assert_eq!(store.refresh(&[3; 32]).await.unwrap(), None);

    // Expired refresh tokens and retired keys are purged.
    store
        .create_refresh(
            &[4; 32],
            &RefreshRecord {
                expires: 50,
                ..rec.clone()
            },
        )
        .await
        .unwrap();
    let key = |kid: &str, created, verify_until| SigningKeyRecord {
        kid: kid.into(),
        pkcs8: vec![1, 2, 3],
        created,
        sign_until: created + 10,
        verify_until,
    };
    store.add_signing_key(&key("old", 10, 60)).await.unwrap();
    store.add_signing_key(&key("new", 20, 5_000)).await.unwrap();
    let kids: Vec<String> = store
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["new", "old"], "newest first");
    assert_eq!(store.purge_auth(100).await.unwrap(), 2);
    assert_eq!(store.refresh(&[4; 32]).await.unwrap(), None);
    assert_eq!(
        store.signing_keys().await.unwrap(),
        vec![key("new", 20, 5_000)]
    );
}
