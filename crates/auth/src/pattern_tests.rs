//! Unit tests for `pattern`: glob semantics and cost, grant grammar, rights and the token
//! endpoint's intersection.

use std::time::{Duration, Instant};

use super::*;
use crate::scope::{parse_scope, parse_scopes};

fn pat(s: &str) -> RepoPattern {
    RepoPattern::parse(s).unwrap()
}

fn acts(list: &str) -> Actions {
    Actions::parse_list(list).unwrap().0
}

fn repo(name: &str) -> Resource {
    Resource::Repository(name.to_string())
}

#[test]
fn glob_semantics() {
    let cases: &[(&str, &str, bool)] = &[
        ("team/**", "team/app", true),
        ("team/**", "team/a/b", true),
        ("team/**", "teamx/app", false),
        ("team/**", "team", false),
        ("team/*", "team/app", true),
        ("team/*", "team/a/b", false),
        ("team/*", "team", false),
        ("**", "anything/at/all", true),
        ("**", "x", true),
        ("*", "x", true),
        ("*", "x/y", false),
        ("*/app", "x/app", true),
        ("*/app", "x/y/app", false),
        ("**/app", "x/y/app", true),
        ("**/app", "app", false),
        ("a*b", "ab", true),
        ("a*b", "axxb", true),
        ("a*b", "ax/xb", false),
        ("a**b", "ax/xb", true),
        ("team/app", "team/app", true),
        ("team/app", "team/app2", false),
        ("team/*-dev", "team/app-dev", true),
        ("team/*-dev", "team/app-prod", false),
        ("*/**/x", "a/b/c/x", true),
        ("*/**/x", "a/x", false),
        ("**/*", "a", false),
        ("**/*", "a/b", true),
        ("**/*", "a/b/c", true),
        ("*.*", "a.b", true),
        ("*.*", "ab", false),
    ];
    for &(p, name, want) in cases {
        assert_eq!(pat(p).matches(name), want, "{p:?} vs {name:?}");
    }
}

