//! Token issuing: JWTs (minted with the current signing key, verified against every key still
//! valid, with a cache of verified tokens), refresh tokens (stored hashed, bound to the
//! credential that minted them), signing-key rotation, and the token endpoint's grant: the
//! intersection of what was asked and what the credential holds now.
//!
//! `registry:admin:*` (the admin API) is granted only when asked for, to a credential that
//! holds it. The HTTP side of the token endpoint (query, form, Basic header) is the server's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stowage_auth::jwt::{Claims, JwtError, generate_key};
use stowage_auth::pattern::{Access, grant_requested};
use stowage_auth::scope::{Actions, Resource, Scope};
use stowage_auth::secret;
use stowage_metadata::{AuthStore, RefreshRecord, SigningKeyRecord};

use crate::snapshot::{Cred, Snapshot};
use crate::{Identity, IdentityError, Settings, now};
use stowage_oci::time::rfc3339;

/// Clock skew tolerated between instances when checking a JWT's validity window.
pub(crate) const LEEWAY: i64 = 5;

/// Most verified JWTs remembered.
const VERIFIED_MAX: usize = 10_000;

/// Verified JWTs: the snapshot revision they were checked under, and SHA-256 -> claims.
type VerifiedJwts = (i64, HashMap<[u8; 32], Arc<Claims>>);

/// When signing keys are made and how long they stay valid.
pub(crate) struct KeyPolicy {
    pub(crate) rotation: Duration,
    pub(crate) token_ttl: Duration,
    pub(crate) reload_interval: Duration,
}

impl KeyPolicy {
    /// Make sure some key can sign for a while yet: a new key is added before the current one
    /// stops signing, and every key stays verifiable past its last token's expiry.
    pub(crate) async fn ensure_signing_key(
        &self,
        store: &dyn AuthStore,
        keys: &[SigningKeyRecord],
    ) -> Result<bool, IdentityError> {
        let now = now();
        let margin = (self.reload_interval.as_secs() as i64).max(1) * 10 + 60;
        if keys.iter().any(|k| k.sign_until > now + margin) {
            return Ok(false);
        }
        let (kid, pkcs8) = generate_key()?;
        let rotation = self.rotation.as_secs() as i64;
        let record = SigningKeyRecord {
            kid,
            pkcs8,
            created: now,
            sign_until: now + rotation,
            verify_until: now + rotation + self.token_ttl.as_secs() as i64 + 3600,
        };
        store.add_signing_key(&record).await?;
        tracing::info!(kid = %record.kid, "auth: new token signing key");
        Ok(true)
    }
}

/// Mints and verifies tokens.
pub(crate) struct Issuer {
    service: String,
    token_ttl: Duration,
    refresh_ttl: Duration,
    /// JWTs whose signature and audience were verified: SHA-256 of the token -> its claims
    /// (with the snapshot revision they were verified under). Saves an ECDSA verification per
    /// request; expiry and the credential are still checked every time.
    verified: Mutex<VerifiedJwts>,
}

/// The token endpoint's answer (fields in this order, as clients have always seen them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    /// The JWT again, under its OAuth2 name.
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: i64,
    /// RFC 3339.
    #[serde(default)]
    pub issued_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The granted scope (OAuth2 answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default)]
    pub token: String,
}

impl Issuer {
    pub(crate) fn new(settings: &Settings) -> Issuer {
        Issuer {
            service: settings.service.clone(),
            token_ttl: settings.token_ttl,
            refresh_ttl: settings.refresh_ttl,
            verified: Mutex::new((-1, HashMap::new())),
        }
    }

    /// Mint a JWT for `cred` granting `access`; returns (token, expires_in, issued_at).
    fn issue_jwt(
        &self,
        snap: &Snapshot,
        cred: &Cred,
        access: Vec<Access>,
    ) -> Result<(String, i64, i64), IdentityError> {
        let signer = snap.signer.as_ref().ok_or(IdentityError::NoSigningKey)?;
        let now = now();
        let ttl = self.token_ttl.as_secs() as i64;
        let claims = Claims {
            iss: self.service.clone(),
            sub: cred.subject().to_string(),
            aud: self.service.clone(),
            exp: now + ttl,
            nbf: now - 1,
            iat: now,
            jti: secret::b64url(secret::random_bytes::<16>()?),
            access,
            cred: cred.encode(),
        };
        Ok((signer.sign(&claims)?, ttl, now))
    }

