//! Server configuration: typed TOML with unknown keys refused, layered as
//! defaults -> file -> environment/flags (the command line applies the last layer).
//!
//! Values are parsed into their types when the configuration is loaded (`values`: durations
//! written `30s`, `10m`, `24h` or `7d`, addresses, CIDR ranges, repository patterns, grants, the
//! external URL, the log format and filter; sizes in bytes), so code using it never re-parses
//! a string. `check` validates what types alone cannot (ranges, combinations); `config_check`
//! reports every problem of a file (`stowage config check`).

mod security;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
pub use stowage_oci::time::parse_duration;

pub use security::{AuthConfig, TlsConfig};
pub use values::{
    Cidr, ExternalUrl, LogFormat, LogLevel, normalize_origin, parse_listen, parse_public,
};
use values::{de_cidrs, de_duration, de_listen};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type or form (the first one).
    #[error("{0}")]
    Parse(toml::de::Error),
    /// Values that parse but are out of range or contradict each other: every one.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// A problem with the file at `path`.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    #[serde(deserialize_with = "de_listen")]
    pub listen: SocketAddr,
    /// Where blobs, uploads and the metadata database live.
    pub data_dir: Option<PathBuf>,
    /// Allow DELETE of manifests, tags and blobs.
    pub delete_enabled: bool,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    #[serde(deserialize_with = "de_duration")]
    pub drain_timeout: Duration,
    /// A request body that sends nothing for this long is aborted.
    #[serde(deserialize_with = "de_duration")]
    pub body_idle_timeout: Duration,
    pub log: LogConfig,
    pub uploads: UploadsConfig,
    pub manifests: ManifestsConfig,
    pub listing: ListingConfig,
    pub metrics: MetricsConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub gc: GcConfig,
}

/// `[gc]`: what the store checker (and the garbage collector to come) may treat as garbage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Blob bytes without a record, and upload files without a live session, are in flight
    /// until they are this old; only then are they orphans.
    #[serde(deserialize_with = "de_duration")]
    pub grace: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `stowage=debug,info`.
    pub level: LogLevel,
}

/// `[uploads]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Upload sessions untouched this long are deleted.
    #[serde(deserialize_with = "de_duration")]
    pub purge_after: Duration,
    /// How often to look for them.
    #[serde(deserialize_with = "de_duration")]
    pub purge_interval: Duration,
}

/// `[manifests]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestsConfig {
    /// Largest manifest accepted, in bytes (larger: 413).
    pub max_size: u64,
    /// An index's child manifests must already be in the repository.
    pub index_children_must_exist: bool,
    /// URL prefixes allowed in descriptor `urls` (foreign layers).
    pub foreign_url_allow: Vec<String>,
}

/// `[listing]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListingConfig {
    /// Entries per page of tags and catalog when the client gives no `n`.
    pub page_size: usize,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// Client addresses or CIDR ranges allowed to read `/metrics`; empty allows everyone.
    #[serde(deserialize_with = "de_cidrs")]
    pub allow: Vec<Cidr>,
}

