//! The typed values of the configuration, parsed once when it is loaded: durations, addresses,
//! CIDR ranges, repository patterns, grants, the external URL, the log format and filter.
//! Each parser's error is the message `stowage config check` shows for a bad value.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use stowage_auth::pattern::{Grant, RepoPattern};
use stowage_oci::time::parse_duration;

/// A value parsed from a string by `parse`, with `parse`'s message as the error.
fn de_with<'de, D, T>(d: D, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

/// A list of values parsed from strings by `parse`.
fn de_list_with<'de, D, T>(
    d: D,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse(s).map_err(serde::de::Error::custom))
        .collect()
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_with(d, parse_duration)
}

/// `listen`: `ADDRESS:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("listen must be ADDRESS:PORT, e.g. 127.0.0.1:5000, not {s:?}"))
}

pub(crate) fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    de_with(d, parse_listen)
}

/// `tls.redirect_listen`: `ADDRESS:PORT`.
pub(crate) fn de_redirect_listen<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    de_with(d, |r| {
        r.parse()
            .map_err(|_| format!("tls.redirect_listen must be ADDRESS:PORT, not {r:?}"))
    })
    .map(Some)
}

/// `metrics.allow`: addresses or CIDR ranges.
pub(crate) fn de_cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    de_list_with(d, Cidr::parse)
}

/// `auth.trusted_proxies`: addresses or CIDR ranges.
pub(crate) fn de_trusted<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    de_list_with(d, |s| {
        Cidr::parse(s).map_err(|e| format!("auth.trusted_proxies: {e}"))
    })
}

/// `auth.public`: a repository pattern.
pub fn parse_public(p: &str) -> Result<RepoPattern, String> {
    RepoPattern::parse(p).map_err(|e| format!("auth.public {p:?}: {e}"))
}

pub(crate) fn de_public<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RepoPattern>, D::Error> {
    de_list_with(d, parse_public)
}

/// `auth.htpasswd_grants`: grants.
pub(crate) fn de_grants<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Grant>, D::Error> {
    de_list_with(d, |g| {
        Grant::parse(g).map_err(|e| format!("auth.htpasswd_grants {g:?}: {e}"))
    })
}

/// `auth.external_url`: where clients reach the registry (empty: not configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUrl {
    /// The URL without a trailing `/`.
    base: String,
    /// Its origin (`scheme://host[:port]`, lowercase, default port left out).
    origin: String,
}

impl ExternalUrl {
    /// Parse a URL starting with `https://` or `http://`.
    pub fn parse(url: &str) -> Result<ExternalUrl, String> {
        let bad = || "auth.external_url must start with https:// or http://".to_string();
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(bad());
        }
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        Ok(ExternalUrl {
            base: url.trim_end_matches('/').to_string(),
            origin: normalize_origin(&format!("{scheme}://{host}")),
        })
    }

    /// The URL without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Its origin, as browsers send it.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

pub(crate) fn de_external_url<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ExternalUrl>, D::Error> {
    de_with(d, |s| {
        if s.is_empty() {
            Ok(None)
        } else {
            ExternalUrl::parse(s).map(Some)
        }
    })
}

/// An origin as browsers send it: lowercase, without the scheme's default port.
pub fn normalize_origin(origin: &str) -> String {
    let o = origin.trim().to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if o.starts_with(scheme)
            && let Some(stripped) = o.strip_suffix(port)
        {
            return stripped.to_string();
        }
    }
    o
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "log.format must be \"text\" or \"json\", not {s:?}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
        de_with(d, LogFormat::parse)
    }
}

/// `log.level`: a tracing filter such as `info` or `stowage=debug,info`, checked when loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("log.level: {e}"))?;
        Ok(LogLevel(s.to_string()))
    }

    /// The filter it names.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        tracing_subscriber::EnvFilter::try_new(&self.0)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    }
}

impl Default for LogLevel {
    fn default() -> LogLevel {
        LogLevel("info".into())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LogLevel, D::Error> {
        de_with(d, LogLevel::parse)
    }
}

/// An allowed client range for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `10.0.0.0/8`, `::1/128` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid address {s:?}: use an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("invalid prefix in {s:?}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls_keep_their_base_and_origin() {
        let u = ExternalUrl::parse("https://Registry.Example.com:443/base/").unwrap();
        assert_eq!(u.base(), "https://Registry.Example.com:443/base");
        assert_eq!(u.origin(), "https://registry.example.com");
        assert!(ExternalUrl::parse("ftp://x").is_err());
        assert!(ExternalUrl::parse(" https://x").is_err());
    }
}
