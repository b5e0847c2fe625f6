//! The identity service of Stowage: who the callers are and what they may do, with no HTTP.
//!
//! Layout:
//! - `snapshot`: the in-memory copy of users, tokens and keys, and current rights.
//! - `directory`: keeps the snapshot current (store revision polling, the htpasswd file,
//!   signing-key rotation, forced reloads for fresh credentials, token last-use times).
//! - `login`: password and access-token checks, with the Basic cache, the slow-hash semaphore,
//!   shared in-flight checks and the failed-login `limiter`.
//! - `issuer`: JWTs (minting, verifying with a cache), refresh tokens, and the token
//!   endpoint's grant (what a credential gets for the scopes it asks for).
//! - `decide`: the vocabulary of what a request needs (`Need`), the credentials a request
//!   presents, and [`Identity::decide`]: a `Principal`, or a typed `Denial` the server renders.
//! - `accounts`: user and token management, on a store or behind the admin API.
//! - `admin`: the admin API's requests and answers (shared with `stowage user/token --server`)
//!   and who may do which operation.
//!
//! Nothing here writes a secret to a log.

pub mod accounts;
pub mod admin;
pub mod decide;
mod directory;
mod issuer;
pub mod limiter;
mod login;
pub mod snapshot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stowage_auth::pattern::{Grant, RepoPattern};
use stowage_metadata::{AuthStore, MetadataError};

pub use decide::{ChallengeError, Credentials, Decision, Denial, Need, Principal, SessionLookup};
pub use issuer::Issued;
pub use login::LoginError;
pub use snapshot::{Cred, Snapshot};
pub use stowage_oci::time::now;

use directory::Directory;
use issuer::{Issuer, KeyPolicy};
use login::Logins;

/// What the identity service is configured with (validated: patterns and grants parsed).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The token service name: the JWTs' issuer and audience.
    pub service: String,
    /// Repository patterns anyone may pull from.
    pub public: Vec<RepoPattern>,
    /// An htpasswd file whose users may log in too (re-read when it changes).
    pub htpasswd: Option<PathBuf>,
    /// What htpasswd users may do.
    pub htpasswd_grants: Vec<Grant>,
    /// Lifetime of issued JWTs.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// How long a successful password check is remembered.
    pub basic_cache: Duration,
    /// How often a new signing key is made.
    pub key_rotation: Duration,
    /// How often the store is polled for changes.
    pub reload_interval: Duration,
    /// Failed logins allowed per client address and user within `login_window`.
    pub login_failures: u32,
    pub login_window: Duration,
    /// Password hashes computed at once.
    pub hash_concurrency: usize,
}

/// Why the identity service could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] MetadataError),
    /// The htpasswd file cannot be read or parsed (the message names it).
    #[error("{0}")]
    Htpasswd(String),
    /// Randomness, key generation or signing failed.
    #[error("{0}")]
    Crypto(String),
    /// No signing key can sign yet.
    #[error("no signing key is available yet")]
    NoSigningKey,
    /// Looking up an upload session failed.
    #[error("upload session lookup: {0}")]
    Sessions(String),
    /// A background task failed.
    #[error("{0}")]
    Task(String),
}

impl From<stowage_auth::RandomError> for IdentityError {
    fn from(e: stowage_auth::RandomError) -> IdentityError {
        IdentityError::Crypto(e.to_string())
    }
}

impl From<stowage_auth::JwtError> for IdentityError {
    fn from(e: stowage_auth::JwtError) -> IdentityError {
        IdentityError::Crypto(e.to_string())
    }
}

/// The identity service shared by every request.
pub struct Identity {
    service: String,
    directory: Directory,
    logins: Logins,
    issuer: Issuer,
}

impl Identity {
    /// Load the state (creating a signing key if there is none).
    pub async fn open(
        settings: Settings,
        store: Arc<dyn AuthStore>,
    ) -> Result<Arc<Identity>, IdentityError> {
        let keys = KeyPolicy {
            rotation: settings.key_rotation,
            token_ttl: settings.token_ttl,
            reload_interval: settings.reload_interval,
        };
        let identity = Identity {
            service: settings.service.clone(),
            logins: Logins::new(&settings).await?,
            issuer: Issuer::new(&settings),
            directory: Directory::new(&settings, store, keys),
        };
        identity.directory.reload(true).await?;
        Ok(Arc::new(identity))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.directory.snapshot()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn AuthStore> {
        self.directory.store()
    }

    /// The token service name (issuer and audience of our JWTs).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Rebuild the snapshot when the store or the htpasswd file changed (or when `force`).
    pub async fn reload(&self, force: bool) -> Result<(), IdentityError> {
        self.directory.reload(force).await
    }

    /// Poll for changes, flush token last-use times and purge expired records, forever.
    pub fn spawn_background(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.directory.run_background().await });
    }

    /// Check a user name and password (or an access token used as the password) from `ip`.
    pub async fn login(
        &self,
        ip: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Cred, LoginError> {
        self.logins.login(&self.directory, ip, user, password).await
    }

    /// The public keys for the JWKS document.
    pub fn public_keys(&self) -> Vec<(String, Vec<u8>)> {
        self.snapshot().public_keys.clone()
    }
}
