//! Authentication and authorization for `stowage serve --auth`.
//!
//! Layout:
//! - `snapshot`: the in-memory copy of users, tokens and keys, and current rights.
//! - `limiter`: failed-login limiting.
//! - `decide`: what each endpoint needs, and the 401/403/429 answers.
//! - `token_endpoint`: the Docker token endpoint (GET and OAuth2 POST) and the JWKS.
//! - `admin_gate`: who may use the admin API (the `registry:admin:*` scope) and the refusal of
//!   cross-site requests to it.
//! - `admin_api`: the authenticated HTTP API behind `stowage user`/`token --server`.
//!
//! This module (`Auth`) owns checking passwords and access tokens (with a short cache for
//! Basic authentication and a bound on concurrent slow hashes), minting JWTs, rotating signing
//! keys and reloading the snapshot when the store changes. It never writes a secret to a log.

pub mod admin_api;
pub mod admin_gate;
pub mod decide;
pub mod limiter;
pub mod snapshot;
pub mod token_endpoint;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use axum::http::HeaderMap;
use stowage_auth::jwt::{Claims, generate_key};
use stowage_auth::pattern::{Access, Grant, RepoPattern};
use stowage_auth::{password, secret};
use stowage_metadata::{AuthStore, SigningKeyRecord};
use tokio::sync::Semaphore;

use crate::config::{AuthConfig, Cidr};
use limiter::Limiter;
pub use snapshot::{Cred, Snapshot, Sources};

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

/// A JSON answer that no cache may keep (it may carry a secret).
pub(crate) fn json<T: serde::Serialize>(status: u16, v: &T) -> axum::response::Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    axum::response::Response::builder()
        .status(status)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CONTENT_LENGTH, body.len())
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::from(body))
        .expect("valid response")
}

/// Current unix time.
pub use stowage_oci::time::now;

/// The htpasswd file's (mtime, length) when last read, and its (user, hash) entries.
type HtpasswdState = (Option<(SystemTime, u64)>, Vec<(String, String)>);

/// A password check in flight, whose outcome identical concurrent logins share.
type Flight = Arc<tokio::sync::OnceCell<Result<Cred, LoginError>>>;

/// Verified JWTs: the snapshot revision they were checked under, and SHA-256 -> claims.
pub(crate) type VerifiedJwts = (i64, HashMap<[u8; 32], Arc<stowage_auth::jwt::Claims>>);

/// The authentication service shared by every request.
pub struct Auth {
    pub cfg: AuthConfig,
    public: Vec<RepoPattern>,
    htpasswd_grants: Vec<Grant>,
    trusted: Vec<Cidr>,
    store: Arc<dyn AuthStore>,
    snap: RwLock<Arc<Snapshot>>,
    /// SHA-256 of `user \0 password` -> the credential it proved, and when.
    basic_cache: Mutex<HashMap<[u8; 32], (Cred, Instant)>>,
    hash_permits: Semaphore,
    /// How long an argon2 check of ours takes here: failed logins take at least this long.
    hash_floor: std::time::Duration,
    pub limiter: Limiter,
    /// JWTs whose signature and audience were verified: SHA-256 of the token -> its claims
    /// (with the snapshot revision they were verified under). Saves an ECDSA verification per
    /// request; expiry and the credential are still checked every time.
    pub(crate) verified: Mutex<VerifiedJwts>,
    /// Password checks in flight, by (address, user, password) digest, shared by identical
    /// concurrent logins.
    inflight: Mutex<HashMap<[u8; 32], Flight>>,
    /// When a reload was last forced by an unknown credential.
    forced_reload: Mutex<Option<Instant>>,
    /// Token ids used since the last flush, with when.
    touched: Mutex<HashMap<String, i64>>,
    /// The htpasswd file's (mtime, length) when last read, and its users.
    htpasswd: Mutex<HtpasswdState>,
}

