//! The authorization decision: what a request needs, what credentials it presents, and who the
//! caller is or why it is refused.
//!
//! The server extracts the credentials from the request and renders a [`Denial`] as HTTP; this
//! module decides. A registry request with no credential, or with a JWT that a new token could
//! widen, is `Unauthorized` (the client should fetch a token); a credential whose owner lacks
//! the right is `Forbidden`. Both are decided before the repository is looked at, so a caller
//! without pull rights gets the same answer for a private repository and a missing one.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use stowage_auth::jwt::{Claims, JwtError};
use stowage_auth::scope::{Action, Actions};
use stowage_oci::{RepoName, UploadId};

use crate::issuer::LEEWAY;
use crate::login::LoginError;
use crate::snapshot::{Cred, Snapshot};
use crate::{Identity, IdentityError, now};

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any valid credential (`/v2/`).
    Login,
    Catalog,
    Repo(RepoName, Action),
    /// Push rights, and being the subject that opened the session.
    Upload(RepoName, UploadId),
    /// The admin API: a credential holding `registry:admin:*` (what it may do there is
    /// decided per operation, see `admin`).
    Admin,
    /// A token from the token endpoint: any credential, or none (anonymous callers get tokens
    /// for public repositories).
    Token,
}

impl Need {
    /// The scope a client should ask a token for.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Login | Need::Token => None,
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Admin => Some("registry:admin:*".into()),
            Need::Repo(n, Action::Pull) => Some(format!("repository:{n}:pull")),
            Need::Repo(n, Action::Delete) => Some(format!("repository:{n}:delete")),
            Need::Repo(n, _) | Need::Upload(n, _) => Some(format!("repository:{n}:pull,push")),
        }
    }

    /// The repository and the action named in a refusal's detail, when one is involved.
    pub fn access(&self) -> Option<(&RepoName, String)> {
        match self {
            Need::Repo(n, _) | Need::Upload(n, _) => Some((
                n,
                self.scope()
                    .unwrap_or_default()
                    .rsplit(':')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            )),
            _ => None,
        }
    }

    /// A short name for logs.
    fn name(&self) -> String {
        match self {
            Need::Login => "login".into(),
            Need::Catalog => "catalog".into(),
            Need::Repo(n, a) => format!("{a:?} {n}"),
            Need::Upload(n, _) => format!("upload {n}"),
            Need::Admin => "admin".into(),
            Need::Token => "token".into(),
        }
    }
}

/// The credentials a request presents, as the server extracted them.
pub enum Credentials {
    None,
    /// A user name and password (or an access token as the password).
    Basic {
        user: String,
        password: String,
    },
    /// A JWT.
    Bearer(String),
    /// A refresh token (the token endpoint's `grant_type=refresh_token`).
    Refresh(String),
}

/// The `error` of a Bearer challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// Forged, expired, for another audience, or minted by a revoked credential.
    InvalidToken,
    /// Valid, but its access is too narrow; a new token could hold more.
    InsufficientScope,
}

impl ChallengeError {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeError::InvalidToken => "invalid_token",
            ChallengeError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Authenticate (again): no credential, a wrong password, or a JWT that is invalid
    /// (`InvalidToken`) or too narrow (`InsufficientScope`).
    Unauthorized(Option<ChallengeError>),
    /// At the token endpoint: a wrong user name, password or access token.
    BadLogin,
    /// At the token endpoint: an unknown, expired or revoked refresh token.
    BadRefreshToken,
    /// The credential is valid, but its owner lacks the right.
    Forbidden,
    /// Too many failed logins for (client address, user): retry after this many seconds.
    TooManyAttempts { retry_after: u64 },
}

impl Denial {
    /// The message for the client.
    pub fn message(&self, need: &Need) -> &'static str {
        match (self, need) {
            (Denial::Unauthorized(Some(ChallengeError::InsufficientScope)), Need::Admin) => {
                "this token was not issued for the admin API: ask the token endpoint for the scope registry:admin:*"
            }
            (Denial::Unauthorized(Some(ChallengeError::InvalidToken)), Need::Admin) => {
                "invalid, expired or revoked token"
            }
            (Denial::Unauthorized(_), _) => "authentication required",
            (Denial::BadLogin, _) => "invalid user name or password",
            (Denial::BadRefreshToken, _) => "invalid refresh token",
            (Denial::Forbidden, Need::Admin) => {
                "this credential does not hold registry:admin:* (use the password, or an access token created with the scope admin)"
            }
            (Denial::Forbidden, _) => "requested access to the resource is denied",
            (Denial::TooManyAttempts { .. }, _) => {
                "too many failed logins from this address for this user; retry later"
            }
        }
    }
}

