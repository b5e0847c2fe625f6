//! Failed-login limiting per (client address, user name).
//!
//! Past the limit a login is refused at once with 429 and `Retry-After`: no password hash is
//! computed and no connection is held open sleeping, so guessing costs the guesser, not us.
//! The table is bounded: when full, the oldest windows are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 100_000;

struct Window {
    started: Instant,
    failures: u32,
    /// Logins being checked right now: counted up front, so attempts sent at once cannot all
    /// slip past the limit before any of them has failed.
    pending: u32,
}

/// Counts failed logins in fixed windows.
pub struct Limiter {
    limit: u32,
    window: Duration,
    table: Mutex<HashMap<(IpAddr, String), Window>>,
}

impl Limiter {
    pub fn new(limit: u32, window: Duration) -> Limiter {
        Limiter {
            limit,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// None when a login may be tried; otherwise the seconds to wait.
    pub fn blocked(&self, ip: IpAddr, user: &str) -> Option<u64> {
        let table = self.table.lock().expect("limiter");
        let w = table.get(&(ip, user.to_string()))?;
        let elapsed = w.started.elapsed();
        (w.failures >= self.limit && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Start a login: refused (with the seconds to wait) when failures, plus logins already in
    /// flight, reach the limit; otherwise counted as pending until [`Limiter::finish`].
    pub fn begin(&self, ip: IpAddr, user: &str) -> Option<u64> {
        let mut table = self.table.lock().expect("limiter");
        if table.len() >= MAX_ENTRIES {
            Self::evict(&mut table, self.window);
        }
        let w = table.entry((ip, user.to_string())).or_insert(Window {
            started: Instant::now(),
            failures: 0,
            pending: 0,
        });
        if w.started.elapsed() >= self.window {
            w.started = Instant::now();
            w.failures = 0;
        }
        let elapsed = w.started.elapsed();
        if w.failures >= self.limit {
            return Some(self.window.saturating_sub(elapsed).as_secs().max(1));
        }
        if w.failures + w.pending >= self.limit {
            // Others are being checked: their outcome decides.
            return Some(1);
        }
        w.pending += 1;
        None
    }

    /// End a login started with [`Limiter::begin`]: a success clears the count.
    pub fn finish(&self, ip: IpAddr, user: &str, success: bool) {
        let mut table = self.table.lock().expect("limiter");
        let key = (ip, user.to_string());
        if success {
            table.remove(&key);
            return;
        }
        if let Some(w) = table.get_mut(&key) {
            w.pending = w.pending.saturating_sub(1);
            w.failures += 1;
        }
    }

    /// Make room: drop expired windows, then the oldest, never all at once (clearing the table
    /// would let a flood of other user names reset a target's count).
    fn evict(table: &mut HashMap<(IpAddr, String), Window>, window: Duration) {
        table.retain(|_, w| w.started.elapsed() < window || w.pending > 0);
        if table.len() >= MAX_ENTRIES {
            let mut ages: Vec<(Instant, (IpAddr, String))> =
                table.iter().map(|(k, w)| (w.started, k.clone())).collect();
            ages.sort_by_key(|(t, _)| *t);
            for (_, k) in ages.into_iter().take(MAX_ENTRIES / 10) {
                table.remove(&k);
            }
        }
    }

    /// Count a failed login (for callers that did not `begin`).
    pub fn failed(&self, ip: IpAddr, user: &str) {
        if self.begin(ip, user).is_none() {
            self.finish(ip, user, false);
        }
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        self.finish(ip, user, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_address_and_user() {
        let l = Limiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.blocked(a, "alice"), None);
            l.failed(a, "alice");
        }
        let wait = l.blocked(a, "alice").expect("blocked");
        assert!((1..=60).contains(&wait));
        assert_eq!(l.blocked(b, "alice"), None, "another address");
        assert_eq!(l.blocked(a, "bob"), None, "another user");
        l.succeeded(a, "alice");
        assert_eq!(l.blocked(a, "alice"), None);
    }

    #[test]
    fn logins_in_flight_count_against_the_limit() {
        let l = Limiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(l.begin(a, "u"), None);
        assert_eq!(l.begin(a, "u"), None);
        assert_eq!(l.begin(a, "u"), None);
        assert!(
            l.begin(a, "u").is_some(),
            "a fourth attempt in flight is refused"
        );
        l.finish(a, "u", false);
        l.finish(a, "u", false);
        l.finish(a, "u", false);
        assert!(l.blocked(a, "u").is_some());
        assert!(l.begin(a, "u").unwrap() > 1, "now blocked for the window");
    }

    #[test]
    fn windows_expire() {
        let l = Limiter::new(1, Duration::from_millis(50));
        let a: IpAddr = "::1".parse().unwrap();
        l.failed(a, "x");
        assert!(l.blocked(a, "x").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.blocked(a, "x"), None);
    }
}
