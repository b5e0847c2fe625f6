//! A small Prometheus registry: request counts by route template, method and status, request
//! duration histograms by route template, and bytes received and sent.
//!
//! Labels are route templates, never repository names or tags, so cardinality is bounded by the
//! number of endpoints. Hand-written (a few maps behind one mutex) to keep the dependency tree
//! small; the lock is held for a few hash operations per request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Process-wide metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Metrics {
    /// Record one finished request.
    pub fn request(&self, route: &'static str, method: &str, status: u16, took: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((route, method.to_string(), status))
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let mut d = self.durations.lock().expect("metrics");
        let h = d.entry(route).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Count request body bytes received.
    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Count response body bytes sent.
    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP stowage_http_requests_total HTTP requests by route template, method and status.\n");
        s.push_str("# TYPE stowage_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                s,
                "stowage_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        s.push_str("# HELP stowage_http_request_duration_seconds Time to answer a request (uploads and pushes included), by route template.\n");
        s.push_str("# TYPE stowage_http_request_duration_seconds histogram\n");
        for (route, h) in self.durations.lock().expect("metrics").iter() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "stowage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                s,
                "stowage_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                s,
                "stowage_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                s,
                "stowage_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        s.push_str("# HELP stowage_http_received_bytes_total Request body bytes received.\n");
        s.push_str("# TYPE stowage_http_received_bytes_total counter\n");
        let _ = writeln!(
            s,
            "stowage_http_received_bytes_total {}",
            self.bytes_in.load(Ordering::Relaxed)
        );
        s.push_str("# HELP stowage_http_sent_bytes_total Response body bytes sent.\n");
        s.push_str("# TYPE stowage_http_sent_bytes_total counter\n");
        let _ = writeln!(
            s,
            "stowage_http_sent_bytes_total {}",
            self.bytes_out.load(Ordering::Relaxed)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request(
            "/v2/{name}/blobs/{digest}",
            "GET",
            200,
            Duration::from_millis(3),
        );
        m.request(
            "/v2/{name}/blobs/{digest}",
            "GET",
            200,
            Duration::from_millis(300),
        );
        m.add_in(10);
        m.add_out(20);
        let r = m.render();
        assert!(r.contains("stowage_http_requests_total{route=\"/v2/{name}/blobs/{digest}\",method=\"GET\",status=\"200\"} 2"));
        assert!(r.contains("le=\"0.005\"} 1"));
        assert!(r.contains("le=\"+Inf\"} 2"));
        assert!(r.contains("stowage_http_received_bytes_total 10"));
        assert!(r.contains("stowage_http_sent_bytes_total 20"));
    }
}
