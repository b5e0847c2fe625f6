//! User and access-token management: the operations behind `stowage user ...` and
//! `stowage token ...`, whether they run directly on a store or through the admin HTTP API.
//!
//! Validation lives here (names, grants, scopes, expiry) so both paths refuse the same input
//! with the same message. Secrets are generated here and returned once; only their hashes are
//! stored. The events are logged by every running server when it sees the change
//! (`snapshot::log_changes`), wherever the change was made.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stowage_auth::pattern::Grant;
use stowage_auth::{password, secret};
use stowage_metadata::{AuthStore, TokenRecord, UserRecord};

use crate::now;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("store: {0}")]
    Store(stowage_metadata::MetadataError),
    /// Randomness failed, or a background task died.
    #[error("{0}")]
    Internal(String),
}

impl From<stowage_auth::RandomError> for AccountError {
    fn from(e: stowage_auth::RandomError) -> AccountError {
        AccountError::Internal(e.to_string())
    }
}

type Result<T> = std::result::Result<T, AccountError>;

fn store_err(e: stowage_metadata::MetadataError) -> AccountError {
    AccountError::Store(e)
}

/// A user as listed (no password hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    pub grants: Vec<String>,
    pub created: i64,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
}

/// A freshly created token, with its secret (shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub secret: String,
}

/// Canonical grant strings, or the first that does not parse.
pub fn canonical_grants(list: &[String]) -> Result<Vec<String>> {
    list.iter()
        .map(|g| {
            Grant::parse(g)
                .map(|g| g.to_string())
                .map_err(|e| AccountError::Invalid(format!("invalid grant {g:?}: {e}")))
        })
        .collect()
}

fn parse_grants(list: &[String]) -> Result<Vec<Grant>> {
    list.iter()
        .map(|g| {
            Grant::parse(g).map_err(|e| AccountError::Invalid(format!("invalid grant {g:?}: {e}")))
        })
        .collect()
}

/// A user's grants after adding `add` and taking away `remove`, merged per target: granting
/// `team/**:push` beside `team/**:pull` gives `team/**:pull,push`, and ungranting
/// `team/**:push` from that leaves `team/**:pull`. Taking away from a target the user has no
/// grant on is an error, so an ungrant never silently changes nothing.
pub fn merge_grants(current: &[String], add: &[String], remove: &[String]) -> Result<Vec<String>> {
    let mut list: Vec<Grant> = Vec::new();
    for g in parse_grants(current)?.into_iter().chain(parse_grants(add)?) {
        match list.iter_mut().find(|e| e.target == g.target) {
            Some(e) => e.actions = e.actions.union(g.actions),
            None => list.push(g),
        }
    }
    for g in parse_grants(remove)? {
        let Some(e) = list.iter_mut().find(|e| e.target == g.target) else {
            return Err(AccountError::NotFound(format!(
                "the user has no grant on {}; see `stowage user list`",
                match &g.target {
                    stowage_auth::pattern::GrantTarget::Repositories(p) => p.to_string(),
                    stowage_auth::pattern::GrantTarget::Catalog => "the catalog".into(),
                }
            )));
        };
        // `admin` implies pull, push and delete: taking any of them away takes admin too.
        let held = if e.actions.contains(stowage_auth::scope::Action::Admin)
            && !g
                .actions
                .intersect(stowage_auth::scope::Actions::ALL)
                .is_empty()
        {
            e.actions.expand()
        } else {
            e.actions
        };
        let removing = if g.actions.contains(stowage_auth::scope::Action::Admin) {
            g.actions
        } else {
            g.actions.union(stowage_auth::scope::Actions::from_action(
                stowage_auth::scope::Action::Admin,
            ))
        };
        e.actions = held
            .iter()
            .filter(|a| !removing.contains(*a))
            .fold(stowage_auth::scope::Actions::NONE, |acc, a| {
                acc.union(stowage_auth::scope::Actions::from_action(a))
            });
        if g.target == stowage_auth::pattern::GrantTarget::Catalog {
            e.actions = stowage_auth::scope::Actions::NONE;
        }
    }
    list.retain(|g| !g.actions.is_empty());
    Ok(list.iter().map(Grant::to_string).collect())
}