/// `[limits]`: protection against clients that hold or hog resources: connection timeouts and
/// cap, unread bodies, request-head size, upload sessions per user, manifest shape, name and
/// tag lengths, and the request rate of anonymous clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A new connection that sends nothing for this long is closed.
    #[serde(deserialize_with = "de_duration")]
    pub first_byte_timeout: Duration,
    /// Once a request head has started, its headers must be complete within this.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// A keep-alive (HTTP/1.1) or HTTP/2 connection with no request in flight is closed after
    /// this long.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Connections served at once; None derives it from the open-file limit.
    pub max_connections: Option<usize>,
    /// How many bytes of a request body the application left unread are still read (and
    /// dropped) so the answer reaches the client and the connection stays usable.
    pub drain: u64,
    /// Largest request head (request line and header fields), in bytes; larger: 431.
    pub max_header_size: u64,
    /// Upload sessions one authenticated user may have in progress (with bytes stored) at once,
    /// counted in the metadata store; more: 429.
    pub max_uploads_per_principal: u64,
    /// Deepest JSON nesting accepted in a pushed manifest; deeper: 400 MANIFEST_INVALID.
    pub max_manifest_depth: usize,
    /// Most descriptors in a pushed manifest; more: 400 MANIFEST_INVALID.
    pub max_manifest_descriptors: usize,
    /// Longest repository name accepted in a push (at most the spec's 255); longer: 400
    /// NAME_INVALID.
    pub max_name_length: usize,
    /// Longest tag accepted in a push (at most the spec's 128); longer: 400 TAG_INVALID.
    pub max_tag_length: usize,
    /// With authentication on: requests per second an anonymous client address may sustain.
    pub anonymous_rate: f64,
    /// With authentication on: requests an anonymous client address may send in a burst.
    pub anonymous_burst: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: None,
            delete_enabled: true,
            drain_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            log: LogConfig::default(),
            uploads: UploadsConfig::default(),
            manifests: ManifestsConfig::default(),
            listing: ListingConfig::default(),
            metrics: MetricsConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            gc: GcConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            first_byte_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
            drain: 64 * 1024 * 1024,
            max_header_size: 64 * 1024,
            max_uploads_per_principal: 1000,
            max_manifest_depth: 32,
            max_manifest_descriptors: 10_000,
            max_name_length: stowage_oci::name::MAX_NAME_LEN,
            max_tag_length: stowage_oci::reference::MAX_TAG_LEN,
            anonymous_rate: 50.0,
            anonymous_burst: 500,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: LogLevel::default(),
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            purge_after: Duration::from_secs(24 * 3600),
            purge_interval: Duration::from_secs(600),
        }
    }
}

impl Default for ManifestsConfig {
    fn default() -> Self {
        ManifestsConfig {
            max_size: 4 * 1024 * 1024,
            index_children_must_exist: true,
            foreign_url_allow: vec!["https://".into(), "http://".into()],
        }
    }
}

impl Default for ListingConfig {
    fn default() -> Self {
        ListingConfig { page_size: 10_000 }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            allow: Vec::new(),
        }
    }
}

impl Config {
    /// Parse and validate a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(ConfigError::Parse)?;
        c.check()?;
        Ok(c)
    }

    /// Read, parse and validate a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// Validate what the types alone do not (ranges, combinations): every problem.
    pub fn check(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every problem with values serde cannot check, one message each (empty: valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |r: Result<(), String>| {
            if let Err(e) = r {
                out.push(e);
            }
        };
        if self.manifests.max_size < 4 * 1024 * 1024 {
            check(Err(
                "manifests.max_size must be at least 4194304 (4 MiB), as the spec requires".into(),
            ));
        }
        if self.listing.page_size == 0 {
            check(Err("listing.page_size must be at least 1".into()));
        }
        if self.uploads.purge_interval.is_zero() {
            check(Err("uploads.purge_interval must be positive".into()));
        }
        if self.gc.grace < Duration::from_secs(3600) {
            check(Err(
                "gc.grace must be at least 1h: bytes younger than it may belong to a push in progress".into(),
            ));
        }
        check(self.limits.check());
        out.extend(self.auth.problems());
        out.extend(self.tls.problems());
        out
    }

    /// The data directory: configured, or `$XDG_DATA_HOME/stowage`, or
    /// `$HOME/.local/share/stowage`, or `./stowage-data`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("stowage");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(h).join(".local/share/stowage");
        }
        PathBuf::from("stowage-data")
    }

    /// The connection settings of the listener this configuration implies.
    pub fn conn_settings(&self) -> crate::limits::ConnSettings {
        let l = &self.limits;
        crate::limits::ConnSettings {
            first_byte_timeout: l.first_byte_timeout,
            header_timeout: l.header_timeout,
            idle_timeout: l.idle_timeout,
            max_connections: l
                .max_connections
                .unwrap_or_else(crate::limits::default_max_connections),
            drain: l.drain,
            body_idle_timeout: self.body_idle_timeout,
            max_header_size: l.max_header_size,
        }
    }

    /// The registry behaviour settings this configuration implies.
    pub fn registry_settings(&self) -> stowage_registry::Settings {
        stowage_registry::Settings {
            delete_enabled: self.delete_enabled,
            max_manifest_size: self.manifests.max_size,
            index_children_must_exist: self.manifests.index_children_must_exist,
            foreign_url_allow: self.manifests.foreign_url_allow.clone(),
            page_size: self.listing.page_size,
            max_page_size: self.listing.page_size.max(100_000),
            upload_purge_after: self.uploads.purge_after.as_secs(),
            max_uploads_per_owner: Some(self.limits.max_uploads_per_principal),
            max_manifest_depth: self.limits.max_manifest_depth,
            max_manifest_descriptors: self.limits.max_manifest_descriptors,
        }
    }

    /// The per-request limits this configuration implies (see `request_limits`).
    pub fn request_limits(&self) -> crate::request_limits::RequestLimits {
        let l = &self.limits;
        crate::request_limits::RequestLimits {
            max_header_size: l.max_header_size,
            max_name_length: l.max_name_length,
            max_tag_length: l.max_tag_length,
            anonymous_rate: l.anonymous_rate,
            anonymous_burst: l.anonymous_burst,
        }
    }
}

