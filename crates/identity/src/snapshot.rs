//! An in-memory copy of the auth state (users, tokens, signing keys), rebuilt whenever the
//! store's revision moves, so deciding a request costs no database round trip while a
//! revocation made anywhere (another instance, `stowage token revoke` on the store) takes
//! effect within one reload interval.
//!
//! Here credentials are resolved to their *current* rights: a token's rights are its scopes
//! intersected with its user's rights as they are now, and a JWT or refresh token is only as
//! good as the credential that minted it still is.

use std::collections::HashMap;

use stowage_auth::jwt::{Signer, Verifier};
use stowage_auth::pattern::{Grant, RepoPattern, Rights};
use stowage_auth::scope::{Action, Actions};
use stowage_metadata::{SigningKeyRecord, TokenRecord, UserRecord};

/// A user as decisions need it.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub rights: Rights,
    pub generation: i64,
    /// From the htpasswd file rather than the store.
    pub from_htpasswd: bool,
}

/// An access token as decisions need it.
#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub user: String,
    pub hash: Vec<u8>,
    pub rights: Rights,
    /// The token holds `registry:admin:*` (its scope `admin`): it may use the admin API, within
    /// its own scopes.
    pub admin: bool,
    pub expires: Option<i64>,
}

/// The credential behind a request, a JWT or a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cred {
    Anonymous,
    /// A password login, valid while the user's password generation is unchanged.
    Password {
        user: String,
        generation: i64,
    },
    /// An access token.
    Token {
        id: String,
        user: String,
    },
}

impl Cred {
    /// The form carried in JWTs and refresh-token records.
    pub fn encode(&self) -> String {
        match self {
            Cred::Anonymous => "anon".into(),
            Cred::Password { user, generation } => format!("pw:{user}:{generation}"),
            Cred::Token { id, .. } => format!("tok:{id}"),
        }
    }

    /// The subject: the user's name, empty when anonymous.
    pub fn subject(&self) -> &str {
        match self {
            Cred::Anonymous => "",
            Cred::Password { user, .. } | Cred::Token { user, .. } => user,
        }
    }
}

/// The password generation of an htpasswd user: derived from its hash, so a new password in
/// the file retires JWTs and refresh tokens minted with the old one, as `user passwd` does.
fn hash_generation(hash: &str) -> i64 {
    let d = stowage_auth::secret::hash_secret(hash);
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) & i64::MAX
}

/// Whether a token scope is the admin-API one (`admin`, also written `registry:admin:*`).
pub fn is_admin_scope(s: &str) -> bool {
    s == "admin" || s == "registry:admin:*"
}

/// Parse a grant list, skipping (and logging) entries that no longer parse.
pub fn parse_grants(list: &[String]) -> Vec<Grant> {
    list.iter()
        .filter_map(|g| match Grant::parse(g) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(grant = %g, error = %e, "ignoring an invalid stored grant");
                None
            }
        })
        .collect()
}

/// What a snapshot is built from.
#[derive(Default)]
pub struct Sources {
    pub revision: i64,
    pub users: Vec<UserRecord>,
    /// (user, bcrypt hash) from the htpasswd file.
    pub htpasswd: Vec<(String, String)>,
    pub tokens: Vec<TokenRecord>,
    pub keys: Vec<SigningKeyRecord>,
}

/// Everything decisions read.
pub struct Snapshot {
    pub revision: i64,
    pub users: HashMap<String, User>,
    pub tokens: HashMap<String, Token>,
    pub public: Rights,
    /// Signs new JWTs (the newest key still in its signing period).
    pub signer: Option<Signer>,
    pub verifier: Verifier,
    /// Public keys for the JWKS document.
    pub public_keys: Vec<(String, Vec<u8>)>,
}

impl Snapshot {
    /// Build from store records (and the htpasswd users, which never shadow store users).
    pub fn build(
        src: Sources,
        htpasswd_grants: &[Grant],
        public: &[RepoPattern],
        now: i64,
    ) -> Snapshot {
        let Sources {
            revision,
            users,
            htpasswd,
            tokens,
            keys,
        } = src;
        let mut map: HashMap<String, User> = HashMap::new();
        for (name, hash) in htpasswd {
            map.insert(
                name.clone(),
                User {
                    name,
                    generation: hash_generation(&hash),
                    password_hash: hash,
                    rights: Rights {
                        superuser: false,
                        grants: htpasswd_grants.to_vec(),
                    },
                    from_htpasswd: true,
                },
            );
        }
        for u in users {
            map.insert(
                u.name.clone(),
                User {
                    rights: Rights {
                        superuser: u.admin,
                        grants: parse_grants(&u.grants),
                    },
                    name: u.name,
                    password_hash: u.password_hash,
                    generation: u.generation,
                    from_htpasswd: false,
                },
            );
        }
        let tokens = tokens
            .into_iter()
            .map(|t| {
                let admin = t.scopes.iter().any(|s| is_admin_scope(s));
                let scopes: Vec<String> = t
                    .scopes
                    .iter()
                    .filter(|s| !is_admin_scope(s))
                    .cloned()
                    .collect();
                (
                    t.id.clone(),
                    Token {
                        rights: Rights {
                            superuser: false,
                            grants: parse_grants(&scopes),
                        },
                        id: t.id,
                        user: t.user,
                        hash: t.hash,
                        admin,
                        expires: t.expires,
                    },
                )
            })
            .collect();
        let signer = keys
            .iter()
            .filter(|k| k.sign_until > now)
            .find_map(|k| Signer::from_pkcs8(&k.kid, &k.pkcs8).ok());
        let public_keys: Vec<(String, Vec<u8>)> = keys
            .iter()
            .filter(|k| k.verify_until > now)
            .filter_map(|k| {
                Signer::from_pkcs8(&k.kid, &k.pkcs8)
                    .ok()
                    .map(|s| (k.kid.clone(), s.public_key()))
            })
            .collect();
        Snapshot {
            revision,
            users: map,
            tokens,
            public: Rights::public(public),
            signer,
            verifier: Verifier::new(public_keys.clone()),
            public_keys,
        }
    }

