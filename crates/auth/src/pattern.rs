//! Stored permissions: repository globs, grants, a principal's `Rights`, and the token endpoint's
//! intersection of what was requested with what is held.
//!
//! This module owns the authorization *decision* over names: which repositories a glob covers and
//! which actions a set of grants yields on a repository. It must not parse requests (that is
//! `scope`), know where rights come from (users, tokens and teams live in the caller's storage),
//! or do I/O. Glob matching is an NFA simulation, so its cost is bounded by
//! `pattern length × name length` whatever the input.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::scope::{Action, Actions, Resource, Scope, ScopeError, valid_repo_name};

/// Maximum glob length in bytes (the same bound as a repository name).
pub const MAX_PATTERN_LEN: usize = 255;

/// Why a repository glob or a grant was rejected.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum PatternError {
    /// The glob is empty.
    #[error("empty repository pattern")]
    Empty,
    /// The glob is longer than [`MAX_PATTERN_LEN`].
    #[error("repository pattern is {0} bytes long; at most 255 are allowed")]
    TooLong(usize),
    /// The glob contains a character outside the allowed set.
    #[error(
        "repository pattern {pattern:?} contains {found:?}; only lowercase letters, digits, '.', \
         '_', '-', '/' and '*' are allowed"
    )]
    Character {
        /// The glob.
        pattern: String,
        /// The first offending character.
        found: char,
    },
    /// The glob contains three or more `*` in a row.
    #[error(
        "repository pattern {0:?} contains '***'; use '*' (within one path segment) or '**' \
         (across segments)"
    )]
    TripleStar(String),
    /// The grant is not `[repository:]PATTERN:ACTIONS` or `registry:catalog:*`.
    #[error("grant {0:?} is not of the form [repository:]PATTERN:ACTIONS or registry:catalog:*")]
    Shape(String),
    /// The catalog grant named actions other than `*`.
    #[error("the catalog grant is written \"registry:catalog:*\", not {0:?}")]
    Catalog(String),
    /// The grant's action list is empty.
    #[error("grant {0:?} gives no actions")]
    NoActions(String),
    /// The grant's action list names an unknown action.
    #[error(transparent)]
    Actions(#[from] ScopeError),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
enum Token {
    Literal(u8),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
}

/// A glob over repository names: `*` matches within one path segment, `**` across segments,
/// everything else literally.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct RepoPattern {
    source: String,
    tokens: Vec<Token>,
}

