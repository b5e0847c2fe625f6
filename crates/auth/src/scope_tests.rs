//! Unit tests for `scope`: the action set, action lists, the scope grammar and the repository
//! name grammar.

use super::*;

fn repo(name: &str) -> Resource {
    Resource::Repository(name.to_string())
}

#[test]
fn actions_set_operations() {
    let pp = Actions::from_action(Action::Pull).union(Action::Push.into());
    assert!(pp.contains(Action::Pull) && pp.contains(Action::Push));
    assert!(!pp.contains(Action::Delete));
    assert!(pp.contains_all(Action::Pull.into()));
    assert!(!pp.contains_all(Actions::ALL));
    assert!(Actions::ALL.contains_all(pp));
    assert_eq!(pp.intersect(Action::Push.into()), Action::Push.into());
    assert!(pp.intersect(Action::Admin.into()).is_empty());
    assert!(Actions::NONE.is_empty() && Actions::default().is_empty());
    assert_eq!(Actions::ALL.names(), ["pull", "push", "delete", "admin"]);
    assert_eq!(pp.to_string(), "pull,push");
    assert_eq!(Actions::NONE.to_string(), "");
    let collected: Actions = [Action::Delete, Action::Pull].into_iter().collect();
    assert_eq!(
        collected.iter().collect::<Vec<_>>(),
        [Action::Pull, Action::Delete]
    );
}

#[test]
fn admin_expands() {
    assert_eq!(Actions::from_action(Action::Admin).expand(), Actions::ALL);
    let pull = Actions::from_action(Action::Pull);
    assert_eq!(pull.expand(), pull);
    assert!(!Actions::from_action(Action::Admin).contains(Action::Pull));
}

#[test]
fn parse_action_lists() {
    let pull = Actions::from_action(Action::Pull);
    assert_eq!(Actions::parse_list("pull"), Ok((pull, false)));
    assert_eq!(
        Actions::parse_list("pull,push"),
        Ok((pull.union(Action::Push.into()), false))
    );
    assert_eq!(Actions::parse_list("*"), Ok((Actions::NONE, true)));
    assert_eq!(Actions::parse_list(",pull,,*,"), Ok((pull, true)));
    assert_eq!(Actions::parse_list(""), Ok((Actions::NONE, false)));
    assert_eq!(
        Actions::parse_list("pull,write"),
        Err(ScopeError::UnknownAction("write".into()))
    );
    assert!(Actions::parse_list("Pull").is_err());
    assert!(Actions::parse_list("pull push").is_err());
}

#[test]
fn parse_repository_scopes() {
    let s = parse_scope("repository:team/app:pull,push").unwrap();
    assert_eq!(s.resource, repo("team/app"));
    assert_eq!(
        s.actions,
        Actions::from_action(Action::Pull).union(Action::Push.into())
    );
    assert!(!s.wildcard);
    assert_eq!(s.to_string(), "repository:team/app:pull,push");

    let s = parse_scope("repository(plugin):a/b:pull").unwrap();
    assert_eq!(s.resource, repo("a/b"));
    assert_eq!(s.to_string(), "repository:a/b:pull");

    let s = parse_scope("repository:x:*").unwrap();
    assert!(s.wildcard && s.actions.is_empty());
    assert_eq!(s.to_string(), "repository:x:*");

    let s = parse_scope("repository:x:").unwrap();
    assert!(s.actions.is_empty() && !s.wildcard);
}

#[test]
fn name_with_colon_splits_at_first_and_last() {
    // The actions are found after the last ':', so a host:port prefix is reported as a bad
    // name, not as a bad action list.
    assert_eq!(
        parse_scope("repository:localhost:5000/x:pull"),
        Err(ScopeError::InvalidName("localhost:5000/x".into()))
    );
}

#[test]
fn parse_catalog_scope() {
    let s = parse_scope("registry:catalog:*").unwrap();
    assert_eq!(s.resource, Resource::Catalog);
    assert!(s.wildcard);
    assert_eq!(s.to_string(), "registry:catalog:*");
    assert!(matches!(
        parse_scope("registry:catalog:pull"),
        Err(ScopeError::CatalogActions(_))
    ));
    assert!(matches!(
        parse_scope("registry:other:*"),
        Err(ScopeError::UnknownRegistryResource(_))
    ));
}

#[test]
fn parse_admin_scope() {
    let s = parse_scope("registry:admin:*").unwrap();
    assert_eq!(s.resource, Resource::Admin);
    assert!(s.wildcard && s.actions.is_empty());
    assert_eq!(s.to_string(), "registry:admin:*");
    for bad in [
        "registry:admin:pull",
        "registry:admin:*,push",
        "registry:admin:",
    ] {
        assert!(
            matches!(parse_scope(bad), Err(ScopeError::AdminActions(_))),
            "{bad}"
        );
    }
    // Only the registry type names the admin API.
    assert!(matches!(
        parse_scope("repository:admin:*"),
        Ok(Scope {
            resource: Resource::Repository(_),
            ..
        })
    ));
    let v = parse_scopes("repository:a:pull registry:admin:*").unwrap();
    assert_eq!(v[1].resource, Resource::Admin);
}

#[test]
fn rejects_bad_scopes() {
    for bad in [
        "",
        "repository",
        "repository:name",
        "repo:x:pull",
        "repository:Team/App:pull",
        "repository:team/**:pull",
        "repository::pull",
        "repository:x:pull,fly",
        "repository():x:pull",
        "repository(Plugin):x:pull",
        "repository(plugin:x:pull",
    ] {
        assert!(parse_scope(bad).is_err(), "{bad:?} accepted");
    }
    let msg = parse_scope("image:x:pull").unwrap_err().to_string();
    assert!(msg.contains("unknown resource type \"image\""), "{msg}");
}

#[test]
fn parse_scope_lists() {
    let v = parse_scopes("repository:a:pull  registry:catalog:* repository:b:push").unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[1].resource, Resource::Catalog);
    assert_eq!(parse_scopes("").unwrap(), []);
    assert!(parse_scopes("repository:a:pull bogus").is_err());
}

#[test]
fn repository_name_grammar() {
    for good in [
        "a",
        "team/app",
        "a.b_c__d---e/f0",
        "library/ubuntu",
        "x/y/z/w",
        &"a".repeat(255),
    ] {
        assert!(valid_repo_name(good), "{good:?} rejected");
    }
    for bad in [
        "",
        "A",
        "a/",
        "/a",
        "a//b",
        "a..b",
        "a___b",
        "a._b",
        "-a",
        "a-",
        "a_",
        ".a",
        "a:b",
        "a b",
        "é",
        &"a".repeat(256),
    ] {
        assert!(!valid_repo_name(bad), "{bad:?} accepted");
    }
}