impl Auth {
    /// Load the auth state (creating a signing key if there is none).
    pub async fn open(cfg: &AuthConfig, store: Arc<dyn AuthStore>) -> Result<Arc<Auth>, String> {
        let htpasswd_grants = cfg
            .htpasswd_grants
            .iter()
            .map(|g| Grant::parse(g).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let auth = Arc::new(Auth {
            public: cfg.public_patterns()?,
            trusted: cfg.trusted()?,
            htpasswd_grants,
            cfg: cfg.clone(),
            store,
            snap: RwLock::new(Arc::new(Snapshot::build(
                Sources {
                    revision: -1,
                    ..Sources::default()
                },
                &[],
                &[],
                0,
            ))),
            basic_cache: Mutex::new(HashMap::new()),
            hash_permits: Semaphore::new(cfg.hash_concurrency),
            hash_floor: tokio::task::spawn_blocking(|| {
                // The first call also builds the dummy hash: time the second.
                password::burn_equivalent_work("calibrate");
                let t = Instant::now();
                password::burn_equivalent_work("calibrate");
                t.elapsed()
            })
            .await
            .map_err(|e| e.to_string())?,
            limiter: Limiter::new(cfg.login_failures, cfg.login_window),
            verified: Mutex::new((-1, HashMap::new())),
            inflight: Mutex::new(HashMap::new()),
            forced_reload: Mutex::new(None),
            touched: Mutex::new(HashMap::new()),
            htpasswd: Mutex::new((None, Vec::new())),
        });
        auth.reload(true).await?;
        Ok(auth)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().expect("snapshot").clone()
    }

    /// The store, for the admin API.
    pub fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    fn htpasswd_path(&self) -> Option<&PathBuf> {
        self.cfg.htpasswd.as_ref()
    }

    /// Re-read the htpasswd file if it changed; true when it did.
    fn refresh_htpasswd(&self) -> Result<bool, String> {
        let Some(path) = self.htpasswd_path() else {
            return Ok(false);
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("auth.htpasswd {}: {e}", path.display()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut h = self.htpasswd.lock().expect("htpasswd");
        if h.0 == Some(stamp) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("auth.htpasswd {}: {e}", path.display()))?;
        let users = password::parse_htpasswd(&text)
            .map_err(|e| format!("auth.htpasswd {}: {e}", path.display()))?;
        *h = (Some(stamp), users);
        Ok(true)
    }

    /// Make sure some key can sign for a while yet: a new key is added before the current one
    /// stops signing, and every key stays verifiable past its last token's expiry.
    async fn ensure_signing_key(&self, keys: &[SigningKeyRecord]) -> Result<bool, String> {
        let now = now();
        let margin = (self.cfg.reload_interval.as_secs() as i64).max(1) * 10 + 60;
        if keys.iter().any(|k| k.sign_until > now + margin) {
            return Ok(false);
        }
        let (kid, pkcs8) = generate_key();
        let rotation = self.cfg.key_rotation.as_secs() as i64;
        let record = SigningKeyRecord {
            kid,
            pkcs8,
            created: now,
            sign_until: now + rotation,
            verify_until: now + rotation + self.cfg.token_ttl.as_secs() as i64 + 3600,
        };
        self.store
            .add_signing_key(&record)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(kid = %record.kid, "auth: new token signing key");
        Ok(true)
    }

    /// Rebuild the snapshot when the store or the htpasswd file changed (or when `force`).
    pub async fn reload(&self, force: bool) -> Result<(), String> {
        let revision = self
            .store
            .auth_revision()
            .await
            .map_err(|e| e.to_string())?;
        let htpasswd_changed = match self.refresh_htpasswd() {
            Ok(c) => c,
            Err(e) if force => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "auth: keeping the previous htpasswd users");
                false
            }
        };
        // Rotation is time-driven, so the keys are looked at on every tick.
        let mut keys = self.store.signing_keys().await.map_err(|e| e.to_string())?;
        let added = self.ensure_signing_key(&keys).await?;
        if !force && !htpasswd_changed && !added && self.snapshot().revision == revision {
            return Ok(());
        }
        if added {
            keys = self.store.signing_keys().await.map_err(|e| e.to_string())?;
        }
        let revision = self
            .store
            .auth_revision()
            .await
            .map_err(|e| e.to_string())?;
        let users = self.store.users().await.map_err(|e| e.to_string())?;
        let tokens = self.store.tokens(None).await.map_err(|e| e.to_string())?;
        let htpasswd = self.htpasswd.lock().expect("htpasswd").1.clone();
        let sources = Sources {
            revision,
            users,
            htpasswd,
            tokens,
            keys,
        };
        let snap = Snapshot::build(sources, &self.htpasswd_grants, &self.public, now());
        let previous = self.snapshot();
        if previous.revision >= 0 {
            snapshot::log_changes(&previous, &snap);
        }
        *self.snap.write().expect("snapshot") = Arc::new(snap);
        Ok(())
    }