/// The outcome of a decision.
pub type Decision = Result<Principal, Denial>;

/// Upload sessions, as far as the decision needs them: a JWT that expired during a large push
/// may finish the session its subject opened while it was valid.
pub trait SessionLookup: Sync {
    /// When `subject` opened upload session `id` on `repo` (None: not its session, or gone).
    fn opened_at(
        &self,
        repo: &RepoName,
        id: &UploadId,
        subject: &str,
    ) -> impl Future<Output = Result<Option<i64>, IdentityError>> + Send;
}

/// No upload sessions (for needs that involve none).
pub struct NoSessions;

impl SessionLookup for NoSessions {
    async fn opened_at(
        &self,
        _: &RepoName,
        _: &UploadId,
        _: &str,
    ) -> Result<Option<i64>, IdentityError> {
        Ok(None)
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

    /// Whether the caller is nobody in particular: no credential, or a token issued to no one
    /// (authentication off counts too).
    pub fn is_anonymous(&self) -> bool {
        self.cred == Cred::Anonymous
    }

    /// Who owns upload sessions this caller opens.
    pub fn owner(&self) -> String {
        self.cred.subject().to_string()
    }

    /// The snapshot the decision was made with (None when authentication is off).
    pub(crate) fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snap.as_ref()
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
            Need::Admin => self.snap.as_ref().is_none_or(|s| s.admin_api(&self.cred)),
            Need::Token => true,
        }
    }
}

