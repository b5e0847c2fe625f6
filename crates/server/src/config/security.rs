//! The `[auth]` and `[tls]` sections of the configuration: who may do what, and HTTPS.
//!
//! Permission patterns, grants, proxy ranges and addresses are parsed when the configuration
//! is loaded, so a bad one stops `config check` and the server start, not the first request
//! that meets it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use stowage_auth::pattern::{Grant, RepoPattern};

use super::values::{
    Cidr, ExternalUrl, de_duration, de_external_url, de_grants, de_public, de_redirect_listen,
    de_trusted, parse_public,
};

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require credentials (off: everything is open, the quick-start default).
    pub enabled: bool,
    /// Repository patterns anyone may pull from (`library/**`).
    #[serde(deserialize_with = "de_public")]
    pub public: Vec<RepoPattern>,
    /// The token service name (the JWT audience).
    pub service: String,
    /// The URL clients reach this registry at (`https://registry.example.com`); the token
    /// realm is derived from it. Empty (None): from the request, see `trusted_proxies`.
    #[serde(deserialize_with = "de_external_url")]
    pub external_url: Option<ExternalUrl>,
    /// Proxies whose `X-Forwarded-For/Proto/Host` headers are believed (addresses or CIDRs).
    #[serde(deserialize_with = "de_trusted")]
    pub trusted_proxies: Vec<Cidr>,
    /// An htpasswd file (bcrypt, `htpasswd -B`) whose users may log in too; re-read when it
    /// changes.
    pub htpasswd: Option<PathBuf>,
    /// What htpasswd users may do (grants, like `stowage user grant`).
    #[serde(deserialize_with = "de_grants")]
    pub htpasswd_grants: Vec<Grant>,
    /// Lifetime of issued JWTs (at most 5 minutes).
    #[serde(deserialize_with = "de_duration")]
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (`docker login` keeps one instead of the password).
    #[serde(deserialize_with = "de_duration")]
    pub refresh_ttl: Duration,
    /// How long a successful password check is remembered for Basic authentication.
    #[serde(deserialize_with = "de_duration")]
    pub basic_cache: Duration,
    /// A new signing key is made this often; the old one stays valid for verification a while.
    #[serde(deserialize_with = "de_duration")]
    pub key_rotation: Duration,
    /// How often to look for changes to users, tokens and keys (made by other instances or by
    /// `stowage user`/`token` on the store).
    #[serde(deserialize_with = "de_duration")]
    pub reload_interval: Duration,
    /// Failed logins allowed per client address and user name within `login_window`.
    pub login_failures: u32,
    #[serde(deserialize_with = "de_duration")]
    pub login_window: Duration,
    /// Password hashes computed at once (each costs a few ms of one core).
    pub hash_concurrency: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            public: Vec::new(),
            service: "stowage".into(),
            external_url: None,
            trusted_proxies: Vec::new(),
            htpasswd: None,
            htpasswd_grants: ["repository:**:pull,push,delete", "registry:catalog:*"]
                .iter()
                .map(|g| Grant::parse(g).expect("the default grants parse"))
                .collect(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(90 * 86400),
            basic_cache: Duration::from_secs(30),
            key_rotation: Duration::from_secs(7 * 86400),
            reload_interval: Duration::from_secs(1),
            login_failures: 10,
            login_window: Duration::from_secs(300),
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first); reloaded when it changes.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Generate (once) and use a development CA and certificate under `<data_dir>/tls`.
    pub self_signed: bool,
    /// Extra host names or addresses the self-signed certificate must cover.
    pub hosts: Vec<String>,
    /// How often certificate files are checked for changes.
    #[serde(deserialize_with = "de_duration")]
    pub reload_interval: Duration,
    /// Send `Strict-Transport-Security` on HTTPS responses.
    pub hsts: bool,
    /// Also listen here in plain HTTP and redirect everything to HTTPS.
    #[serde(deserialize_with = "de_redirect_listen")]
    pub redirect_listen: Option<SocketAddr>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            self_signed: false,
            hosts: Vec::new(),
            reload_interval: Duration::from_secs(10),
            hsts: true,
            redirect_listen: None,
        }
    }
}

impl TlsConfig {
    /// Whether HTTPS is on.
    pub fn enabled(&self) -> bool {
        self.self_signed || self.cert.is_some()
    }
}

impl AuthConfig {
    /// Validate and parse the patterns: the first problem.
    pub fn check(&self) -> Result<(), String> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem, one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.token_ttl.is_zero() || self.token_ttl > Duration::from_secs(300) {
            out.push("auth.token_ttl must be between 1s and 5m".into());
        }
        if self.service.is_empty() {
            out.push("auth.service must not be empty".into());
        }
        if self.hash_concurrency == 0 {
            out.push("auth.hash_concurrency must be positive".into());
        }
        if self.login_failures == 0 {
            out.push("auth.login_failures must be positive".into());
        }
        if self.reload_interval.is_zero() {
            out.push("auth.reload_interval must be positive".into());
        }
        if self.key_rotation < Duration::from_secs(3600) {
            out.push("auth.key_rotation must be at least 1h".into());
        }
        out
    }

    /// Add a public repository pattern (from the command line).
    pub fn add_public(&mut self, pattern: &str) -> Result<(), String> {
        self.public.push(parse_public(pattern)?);
        Ok(())
    }

    /// The identity service's settings.
    pub fn identity_settings(&self) -> stowage_identity::Settings {
        stowage_identity::Settings {
            service: self.service.clone(),
            public: self.public.clone(),
            htpasswd: self.htpasswd.clone(),
            htpasswd_grants: self.htpasswd_grants.clone(),
            token_ttl: self.token_ttl,
            refresh_ttl: self.refresh_ttl,
            basic_cache: self.basic_cache,
            key_rotation: self.key_rotation,
            reload_interval: self.reload_interval,
            login_failures: self.login_failures,
            login_window: self.login_window,
            hash_concurrency: self.hash_concurrency,
        }
    }
}

impl TlsConfig {
    /// Validate: the first problem.
    pub fn check(&self) -> Result<(), String> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem with the values (not the files they name), one message each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => {
                out.push("tls.cert and tls.key must be given together".into());
            }
            (Some(_), Some(_)) if self.self_signed => {
                out.push("tls.self_signed and tls.cert/tls.key are exclusive".into());
            }
            _ => {}
        }
        if self.redirect_listen.is_some() && !self.enabled() {
            out.push("tls.redirect_listen needs HTTPS (tls.cert/key or tls.self_signed)".into());
        }
        if self.reload_interval.is_zero() {
            out.push("tls.reload_interval must be positive".into());
        }
        out
    }
}
