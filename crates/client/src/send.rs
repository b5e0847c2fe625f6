//! Sending requests: authorization for the request's scope (only to this registry's own
//! origin), one retry with a fresh token after a 401, and retries with backoff of idempotent
//! requests on connection errors, 429 and 5xx.

use crate::{Client, ClientError, Result, auth, credentials, www_authenticate};

impl Client {
    /// Send a request needing `scope`: with the cached authorization, answering one 401 with
    /// a fresh token (or, for a streamed body that cannot be sent twice, getting the token
    /// first), and retrying idempotent requests on connection errors, 429 and 5xx.
    pub(crate) async fn go(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        scope: &[String],
    ) -> Result<reqwest::Response> {
        let Some(auth) = &self.auth else {
            return send_retrying(req, what).await;
        };
        // A `Location` or `Link` may point at another host: it never gets our credentials.
        let (http, built) = req.build_split();
        let built = built.map_err(|e| ClientError::transport(what, e))?;
        if !self.same_origin(built.url()) {
            return send_retrying(reqwest::RequestBuilder::from_parts(http, built), what).await;
        }
        let req = reqwest::RequestBuilder::from_parts(http, built);
        let mut header = auth.cached(scope);
        if header.is_none() && req.try_clone().is_none() && !auth.known_open() {
            header = self.preflight(auth, scope).await?;
        }
        let spare = req.try_clone();
        let with = |r: reqwest::RequestBuilder, h: &Option<String>| match h {
            Some(h) => r.header(reqwest::header::AUTHORIZATION, h),
            None => r,
        };
        let resp = send_retrying(with(req, &header), what).await?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let Some(spare) = spare else { return Ok(resp) };
        let values = www_authenticate(&resp);
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        match auth
            .authorize_after(&refs, scope, header.as_deref())
            .await?
        {
            Some(h) if Some(&h) != header.as_ref() => {
                send_retrying(with(spare, &Some(h)), what).await
            }
            _ => Ok(resp),
        }
    }

    /// Whether `url` is this registry (scheme, host and port), the only place credentials go.
    fn same_origin(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.base).is_ok_and(|b| {
            b.scheme() == url.scheme()
                && b.host_str() == url.host_str()
                && b.port_or_known_default() == url.port_or_known_default()
        })
    }

    /// Learn the registry's challenge from `GET /v2/` and get a header for `scope`.
    pub(crate) async fn preflight(
        &self,
        auth: &auth::Authenticator,
        scope: &[String],
    ) -> Result<Option<String>> {
        let r = send_retrying(self.http.get(format!("{}/v2/", self.base)), "ping").await?;
        if r.status() != 401 {
            auth.mark_open();
            return Ok(None);
        }
        let values = www_authenticate(&r);
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        auth.authorize(&refs, scope).await
    }

    /// Compatibility for callers that log in once with a password: turn authentication on
    /// with these credentials and get a token for `scopes` now.
    pub async fn authenticate(
        &mut self,
        user: &str,
        password: &str,
        scopes: &[String],
    ) -> Result<()> {
        let cred = credentials::Credential {
            username: user.to_string(),
            secret: password.to_string(),
        };
        let auth = std::sync::Arc::new(auth::Authenticator::new(self.http.clone(), Some(cred)));
        self.preflight(&auth, scopes).await?;
        self.auth = Some(auth);
        Ok(())
    }
}

/// How many times a GET or HEAD is tried.
const ATTEMPTS: u32 = 4;

/// Send, retrying idempotent requests (GET, HEAD, and PUTs whose body can be sent again:
/// manifests, empty upload closes) on connection errors, 429 and any 5xx, with
/// exponential backoff (or the server's `Retry-After`, up to 30 s). A streamed body cannot be
/// cloned, so those requests are never sent twice; uploads recover through the session's offset.
pub(crate) async fn send_retrying(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response> {
    let idempotent = req
        .try_clone()
        .and_then(|r| r.build().ok())
        .is_some_and(|r| {
            matches!(
                *r.method(),
                reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::PUT
            )
        });
    let mut req = req;
    let mut delay = std::time::Duration::from_millis(250);
    for attempt in 1..=ATTEMPTS {
        let spare = if idempotent && attempt < ATTEMPTS {
            req.try_clone()
        } else {
            None
        };
        let result = req.send().await;
        let Some(next) = spare else {
            return result.map_err(|e| ClientError::transport(what, e));
        };
        let wait = match &result {
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => Some(delay),
            Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => Some(
                r.headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(delay, |s| std::time::Duration::from_secs(s.min(30))),
            ),
            _ => None,
        };
        match wait {
            None => return result.map_err(|e| ClientError::transport(what, e)),
            Some(w) => {
                tokio::time::sleep(w).await;
                delay *= 2;
                req = next;
            }
        }
    }
    unreachable!("the last attempt always returns")
}
