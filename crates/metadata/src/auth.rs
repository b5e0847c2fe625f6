//! Stored identities: users, access tokens, refresh tokens and JWT signing keys.
//!
//! `AuthStore` is the seam auth state lives behind, beside `MetadataStore` in the same database
//! so every instance (and the `stowage user`/`token` commands working on the store directly)
//! sees one truth. Records are plain data: password hashes, token hashes and permission
//! strings are opaque here; parsing and deciding belong to the `stowage-auth` crate and the
//! server. Every change that can alter a decision bumps a revision counter, which running
//! servers poll to know when to reload (so a revocation reaches every instance in seconds).
//! Secrets are never stored: tokens and refresh tokens only as SHA-256 hashes.

use async_trait::async_trait;

use crate::Result;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// argon2 PHC string (users we create) or bcrypt (imported from htpasswd).
    pub password_hash: String,
    /// Superuser: every right on every repository, and user and token management.
    pub admin: bool,
    /// Permission grants as strings (`repository:team/**:pull,push`, `registry:catalog:*`).
    pub grants: Vec<String>,
    /// Bumped on every password change: JWTs and refresh tokens minted by a password name the
    /// generation they were minted under and die when it moves on.
    pub generation: i64,
    /// Unix seconds.
    pub created: i64,
}

/// An access token (a password-like secret with its own scopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub user: String,
    /// A label for humans.
    pub name: String,
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
    /// Permission grants, same syntax as a user's.
    pub scopes: Vec<String>,
    pub created: i64,
    pub expires: Option<i64>,
    pub last_used: Option<i64>,
}

/// A refresh token (OAuth2 offline access), found by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub user: String,
    /// The service (audience) it was issued for.
    pub service: String,
    /// The credential that minted it (`pw:USER:GENERATION` or `tok:ID`): it dies with it.
    pub cred: String,
    pub created: i64,
    pub expires: i64,
}

/// A JWT signing key (ECDSA P-256, PKCS#8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub pkcs8: Vec<u8>,
    pub created: i64,
    /// Sign new tokens with it until then (unix seconds)...
    pub sign_until: i64,
    /// ...and accept tokens it signed until then: the overlap lets tokens in flight outlive a
    /// rotation.
    pub verify_until: i64,
}

/// Users, tokens and keys.
#[async_trait]
pub trait AuthStore: Send + Sync + 'static {
    /// A counter that moves on every change to users, tokens or signing keys.
    async fn auth_revision(&self) -> Result<i64>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>>;
    /// Create a user; false if the name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<bool>;
    /// Replace a user's password hash, admin flag, grants and generation, if its stored row is
    /// still `expected` (compare-and-set: two concurrent changes cannot silently undo each
    /// other); false if the user is unknown or was changed meanwhile.
    async fn update_user(&self, user: &UserRecord, expected: &UserRecord) -> Result<bool>;
    /// Remove a user with its tokens and refresh tokens; false if unknown.
    async fn remove_user(&self, name: &str) -> Result<bool>;

    /// Every access token (of one user, when given), by id.
    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>>;
    /// Store a new access token; false if its user does not exist.
    async fn create_token(&self, token: &TokenRecord) -> Result<bool>;
    /// Delete an access token and the refresh tokens it minted; false if unknown.
    async fn revoke_token(&self, id: &str) -> Result<bool>;
    /// Record when tokens were last used (no revision bump: decisions do not depend on it).
    async fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()>;

    /// Store a refresh token under the hash of its secret.
    async fn create_refresh(&self, hash: &[u8], record: &RefreshRecord) -> Result<()>;
    /// Find a refresh token by the hash of its secret.
    async fn refresh(&self, hash: &[u8]) -> Result<Option<RefreshRecord>>;
    /// Forget expired refresh tokens and signing keys past their verification window.
    async fn purge_auth(&self, now: i64) -> Result<usize>;

    /// Every signing key still accepted, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Add a signing key.
    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<()>;
}
