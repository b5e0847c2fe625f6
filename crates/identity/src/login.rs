//! Checking passwords and access tokens.
//!
//! A successful password check is remembered for `basic_cache` (keyed by a SHA-256 of user and
//! password), slow hashes run on the blocking pool behind a semaphore, identical checks in
//! flight from one address share one hash, and failures are counted per (address, user) by the
//! [`Limiter`]. A failure never answers faster than an argon2 check of ours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stowage_auth::{password, secret};
use tokio::sync::Semaphore;

use crate::directory::Directory;
use crate::limiter::Limiter;
use crate::snapshot::Cred;
use crate::{IdentityError, Settings, now};

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name, password or token (the caller cannot tell which).
    Invalid,
    /// Too many failures: try again after this many seconds.
    Limited(u64),
}

/// Most remembered Basic logins; past it the cache starts over.
const BASIC_CACHE_MAX: usize = 10_000;

/// A password check in flight, whose outcome identical concurrent logins share.
type Flight = Arc<tokio::sync::OnceCell<Result<Cred, LoginError>>>;

/// The login checker.
pub(crate) struct Logins {
    basic_ttl: Duration,
    /// SHA-256 of `user \0 password` -> the credential it proved, and when.
    basic_cache: Mutex<HashMap<[u8; 32], (Cred, Instant)>>,
    hash_permits: Semaphore,
    /// How long an argon2 check of ours takes here: failed logins take at least this long.
    hash_floor: Duration,
    limiter: Limiter,
    /// Password checks in flight, by (address, user, password) digest, shared by identical
    /// concurrent logins.
    inflight: Mutex<HashMap<[u8; 32], Flight>>,
}

/// A login refused for too many failures (logged).
fn limited(ip: IpAddr, user: &str, wait: u64) -> LoginError {
    tracing::warn!(user, %ip, "auth: login refused, too many failures");
    LoginError::Limited(wait)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Logins {
    pub(crate) async fn new(settings: &Settings) -> Result<Logins, IdentityError> {
        let hash_floor = tokio::task::spawn_blocking(|| {
            // The first call also builds the dummy hash: time the second.
            password::burn_equivalent_work("calibrate");
            let t = Instant::now();
            password::burn_equivalent_work("calibrate");
            t.elapsed()
        })
        .await
        .map_err(|e| IdentityError::Task(e.to_string()))?;
        Ok(Logins {
            basic_ttl: settings.basic_cache,
            basic_cache: Mutex::new(HashMap::new()),
            hash_permits: Semaphore::new(settings.hash_concurrency),
            hash_floor,
            limiter: Limiter::new(settings.login_failures, settings.login_window),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// Check a user name and password (or access token used as the password).
    pub(crate) async fn login(
        &self,
        dir: &Directory,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Cred, LoginError> {
        if let Some(wait) = self.limiter.blocked(ip, user) {
            return Err(limited(ip, user, wait));
        }
        // A success remembered from a moment ago needs no hash.
        if let Some(cred) = self.remembered(dir, user, password) {
            dir.touch(&cred);
            return Ok(cred);
        }
        // The same credentials from the same address already being checked (a client opening
        // many connections at once with Basic): wait for that check instead of another.
        let key = secret::hash_secret(&format!("{ip}\0{user}\0{password}"));
        let flight = lock(&self.inflight).entry(key).or_default().clone();
        let result = flight
            .get_or_init(|| self.login_once(dir, ip, user, password))
            .await
            .clone();
        let mut inflight = lock(&self.inflight);
        if inflight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            inflight.remove(&key);
        }
        result
    }

    /// One password check, counted by the limiter before the work, so distinct attempts sent at
    /// once cannot all pass the limit.
    async fn login_once(
        &self,
        dir: &Directory,
        ip: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<Cred, LoginError> {
        if let Some(wait) = self.limiter.begin(ip, user) {
            return Err(limited(ip, user, wait));
        }
        let result = self.check_password(dir, user, password).await;
        self.limiter.finish(ip, user, result.is_some());
        match &result {
            Some(cred) => {
                dir.touch(cred);
                tracing::info!(user, %ip, "auth: login");
            }
            None => tracing::warn!(user, %ip, "auth: login failed"),
        }
        result.ok_or(LoginError::Invalid)
    }

    /// The cache key of a Basic login.
    fn login_key(user: &str, password: &str) -> [u8; 32] {
        secret::hash_secret(&format!("{user}\0{password}"))
    }

    /// A recent successful password check for these credentials, if still valid.
    fn remembered(&self, dir: &Directory, user: &str, password: &str) -> Option<Cred> {
        if secret::split_access_token(password).is_some() {
            return None;
        }
        let (cred, at) = lock(&self.basic_cache)
            .get(&Self::login_key(user, password))
            .cloned()?;
        (at.elapsed() < self.basic_ttl && dir.snapshot().valid(&cred, now())).then_some(cred)
    }

    async fn check_password(&self, dir: &Directory, user: &str, password: &str) -> Option<Cred> {
        let snap = dir.snapshot();
        let now = now();
        // An access token: a fast hash suffices, the secret has 256 random bits.
        if let Some(id) = secret::split_access_token(password) {
            // Made a moment ago (on the store, or by another instance)? Look once more, now.
            let snap = if !snap.tokens.contains_key(id) && dir.reload_now().await {
                dir.snapshot()
            } else {
                snap
            };
            let t = snap.tokens.get(id)?;
            let cred = Cred::Token {
                id: t.id.clone(),
                user: t.user.clone(),
            };
            return (secret::ct_eq(&secret::hash_secret(password), &t.hash)
                && snap.valid(&cred, now))
            .then_some(cred);
        }
        let key = Self::login_key(user, password);
        let mut found = snap.users.get(user).cloned();
        if found.is_none() && dir.reload_now().await {
            found = dir.snapshot().users.get(user).cloned();
        }
        // A flood of logins waits for a hashing slot only so long: past it the caller is told
        // to come back (the failure is counted like any other).
        let permit = tokio::time::timeout(Duration::from_secs(5), self.hash_permits.acquire())
            .await
            .ok()?
            .ok()?;
        let pw = password.to_string();
        let floor = self.hash_floor;
        let ok = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let ok = match &found {
                Some(u) => {
                    password::verify_password(&u.password_hash, &pw).then(|| Cred::Password {
                        user: u.name.clone(),
                        generation: u.generation,
                    })
                }
                None => {
                    password::burn_equivalent_work(&pw);
                    None
                }
            };
            // A failure never answers faster than an argon2 check: a cheaper stored hash
            // (bcrypt from htpasswd) must not tell a known user from an unknown one.
            if ok.is_none()
                && let Some(rest) = floor.checked_sub(started.elapsed())
            {
                std::thread::sleep(rest);
            }
            ok
        })
        .await
        .ok()
        .flatten();
        drop(permit);
        if let Some(cred) = &ok {
            let mut cache = lock(&self.basic_cache);
            if cache.len() >= BASIC_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (cred.clone(), Instant::now()));
        }
        ok
    }
}