/// `limits.max_header_size`: at least what real clients send (bearer tokens take a few KiB),
/// at most what the HTTP/1.1 engine buffers for a head (about 400 KiB) with room to spare.
const HEADER_SIZE_RANGE: (u64, u64) = (4096, 256 * 1024);

/// `limits.max_manifest_depth`: image indexes with platform features nest 5 deep; the JSON
/// parser's own recursion limit is 128.
const MANIFEST_DEPTH_RANGE: (usize, usize) = (8, 128);

impl LimitsConfig {
    fn check(&self) -> Result<(), String> {
        for (key, d) in [
            ("first_byte_timeout", self.first_byte_timeout),
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("limits.{key} must be positive"));
            }
        }
        if self.max_connections == Some(0) {
            return Err("limits.max_connections must be at least 1".into());
        }
        let (lo, hi) = HEADER_SIZE_RANGE;
        if !(lo..=hi).contains(&self.max_header_size) {
            return Err(format!(
                "limits.max_header_size must be between {lo} and {hi} bytes"
            ));
        }
        if self.max_uploads_per_principal == 0 {
            return Err("limits.max_uploads_per_principal must be at least 1".into());
        }
        let (lo, hi) = MANIFEST_DEPTH_RANGE;
        if !(lo..=hi).contains(&self.max_manifest_depth) {
            return Err(format!(
                "limits.max_manifest_depth must be between {lo} and {hi}"
            ));
        }
        if self.max_manifest_descriptors == 0 {
            return Err("limits.max_manifest_descriptors must be at least 1".into());
        }
        let name_max = stowage_oci::name::MAX_NAME_LEN;
        if !(1..=name_max).contains(&self.max_name_length) {
            return Err(format!(
                "limits.max_name_length must be between 1 and {name_max} (the spec's bound)"
            ));
        }
        let tag_max = stowage_oci::reference::MAX_TAG_LEN;
        if !(1..=tag_max).contains(&self.max_tag_length) {
            return Err(format!(
                "limits.max_tag_length must be between 1 and {tag_max} (the spec's bound)"
            ));
        }
        if !(self.anonymous_rate.is_finite() && self.anonymous_rate > 0.0) {
            return Err(
                "limits.anonymous_rate must be a positive number of requests per second".into(),
            );
        }
        if self.anonymous_burst == 0 {
            return Err("limits.anonymous_burst must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().check().unwrap();
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn full_file() {
        let c = Config::from_toml(
            r#"
listen = "0.0.0.0:5001"
data_dir = "/tmp/x"
delete_enabled = false
drain_timeout = "5s"
[log]
format = "json"
level = "debug"
[uploads]
purge_after = "2h"
purge_interval = "1m"
[manifests]
max_size = 8388608
index_children_must_exist = false
foreign_url_allow = ["https://mcr.microsoft.com/"]
[listing]
page_size = 50
[metrics]
enabled = true
allow = ["127.0.0.1/32", "::1"]
[limits]
first_byte_timeout = "5s"
header_timeout = "10s"
idle_timeout = "2m"
max_connections = 100
drain = 1048576
max_header_size = 16384
max_uploads_per_principal = 20
max_manifest_depth = 16
max_manifest_descriptors = 500
max_name_length = 100
max_tag_length = 64
anonymous_rate = 2.5
anonymous_burst = 10
[gc]
grace = "36h"
"#,
        )
        .unwrap();
        assert!(!c.delete_enabled);
        assert_eq!(c.uploads.purge_after, Duration::from_secs(7200));
        assert_eq!(c.metrics.allow.len(), 2);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
        let s = c.conn_settings();
        assert_eq!(s.max_connections, 100);
        assert_eq!(s.drain, 1 << 20);
        assert_eq!(s.first_byte_timeout, Duration::from_secs(5));
        let r = c.registry_settings();
        assert_eq!(r.max_uploads_per_owner, Some(20));
        assert_eq!(
            (r.max_manifest_depth, r.max_manifest_descriptors),
            (16, 500)
        );
        let q = c.request_limits();
        assert_eq!(
            (q.max_header_size, q.max_name_length, q.max_tag_length),
            (16384, 100, 64)
        );
        assert_eq!((q.anonymous_rate, q.anonymous_burst), (2.5, 10));
        assert_eq!(c.gc.grace, Duration::from_secs(36 * 3600));
    }

    #[test]
    fn limit_defaults() {
        let c = Config::default();
        assert_eq!(c.limits.first_byte_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.header_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.drain, 64 << 20);
        assert_eq!(c.limits.max_header_size, 64 << 10);
        assert_eq!(c.limits.max_uploads_per_principal, 1000);
        assert_eq!(c.limits.max_manifest_depth, 32);
        assert_eq!(c.limits.max_manifest_descriptors, 10_000);
        assert_eq!(c.limits.max_name_length, 255);
        assert_eq!(c.limits.max_tag_length, 128);
        assert_eq!(c.limits.anonymous_rate, 50.0);
        assert_eq!(c.limits.anonymous_burst, 500);
        let s = c.conn_settings();
        assert!((1..=4096).contains(&s.max_connections), "{s:?}");
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "unknown = 1",
            "[log]\nformat = \"xml\"",
            "listen = \"nope\"",
            "drain_timeout = \"5 years\"",
            "[manifests]\nmax_size = 1024",
            "[metrics]\nallow = [\"10.0.0.0/40\"]",
            "[uploads]\nbogus = true",
            "[limits]\nbogus = 1",
            "[limits]\nidle_timeout = \"0s\"",
            "[limits]\nmax_connections = 0",
            "[limits]\ndrain = -1",
            "[limits]\nheader_timeout = \"soon\"",
            "[limits]\nmax_header_size = 100",
            "[limits]\nmax_header_size = 1048576",
            "[limits]\nmax_uploads_per_principal = 0",
            "[limits]\nmax_manifest_depth = 2",
            "[limits]\nmax_manifest_depth = 500",
            "[limits]\nmax_manifest_descriptors = 0",
            "[limits]\nmax_name_length = 256",
            "[limits]\nmax_name_length = 0",
            "[limits]\nmax_tag_length = 129",
            "[limits]\nanonymous_rate = 0",
            "[limits]\nanonymous_rate = -1.5",
            "[limits]\nanonymous_rate = nan",
            "[limits]\nanonymous_burst = 0",
            "listen = [",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    }
}
