//! A small client for a Stowage server's admin API (`--server URL`), with TLS options and the
//! caller's credentials: `--username` plus a password from stdin or `STOWAGE_PASSWORD`, or
//! else the login docker or podman stored for that host.

use base64::Engine;
use serde::de::DeserializeOwned;

use crate::accounts_cmd::{Target, server_password};

pub struct Remote {
    base: String,
    http: reqwest::Client,
    auth: Option<String>,
}

/// `user:password` stored for `host` by `docker login` (`~/.docker/config.json`) or
/// `podman login` (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`).
pub fn stored_login(host: &str) -> Option<(String, String)> {
    let mut files = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(std::path::PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(std::path::PathBuf::from(d).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => files.push(std::path::PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                files.push(std::path::PathBuf::from(h).join(".docker/config.json"));
            }
        }
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for (key, entry) in auths {
            let k = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if k != host {
                continue;
            }
            let raw = entry.get("auth").and_then(|a| a.as_str())?;
            let decoded = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            return Some((u.to_string(), p.to_string()));
        }
    }
    None
}

impl Remote {
    pub fn new(url: &str, t: &Target) -> Result<Remote, String> {
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
        if let Some(ca) = &t.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if t.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        let password = server_password(t)?;
        let auth = match (&t.username, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (u, _) => stored_login(&host).filter(|(su, _)| u.as_ref().is_none_or(|u| u == su)),
        }
        .map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        if auth.is_none() {
            return Err(format!(
                "no credentials for {host}: give --username with --server-password-stdin (or STOWAGE_PASSWORD), or log in first"
            ));
        }
        Ok(Remote { base, http, auth })
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&b).map_err(|e| e.to_string())?);
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

    pub async fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, String> {
        let resp = self.request(method, path, body).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.base))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: unexpected answer: {e}", self.base))
    }

    pub async fn send_empty(&self, method: &str, path: &str) -> Result<(), String> {
        self.request(method, path, None).await.map(|_| ())
    }
}