impl RepoPattern {
    /// Parse and validate a glob.
    pub fn parse(s: &str) -> Result<RepoPattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(s.len()));
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/' | '*')
        };
        if let Some(found) = s.chars().find(|&c| !allowed(c)) {
            let pattern = s.to_string();
            return Err(PatternError::Character { pattern, found });
        }
        if s.contains("***") {
            return Err(PatternError::TripleStar(s.to_string()));
        }
        let bytes = s.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    tokens.push(Token::DoubleStar);
                    i += 2;
                } else {
                    tokens.push(Token::Star);
                    i += 1;
                }
            } else {
                tokens.push(Token::Literal(bytes[i]));
                i += 1;
            }
        }
        Ok(RepoPattern {
            source: s.to_string(),
            tokens,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the glob has no wildcard (it then names exactly one repository).
    pub fn is_literal(&self) -> bool {
        !self.source.contains('*')
    }

    /// Whether every name `other` matches, this glob matches too. Conservative: a `true` is
    /// always right, and the answer is exact for literal names and for globs whose wildcards
    /// line up with this one's (`team/**` covers `team/app/*`, `team/*` does not cover
    /// `team/**`). Runs in O(len(self) × len(other)).
    pub fn covers(&self, other: &RepoPattern) -> bool {
        let (a, b) = (&self.tokens, &other.tokens);
        // can[i][j]: a[i..] covers b[j..]; filled from the ends backwards.
        let mut can = vec![vec![false; b.len() + 1]; a.len() + 1];
        can[a.len()][b.len()] = true;
        for i in (0..a.len()).rev() {
            for j in (0..=b.len()).rev() {
                let next = b.get(j);
                can[i][j] = match a[i] {
                    Token::Literal(c) => next == Some(&Token::Literal(c)) && can[i + 1][j + 1],
                    // A star stands for nothing, or swallows the next piece of `other` when
                    // that can only produce characters other than `/`.
                    Token::Star => {
                        let swallows = match next {
                            Some(Token::Star) => true,
                            Some(Token::Literal(l)) => *l != b'/',
                            _ => false,
                        };
                        can[i + 1][j] || (swallows && can[i][j + 1])
                    }
                    Token::DoubleStar => can[i + 1][j] || (next.is_some() && can[i][j + 1]),
                };
            }
        }
        can[0][0]
    }

    /// Whether `repo` matches the glob. Simulates the glob as an NFA over token positions, so
    /// the cost is O(len(glob) × len(repo)) with no backtracking.
    pub fn matches(&self, repo: &str) -> bool {
        if self.is_literal() {
            return self.source == repo;
        }
        let toks = &self.tokens;
        let n = toks.len();
        // active[i]: the text read so far can be matched by tokens[..i].
        let mut active = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        active[0] = true;
        close_over_stars(toks, &mut active);
        for &c in repo.as_bytes() {
            next.fill(false);
            let mut alive = false;
            for (i, tok) in toks.iter().enumerate() {
                if !active[i] {
                    continue;
                }
                let (to, ok) = match *tok {
                    Token::Literal(l) => (i + 1, l == c),
                    Token::Star => (i, c != b'/'),
                    Token::DoubleStar => (i, true),
                };
                if ok {
                    next[to] = true;
                    alive = true;
                }
            }
            if !alive {
                return false;
            }
            close_over_stars(toks, &mut next);
            std::mem::swap(&mut active, &mut next);
        }
        active[n]
    }
}

/// A star may match the empty string: wherever a star's position is active, so is the next one.
/// Edges only go forward, so one left-to-right pass reaches the closure.
fn close_over_stars(toks: &[Token], set: &mut [bool]) {
    for (i, tok) in toks.iter().enumerate() {
        if set[i] && !matches!(tok, Token::Literal(_)) {
            set[i + 1] = true;
        }
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Serde as a string, through `Display` and `parse`.
macro_rules! serde_via_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$ty>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(RepoPattern);
serde_via_string!(Grant);

/// What a grant is about.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub enum GrantTarget {
    /// Every repository the glob matches.
    Repositories(RepoPattern),
    /// The catalog listing.
    Catalog,
}

/// One stored permission: actions on the repositories a glob matches, or the catalog.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Grant {
    /// What the grant is about.
    pub target: GrantTarget,
    /// The actions it gives (ignored for the catalog, which is all-or-nothing).
    pub actions: Actions,
}

impl Grant {
    /// Parse `repository:PATTERN:ACTIONS`, the short form `PATTERN:ACTIONS`, or
    /// `registry:catalog:*`. The actions start after the last `:`; `*` means all actions.
    pub fn parse(s: &str) -> Result<Grant, PatternError> {
        let (head, list) = s
            .rsplit_once(':')
            .ok_or_else(|| PatternError::Shape(s.to_string()))?;
        if head == "registry:catalog" {
            if list != "*" {
                return Err(PatternError::Catalog(s.to_string()));
            }
            return Ok(Grant {
                target: GrantTarget::Catalog,
                actions: Actions::ALL,
            });
        }
        if head.starts_with("registry:") {
            return Err(PatternError::Shape(s.to_string()));
        }
        let pattern = RepoPattern::parse(head.strip_prefix("repository:").unwrap_or(head))?;
        let (named, wildcard) = Actions::parse_list(list)?;
        let actions = if wildcard { Actions::ALL } else { named };
        if actions.is_empty() {
            return Err(PatternError::NoActions(s.to_string()));
        }
        Ok(Grant {
            target: GrantTarget::Repositories(pattern),
            actions,
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            GrantTarget::Catalog => f.write_str("registry:catalog:*"),
            GrantTarget::Repositories(p) => write!(f, "repository:{p}:{}", self.actions),
        }
    }
}

/// What a principal holds: everything (superuser) or a list of grants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rights {
    /// Every action on every repository, and the catalog.
    pub superuser: bool,
    /// The stored grants (ignored when `superuser`).
    pub grants: Vec<Grant>,
}

impl Rights {
    /// Rights holding everything.
    pub fn superuser() -> Rights {
        Rights {
            superuser: true,
            grants: Vec::new(),
        }
    }

    /// Pull on each glob: what anonymous clients get on public repositories.
    pub fn public(patterns: &[RepoPattern]) -> Rights {
        let grants = patterns
            .iter()
            .map(|p| Grant {
                target: GrantTarget::Repositories(p.clone()),
                actions: Actions::from_action(Action::Pull),
            })
            .collect();
        Rights {
            superuser: false,
            grants,
        }
    }

    /// The actions held on `repo`: the union of every matching grant, with `admin` expanded to
    /// pull, push and delete. A superuser holds all of them.
    pub fn actions_on(&self, repo: &str) -> Actions {
        if self.superuser {
            return Actions::ALL;
        }
        self.grants
            .iter()
            .filter(|g| matches!(&g.target, GrantTarget::Repositories(p) if p.matches(repo)))
            .fold(Actions::NONE, |acc, g| acc.union(g.actions))
            .expand()
    }

    /// Whether the catalog may be listed.
    pub fn catalog(&self) -> bool {
        self.superuser || self.grants.iter().any(|g| g.target == GrantTarget::Catalog)
    }

    /// The actions held on a resource; for the catalog, all or nothing. The admin API is not
    /// a grant (it depends on the credential, not on stored rights): never held here.
    pub fn actions_on_resource(&self, resource: &Resource) -> Actions {
        match resource {
            Resource::Repository(name) => self.actions_on(name),
            Resource::Catalog if self.catalog() => Actions::ALL,
            Resource::Catalog | Resource::Admin => Actions::NONE,
        }
    }

    /// Whether these rights hold everything `grant` gives: each of its actions (with `admin`
    /// expanded) on every repository its glob matches, or the catalog. Glob containment is
    /// decided conservatively ([`RepoPattern::covers`]), so a `true` is always right.
    pub fn covers(&self, grant: &Grant) -> bool {
        if self.superuser {
            return true;
        }
        match &grant.target {
            GrantTarget::Catalog => self.catalog(),
            GrantTarget::Repositories(wanted) => grant.actions.expand().iter().all(|a| {
                self.grants.iter().any(|g| {
                    matches!(&g.target, GrantTarget::Repositories(p) if p.covers(wanted))
                        && g.actions.expand().contains(a)
                })
            }),
        }
    }
}

/// One entry of a bearer token's `access` claim, in the Docker token format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// Action names; `["*"]` for the catalog.
    pub actions: Vec<String>,
}

