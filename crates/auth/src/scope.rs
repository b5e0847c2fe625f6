//! The rights vocabulary (`Action`, the `Actions` set) and the Docker token-scope grammar.
//!
//! This module owns what a client may *ask for*: `repository[(class)]:NAME:ACTIONS`,
//! `registry:catalog:*` and `registry:admin:*` (the admin API), with literal, validated
//! repository names. It must not decide what anyone
//! is *allowed*: stored permissions (globs) and the intersection of request and rights live in
//! `pattern`. Parsing is strict: unknown resource types, malformed names and unknown actions are
//! errors that say what is wrong.

use std::fmt;

use thiserror::Error;

/// Maximum repository-name length in bytes (the limit clients apply).
pub const MAX_REPO_NAME_LEN: usize = 255;

/// One right on a repository.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Action {
    /// Read manifests, blobs and tags.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// Everything on the repository; implies pull, push and delete (see [`Actions::expand`]).
    Admin,
}

impl Action {
    /// Every action, in canonical order.
    pub const ALL: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::Admin];

    /// The wire name (`pull`, `push`, `delete`, `admin`).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    /// Parse a wire name; exact and case-sensitive.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Action`]s.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
pub struct Actions(u8);

impl Actions {
    /// The empty set.
    pub const NONE: Actions = Actions(0);
    /// All four actions.
    pub const ALL: Actions = Actions(0b1111);

    /// The set holding just `a`.
    pub const fn from_action(a: Action) -> Actions {
        Actions(a.bit())
    }

    /// Whether `a` is in the set (literally: `admin` does not count as `pull` here; see
    /// [`Actions::expand`]).
    pub const fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }

    /// Whether every action of `other` is in the set.
    pub const fn contains_all(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Set union.
    #[must_use]
    pub const fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }

    /// Set intersection.
    #[must_use]
    pub const fn intersect(self, other: Actions) -> Actions {
        Actions(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with what `admin` implies added: admin on a repository means pull, push and
    /// delete as well.
    #[must_use]
    pub const fn expand(self) -> Actions {
        if self.contains(Action::Admin) {
            Actions::ALL
        } else {
            self
        }
    }

    /// The members, in canonical order (pull, push, delete, admin).
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// The members' wire names, in canonical order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Action::name).collect()
    }

    /// Parse a comma-separated action list (`pull`, `pull,push`, `*`). Empty items are ignored.
    /// Returns the named actions and whether the wildcard `*` was present; what the wildcard
    /// means (everything held, or everything) is up to the caller.
    pub fn parse_list(s: &str) -> Result<(Actions, bool), ScopeError> {
        let mut actions = Actions::NONE;
        let mut wildcard = false;
        for item in s.split(',').filter(|i| !i.is_empty()) {
            if item == "*" {
                wildcard = true;
            } else {
                let a = Action::parse(item)
                    .ok_or_else(|| ScopeError::UnknownAction(item.to_string()))?;
                actions = actions.union(Actions::from_action(a));
            }
        }
        Ok((actions, wildcard))
    }
}

impl From<Action> for Actions {
    fn from(a: Action) -> Actions {
        Actions::from_action(a)
    }
}

impl FromIterator<Action> for Actions {
    fn from_iter<I: IntoIterator<Item = Action>>(iter: I) -> Actions {
        iter.into_iter()
            .fold(Actions::NONE, |acc, a| acc.union(a.into()))
    }
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// What a scope or an access entry is about.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum Resource {
    /// One repository, by literal name.
    Repository(String),
    /// The registry-wide catalog listing (`/v2/_catalog`).
    Catalog,
    /// The admin API (`/admin/v1/`): the right to use the credential's account-management
    /// rights there. Never implied by other scopes; asked for explicitly.
    Admin,
}

/// A requested scope, as sent to the token endpoint.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Scope {
    /// What the scope is about.
    pub resource: Resource,
    /// The actions named explicitly.
    pub actions: Actions,
    /// Whether `*` was among the actions ("whatever I may have").
    pub wildcard: bool,
}