#[test]
fn glob_validation() {
    assert_eq!(RepoPattern::parse(""), Err(PatternError::Empty));
    assert!(matches!(
        RepoPattern::parse("a***"),
        Err(PatternError::TripleStar(_))
    ));
    assert!(matches!(
        RepoPattern::parse("Team/*"),
        Err(PatternError::Character { found: 'T', .. })
    ));
    for bad in ["a?b", "a[b]", "a b", "a:b", "é", "a\\b"] {
        assert!(RepoPattern::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert!(matches!(
        RepoPattern::parse(&"a".repeat(256)),
        Err(PatternError::TooLong(256))
    ));
    let p = pat("team/**");
    assert_eq!(p.as_str(), "team/**");
    assert_eq!(p.to_string(), "team/**");
    assert!(!p.is_literal() && pat("a/b").is_literal());
    let msg = RepoPattern::parse("a+b").unwrap_err().to_string();
    assert!(
        msg.contains("'+'") && msg.contains("only lowercase"),
        "{msg}"
    );
}

#[test]
fn glob_cost_is_bounded_on_adversarial_input() {
    let long_a = "a".repeat(20_000);
    let start = Instant::now();
    for p in [
        "*a*a*a*a*a*b",
        "**a**a**a**b",
        "*a**a*a**a*a**b",
        "**a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
    ] {
        assert!(!pat(p).matches(&long_a), "{p:?}");
        assert!(pat(p).matches(&format!("{long_a}b")), "{p:?}");
    }
    let slashes = "a/".repeat(10_000);
    assert!(!pat("*/*/*/*/*/*/*/*/b").matches(&slashes));
    assert!(!pat("**/**/**/**/**/b").matches(&slashes));
    let elapsed = start.elapsed();
    println!("adversarial glob matching took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn pattern_serde_as_string() {
    let p = pat("team/**");
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"team/**\"");
    assert_eq!(
        serde_json::from_str::<RepoPattern>("\"team/**\"").unwrap(),
        p
    );
    assert!(serde_json::from_str::<RepoPattern>("\"Team\"").is_err());
}

#[test]
fn grant_grammar() {
    let g = Grant::parse("repository:team/**:pull,push").unwrap();
    assert_eq!(g.target, GrantTarget::Repositories(pat("team/**")));
    assert_eq!(g.actions, acts("pull,push"));
    assert_eq!(g.to_string(), "repository:team/**:pull,push");

    let short = Grant::parse("team/**:pull").unwrap();
    assert_eq!(short.to_string(), "repository:team/**:pull");

    let all = Grant::parse("**:*").unwrap();
    assert_eq!(all.actions, Actions::ALL);
    assert_eq!(Grant::parse(&all.to_string()).unwrap(), all);

    let cat = Grant::parse("registry:catalog:*").unwrap();
    assert_eq!(cat.target, GrantTarget::Catalog);
    assert_eq!(cat.to_string(), "registry:catalog:*");

    assert!(matches!(
        Grant::parse("registry:catalog:pull"),
        Err(PatternError::Catalog(_))
    ));
    assert!(matches!(
        Grant::parse("registry:other:*"),
        Err(PatternError::Shape(_))
    ));
    assert!(matches!(
        Grant::parse("team/**"),
        Err(PatternError::Shape(_))
    ));
    assert!(matches!(
        Grant::parse("team/**:"),
        Err(PatternError::NoActions(_))
    ));
    assert!(matches!(
        Grant::parse("team/**:pull,fly"),
        Err(PatternError::Actions(ScopeError::UnknownAction(_)))
    ));
    assert!(Grant::parse("repository:Team:pull").is_err());
    assert!(Grant::parse("localhost:5000/x:pull").is_err());
}

#[test]
fn grant_serde_as_string() {
    let g = Grant::parse("team/*:pull").unwrap();
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(json, "\"repository:team/*:pull\"");
    assert_eq!(serde_json::from_str::<Grant>(&json).unwrap(), g);
    assert!(serde_json::from_str::<Grant>("\"nonsense\"").is_err());
}

#[test]
fn rights_union_and_expansion() {
    let rights = Rights {
        superuser: false,
        grants: vec![
            Grant::parse("team/**:pull").unwrap(),
            Grant::parse("team/app:push").unwrap(),
            Grant::parse("ops/*:admin").unwrap(),
        ],
    };
    assert_eq!(rights.actions_on("team/app"), acts("pull,push"));
    assert_eq!(rights.actions_on("team/x/y"), acts("pull"));
    assert_eq!(rights.actions_on("ops/db"), Actions::ALL);
    assert_eq!(rights.actions_on("other"), Actions::NONE);
    assert!(!rights.catalog());
    assert_eq!(
        rights.actions_on_resource(&Resource::Catalog),
        Actions::NONE
    );

    let su = Rights::superuser();
    assert_eq!(su.actions_on("anything"), Actions::ALL);
    assert!(su.catalog());

    let mut cat = Rights::default();
    cat.grants.push(Grant::parse("registry:catalog:*").unwrap());
    assert!(cat.catalog());
    assert_eq!(cat.actions_on("x"), Actions::NONE);
    assert_eq!(cat.actions_on_resource(&Resource::Catalog), Actions::ALL);

    let public = Rights::public(&[pat("pub/**"), pat("library/*")]);
    assert_eq!(public.actions_on("pub/a/b"), acts("pull"));
    assert_eq!(public.actions_on("library/ubuntu"), acts("pull"));
    assert_eq!(public.actions_on("private/x"), Actions::NONE);
    assert!(!public.superuser && !public.catalog());
}

#[test]
fn grant_requested_intersects_and_merges() {
    let rights = Rights {
        superuser: false,
        grants: vec![
            Grant::parse("team/**:pull").unwrap(),
            Grant::parse("ops/*:admin").unwrap(),
        ],
    };
    let requested = parse_scopes(
        "repository:team/app:pull,push repository:ops/db:* repository:secret/x:pull \
         registry:catalog:* repository:team/app:delete repository:team/app:pull",
    )
    .unwrap();
    let got = grant_requested(&requested, |r| rights.actions_on_resource(r));
    assert_eq!(
        got,
        vec![
            Access {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            },
            Access {
                kind: "repository".into(),
                name: "ops/db".into(),
                actions: vec![
                    "pull".into(),
                    "push".into(),
                    "delete".into(),
                    "admin".into()
                ],
            },
        ]
    );

    // Duplicates are merged by union, in order of first appearance.
    let requested = parse_scopes("repository:ops/a:pull repository:ops/a:delete").unwrap();
    let got = grant_requested(&requested, |r| rights.actions_on_resource(r));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].actions, ["pull", "delete"]);

    // A held set the caller did not expand still implies pull.
    let only_admin = |_: &Resource| Actions::from_action(Action::Admin);
    let got = grant_requested(&[parse_scope("repository:x:pull").unwrap()], only_admin);
    assert_eq!(got[0].actions, ["pull"]);

    let su = Rights::superuser();
    let got = grant_requested(&[parse_scope("registry:catalog:*").unwrap()], |r| {
        su.actions_on_resource(r)
    });
    assert_eq!(
        got,
        [Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }]
    );
    assert!(grant_requested(&[], |_| Actions::ALL).is_empty());
}

