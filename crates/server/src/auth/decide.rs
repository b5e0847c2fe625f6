//! The gate every registry request passes when authentication is on: who is calling (Basic
//! password or token, a bearer JWT, or nobody), what the endpoint needs, and the answer when
//! it is not held.
//!
//! The answers follow the token spec: no credential, or a JWT that a new token could widen,
//! gets 401 with a Bearer challenge naming the scope; a credential whose owner lacks the right
//! gets 403 DENIED, whose detail names the access as the 401's does. Both are decided before
//! the repository is looked at, so a caller without pull rights gets the same answer for a
//! private repository and a missing one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use axum::http::request::Parts;
use std::collections::HashMap;

use crate::error::{Error, Result};
use stowage_auth::jwt::{Claims, JwtError};
use stowage_auth::scope::{Action, Actions};
use stowage_auth::secret;
use stowage_oci::{ErrorCode, RepoName};
use stowage_registry::Registry;
use stowage_registry::session_id::UploadId;
use stowage_registry::uploads::Readable;

use super::{Auth, Cred, LoginError, Snapshot, now};

/// Clock skew tolerated between instances when checking a JWT's validity window.
const LEEWAY: i64 = 5;

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any valid credential (`/v2/`).
    Login,
    Catalog,
    Repo(RepoName, Action),
    /// Push rights, and being the subject that opened the session.
    Upload(RepoName, UploadId),
}

impl Need {
    /// The error detail naming the access needed, in the shape of distribution's
    /// (`[{"Type":"repository","Name":..,"Action":..}]`); null when no repository is involved.
    fn detail(&self) -> serde_json::Value {
        match self {
            Need::Repo(n, _) | Need::Upload(n, _) => serde_json::json!([{
                "Type": "repository",
                "Name": n.as_str(),
                "Action": self.scope().unwrap_or_default().rsplit(':').next().unwrap_or_default(),
            }]),
            _ => serde_json::Value::Null,
        }
    }

    /// The scope a client should ask a token for.
    fn scope(&self) -> Option<String> {
        match self {
            Need::Login => None,
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Repo(n, Action::Pull) => Some(format!("repository:{n}:pull")),
            Need::Repo(n, Action::Delete) => Some(format!("repository:{n}:delete")),
            Need::Repo(n, _) | Need::Upload(n, _) => Some(format!("repository:{n}:pull,push")),
        }
    }
}

/// The caller of a request, as far as decisions go.
#[derive(Clone)]
pub struct Principal {
    pub cred: Cred,
    /// The access a bearer JWT grants (None: not a JWT request).
    jwt: Option<Arc<Claims>>,
    /// None when authentication is off: everything is allowed.
    snap: Option<Arc<Snapshot>>,
}

impl Principal {
    /// The caller when authentication is off.
    pub fn open() -> Principal {
        Principal {
            cred: Cred::Anonymous,
            jwt: None,
            snap: None,
        }
    }

    /// Who owns upload sessions this caller opens.
    pub fn owner(&self) -> String {
        self.cred.subject().to_string()
    }

    /// What the caller may do on `repo` now.
    pub fn actions_on(&self, repo: &str) -> Actions {
        let Some(snap) = &self.snap else {
            return Actions::ALL;
        };
        let held = snap.actions_on(&self.cred, repo);
        match &self.jwt {
            None => held,
            Some(claims) => held.intersect(
                claims
                    .access
                    .iter()
                    .filter(|a| a.kind == "repository" && a.name == repo)
                    .fold(Actions::NONE, |acc, a| acc.union(a.actions())),
            ),
        }
    }

    fn catalog(&self) -> bool {
        let Some(snap) = &self.snap else { return true };
        snap.catalog(&self.cred)
            && self.jwt.as_ref().is_none_or(|claims| {
                claims
                    .access
                    .iter()
                    .any(|a| a.kind == "registry" && a.name == "catalog")
            })
    }

    /// Which repositories the catalog shows the caller (None: all): those its credential may
    /// pull. A JWT's `registry:catalog:*` access is the permission to list; which names
    /// appear follows the credential's own rights, not the JWT's repository entries (a
    /// catalog token names no repositories).
    pub fn catalog_readable(&self) -> Option<Readable> {
        self.unbounded().readable()
    }

    /// Which repositories the caller may pull from (None: all).
    pub fn readable(&self) -> Option<Readable> {
        self.snap.as_ref()?;
        let me = self.clone();
        Some(Arc::new(move |repo: &str| {
            me.actions_on(repo).contains(Action::Pull)
        }))
    }

    /// The same caller without the JWT's narrowing: what a new token could grant.
    fn unbounded(&self) -> Principal {
        Principal {
            jwt: None,
            ..self.clone()
        }
    }

    fn allows(&self, need: &Need) -> bool {
        match need {
            Need::Login => {
                self.snap.is_none() || self.cred != Cred::Anonymous || self.jwt.is_some()
            }
            Need::Catalog => self.catalog(),
            Need::Repo(n, a) => self.actions_on(n.as_str()).contains(*a),
            Need::Upload(n, _) => self.actions_on(n.as_str()).contains(Action::Push),
        }
    }
}

/// An `Authorization` header, parsed.
pub enum Presented {
    Basic { user: String, password: String },
    Bearer(String),
}

/// Parse an `Authorization` header (None when absent or of another scheme).
pub fn presented(parts: &Parts) -> Option<Presented> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64_std_decode(rest)?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Presented::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Presented::Bearer(rest.to_string()))
    } else {
        None
    }
}