/// A predicate over repository names: which ones a caller may read.
pub type Readable = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Identity {
    /// Decide a request: who is calling, and whether it holds what `need` asks for. `ip` is
    /// the client's address (for the failed-login limit); `sessions` answers for the upload
    /// grace of expired JWTs. An `Err` is a failure to decide (a store error), not a refusal.
    pub async fn decide(
        &self,
        need: &Need,
        creds: Credentials,
        ip: IpAddr,
        sessions: &impl SessionLookup,
    ) -> Result<Decision, IdentityError> {
        match need {
            Need::Admin => self.decide_admin(creds, ip).await,
            Need::Token => self.decide_token(creds, ip).await,
            _ => self.decide_registry(need, creds, ip, sessions).await,
        }
    }

    /// A password login; `invalid` is the refusal of wrong credentials.
    async fn login_as(
        &self,
        ip: IpAddr,
        user: &str,
        pw: &str,
        invalid: Denial,
    ) -> Result<Cred, Denial> {
        self.login(ip, user, pw).await.map_err(|e| match e {
            LoginError::Limited(wait) => Denial::TooManyAttempts { retry_after: wait },
            LoginError::Invalid => invalid,
        })
    }

    fn principal(&self, cred: Cred, jwt: Option<Arc<Claims>>) -> Principal {
        Principal {
            cred,
            jwt,
            snap: Some(self.snapshot()),
        }
    }

    /// A verified, unexpired JWT and the credential it names, still valid.
    fn bearer(&self, snap: &Snapshot, token: &str, now: i64) -> Result<Arc<Claims>, JwtError> {
        self.issuer.verify_jwt(snap, token, now)
    }

    async fn decide_registry(
        &self,
        need: &Need,
        creds: Credentials,
        ip: IpAddr,
        sessions: &impl SessionLookup,
    ) -> Result<Decision, IdentityError> {
        let snap = self.snapshot();
        let now = now();
        let (cred, jwt) = match creds {
            Credentials::None | Credentials::Refresh(_) => (Cred::Anonymous, None),
            Credentials::Basic { user, password } => {
                match self
                    .login_as(ip, &user, &password, Denial::Unauthorized(None))
                    .await
                {
                    Ok(cred) => (cred, None),
                    Err(denial) => return Ok(Err(denial)),
                }
            }
            Credentials::Bearer(token) => {
                let claims = match self.bearer(&snap, &token, now) {
                    Ok(c) => Some(c),
                    // An upload the same subject opened may finish on an expired token.
                    // Only a token that was valid when the session opened qualifies: an old
                    // expired token must not open-and-use new sessions.
                    Err(JwtError::Expired(c)) => match need {
                        Need::Upload(n, id) => sessions
                            .opened_at(n, id, &c.sub)
                            .await?
                            .filter(|&opened| c.iat <= opened && opened < c.exp + LEEWAY)
                            .map(|_| Arc::new(*c)),
                        _ => None,
                    },
                    Err(_) => None,
                };
                let cred = claims.as_ref().and_then(|c| snap.jwt_cred(c, now));
                match (cred, claims) {
                    (Some(cred), Some(c)) => (cred, Some(c)),
                    _ => {
                        tracing::warn!(route = ?need.name(), "auth: invalid or revoked bearer token");
                        return Ok(Err(Denial::Unauthorized(Some(
                            ChallengeError::InvalidToken,
                        ))));
                    }
                }
            }
        };
        self.directory.touch(&cred);
        let p = Principal {
            cred,
            jwt,
            snap: Some(snap),
        };
        if p.allows(need) {
            return Ok(Ok(p));
        }
        tracing::info!(subject = p.cred.subject(), need = ?need.name(), "auth: request denied");
        if p.cred == Cred::Anonymous {
            let error = p.jwt.is_some().then_some(ChallengeError::InsufficientScope);
            return Ok(Err(Denial::Unauthorized(error)));
        }
        if p.jwt.is_some() && p.unbounded().allows(need) {
            return Ok(Err(Denial::Unauthorized(Some(
                ChallengeError::InsufficientScope,
            ))));
        }
        Ok(Err(Denial::Forbidden))
    }

    /// The admin API: `registry:admin:*` is needed, as a password or an access token with the
    /// scope `admin` (Basic), or a JWT whose `access` lists it. A JWT's credential alone is not
    /// enough: a pull token cannot act as its user's password there.
    async fn decide_admin(
        &self,
        creds: Credentials,
        ip: IpAddr,
    ) -> Result<Decision, IdentityError> {
        let (cred, jwt) = match creds {
            Credentials::Basic { user, password } => {
                match self
                    .login_as(ip, &user, &password, Denial::Unauthorized(None))
                    .await
                {
                    Ok(cred) => (cred, None),
                    Err(denial) => return Ok(Err(denial)),
                }
            }
            Credentials::Bearer(token) => {
                let snap = self.snapshot();
                let now = now();
                let verified = self
                    .bearer(&snap, &token, now)
                    .ok()
                    .and_then(|c| Some((snap.jwt_cred(&c, now)?, c)));
                let Some((cred, claims)) = verified else {
                    tracing::warn!("auth: invalid or revoked bearer token on the admin API");
                    return Ok(Err(Denial::Unauthorized(Some(
                        ChallengeError::InvalidToken,
                    ))));
                };
                if !claims.access.iter().any(|a| a.is_admin()) {
                    tracing::info!(
                        subject = cred.subject(),
                        "auth: admin request with a token lacking registry:admin:*"
                    );
                    if snap.admin_api(&cred) {
                        return Ok(Err(Denial::Unauthorized(Some(
                            ChallengeError::InsufficientScope,
                        ))));
                    }
                    return Ok(Err(Denial::Forbidden));
                }
                (cred, Some(claims))
            }
            Credentials::None | Credentials::Refresh(_) => {
                return Ok(Err(Denial::Unauthorized(None)));
            }
        };
        let p = self.principal(cred, jwt);
        if !p.allows(&Need::Admin) {
            tracing::info!(
                subject = p.cred.subject(),
                "auth: admin request denied, no registry:admin:*"
            );
            return Ok(Err(Denial::Forbidden));
        }
        self.directory.touch(&p.cred);
        Ok(Ok(p))
    }

    /// The token endpoint: a password or access token (Basic or the OAuth2 password grant), a
    /// refresh token, or nobody (a bearer JWT counts as nobody there).
    async fn decide_token(
        &self,
        creds: Credentials,
        ip: IpAddr,
    ) -> Result<Decision, IdentityError> {
        match creds {
            Credentials::Basic { user, password } => Ok(self
                .login_as(ip, &user, &password, Denial::BadLogin)
                .await
                .map(|cred| self.principal(cred, None))),
            Credentials::Refresh(token) => Ok(match self.redeem_refresh(&token).await? {
                Some(cred) => Ok(self.principal(cred, None)),
                None => Err(Denial::BadRefreshToken),
            }),
            Credentials::None | Credentials::Bearer(_) => {
                Ok(Ok(self.principal(Cred::Anonymous, None)))
            }
        }
    }
}
