//! Connection limits: the settings of `[limits]` as the listener uses them, the cap on
//! connections served at once (a semaphore whose permits the connection tasks hold until their
//! socket is closed), and the open-file budget that cap is derived from.
//!
//! The cap exists so the process never runs out of file descriptors: past it, `accept()` is
//! simply not called, so new clients wait in the kernel's listen backlog while the connections
//! already open keep being served, and `accept()` never fails with `EMFILE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default cap when the open-file limit allows it.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// File descriptors kept out of the connection budget: the listeners, the metadata database
/// and its WAL readers, the runtime, logs, certificate reloads and a margin.
const RESERVED_FDS: u64 = 256;

/// Descriptors one connection may need: its socket and the blob or upload file it streams.
const FDS_PER_CONNECTION: u64 = 2;

/// How often "connection limit reached" (and accept errors) may be logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What every connection of a listener is held to.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// A connection that sends nothing for this long after connecting is closed (plain
    /// listeners; TLS handshakes have their own 10 s limit).
    pub first_byte_timeout: Duration,
    /// A request head, once begun, must be complete within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight (HTTP/1.1 keep-alive between requests, HTTP/2
    /// with no open stream) is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of a request body left unread by the application that are still read and
    /// dropped (see `drain`).
    pub drain: u64,
    /// Per-frame timeout while draining (the application's body idle timeout).
    pub body_idle_timeout: Duration,
    /// `limits.max_header_size`: the application answers 431 over it; the HTTP/2 engine's
    /// header list bound is derived from it (see `listener`).
    pub max_header_size: u64,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            first_byte_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: default_max_connections(),
            drain: 64 * 1024 * 1024,
            body_idle_timeout: Duration::from_secs(60),
            max_header_size: 64 * 1024,
        }
    }
}

/// The settings plus the shared connection slots. Cheap to clone; clones share the slots, so
/// several listeners given clones share one cap.
#[derive(Clone)]
pub struct Limits {
    settings: Arc<ConnSettings>,
    slots: Arc<Semaphore>,
    full_logged: Arc<RateLimit>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .field("free", &self.slots.available_permits())
            .finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(ConnSettings::default())
    }
}

impl Limits {
    pub fn new(settings: ConnSettings) -> Limits {
        let max = settings.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Limits {
            settings: Arc::new(ConnSettings {
                max_connections: max,
                ..settings
            }),
            slots: Arc::new(Semaphore::new(max)),
            full_logged: Arc::new(RateLimit::new(LOG_EVERY)),
        }
    }

    pub fn settings(&self) -> &ConnSettings {
        &self.settings
    }

    /// A slot for one more connection, waiting (and saying so, at most once a minute) while
    /// all are taken.
    pub(crate) async fn slot(&self) -> OwnedSemaphorePermit {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return p;
        }
        if self.full_logged.allow() {
            tracing::warn!(
                max_connections = self.settings.max_connections,
                "connection limit reached: {} connections open, new connections wait in the listen backlog until one closes; raise limits.max_connections (and the open-file limit) to serve more at once",
                self.settings.max_connections
            );
        }
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }
}

/// Lets an event through at most once per period.
pub(crate) struct RateLimit {
    start: Instant,
    period: Duration,
    /// Milliseconds since `start` of the last event let through, plus one (0: never).
    last: AtomicU64,
}

impl RateLimit {
    pub(crate) fn new(period: Duration) -> RateLimit {
        RateLimit {
            start: Instant::now(),
            period,
            last: AtomicU64::new(0),
        }
    }

    pub(crate) fn allow(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period.as_millis() as u64 {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The process's soft open-file limit (None: unlimited).
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raise the soft open-file limit to the hard one (capped at 1 Mi), as servers are expected
/// to: the soft default (often 1024) is a relic of `select()`. Returns the limit in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let target = lim.maximum.unwrap_or(u64::MAX).min(1 << 20);
    if lim.current.is_some_and(|c| c < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
    open_file_limit()
}

/// Connections the open-file limit has room for: the limit minus a reserve, two descriptors
/// per connection, at most 4096 and at least 16.
pub fn max_connections_for(open_files: Option<u64>) -> usize {
    match open_files {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) => {
            let budget = n.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
            budget.clamp(16, DEFAULT_MAX_CONNECTIONS as u64) as usize
        }
    }
}

/// The default `limits.max_connections`, from the current open-file limit.
pub fn default_max_connections() -> usize {
    max_connections_for(open_file_limit())
}

/// Warn when a configured cap leaves no headroom in the open-file limit.
pub fn check_headroom(max_connections: usize) {
    let Some(files) = open_file_limit() else {
        return;
    };
    let needed = (max_connections as u64)
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(RESERVED_FDS);
    if needed > files {
        tracing::warn!(
            max_connections,
            open_file_limit = files,
            "limits.max_connections leaves no headroom in the open-file limit: under load accept() may fail with `Too many open files`; raise the limit (ulimit -n, LimitNOFILE=) or lower limits.max_connections (at most {} here)",
            max_connections_for(Some(files))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_from_open_files() {
        assert_eq!(max_connections_for(None), 4096);
        assert_eq!(max_connections_for(Some(1 << 20)), 4096);
        assert_eq!(max_connections_for(Some(1024)), 384);
        assert_eq!(max_connections_for(Some(100)), 16);
    }

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let r = RateLimit::new(Duration::from_secs(3600));
        assert!(r.allow());
        assert!(!r.allow());
        let r = RateLimit::new(Duration::ZERO);
        assert!(r.allow());
        assert!(r.allow());
    }

    #[tokio::test]
    async fn slots_wait_when_full() {
        let limits = Limits::new(ConnSettings {
            max_connections: 1,
            ..ConnSettings::default()
        });
        let first = limits.slot().await;
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.slot().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let _second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("slot freed")
            .unwrap();
    }
}
