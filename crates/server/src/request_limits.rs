//! Limits applied to each request before its handler runs: the size of the request head
//! (431), the length of repository names and tags being pushed (400 `NAME_INVALID` /
//! `TAG_INVALID`, below the spec's own bounds), and, with authentication on, the request rate
//! of anonymous clients per address (429 with `Retry-After`).
//!
//! The rate is a token bucket per client address (the address `auth.trusted_proxies` yields),
//! kept in this process: several instances each allow the configured rate, so behind a load
//! balancer spreading one client over N instances it may reach N times the rate. The table is
//! bounded; idle addresses are forgotten first, since a forgotten address starts with a full
//! bucket, which is exactly what an idle one has.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::request::Parts;
use stowage_oci::ErrorCode;

use crate::error::{Error, Result};
use crate::routes::Endpoint;

/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 100_000;

/// The per-request limits of `[limits]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLimits {
    /// Bytes of request line and header fields.
    pub max_header_size: u64,
    pub max_name_length: usize,
    pub max_tag_length: usize,
    /// Anonymous requests per second per address (authentication on).
    pub anonymous_rate: f64,
    /// Anonymous requests per address in a burst.
    pub anonymous_burst: u32,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        crate::Config::default().request_limits()
    }
}

/// The size of a request head as sent over HTTP/1.1: the request line (method, target,
/// version), each field as `name: value` plus its line end, and the blank line. HTTP/2 heads
/// are measured the same way (their pseudo-headers play the request line's part).
pub fn head_size(parts: &Parts) -> u64 {
    let target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = parts.method.as_str().len() + 1 + target + 1 + "HTTP/1.1".len() + 2;
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + fields + 2) as u64
}

impl RequestLimits {
    /// 431 when the head is larger than `max_header_size`.
    pub fn check_head(&self, parts: &Parts) -> Result<()> {
        let size = head_size(parts);
        if size > self.max_header_size {
            return Err(Error::plain(
                431,
                format!(
                    "request header fields too large: the request line and headers take {size} bytes; this registry accepts at most {} (limits.max_header_size)",
                    self.max_header_size
                ),
            ));
        }
        Ok(())
    }

    /// 400 when an endpoint that creates a repository or a tag names one longer than the
    /// configured caps. Reads and deletes are not held to them, so what was pushed before a
    /// cap was lowered stays reachable.
    pub fn check_lengths(&self, ep: &Endpoint) -> Result<()> {
        let (name, tags): (_, Vec<&str>) = match ep {
            Endpoint::UploadStart { name, .. } => (name, Vec::new()),
            Endpoint::ManifestPut {
                name,
                reference,
                tags,
                ..
            } => {
                let mut all: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
                if let stowage_oci::Reference::Tag(t) = reference {
                    all.push(t.as_str());
                }
                (name, all)
            }
            _ => return Ok(()),
        };
        let len = name.as_str().len();
        if len > self.max_name_length {
            return Err(Error::new(
                ErrorCode::NameInvalid,
                format!(
                    "repository name is {len} characters long; this registry accepts at most {} (limits.max_name_length)",
                    self.max_name_length
                ),
            )
            .detail(serde_json::json!({ "name": name.as_str(), "limit": self.max_name_length })));
        }
        if let Some(t) = tags.iter().find(|t| t.len() > self.max_tag_length) {
            return Err(Error::new(
                ErrorCode::TagInvalid,
                format!(
                    "tag is {} characters long; this registry accepts at most {} (limits.max_tag_length)",
                    t.len(),
                    self.max_tag_length
                ),
            )
            .detail(serde_json::json!({ "tag": t, "limit": self.max_tag_length })));
        }
        Ok(())
    }
}