/// Token scopes: grants, plus `admin` (also written `registry:admin:*`: the token may use the
/// admin API, within its other scopes).
pub fn canonical_scopes(list: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in list {
        if crate::snapshot::is_admin_scope(s) {
            if !out.iter().any(|o| o == "admin") {
                out.push("admin".to_string());
            }
        } else {
            out.extend(canonical_grants(std::slice::from_ref(s))?);
        }
    }
    if out.is_empty() {
        return Err(AccountError::Invalid(
            "a token needs at least one --scope, e.g. repository:team/**:pull".into(),
        ));
    }
    Ok(out)
}

fn check_password(pw: &str) -> Result<()> {
    if pw.len() < 8 {
        return Err(AccountError::Invalid(
            "passwords must be at least 8 characters".into(),
        ));
    }
    if secret::split_access_token(pw).is_some() {
        return Err(AccountError::Invalid(
            "that looks like an access token; choose another password".into(),
        ));
    }
    Ok(())
}

/// The account operations over one store.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn AuthStore>,
}

impl Accounts {
    pub fn new(store: Arc<dyn AuthStore>) -> Accounts {
        Accounts { store }
    }

    async fn user(&self, name: &str) -> Result<UserRecord> {
        self.store
            .users()
            .await
            .map_err(store_err)?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| AccountError::NotFound(format!("no user named {name:?}")))
    }

    /// Create a user.
    pub async fn add_user(
        &self,
        name: &str,
        pw: &str,
        admin: bool,
        grants: &[String],
    ) -> Result<UserInfo> {
        if !password::valid_username(name) {
            return Err(AccountError::Invalid(format!(
                "invalid user name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
            )));
        }
        check_password(pw)?;
        let grants = canonical_grants(grants)?;
        let pw = pw.to_string();
        let hash = tokio::task::spawn_blocking(move || password::hash_password(&pw))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))??;
        let record = UserRecord {
            name: name.to_string(),
            password_hash: hash,
            admin,
            grants,
            generation: fresh_generation()?,
            created: now(),
        };
        self.insert(record).await
    }

    async fn insert(&self, record: UserRecord) -> Result<UserInfo> {
        if !self.store.create_user(&record).await.map_err(store_err)? {
            return Err(AccountError::Conflict(format!(
                "user {:?} already exists",
                record.name
            )));
        }
        Ok(info(record))
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        Ok(self
            .store
            .users()
            .await
            .map_err(store_err)?
            .into_iter()
            .map(info)
            .collect())
    }

    /// Change a user's password: JWTs and refresh tokens minted with the old one die.
    pub async fn set_password(&self, name: &str, pw: &str) -> Result<()> {
        check_password(pw)?;
        self.user(name).await?;
        let pw = pw.to_string();
        let hash = tokio::task::spawn_blocking(move || password::hash_password(&pw))
            .await
            .map_err(|e| AccountError::Internal(e.to_string()))??;
        self.modify(name, |u| {
            u.password_hash = hash.clone();
            u.generation += 1;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Change a user's rights: add `grant`, remove `revoke`, and set the admin flag if given.
    pub async fn change_rights(
        &self,
        name: &str,
        grant: &[String],
        revoke: &[String],
        admin: Option<bool>,
    ) -> Result<UserInfo> {
        let u = self
            .modify(name, |u| {
                u.grants = merge_grants(&u.grants, grant, revoke)?;
                if let Some(a) = admin {
                    u.admin = a;
                }
                Ok(())
            })
            .await?;
        Ok(info(u))
    }

    /// Read, change and write a user, again if someone else changed it in between.
    async fn modify(
        &self,
        name: &str,
        change: impl Fn(&mut UserRecord) -> Result<()>,
    ) -> Result<UserRecord> {
        for _ in 0..8 {
            let before = self.user(name).await?;
            let mut after = before.clone();
            change(&mut after)?;
            if self
                .store
                .update_user(&after, &before)
                .await
                .map_err(store_err)?
            {
                return Ok(after);
            }
        }
        Err(AccountError::Conflict(format!(
            "user {name:?} keeps changing under us; try again"
        )))
    }

    /// Remove a user and everything it minted.
    pub async fn remove_user(&self, name: &str) -> Result<()> {
        if !self.store.remove_user(name).await.map_err(store_err)? {
            return Err(AccountError::NotFound(format!("no user named {name:?}")));
        }
        Ok(())
    }

    /// Import an htpasswd file (bcrypt): new users get `grants`; existing names are skipped.
    /// Returns (imported, skipped).
    pub async fn import_htpasswd(&self, text: &str, grants: &[String]) -> Result<(usize, usize)> {
        let grants = canonical_grants(grants)?;
        let entries =
            password::parse_htpasswd(text).map_err(|e| AccountError::Invalid(e.to_string()))?;
        let (mut imported, mut skipped) = (0, 0);
        for (name, hash) in entries {
            let record = UserRecord {
                name,
                password_hash: hash,
                admin: false,
                grants: grants.clone(),
                generation: fresh_generation()?,
                created: now(),
            };
            match self.insert(record).await {
                Ok(_) => imported += 1,
                Err(AccountError::Conflict(_)) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        Ok((imported, skipped))
    }

    /// Create an access token for `user`.
    pub async fn create_token(
        &self,
        user: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
        label: &str,
    ) -> Result<NewToken> {
        let scopes = canonical_scopes(scopes)?;
        self.user(user).await?;
        let created = now();
        let expires = match expires_in {
            None => None,
            Some(d) => Some(
                i64::try_from(d.as_secs())
                    .ok()
                    .and_then(|s| created.checked_add(s))
                    .ok_or_else(|| AccountError::Invalid("expiry too far in the future".into()))?,
            ),
        };
        let fresh = secret::new_access_token()?;
        let record = TokenRecord {
            id: fresh.id.clone(),
            user: user.to_string(),
            name: label.to_string(),
            hash: fresh.hash.to_vec(),
            scopes,
            created,
            expires,
            last_used: None,
        };
        if !self.store.create_token(&record).await.map_err(store_err)? {
            return Err(AccountError::NotFound(format!("no user named {user:?}")));
        }
        Ok(NewToken {
            info: token_info(record),
            secret: fresh.secret,
        })
    }

    /// Tokens (of one user, when given).
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        Ok(self
            .store
            .tokens(user)
            .await
            .map_err(store_err)?
            .into_iter()
            .map(token_info)
            .collect())
    }

    /// The owner of a token, if it exists.
    pub async fn token_owner(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .tokens(None)
            .await
            .map_err(store_err)?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.user))
    }

    /// Revoke a token (and the refresh tokens it minted).
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        if !self.store.revoke_token(id).await.map_err(store_err)? {
            return Err(AccountError::NotFound(format!("no token with id {id:?}")));
        }
        Ok(())
    }
}