impl Access {
    /// The access entry for `actions` on `resource`; for the catalog and the admin API the
    /// entry is always `registry:catalog` / `registry:admin` with `["*"]` (all-or-nothing).
    pub fn new(resource: &Resource, actions: Actions) -> Access {
        match resource {
            Resource::Repository(name) => Access {
                kind: "repository".to_string(),
                name: name.clone(),
                actions: actions.names().into_iter().map(String::from).collect(),
            },
            Resource::Catalog => Access {
                kind: "registry".to_string(),
                name: "catalog".to_string(),
                actions: vec!["*".to_string()],
            },
            Resource::Admin => Access {
                kind: "registry".to_string(),
                name: "admin".to_string(),
                actions: vec!["*".to_string()],
            },
        }
    }

    /// Whether the entry is `registry:admin:*`, the admin API.
    pub fn is_admin(&self) -> bool {
        self.resource() == Some(Resource::Admin) && self.actions.iter().any(|a| a == "*")
    }

    /// The actions granted, with `admin` expanded; unknown names are ignored and `*` means all.
    pub fn actions(&self) -> Actions {
        self.actions
            .iter()
            .fold(Actions::NONE, |acc, a| match a.as_str() {
                "*" => Actions::ALL,
                other => Action::parse(other).map_or(acc, |a| acc.union(a.into())),
            })
            .expand()
    }

    /// The resource the entry is about, if it is one this registry knows (a valid repository
    /// name, or the catalog).
    pub fn resource(&self) -> Option<Resource> {
        match (self.kind.as_str(), self.name.as_str()) {
            ("repository", name) if valid_repo_name(name) => {
                Some(Resource::Repository(name.to_string()))
            }
            ("registry", "catalog") => Some(Resource::Catalog),
            ("registry", "admin") => Some(Resource::Admin),
            _ => None,
        }
    }
}

/// The token endpoint's decision: for each requested scope, the requested actions that are held
/// (or everything held, when the request said `*`). Scopes granting nothing are dropped and
/// repeated resources are merged, in order of first appearance.
pub fn grant_requested(requested: &[Scope], held: impl Fn(&Resource) -> Actions) -> Vec<Access> {
    let mut granted: Vec<(&Resource, Actions)> = Vec::new();
    let mut index: HashMap<&Resource, usize> = HashMap::new();
    for scope in requested {
        let have = held(&scope.resource).expand();
        let give = if scope.wildcard {
            have
        } else {
            scope.actions.intersect(have)
        };
        if give.is_empty() {
            continue;
        }
        match index.get(&scope.resource) {
            Some(&i) => granted[i].1 = granted[i].1.union(give),
            None => {
                index.insert(&scope.resource, granted.len());
                granted.push((&scope.resource, give));
            }
        }
    }
    granted
        .into_iter()
        .map(|(resource, actions)| Access::new(resource, actions))
        .collect()
}

#[cfg(test)]
#[path = "pattern_tests.rs"]
mod tests;