/// One address's bucket.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets of anonymous requests, per client address.
pub struct AnonymousLimiter {
    rate: f64,
    burst: f64,
    table: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AnonymousLimiter {
    pub fn new(rate: f64, burst: u32) -> AnonymousLimiter {
        AnonymousLimiter {
            rate,
            burst: f64::from(burst),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `ip`'s bucket, or the whole seconds until one is there.
    pub fn take(&self, ip: IpAddr) -> std::result::Result<(), u64> {
        self.take_at(ip, Instant::now())
    }

    fn take_at(&self, ip: IpAddr, now: Instant) -> std::result::Result<(), u64> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_ADDRESSES && !table.contains_key(&ip) {
            self.evict(&mut table, now);
        }
        let b = table.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Make room: forget addresses whose bucket has refilled (as good as unknown), then, if
    /// that is not enough, the tenth least recently seen.
    fn evict(&self, table: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let full_after = self.burst / self.rate;
        table.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.rate < self.burst
                && now.saturating_duration_since(b.at).as_secs_f64() < full_after
        });
        if table.len() >= MAX_ADDRESSES {
            let mut seen: Vec<(Instant, IpAddr)> =
                table.iter().map(|(ip, b)| (b.at, *ip)).collect();
            seen.sort_unstable();
            for (_, ip) in seen.into_iter().take(MAX_ADDRESSES / 10) {
                table.remove(&ip);
            }
        }
    }

    /// The answer to an address over its rate.
    pub fn refusal(&self, retry_after: u64) -> Error {
        Error::new(
            ErrorCode::TooManyRequests,
            format!(
                "too many requests without credentials from this address: at most {} per second, bursts of {} (limits.anonymous_rate, limits.anonymous_burst); log in, or retry after {retry_after} s",
                self.rate, self.burst
            ),
        )
        .header("Retry-After", retry_after.to_string())
    }

    /// Addresses remembered (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use std::time::Duration;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method("GET").uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn head_size_counts_line_and_fields() {
        // "GET /v2/ HTTP/1.1\r\n" + "host: x\r\n" + "\r\n"
        assert_eq!(head_size(&parts("/v2/", &[("host", "x")])), 19 + 9 + 2);
        let limits = RequestLimits {
            max_header_size: 4096,
            ..RequestLimits::default()
        };
        let big = "a".repeat(5000);
        let ok = parts("/v2/", &[("x-a", &big[..3000])]);
        assert!(limits.check_head(&ok).is_ok());
        let e = limits
            .check_head(&parts("/v2/", &[("x-a", &big)]))
            .unwrap_err();
        assert_eq!(e.http_status(), 431);
        assert!(
            e.message.contains("limits.max_header_size"),
            "{}",
            e.message
        );
        let long_target = format!("/v2/{big}/tags/list");
        assert_eq!(
            limits
                .check_head(&parts(&long_target, &[]))
                .unwrap_err()
                .http_status(),
            431,
            "the request line counts"
        );
    }

    #[test]
    fn buckets_refill_at_the_rate() {
        let l = AnonymousLimiter::new(2.0, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take_at(a, t0), Ok(()));
        }
        assert_eq!(l.take_at(a, t0), Err(1), "the burst is spent");
        assert_eq!(l.take_at(b, t0), Ok(()), "another address has its own");
        assert_eq!(l.take_at(a, t0 + Duration::from_millis(500)), Ok(()));
        assert!(l.take_at(a, t0 + Duration::from_millis(500)).is_err());
        // Refills to the burst and no further.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.take_at(a, later), Ok(()));
        }
        assert!(l.take_at(a, later).is_err());
        let slow = AnonymousLimiter::new(0.1, 1);
        assert_eq!(slow.take_at(a, t0), Ok(()));
        assert_eq!(slow.take_at(a, t0), Err(10), "Retry-After in whole seconds");
    }

    #[test]
    fn the_table_is_bounded() {
        let l = AnonymousLimiter::new(1.0, 2);
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 + 10 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(l.take_at(ip, t0), Ok(()));
        }
        assert!(l.len() <= MAX_ADDRESSES, "{}", l.len());
        // An address that is still over its rate is not forgotten by eviction of idle ones.
        let hot: IpAddr = "192.0.2.1".parse().unwrap();
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(l.take_at(hot, t1), Ok(()));
        assert_eq!(l.take_at(hot, t1), Ok(()));
        assert!(l.take_at(hot, t1).is_err());
        // Making room forgets the idle (refilled) addresses and keeps the hot one.
        l.evict(&mut l.table.lock().unwrap(), t1);
        assert_eq!(l.len(), 1);
        assert!(
            l.take_at(hot, t1).is_err(),
            "the hot address kept its state"
        );
    }
}
