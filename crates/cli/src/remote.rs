//! A small client for a Stowage server's admin API (`--server URL`), with TLS options and the
//! caller's credentials: `--username` plus a password from stdin or `STOWAGE_PASSWORD`, or
//! else the login docker or podman stored for that host. Requests and answers are the admin
//! API's own types (`stowage_identity::admin`).

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use stowage_client::auth::{basic_header as basic, escape};
use stowage_client::credentials::CredentialFiles;
use stowage_identity::Issued;
use stowage_identity::admin::AdminRoute;

/// The scope the admin API needs in a bearer token.
const ADMIN_SCOPE: &str = "registry:admin:*";

/// How to reach and log in to a server.
pub struct Connect<P: FnOnce() -> Result<Option<String>, String>> {
    /// Trust this CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (testing only).
    pub insecure: bool,
    pub username: Option<String>,
    /// The caller's password, when given (read only once the URL and TLS options are good).
    pub password: P,
}

/// Trade a stored refresh token for a JWT for the admin API (`registry:admin:*`) at the
/// server's token endpoint.
async fn redeem(http: &reqwest::Client, base: &str, refresh: &str) -> Result<String, String> {
    let enc = escape(refresh);
    let scope = escape(ADMIN_SCOPE);
    let resp = http
        .post(format!("{base}/auth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id=stowage&scope={scope}&refresh_token={enc}"
        ))
        .send()
        .await
        .map_err(|e| format!("{base}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "{base}: the stored login was refused ({}); log in again with `stowage login`",
            resp.status()
        ));
    }
    let v: Issued = serde_json::from_slice(&resp.bytes().await.map_err(|e| e.to_string())?)
        .map_err(|e| format!("{base}: {e}"))?;
    let granted = v.scope.as_deref().unwrap_or_default();
    if !granted.split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(format!(
            "{base}: the stored login does not allow administration (it was not made with a password, or with a token carrying the scope admin); give --username with --password-stdin"
        ));
    }
    [v.access_token, v.token]
        .into_iter()
        .find(|t| !t.is_empty())
        .ok_or_else(|| format!("{base}: the token endpoint gave no token"))
}

pub struct Remote {
    base: String,
    http: reqwest::Client,
    auth: Option<String>,
}

impl Remote {
    pub async fn new<P>(url: &str, c: Connect<P>) -> Result<Remote, String>
    where
        P: FnOnce() -> Result<Option<String>, String>,
    {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") && !base.starts_with("http://") {
            return Err(format!(
                "--server must be a URL such as https://registry.example.com, not {url:?}"
            ));
        }
        let host = base
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &c.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if c.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        let password = (c.password)()?;
        let auth = match (&c.username, password) {
            (Some(u), Some(p)) => Some(basic(u, &p)),
            (u, _) => {
                // The login `stowage login`, docker or podman stored for this host.
                let stored = CredentialFiles::from_env(None)
                    .lookup(&host, "")
                    .map_err(|e| e.to_string())?
                    .filter(|c| {
                        u.as_ref()
                            .is_none_or(|u| *u == c.username || c.is_identity_token())
                    });
                match stored {
                    Some(c) if c.is_identity_token() => {
                        Some(format!("Bearer {}", redeem(&http, &base, &c.secret).await?))
                    }
                    Some(c) if !c.secret.is_empty() => Some(basic(&c.username, &c.secret)),
                    _ => None,
                }
            }
        };
        if auth.is_none() {
            return Err(format!(
                "no credentials for {host}: give --username with --password-stdin (or STOWAGE_PASSWORD), or `stowage login {host}` first"
            ));
        }
        Ok(Remote { base, http, auth })
    }

    async fn request(
        &self,
        route: &AdminRoute,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, String> {
        let m =
            reqwest::Method::from_bytes(route.method().as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .request(m, format!("{}{}", self.base, route.path()));
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("errors")?.get(0)?.clone();
                Some(format!(
                    "{}: {}",
                    e.get("code")?.as_str()?,
                    e.get("message")?.as_str()?
                ))
            })
            .unwrap_or_else(|| text.trim().to_string());
        Err(format!("{} answered {status}: {message}", self.base))
    }

    /// Call `route` with `body` (JSON) and read its JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        route: &AdminRoute,
        body: Option<&impl Serialize>,
    ) -> Result<T, String> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| e.to_string())?;
        let resp = self.request(route, body).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: unexpected answer: {e}", self.base))
    }

    /// Call `route`, which takes no body, and read its JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, route: &AdminRoute) -> Result<T, String> {
        self.call(route, None::<&()>).await
    }

    /// Call `route`, which answers nothing.
    pub async fn call_empty(&self, route: &AdminRoute) -> Result<(), String> {
        self.request(route, None).await.map(|_| ())
    }
}