fn base64_std_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

impl Auth {
    fn challenge(
        &self,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
        need: &Need,
        error: Option<&str>,
    ) -> Error {
        let realm = self.realm(peer, &parts.uri, &parts.headers, secure);
        let mut value = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.cfg.service);
        if let Some(scope) = need.scope() {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(e) = error {
            value.push_str(&format!(",error=\"{e}\""));
        }
        Error::new(ErrorCode::Unauthorized, "authentication required")
            .detail(need.detail())
            .header("WWW-Authenticate", value)
    }

    /// Decide a registry request. Returns the caller, or the error to answer with.
    pub async fn authorize(
        &self,
        registry: &Registry,
        parts: &Parts,
        peer: Option<SocketAddr>,
        secure: bool,
        need: &Need,
    ) -> Result<Principal> {
        let snap = self.snapshot();
        let now = now();
        let (cred, jwt) = match presented(parts) {
            None => (Cred::Anonymous, None),
            Some(Presented::Basic { user, password }) => {
                let ip = self.client_ip(peer, &parts.headers);
                match self.login(ip, &user, &password).await {
                    Ok(cred) => (cred, None),
                    Err(LoginError::Limited(wait)) => return Err(too_many(wait)),
                    Err(LoginError::Invalid) => {
                        return Err(self.challenge(parts, peer, secure, need, None));
                    }
                }
            }
            Some(Presented::Bearer(token)) => {
                let claims = match self.verify_jwt(&snap, &token, now) {
                    Ok(c) => Some(c),
                    // An upload the same subject opened may finish on an expired token.
                    // Only a token that was valid when the session opened qualifies: an old
                    // expired token must not open-and-use new sessions.
                    Err(JwtError::Expired(c)) => match need {
                        Need::Upload(n, id) => registry
                            .upload_opened_at(n, id, &c.sub)
                            .await?
                            .filter(|&opened| c.iat <= opened && opened < c.exp + LEEWAY)
                            .map(|_| Arc::new(*c)),
                        _ => None,
                    },
                    Err(_) => None,
                };
                let cred = claims.as_ref().and_then(|c| {
                    snap.decode(&c.cred, now)
                        .filter(|cred| cred.subject() == c.sub)
                });
                match (cred, claims) {
                    (Some(cred), Some(c)) => (cred, Some(c)),
                    _ => {
                        tracing::warn!(route = ?need_name(need), "auth: invalid or revoked bearer token");
                        return Err(self.challenge(
                            parts,
                            peer,
                            secure,
                            need,
                            Some("invalid_token"),
                        ));
                    }
                }
            }
        };
        self.touch(&cred);
        let p = Principal {
            cred,
            jwt,
            snap: Some(snap),
        };
        if p.allows(need) {
            return Ok(p);
        }
        tracing::info!(subject = p.cred.subject(), need = ?need_name(need), "auth: request denied");
        if p.cred == Cred::Anonymous {
            let error = p.jwt.is_some().then_some("insufficient_scope");
            return Err(self.challenge(parts, peer, secure, need, error));
        }
        if p.jwt.is_some() && p.unbounded().allows(need) {
            return Err(self.challenge(parts, peer, secure, need, Some("insufficient_scope")));
        }
        // The detail names the access that was refused. It also keeps docker from retrying:
        // its client turns an error with the code's stock message and a null detail into a
        // bare code, which its retry filter does not recognise, so a denied blob upload was
        // retried four times with back-off (50 s) before docker gave up.
        Err(Error::new(
            ErrorCode::Denied,
            "requested access to the resource is denied",
        )
        .detail(need.detail()))
    }
}

/// Most verified JWTs remembered.
const VERIFIED_MAX: usize = 10_000;

impl Auth {
    /// Verify a JWT (pinned keys, our issuer and audience), remembering good ones so a
    /// client's stream of requests with the same token costs one signature check. Expiry is
    /// re-checked on every use.
    pub(crate) fn verify_jwt(
        &self,
        snap: &Snapshot,
        token: &str,
        now: i64,
    ) -> std::result::Result<Arc<Claims>, JwtError> {
        let key = secret::hash_secret(token);
        {
            let cache = self.verified.lock().expect("jwt cache");
            if cache.0 == snap.revision
                && let Some(c) = cache.1.get(&key)
            {
                if now >= c.exp + LEEWAY {
                    return Err(JwtError::Expired(Box::new((**c).clone())));
                }
                return Ok(c.clone());
            }
        }
        let claims = snap
            .verifier
            .verify(token, self.issuer(), &self.cfg.service, now, LEEWAY)?;
        let mut cache = self.verified.lock().expect("jwt cache");
        if cache.0 != snap.revision || cache.1.len() >= VERIFIED_MAX {
            *cache = (snap.revision, HashMap::new());
        }
        let claims = Arc::new(claims);
        cache.1.insert(key, claims.clone());
        Ok(claims)
    }
}

fn need_name(need: &Need) -> String {
    match need {
        Need::Login => "login".into(),
        Need::Catalog => "catalog".into(),
        Need::Repo(n, a) => format!("{a:?} {n}"),
        Need::Upload(n, _) => format!("upload {n}"),
    }
}

/// 429 with `Retry-After`.
pub fn too_many(wait: u64) -> Error {
    Error::new(
        ErrorCode::TooManyRequests,
        "too many failed logins from this address for this user; retry later",
    )
    .header("Retry-After", wait.to_string())
}
