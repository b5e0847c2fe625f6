//! Where images are and which of them: `Location` (a registry reference, an OCI layout, an
//! `oci-archive:` or a `docker-archive:`), `Platform` (`os/arch[/variant]`) and `Platforms`
//! (one, or all of an index). Parsing only: opening and moving is `transfer`'s.

use std::path::PathBuf;

use serde_json::Value;

use crate::image_ref::ImageRef;

/// Where an image is: a registry reference, or an OCI layout (`oci:DIR[:TAG]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Registry(ImageRef),
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]`
    DockerArchive {
        file: PathBuf,
        name: Option<String>,
    },
}

impl Location {
    /// Parse `oci:DIR[:TAG]`, or else a registry reference.
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t.to_string())),
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(format!(
                    "{s:?}: oci: needs a directory, as in oci:./image:latest"
                ));
            }
            return Ok(Location::Layout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = match rest.rsplit_once(':') {
                Some((f, t)) if !t.contains('/') && !f.is_empty() => (f, Some(t.to_string())),
                _ => (rest, None),
            };
            return Ok(Location::OciArchive {
                file: PathBuf::from(file),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            // docker-archive:FILE or docker-archive:FILE:name:tag (skopeo's form).
            let (file, name) = match rest.split_once(':') {
                Some((f, n)) if !f.is_empty() => (f, Some(n.to_string())),
                _ => (rest, None),
            };
            return Ok(Location::DockerArchive {
                file: PathBuf::from(file),
                name,
            });
        }
        for prefix in ["docker-daemon:", "dir:"] {
            if s.starts_with(prefix) {
                return Err(format!(
                    "{s:?}: {prefix} is not supported; use oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE or a registry reference"
                ));
            }
        }
        let s = s.strip_prefix("docker://").unwrap_or(s);
        ImageRef::parse(s)
            .map(Location::Registry)
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::Layout { dir, tag } => match tag {
                Some(t) => write!(f, "oci:{}:{t}", dir.display()),
                None => write!(f, "oci:{}", dir.display()),
            },
            Location::OciArchive { file, tag } => match tag {
                Some(t) => write!(f, "oci-archive:{}:{t}", file.display()),
                None => write!(f, "oci-archive:{}", file.display()),
            },
            Location::DockerArchive { file, name } => match name {
                Some(n) => write!(f, "docker-archive:{}:{n}", file.display()),
                None => write!(f, "docker-archive:{}", file.display()),
            },
        }
    }
}

/// An OS/architecture pair, optionally with a variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "invalid platform {s:?}: use os/arch[/variant], e.g. linux/arm64"
            )),
        }
    }

    /// This machine, in OCI terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's `platform` object is this platform (a variant, when asked
    /// for, must match; when not asked for, any variant does).
    pub fn matches(&self, p: &Value) -> bool {
        p["os"].as_str() == Some(self.os.as_str())
            && p["architecture"].as_str() == Some(self.architecture.as_str())
            && self
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"].as_str() == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Which images of an index to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// Only this platform's image (the destination gets that manifest, not the index).
    One(Platform),
    /// The index and every image in it (the index keeps its digest).
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_platforms() {
        assert_eq!(
            Location::parse("oci:/tmp/x:v1").unwrap(),
            Location::Layout {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::parse("oci:./a/b").unwrap(),
            Location::Layout {
                dir: "./a/b".into(),
                tag: None
            }
        );
        assert!(matches!(
            Location::parse("ubuntu").unwrap(),
            Location::Registry(_)
        ));
        assert_eq!(
            Location::parse("oci-archive:x.tar:v2").unwrap(),
            Location::OciArchive {
                file: "x.tar".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            Location::parse("docker-archive:/t/x.tar:app:v1").unwrap(),
            Location::DockerArchive {
                file: "/t/x.tar".into(),
                name: Some("app:v1".into())
            }
        );
        assert!(
            Location::parse("dir:/x")
                .unwrap_err()
                .contains("not supported")
        );
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(
            p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"}))
        );
        assert!(
            !p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v7"}))
        );
        let any = Platform::parse("linux/arm64").unwrap();
        assert!(
            any.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"}))
        );
        assert!(Platform::parse("linux").is_err());
        assert_eq!(Platform::host().os, "linux");
    }
}
