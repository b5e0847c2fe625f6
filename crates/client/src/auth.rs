//! Registry authentication as clients see it: `WWW-Authenticate` challenges, Docker token
//! auth (GET with Basic, OAuth2 POST with a refresh token), Basic, and a per-scope token cache
//! renewed before expiry.
//!
//! An [`Authenticator`] belongs to one registry host and is only ever asked for headers of
//! requests to that host, so credentials never travel elsewhere (redirects to a CDN go out
//! without them; reqwest also strips `Authorization` on cross-host redirects).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::credentials::Credential;
use crate::error::ClientError;

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercase).
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str)
    }
}

/// Parse `WWW-Authenticate` values: `Bearer realm="…",service="…",scope="a b"` (quoted values
/// may hold commas and escaped quotes), `Basic realm="…"`.
pub fn parse_challenges(values: &[&str]) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    for v in values {
        let mut rest = v.trim();
        while !rest.is_empty() {
            let (scheme, after) = rest.split_once(' ').unwrap_or((rest, ""));
            let mut params = HashMap::new();
            let mut s = after.trim_start();
            while let Some(eq) = s.find('=') {
                let key = s[..eq].trim();
                if key.contains(' ') || key.contains(',') || key.is_empty() {
                    break;
                }
                let mut value = String::new();
                let mut r = &s[eq + 1..];
                if let Some(q) = r.strip_prefix('"') {
                    let mut chars = q.char_indices();
                    let mut end = q.len();
                    while let Some((i, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, n)) = chars.next() {
                                    value.push(n);
                                }
                            }
                            '"' => {
                                end = i + 1;
                                break;
                            }
                            c => value.push(c),
                        }
                    }
                    r = &q[end.min(q.len())..];
                } else {
                    let end = r.find(',').unwrap_or(r.len());
                    value = r[..end].trim().to_string();
                    r = &r[end..];
                }
                params.insert(key.to_ascii_lowercase(), value);
                s = r.trim_start();
                match s.strip_prefix(',') {
                    Some(n) => s = n.trim_start(),
                    None => break,
                }
            }
            out.push(Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params,
            });
            rest = s.trim_start_matches(',').trim_start();
            if rest == after.trim_start() {
                break;
            }
        }
    }
    out
}

/// A cached bearer token.
#[derive(Clone)]
struct Cached {
    header: String,
    renew_at: Instant,
}

/// Authentication state for one registry host.
pub struct Authenticator {
    http: reqwest::Client,
    cred: Option<Credential>,
    /// The challenge the registry answered with, once seen.
    challenge: Mutex<Option<Challenge>>,
    /// Scope set (joined) -> bearer header.
    tokens: Mutex<HashMap<String, Cached>>,
    /// A refresh token the token server handed out (or the stored identity token).
    refresh: Mutex<Option<String>>,
    /// One token fetch per scope set at a time: requests refused together share its result.
    fetching: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// The registry answered `/v2/` without asking for credentials: no need to ask again.
    open: std::sync::atomic::AtomicBool,
}

fn basic(c: &Credential) -> String {
    basic_header(&c.username, &c.secret)
}

