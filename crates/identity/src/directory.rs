//! Keeps the snapshot current: the store's revision counter is polled every reload interval
//! (and checked at once, at most four times a second, when a credential is not known yet), the
//! htpasswd file is re-read when it changes, and a signing key is added before the current one
//! stops signing. Token last-use times are collected here and written in the background.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use stowage_auth::password;
use stowage_auth::pattern::{Grant, RepoPattern};
use stowage_metadata::AuthStore;

use crate::issuer::KeyPolicy;
use crate::snapshot::{self, Cred, Snapshot, Sources};
use crate::{IdentityError, Settings, now};

/// The htpasswd file's (mtime, length) when last read, and its (user, hash) entries.
type HtpasswdState = (Option<(SystemTime, u64)>, Vec<(String, String)>);

/// The snapshot and what keeps it current.
pub(crate) struct Directory {
    store: Arc<dyn AuthStore>,
    snap: RwLock<Arc<Snapshot>>,
    public: Vec<RepoPattern>,
    htpasswd_path: Option<PathBuf>,
    htpasswd_grants: Vec<Grant>,
    /// The htpasswd file's (mtime, length) when last read, and its users.
    htpasswd: Mutex<HtpasswdState>,
    keys: KeyPolicy,
    reload_interval: Duration,
    /// When a reload was last forced by an unknown credential.
    forced_reload: Mutex<Option<Instant>>,
    /// Token ids used since the last flush, with when.
    touched: Mutex<HashMap<String, i64>>,
}

impl Directory {
    pub(crate) fn new(
        settings: &Settings,
        store: Arc<dyn AuthStore>,
        keys: KeyPolicy,
    ) -> Directory {
        Directory {
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
            public: settings.public.clone(),
            htpasswd_path: settings.htpasswd.clone(),
            htpasswd_grants: settings.htpasswd_grants.clone(),
            htpasswd: Mutex::new((None, Vec::new())),
            keys,
            reload_interval: settings.reload_interval,
            forced_reload: Mutex::new(None),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// The current snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn store(&self) -> &Arc<dyn AuthStore> {
        &self.store
    }

    /// Re-read the htpasswd file if it changed; true when it did.
    fn refresh_htpasswd(&self) -> Result<bool, IdentityError> {
        let Some(path) = &self.htpasswd_path else {
            return Ok(false);
        };
        let fail = |e: &dyn std::fmt::Display| {
            IdentityError::Htpasswd(format!("auth.htpasswd {}: {e}", path.display()))
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(&e))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut h = self.htpasswd.lock().unwrap_or_else(|p| p.into_inner());
        if h.0 == Some(stamp) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
        let users = password::parse_htpasswd(&text).map_err(|e| fail(&e))?;
        *h = (Some(stamp), users);
        Ok(true)
    }

    /// Rebuild the snapshot when the store or the htpasswd file changed (or when `force`).
    pub(crate) async fn reload(&self, force: bool) -> Result<(), IdentityError> {
        let revision = self.store.auth_revision().await?;
        let htpasswd_changed = match self.refresh_htpasswd() {
            Ok(c) => c,
            Err(e) if force => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "auth: keeping the previous htpasswd users");
                false
            }
        };
        // Rotation is time-driven, so the keys are looked at on every tick.
        let mut keys = self.store.signing_keys().await?;
        let added = self.keys.ensure_signing_key(&*self.store, &keys).await?;
        if !force && !htpasswd_changed && !added && self.snapshot().revision == revision {
            return Ok(());
        }
        if added {
            keys = self.store.signing_keys().await?;
        }
        let revision = self.store.auth_revision().await?;
        let users = self.store.users().await?;
        let tokens = self.store.tokens(None).await?;
        let htpasswd = self
            .htpasswd
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone();
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
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        Ok(())
    }

    /// Reload at once (at most four times a second, whatever asks): a credential created a
    /// moment ago works on first use instead of failing (and counting as a failed login) until
    /// the next poll. True when a reload ran.
    pub(crate) async fn reload_now(&self) -> bool {
        {
            let mut last = self.forced_reload.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.reload(false).await.is_ok()
    }

    /// Note that a token was used (flushed to the store in the background).
    pub(crate) fn touch(&self, cred: &Cred) {
        if let Cred::Token { id, .. } = cred {
            self.touched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), now());
        }
    }

    /// Poll for changes, flush token last-use times and purge expired records, forever.
    pub(crate) async fn run_background(&self) {
        let mut ticks: u64 = 0;
        loop {
            tokio::time::sleep(self.reload_interval).await;
            ticks += 1;
            if let Err(e) = self.reload(false).await {
                tracing::warn!(error = %e, "auth: reloading users and tokens failed");
            }
            let used: Vec<(String, i64)> = self
                .touched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain()
                .collect();
            if !used.is_empty()
                && let Err(e) = self.store.touch_tokens(&used).await
            {
                tracing::warn!(error = %e, "auth: recording token use failed");
            }
            if ticks.is_multiple_of(600)
                && let Err(e) = self.store.purge_auth(now()).await
            {
                tracing::warn!(error = %e, "auth: purging expired records failed");
            }
        }
    }
}