    /// Poll for changes, flush token last-use times and purge expired records, forever.
    pub fn spawn_background(self: &Arc<Self>) {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut ticks: u64 = 0;
            loop {
                tokio::time::sleep(auth.cfg.reload_interval).await;
                ticks += 1;
                if let Err(e) = auth.reload(false).await {
                    tracing::warn!(error = %e, "auth: reloading users and tokens failed");
                }
                let used: Vec<(String, i64)> =
                    auth.touched.lock().expect("touched").drain().collect();
                if !used.is_empty()
                    && let Err(e) = auth.store.touch_tokens(&used).await
                {
                    tracing::warn!(error = %e, "auth: recording token use failed");
                }
                if ticks.is_multiple_of(600)
                    && let Err(e) = auth.store.purge_auth(now()).await
                {
                    tracing::warn!(error = %e, "auth: purging expired records failed");
                }
            }
        });
    }

    /// Check a user name and password (or access token used as the password).
    pub async fn login(&self, ip: IpAddr, user: &str, password: &str) -> Result<Cred, LoginError> {
        if let Some(wait) = self.limiter.blocked(ip, user) {
            tracing::warn!(user, %ip, "auth: login refused, too many failures");
            return Err(LoginError::Limited(wait));
        }
        // A success remembered from a moment ago needs no hash.
        if let Some(cred) = self.remembered(user, password) {
            self.touch(&cred);
            return Ok(cred);
        }
        // The same credentials from the same address already being checked (a client opening
        // many connections at once with Basic): wait for that check instead of another.
        let key = secret::hash_secret(&format!("{ip}\0{user}\0{password}"));
        let flight = self
            .inflight
            .lock()
            .expect("inflight")
            .entry(key)
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| self.login_once(ip, user, password))
            .await
            .clone();
        let mut inflight = self.inflight.lock().expect("inflight");
        if inflight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            inflight.remove(&key);
        }
        result
    }

    /// One password check, counted by the limiter before the work, so distinct attempts sent at
    /// once cannot all pass the limit.
    async fn login_once(&self, ip: IpAddr, user: &str, password: &str) -> Result<Cred, LoginError> {
        if let Some(wait) = self.limiter.begin(ip, user) {
            tracing::warn!(user, %ip, "auth: login refused, too many failures");
            return Err(LoginError::Limited(wait));
        }
        let result = self.check_password(user, password).await;
        self.limiter.finish(ip, user, result.is_some());
        match &result {
            Some(cred) => {
                self.touch(cred);
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
    fn remembered(&self, user: &str, password: &str) -> Option<Cred> {
        if secret::split_access_token(password).is_some() {
            return None;
        }
        let (cred, at) = self
            .basic_cache
            .lock()
            .expect("cache")
            .get(&Self::login_key(user, password))
            .cloned()?;
        (at.elapsed() < self.cfg.basic_cache && self.snapshot().valid(&cred, now())).then_some(cred)
    }

    async fn check_password(&self, user: &str, password: &str) -> Option<Cred> {
        let snap = self.snapshot();
        let now = now();
        // An access token: a fast hash suffices, the secret has 256 random bits.
        if let Some(id) = secret::split_access_token(password) {
            // Made a moment ago (on the store, or by another instance)? Look once more, now.
            let snap = if !snap.tokens.contains_key(id) && self.reload_now().await {
                self.snapshot()
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
        if found.is_none() && self.reload_now().await {
            found = self.snapshot().users.get(user).cloned();
        }
        // A flood of logins waits for a hashing slot only so long: past it the caller is told
        // to come back (the failure is counted like any other).
        let permit = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.hash_permits.acquire(),
        )
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
            let mut cache = self.basic_cache.lock().expect("cache");
            if cache.len() >= BASIC_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (cred.clone(), Instant::now()));
        }
        ok
    }

    /// Reload at once (at most four times a second, whatever asks): a credential created a
    /// moment ago works on first use instead of failing (and counting as a failed login) until
    /// the next poll. True when a reload ran.
    async fn reload_now(&self) -> bool {
        {
            let mut last = self.forced_reload.lock().expect("forced reload");
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(250)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.reload(false).await.is_ok()
    }

    /// Note that a token was used (flushed to the store in the background).
    pub fn touch(&self, cred: &Cred) {
        if let Cred::Token { id, .. } = cred {
            self.touched
                .lock()
                .expect("touched")
                .insert(id.clone(), now());
        }
    }

    /// The issuer (`iss`) of the JWTs this registry mints, and the only one it accepts.
    pub fn issuer(&self) -> &str {
        &self.cfg.service
    }

    /// Mint a JWT for `cred` granting `access`; returns (token, expires_in, issued_at).
    pub fn issue_jwt(
        &self,
        cred: &Cred,
        access: Vec<Access>,
    ) -> Result<(String, i64, i64), String> {
        let snap = self.snapshot();
        let signer = snap
            .signer
            .as_ref()
            .ok_or("no signing key is available yet")?;
        let now = now();
        let ttl = self.cfg.token_ttl.as_secs() as i64;
        let claims = Claims {
            iss: self.issuer().to_string(),
            sub: cred.subject().to_string(),
            aud: self.cfg.service.clone(),
            exp: now + ttl,
            nbf: now - 1,
            iat: now,
            jti: secret::b64url(secret::random_bytes::<16>()),
            access,
            cred: cred.encode(),
        };
        Ok((signer.sign(&claims), ttl, now))
    }

    fn trusted_peer(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.trusted.iter().any(|c| c.contains(p.ip())))
    }

    /// The client's address: the peer, or, behind a trusted proxy, the last address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let fallback = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
        if !self.trusted_peer(peer) {
            return fallback;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .find(|ip| !self.trusted.iter().any(|c| c.contains(**ip)))
            .copied()
            .unwrap_or(fallback)
    }

    /// The token realm URL clients are sent to.
    pub fn realm(
        &self,
        peer: Option<SocketAddr>,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        secure: bool,
    ) -> String {
        if !self.cfg.external_url.is_empty() {
            return format!("{}/auth/token", self.cfg.external_url.trim_end_matches('/'));
        }
        format!(
            "{}/auth/token",
            self.request_origin(peer, uri, headers, secure)
        )
    }

    /// The origin (`scheme://host[:port]`, lowercase, default port left out) of
    /// `auth.external_url`, when configured.
    pub fn external_origin(&self) -> Option<String> {
        let url = self.cfg.external_url.trim();
        if url.is_empty() {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        Some(normalize_origin(&format!("{scheme}://{host}")))
    }

    /// The origin the client addressed this request to: the listener's scheme and the `Host`
    /// (or HTTP/2 `:authority`), or, from `auth.trusted_proxies`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host`. As sent (compare through [`normalize_origin`]).
    pub fn request_origin(
        &self,
        peer: Option<SocketAddr>,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        secure: bool,
    ) -> String {
        let clean = |s: &str| -> Option<String> {
            let s = s.split(',').next()?.trim();
            (!s.is_empty()
                && s.len() <= 255
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)))
            .then(|| s.to_string())
        };
        let mut scheme = if secure { "https" } else { "http" }.to_string();
        // HTTP/2 carries the host as the `:authority` pseudo-header (the URI's authority),
        // HTTP/1.1 as `Host`.
        let mut host = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                headers
                    .get(axum::http::header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .and_then(clean)
            .unwrap_or_else(|| "localhost".into());
        if self.trusted_peer(peer) {
            if let Some(p) = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(clean)
                .filter(|p| p == "http" || p == "https")
            {
                scheme = p;
            }
            if let Some(h) = headers
                .get("x-forwarded-host")
                .and_then(|v| v.to_str().ok())
                .and_then(clean)
            {
                host = h;
            }
        }
        format!("{scheme}://{host}")
    }
}

/// An origin as browsers send it: lowercase, without the scheme's default port.
pub fn normalize_origin(origin: &str) -> String {
    let o = origin.trim().to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.starts_with(scheme)
            && let Some(stripped) = o.strip_suffix(port)
        {
            return stripped.to_string();
        }
    }
    o
}