    /// Whether a credential is still good (user present, password unchanged, token present,
    /// unexpired and still its user's).
    pub fn valid(&self, cred: &Cred, now: i64) -> bool {
        match cred {
            Cred::Anonymous => true,
            Cred::Password { user, generation } => self
                .users
                .get(user)
                .is_some_and(|u| u.generation == *generation),
            Cred::Token { id, user } => self.tokens.get(id).is_some_and(|t| {
                &t.user == user
                    && t.expires.is_none_or(|e| e > now)
                    && self.users.contains_key(user)
            }),
        }
    }

    /// Parse a credential named in a JWT or refresh-token record; None when it is gone.
    pub fn decode(&self, s: &str, now: i64) -> Option<Cred> {
        let cred = if s == "anon" {
            Cred::Anonymous
        } else if let Some(rest) = s.strip_prefix("pw:") {
            let (user, generation) = rest.rsplit_once(':')?;
            Cred::Password {
                user: user.to_string(),
                generation: generation.parse().ok()?,
            }
        } else if let Some(id) = s.strip_prefix("tok:") {
            Cred::Token {
                id: id.to_string(),
                user: self.tokens.get(id)?.user.clone(),
            }
        } else {
            return None;
        };
        self.valid(&cred, now).then_some(cred)
    }

    /// The credential a verified JWT names, when it is still valid and still its subject's.
    pub fn jwt_cred(&self, claims: &stowage_auth::jwt::Claims, now: i64) -> Option<Cred> {
        self.decode(&claims.cred, now)
            .filter(|cred| cred.subject() == claims.sub)
    }

    /// What a (valid) credential may do on a repository now, public pull included.
    pub fn actions_on(&self, cred: &Cred, repo: &str) -> Actions {
        let own = match cred {
            Cred::Anonymous => Actions::NONE,
            Cred::Password { user, .. } => self
                .users
                .get(user)
                .map_or(Actions::NONE, |u| u.rights.actions_on(repo)),
            Cred::Token { id, user } => match (self.tokens.get(id), self.users.get(user)) {
                (Some(t), Some(u)) => t
                    .rights
                    .actions_on(repo)
                    .intersect(u.rights.actions_on(repo)),
                _ => Actions::NONE,
            },
        };
        own.union(self.public.actions_on(repo))
    }

    /// Whether a credential may list the catalog.
    pub fn catalog(&self, cred: &Cred) -> bool {
        match cred {
            Cred::Anonymous => false,
            Cred::Password { user, .. } => self.users.get(user).is_some_and(|u| u.rights.catalog()),
            Cred::Token { id, user } => match (self.tokens.get(id), self.users.get(user)) {
                (Some(t), Some(u)) => t.rights.catalog() && u.rights.catalog(),
                _ => false,
            },
        }
    }

    /// Whether a credential holds `registry:admin:*`, the use of the admin API: a store
    /// user's password (a password-equivalent login included), or an access token whose
    /// scopes name it. What it may do there is decided by the admin API.
    pub fn admin_api(&self, cred: &Cred) -> bool {
        match cred {
            Cred::Anonymous => false,
            Cred::Password { user, .. } => self.users.get(user).is_some_and(|u| !u.from_htpasswd),
            Cred::Token { id, user } => {
                self.tokens.get(id).is_some_and(|t| t.admin) && self.users.contains_key(user)
            }
        }
    }

    /// Whether a credential may administer users and every token.
    pub fn admin(&self, cred: &Cred) -> bool {
        match cred {
            Cred::Anonymous => false,
            Cred::Password { user, .. } => self.users.get(user).is_some_and(|u| u.rights.superuser),
            Cred::Token { id, user } => {
                self.tokens.get(id).is_some_and(|t| t.admin)
                    && self.users.get(user).is_some_and(|u| u.rights.superuser)
            }
        }
    }

    /// Whether `actions` on `repo` are all held.
    pub fn may(&self, cred: &Cred, repo: &str, action: Action) -> bool {
        self.actions_on(cred, repo).contains(action)
    }
}

/// Log what changed between two snapshots, whoever made the change (this server's admin API,
/// another instance, or `stowage user`/`token` run on the store): the auth events of the log.
pub fn log_changes(old: &Snapshot, new: &Snapshot) {
    for (name, u) in &new.users {
        match old.users.get(name) {
            None => tracing::info!(user = %name, admin = u.rights.superuser, "auth: user added"),
            Some(o) => {
                if o.generation != u.generation {
                    tracing::info!(user = %name, "auth: password changed");
                }
                if o.rights != u.rights {
                    tracing::info!(user = %name, admin = u.rights.superuser, grants = ?u.rights.grants.iter().map(|g| g.to_string()).collect::<Vec<_>>(), "auth: rights changed");
                }
            }
        }
    }
    for name in old.users.keys().filter(|n| !new.users.contains_key(*n)) {
        tracing::info!(user = %name, "auth: user removed");
    }
    for (id, t) in &new.tokens {
        if !old.tokens.contains_key(id) {
            tracing::info!(token = %id, user = %t.user, "auth: token created");
        }
    }
    for (id, t) in &old.tokens {
        if !new.tokens.contains_key(id) {
            tracing::info!(token = %id, user = %t.user, "auth: token revoked");
        }
    }
}
