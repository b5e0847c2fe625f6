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

    /// Count a failed login.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        let mut table = self.table.lock().expect("limiter");
        if table.len() >= MAX_ENTRIES {
            let window = self.window;
            table.retain(|_, w| w.started.elapsed() < window);
            if table.len() >= MAX_ENTRIES {
                table.clear();
            }
        }
        let w = table.entry((ip, user.to_string())).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if w.started.elapsed() >= self.window {
            *w = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        w.failures += 1;
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        self.table
            .lock()
            .expect("limiter")
            .remove(&(ip, user.to_string()));
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
    fn windows_expire() {
        let l = Limiter::new(1, Duration::from_millis(50));
        let a: IpAddr = "::1".parse().unwrap();
        l.failed(a, "x");
        assert!(l.blocked(a, "x").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.blocked(a, "x"), None);
    }
}