    /// Verify a JWT (pinned keys, our issuer and audience), remembering good ones so a
    /// client's stream of requests with the same token costs one signature check. Expiry is
    /// re-checked on every use.
    pub(crate) fn verify_jwt(
        &self,
        snap: &Snapshot,
        token: &str,
        now: i64,
    ) -> Result<Arc<Claims>, JwtError> {
        let key = secret::hash_secret(token);
        {
            let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
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
            .verify(token, &self.service, &self.service, now, LEEWAY)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != snap.revision || cache.1.len() >= VERIFIED_MAX {
            *cache = (snap.revision, HashMap::new());
        }
        let claims = Arc::new(claims);
        cache.1.insert(key, claims.clone());
        Ok(claims)
    }
}

impl Identity {
    /// The token endpoint's grant: a JWT for what `cred` holds of `scopes`, with a refresh
    /// token when `offline` (store users only), and the granted scope when `oauth`.
    pub async fn issue(
        &self,
        cred: &Cred,
        scopes: &[Scope],
        offline: bool,
        oauth: bool,
    ) -> Result<Issued, IdentityError> {
        let snap = self.snapshot();
        let access: Vec<Access> = grant_requested(scopes, |r: &Resource| match r {
            Resource::Repository(n) => snap.actions_on(cred, n),
            Resource::Catalog => {
                if snap.catalog(cred) {
                    Actions::ALL
                } else {
                    Actions::NONE
                }
            }
            // Only when asked for, and only to a credential that holds it (a password, or a
            // token with the `admin` scope): a JWT for pulling never opens the admin API.
            Resource::Admin => {
                if snap.admin_api(cred) {
                    Actions::ALL
                } else {
                    Actions::NONE
                }
            }
        });
        let granted_scope = access
            .iter()
            .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
            .collect::<Vec<_>>()
            .join(" ");
        let (token, expires_in, issued) = self.issuer.issue_jwt(&snap, cred, access)?;
        // Refresh tokens are stored against a store user: htpasswd users (outside the store)
        // get none, and clients such as `docker login` then keep the password instead.
        let stored = snap
            .users
            .get(cred.subject())
            .is_some_and(|u| !u.from_htpasswd);
        let refresh_token = if offline && *cred != Cred::Anonymous && stored {
            Some(self.mint_refresh(cred).await?)
        } else {
            None
        };
        tracing::info!(subject = cred.subject(), "auth: token issued");
        Ok(Issued {
            access_token: token.clone(),
            expires_in,
            issued_at: rfc3339(issued),
            refresh_token,
            scope: oauth.then_some(granted_scope),
            token,
        })
    }

    async fn mint_refresh(&self, cred: &Cred) -> Result<String, IdentityError> {
        let fresh = secret::new_refresh_token()?;
        let record = RefreshRecord {
            user: cred.subject().to_string(),
            service: self.service.clone(),
            cred: cred.encode(),
            created: now(),
            expires: now() + self.issuer.refresh_ttl.as_secs() as i64,
        };
        self.store().create_refresh(&fresh.hash, &record).await?;
        Ok(fresh.secret)
    }

    /// The credential behind a refresh token, if it is ours, unexpired and still valid.
    pub(crate) async fn redeem_refresh(&self, token: &str) -> Result<Option<Cred>, IdentityError> {
        if secret::split_refresh_token(token).is_none() {
            return Ok(None);
        }
        let record = self.store().refresh(&secret::hash_secret(token)).await?;
        let now = now();
        let cred = record
            .filter(|r| r.expires > now && r.service == self.service)
            .and_then(|r| self.snapshot().decode(&r.cred, now));
        if cred.is_none() {
            tracing::warn!("auth: refused a refresh token (unknown, expired or revoked)");
        }
        Ok(cred)
    }
}