#[test]
fn access_accessors_and_json() {
    let a: Access =
        serde_json::from_str(r#"{"type":"repository","name":"team/app","actions":["pull","fly"]}"#)
            .unwrap();
    assert_eq!(a.actions(), acts("pull"));
    assert_eq!(a.resource(), Some(repo("team/app")));
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["type"], "repository");

    let admin = Access::new(&repo("x"), acts("admin"));
    assert_eq!(admin.actions(), Actions::ALL);

    let cat = Access::new(&Resource::Catalog, Actions::ALL);
    assert_eq!(cat.actions(), Actions::ALL);
    assert_eq!(cat.resource(), Some(Resource::Catalog));

    let odd = Access {
        kind: "repository".into(),
        name: "Bad Name".into(),
        actions: vec![],
    };
    assert_eq!(odd.resource(), None);
    assert_eq!(odd.actions(), Actions::NONE);
    let odd = Access {
        kind: "registry".into(),
        name: "other".into(),
        actions: vec!["*".into()],
    };
    assert_eq!(odd.resource(), None);
}

#[test]
fn admin_access_entries() {
    let a = Access::new(&Resource::Admin, Actions::ALL);
    assert_eq!((a.kind.as_str(), a.name.as_str()), ("registry", "admin"));
    assert_eq!(a.actions, ["*"]);
    assert!(a.is_admin());
    assert_eq!(a.resource(), Some(Resource::Admin));
    let empty = Access {
        actions: vec![],
        ..a.clone()
    };
    assert!(
        !empty.is_admin(),
        "an entry granting nothing is no admin access"
    );
    assert!(!Access::new(&Resource::Catalog, Actions::ALL).is_admin());
    assert!(!Access::new(&repo("registry/admin"), Actions::ALL).is_admin());
    // Stored rights never hold the admin API, not even a superuser's: it is the credential's.
    assert_eq!(
        Rights::superuser().actions_on_resource(&Resource::Admin),
        Actions::NONE
    );
}

#[test]
fn pattern_covers() {
    let yes = [
        ("team/**", "team/app"),
        ("team/**", "team/app/*"),
        ("team/**", "team/**"),
        ("team/**", "team/*"),
        ("team/**", "team/a*b/**"),
        ("team/*", "team/app"),
        ("team/*", "team/a*"),
        ("team/*", "team/*-x"),
        ("**", "a/b/c"),
        ("**", "**"),
        ("t*m/app", "team/app"),
        ("team/app", "team/app"),
        ("*/app", "x*/app"),
    ];
    for (big, small) in yes {
        assert!(pat(big).covers(&pat(small)), "{big} covers {small}");
    }
    let no = [
        ("team/*", "team/**"),
        ("team/*", "team/a/b"),
        ("team/app", "team/*"),
        ("team/**", "teams/x"),
        ("team/**", "**"),
        ("team/*", "*/app"),
        ("a*", "a/b"),
        ("team/app", "team/app2"),
        ("team/app2", "team/app"),
    ];
    for (big, small) in no {
        assert!(
            !pat(big).covers(&pat(small)),
            "{big} does not cover {small}"
        );
    }
    // Whatever `covers` says yes to, `matches` agrees with on sample names.
    for name in [
        "team/app",
        "team/a/b",
        "teams/x",
        "a/b",
        "team/app2",
        "x/app",
    ] {
        for (big, small) in yes {
            if pat(small).matches(name) {
                assert!(pat(big).matches(name), "{big} ⊇ {small} but not on {name}");
            }
        }
    }
}

#[test]
fn rights_cover_grants() {
    let held = Rights {
        superuser: false,
        grants: vec![
            Grant::parse("team/**:pull").unwrap(),
            Grant::parse("team/app:push").unwrap(),
            Grant::parse("ops/*:admin").unwrap(),
        ],
    };
    let g = |s: &str| Grant::parse(s).unwrap();
    assert!(held.covers(&g("team/x/y:pull")));
    assert!(
        held.covers(&g("team/app:pull,push")),
        "actions from two grants"
    );
    assert!(!held.covers(&g("team/other:push")));
    assert!(!held.covers(&g("team/**:pull,push")));
    assert!(!held.covers(&g("**:pull")));
    assert!(held.covers(&g("ops/db:delete")));
    assert!(held.covers(&g("ops/*:admin")));
    assert!(!held.covers(&g("ops/**:pull")));
    assert!(
        !held.covers(&g("team/app:admin")),
        "admin is more than pull and push"
    );
    assert!(!held.covers(&g("registry:catalog:*")));
    let with_catalog = Rights {
        superuser: false,
        grants: vec![g("registry:catalog:*")],
    };
    assert!(with_catalog.covers(&g("registry:catalog:*")));
    assert!(Rights::superuser().covers(&g("**:admin")));
}