/// A new account's first password generation: random, so a user removed and created again
/// under the same name never revives credentials (JWTs, cached logins) of the old account.
fn fresh_generation() -> Result<i64> {
    Ok(i64::from_be_bytes(secret::random_bytes::<8>()?) & (i64::MAX >> 1))
}

fn info(u: UserRecord) -> UserInfo {
    UserInfo {
        name: u.name,
        admin: u.admin,
        grants: u.grants,
        created: u.created,
    }
}

fn token_info(t: TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id,
        user: t.user,
        name: t.name,
        scopes: t.scopes,
        created: t.created,
        expires: t.expires,
        last_used: t.last_used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grants_merge_per_target() {
        let split = v(&["repository:team/**:pull", "repository:team/**:push"]);
        let got = merge_grants(&split, &[], &v(&["team/**:push"])).unwrap();
        assert_eq!(
            got,
            v(&["repository:team/**:pull"]),
            "grants given apart merge"
        );
        let cur = v(&["repository:team/**:pull"]);
        let got = merge_grants(&cur, &v(&["team/**:push", "registry:catalog:*"]), &[]).unwrap();
        assert_eq!(
            got,
            v(&["repository:team/**:pull,push", "registry:catalog:*"])
        );
        let got = merge_grants(&got, &[], &v(&["team/**:push"])).unwrap();
        assert_eq!(got, v(&["repository:team/**:pull", "registry:catalog:*"]));
        let admin = merge_grants(&v(&["repository:a/**:admin"]), &[], &v(&["a/**:push"])).unwrap();
        assert_eq!(
            admin,
            v(&["repository:a/**:pull,delete"]),
            "admin expanded, then push and admin removed"
        );
        let got = merge_grants(&got, &[], &v(&["team/**:pull", "registry:catalog:*"])).unwrap();
        assert!(got.is_empty());
        assert!(matches!(
            merge_grants(&cur, &[], &v(&["other/**:pull"])),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            merge_grants(&cur, &v(&["bad pattern:pull"]), &[]),
            Err(AccountError::Invalid(_))
        ));
    }
}