/// Why a scope (or an action list) was rejected.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ScopeError {
    /// Not of the form `type:name:actions`.
    #[error("scope {0:?} is not of the form type:name:actions")]
    Shape(String),
    /// The resource type is neither `repository` nor `registry`.
    #[error("unknown resource type {0:?} in scope (expected \"repository\" or \"registry\")")]
    UnknownType(String),
    /// The `(class)` suffix of the resource type is malformed.
    #[error(
        "malformed resource class in scope type {0:?} (expected type(class) with class [a-z0-9]+)"
    )]
    Class(String),
    /// The repository name breaks the OCI name grammar.
    #[error(
        "{0:?} is not a valid repository name (lowercase [a-z0-9] runs joined by '.', '_', '__' \
         or dashes, '/'-separated, at most 255 bytes)"
    )]
    InvalidName(String),
    /// A `registry:` scope about something other than the catalog or the admin API.
    #[error(
        "unknown registry resource {0:?} (only \"registry:catalog:*\" and \"registry:admin:*\" exist)"
    )]
    UnknownRegistryResource(String),
    /// The catalog scope named actions other than `*`.
    #[error("the catalog scope takes only the action \"*\", not {0:?}")]
    CatalogActions(String),
    /// The admin scope named actions other than `*`.
    #[error("the admin scope is written \"registry:admin:*\", not with {0:?}")]
    AdminActions(String),
    /// An action name outside pull, push, delete, admin and `*`.
    #[error("unknown action {0:?} (expected pull, push, delete, admin or *)")]
    UnknownAction(String),
}

/// Parse one scope: `type[(class)]:name:actions`. The type ends at the first `:` and the actions
/// start after the last one, so the name in between may itself contain `:` (it then fails the
/// name grammar with a clear error rather than being split wrongly). The class is checked and
/// dropped: it does not change what the scope grants.
pub fn parse_scope(s: &str) -> Result<Scope, ScopeError> {
    let shape = || ScopeError::Shape(s.to_string());
    let (kind, rest) = s.split_once(':').ok_or_else(shape)?;
    let (name, action_list) = rest.rsplit_once(':').ok_or_else(shape)?;
    let resource = match strip_class(kind)? {
        "repository" if valid_repo_name(name) => Resource::Repository(name.to_string()),
        "repository" => return Err(ScopeError::InvalidName(name.to_string())),
        "registry" if name == "catalog" => Resource::Catalog,
        "registry" if name == "admin" => Resource::Admin,
        "registry" => return Err(ScopeError::UnknownRegistryResource(name.to_string())),
        other => return Err(ScopeError::UnknownType(other.to_string())),
    };
    let (actions, wildcard) = Actions::parse_list(action_list)?;
    let only_wildcard = actions.is_empty() && wildcard;
    if resource == Resource::Catalog && !only_wildcard {
        return Err(ScopeError::CatalogActions(action_list.to_string()));
    }
    if resource == Resource::Admin && !only_wildcard {
        return Err(ScopeError::AdminActions(action_list.to_string()));
    }
    Ok(Scope {
        resource,
        actions,
        wildcard,
    })
}

/// Parse a space-separated list of scopes (the OAuth2 form's `scope` field); runs of spaces and
/// an empty string are fine.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, ScopeError> {
    s.split(' ')
        .filter(|p| !p.is_empty())
        .map(parse_scope)
        .collect()
}

/// `repository(plugin)` → `repository`, checking the class is `[a-z0-9]+`.
fn strip_class(kind: &str) -> Result<&str, ScopeError> {
    let Some(open) = kind.find('(') else {
        return Ok(kind);
    };
    let class = kind[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| ScopeError::Class(kind.to_string()))?;
    let ok = !class.is_empty()
        && class
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(&kind[..open])
    } else {
        Err(ScopeError::Class(kind.to_string()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resource {
            Resource::Catalog => f.write_str("registry:catalog:*"),
            Resource::Admin => f.write_str("registry:admin:*"),
            Resource::Repository(name) => {
                let mut items = self.actions.names();
                if self.wildcard {
                    items.push("*");
                }
                write!(f, "repository:{name}:{}", items.join(","))
            }
        }
    }
}

/// Whether `s` is a valid OCI repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255 bytes.
pub fn valid_repo_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_REPO_NAME_LEN && s.split('/').all(valid_name_component)
}

/// One path component: alphanumeric runs separated by `.`, `_`, `__` or one or more `-`.
fn valid_name_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    loop {
        // An alphanumeric run, which must not be empty.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator run, which must be followed by another alphanumeric run.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let ok = match &bytes[start..i] {
            b"." | b"_" | b"__" => true,
            sep => sep.iter().all(|&b| b == b'-'),
        };
        if !ok {
            return false;
        }
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
