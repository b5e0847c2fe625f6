//! Image references exactly as docker reads them: `ubuntu` is
//! `docker.io/library/ubuntu:latest`; a first path component with a dot or a port, or
//! `localhost`, is a registry host; `name:tag`, `name@digest` and `name:tag@digest` (the digest
//! wins and is verified; the tag is kept only for display).
//!
//! Parsing only: no I/O. Errors say what is wrong with the reference, in docker's terms.

use std::fmt;

use stowage_oci::Digest;
use stowage_oci::reference::Tag;

/// Docker Hub's name in references and credential files.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key `docker login` uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`...
    pub registry: String,
    /// `library/ubuntu`, `team/app`...
    pub repository: String,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("invalid reference {0:?}: it is empty")]
    Empty(String),
    #[error("invalid reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    #[error(
        "invalid reference {0:?}: a repository name is lowercase path components of letters and digits separated by '.', '_', '__' or '-'"
    )]
    Name(String),
    #[error("invalid reference {0:?}: the repository name is longer than 255 characters")]
    TooLong(String),
    #[error(
        "invalid reference {0:?}: tags are 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    Tag(String),
    #[error("invalid reference {0:?}: invalid digest: {1}")]
    Digest(String, String),
    #[error("invalid reference {0:?}: invalid registry host {1:?}")]
    Host(String, String),
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if x.is_ascii_lowercase() || x.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok || start == i {
            return false;
        }
    }
    true
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

fn valid_host(h: &str) -> bool {
    if let Some(rest) = h.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return false;
        };
        return ip6.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port));
    }
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && port.is_none_or(valid_port)
}

impl ImageRef {
    /// Parse a reference the way docker does.
    pub fn parse(s: &str) -> Result<ImageRef, RefError> {
        let input = s.to_string();
        if s.is_empty() {
            return Err(RefError::Empty(input));
        }
        let (named, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let d: Digest = d.parse().map_err(|e: stowage_oci::digest::DigestError| {
                    RefError::Digest(input.clone(), e.to_string())
                })?;
                (n, Some(d))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = named.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match named[last_slash..].rfind(':') {
            Some(i) => {
                let t = &named[last_slash + i + 1..];
                let tag = Tag::parse(t).ok_or_else(|| RefError::Tag(input.clone()))?;
                (&named[..last_slash + i], Some(tag))
            }
            None => (named, None),
        };
        if name.is_empty() {
            return Err(RefError::Empty(input));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RefError::Name(input));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !valid_host(&registry) {
            return Err(RefError::Host(input, registry));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(RefError::Uppercase(input));
        }
        if !repository.split('/').all(valid_component) {
            return Err(RefError::Name(input));
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(RefError::TooLong(input));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the registry API is reached at (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask `/manifests/` for: the digest when there is one, else the tag (`latest`
    /// when none was given).
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".into(),
        }
    }

    /// The tag to record locally: the given one, or `latest` when neither tag nor digest was.
    pub fn tag_or_latest(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".into()),
            (None, Some(_)) => None,
        }
    }

    /// Whether the registry is this machine (plain HTTP is allowed there by default).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .strip_prefix('[')
            .and_then(|r| r.split_once(']').map(|(h, _)| h))
            .unwrap_or_else(|| {
                self.registry
                    .rsplit_once(':')
                    .map_or(self.registry.as_str(), |(h, _)| h)
            });
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The same image pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            f.write_str(":latest")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_normalisation() {
        let r = p("ubuntu");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/ubuntu")
        );
        assert_eq!(r.reference(), "latest");
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(
            p("docker.io/ubuntu:22.04").to_string(),
            "docker.io/library/ubuntu:22.04"
        );
        assert_eq!(p("index.docker.io/library/ubuntu").registry, "docker.io");
        assert_eq!(p("user/app").repository, "user/app");
        assert_eq!(p("user/app").registry, "docker.io");
        let g = p("ghcr.io/org/team/app:v1");
        assert_eq!(
            (g.registry.as_str(), g.repository.as_str()),
            ("ghcr.io", "org/team/app")
        );
        assert_eq!(g.api_host(), "ghcr.io");
        let l = p("localhost/app");
        assert_eq!(
            (l.registry.as_str(), l.repository.as_str()),
            ("localhost", "app")
        );
        let lp = p("localhost:5000/a/b:t");
        assert_eq!(lp.registry, "localhost:5000");
        assert!(lp.is_loopback());
        assert!(p("127.0.0.1:5000/x").is_loopback());
        assert!(p("[::1]:5000/x").is_loopback());
        assert!(!p("ghcr.io/x").is_loopback());
        // A port makes the first component a host even without a dot.
        assert_eq!(p("myhost:5000/x").registry, "myhost:5000");
        // Without dot, port or localhost it is a Hub namespace.
        assert_eq!(p("myhost/x").registry, "docker.io");
    }

    #[test]
    fn tags_and_digests() {
        let r = p(&format!("app@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.reference(), D);
        assert_eq!(r.tag_or_latest(), None);
        let both = p(&format!("localhost:5000/app:v1@{D}"));
        assert_eq!(both.reference(), D, "the digest wins");
        assert_eq!(both.tag.as_ref().unwrap().as_str(), "v1");
        assert_eq!(both.to_string(), format!("localhost:5000/app:v1@{D}"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (bad, what) in [
            ("", "empty"),
            ("Ubuntu", "lowercase"),
            ("docker.io/Library/x", "lowercase"),
            ("app:", "tags"),
            ("app:-x", "tags"),
            ("app@sha256:abc", "digest"),
            ("a//b", "repository name"),
            ("a/-b", "repository name"),
            ("ex ample.com/x", "host"),
            ("host:port/x", "host"),
            (&"a".repeat(64), "repository name"),
        ] {
            let e = ImageRef::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(ImageRef::parse(&long), Err(RefError::TooLong(_))));
    }
}