/// An HTTP Basic `Authorization` value.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Percent-encode a query or form value.
pub fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Authenticator {
    pub fn new(http: reqwest::Client, cred: Option<Credential>) -> Authenticator {
        let refresh = cred
            .as_ref()
            .filter(|c| c.is_identity_token())
            .map(|c| c.secret.clone());
        Authenticator {
            http,
            cred,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            refresh: Mutex::new(refresh),
            fetching: Mutex::new(HashMap::new()),
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The credential in use, if any.
    pub fn credential(&self) -> Option<&Credential> {
        self.cred.as_ref()
    }

    /// The `Authorization` value for a request needing `scopes`, when one is known without
    /// asking anybody (a fresh cached token, or Basic once the registry asked for Basic).
    pub fn cached(&self, scopes: &[String]) -> Option<String> {
        let ch = self.challenge.lock().expect("challenge").clone()?;
        if ch.scheme == "basic" {
            return self
                .cred
                .as_ref()
                .filter(|c| !c.is_identity_token())
                .map(basic);
        }
        let key = scopes.join(" ");
        let tokens = self.tokens.lock().expect("tokens");
        tokens
            .get(&key)
            .filter(|c| Instant::now() < c.renew_at)
            .map(|c| c.header.clone())
    }

    /// The registry refused a request (401): learn its challenge and get a header that may
    /// work for `scopes`. None when nothing new can be tried.
    pub async fn authorize(
        &self,
        www_authenticate: &[&str],
        scopes: &[String],
    ) -> Result<Option<String>, ClientError> {
        self.authorize_after(www_authenticate, scopes, None).await
    }

    /// Whether the registry was seen to need no credentials.
    pub fn known_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remember that the registry needs no credentials.
    pub fn mark_open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Like [`Authenticator::authorize`], after the header `failed` was refused: when another
    /// request fetched a different token for the same scopes meanwhile, that one is used
    /// instead of fetching again.
    pub async fn authorize_after(
        &self,
        www_authenticate: &[&str],
        scopes: &[String],
        failed: Option<&str>,
    ) -> Result<Option<String>, ClientError> {
        let challenges = parse_challenges(www_authenticate);
        let ch = challenges
            .iter()
            .find(|c| c.scheme == "bearer")
            .or_else(|| challenges.iter().find(|c| c.scheme == "basic"))
            .cloned();
        let Some(ch) = ch else { return Ok(None) };
        *self.challenge.lock().expect("challenge") = Some(ch.clone());
        if ch.scheme == "basic" {
            return Ok(self
                .cred
                .as_ref()
                .filter(|c| !c.is_identity_token())
                .map(basic));
        }
        let key = scopes.join(" ");
        let gate = self
            .fetching
            .lock()
            .expect("fetching")
            .entry(key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().await;
        if let Some(h) = self.cached(scopes)
            && Some(h.as_str()) != failed
        {
            return Ok(Some(h));
        }
        // The token we sent was refused (or none was cached): fetch anew.
        self.tokens.lock().expect("tokens").remove(&key);
        let mut want: Vec<String> = scopes.to_vec();
        if let Some(s) = ch.param("scope") {
            for extra in s.split(' ').filter(|x| !x.is_empty()) {
                if !want.iter().any(|w| w == extra) {
                    want.push(extra.to_string());
                }
            }
        }
        let (token, ttl) = self.fetch(&ch, &want).await?;
        let header = format!("Bearer {token}");
        // Renew at 90% of the lifetime the server states (60 s when it states none).
        let life = Duration::from_secs(if ttl == 0 { 60 } else { ttl });
        self.tokens.lock().expect("tokens").insert(
            key,
            Cached {
                header: header.clone(),
                renew_at: Instant::now() + life.mul_f64(0.9),
            },
        );
        Ok(Some(header))
    }

    /// Ask the token server for a token covering `scopes`.
    async fn fetch(&self, ch: &Challenge, scopes: &[String]) -> Result<(String, u64), ClientError> {
        let realm = ch.param("realm").ok_or_else(|| {
            ClientError::protocol("token request", "Bearer challenge without a realm")
        })?;
        let service = ch.param("service").unwrap_or_default();
        let refresh = self.refresh.lock().expect("refresh").clone();
        let resp = if let Some(rt) = refresh {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", rt),
                ("service", service.to_string()),
                ("client_id", "stowage".to_string()),
            ];
            if !scopes.is_empty() {
                form.push(("scope", scopes.join(" ")));
            }
            let body: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{k}={}", escape(v)))
                .collect();
            self.http
                .post(realm)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.join("&"))
                .send()
                .await
        } else {
            let mut q = Vec::new();
            if !service.is_empty() {
                q.push(format!("service={}", escape(service)));
            }
            for s in scopes {
                q.push(format!("scope={}", escape(s)));
            }
            if let Some(c) = &self.cred {
                q.push(format!("account={}", escape(&c.username)));
            }
            let sep = if realm.contains('?') { '&' } else { '?' };
            let url = if q.is_empty() {
                realm.to_string()
            } else {
                format!("{realm}{sep}{}", q.join("&"))
            };
            let mut b = self.http.get(url);
            if let Some(c) = &self.cred {
                b = b.header(reqwest::header::AUTHORIZATION, basic(c));
            }
            b.send().await
        }
        .map_err(|e| ClientError::transport("token request", e))?;
        if !resp.status().is_success() {
            return Err(ClientError::from_response("token request", resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::transport("token request", e))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::protocol("token request", &format!("answer is not JSON: {e}"))
        })?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ClientError::protocol("token request", "the answer has no token"))?;
        if let Some(rt) = v.get("refresh_token").and_then(|t| t.as_str()) {
            *self.refresh.lock().expect("refresh") = Some(rt.to_string());
        }
        let ttl = v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(0);
        Ok((token.to_string(), ttl))
    }

    /// Log in the way `docker login` does: a token with offline access and no scope. Returns
    /// the refresh token, if the server gave one (store it instead of the password).
    pub async fn login(&self, www_authenticate: &[&str]) -> Result<Option<String>, ClientError> {
        let challenges = parse_challenges(www_authenticate);
        let Some(ch) = challenges.iter().find(|c| c.scheme == "bearer").cloned() else {
            return Ok(None);
        };
        let realm = ch
            .param("realm")
            .ok_or_else(|| ClientError::protocol("login", "Bearer challenge without a realm"))?;
        let mut q = vec![
            "offline_token=true".to_string(),
            "client_id=stowage".to_string(),
        ];
        if let Some(s) = ch.param("service") {
            q.push(format!("service={}", escape(s)));
        }
        if let Some(c) = &self.cred {
            q.push(format!("account={}", escape(&c.username)));
        }
        let mut b = self.http.get(format!(
            "{realm}{}{}",
            if realm.contains('?') { '&' } else { '?' },
            q.join("&")
        ));
        if let Some(c) = &self.cred {
            b = b.header(reqwest::header::AUTHORIZATION, basic(c));
        }
        let resp = b
            .send()
            .await
            .map_err(|e| ClientError::transport("login", e))?;
        if !resp.status().is_success() {
            return Err(ClientError::from_response("login", resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::transport("login", e))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(v.get("refresh_token")
            .and_then(|t| t.as_str())
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_like_clients_do() {
        let c = parse_challenges(&[
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope""#,
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:a/b:pull,push repository:c:pull"),
            "commas inside quotes stay"
        );
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        let b = parse_challenges(&["Basic realm=\"Registry \\\"x\\\"\""]);
        assert_eq!(b[0].scheme, "basic");
        assert_eq!(b[0].param("realm"), Some("Registry \"x\""));
        let unquoted = parse_challenges(&["Bearer realm=https://a/t,service=s"]);
        assert_eq!(unquoted[0].param("service"), Some("s"));
        assert!(parse_challenges(&[""]).is_empty());
        // Garbage never panics.
        for junk in [
            "Bearer",
            "Bearer =",
            "Bearer a=\"unterminated",
            ",,,",
            "Basic realm",
        ] {
            let _ = parse_challenges(&[junk]);
        }
    }

    /// A token server on a thread: answers every request with a fresh token that lives
    /// `expires_in` seconds, and counts requests (and whether they carried credentials).
    fn token_server(expires_in: u64) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { break };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                s2.lock().unwrap().push(head);
                let body = format!(r#"{{"token":"t{n}","expires_in":{expires_in}}}"#);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (addr, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_are_cached_per_scope_and_renewed_before_expiry() {
        let (addr, seen) = token_server(1);
        let challenge = format!(r#"Bearer realm="http://{addr}/token",service="svc""#);
        let cred = Credential {
            username: "u".into(),
            secret: "p".into(),
        };
        let a = Authenticator::new(reqwest::Client::new(), Some(cred));
        let pull = vec!["repository:a/b:pull".to_string()];
        let push = vec!["repository:a/b:pull,push".to_string()];
        assert_eq!(a.cached(&pull), None, "nothing before the first challenge");
        let h = a
            .authorize(&[challenge.as_str()], &pull)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h, "Bearer t0");
        assert_eq!(
            a.cached(&pull).as_deref(),
            Some("Bearer t0"),
            "cached for its scope"
        );
        assert_eq!(a.cached(&push), None, "not for another scope");
        let h = a
            .authorize(&[challenge.as_str()], &push)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h, "Bearer t1");
        // A 1 s token is renewed after 0.9 s, before it expires.
        tokio::time::sleep(std::time::Duration::from_millis(950)).await;
        assert_eq!(a.cached(&pull), None, "due for renewal");
        let h = a
            .authorize(&[challenge.as_str()], &pull)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h, "Bearer t2");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[0].contains("scope=repository%3Aa%2Fb%3Apull"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("authorization: basic"),
            "{}",
            seen[0]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_tokens_are_used_with_the_oauth2_post() {
        let (addr, seen) = token_server(60);
        let challenge = format!(r#"Bearer realm="http://{addr}/token",service="svc""#);
        let cred = Credential {
            username: crate::credentials::IDENTITY_TOKEN_USER.into(),
            secret: "refresh-me".into(),
        };
        let a = Authenticator::new(reqwest::Client::new(), Some(cred));
        a.authorize(&[challenge.as_str()], &["repository:x:pull".to_string()])
            .await
            .unwrap()
            .unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen[0].starts_with("POST /token"), "{}", seen[0]);
        assert!(
            !seen[0].to_ascii_lowercase().contains("authorization"),
            "{}",
            seen[0]
        );
    }
}
