//! The registry an interop test talks to: stowage by default, or the reference registry.
//!
//! Owns: choosing and starting that registry. Client interop tests run against the `stowage`
//! binary; with `STOWAGE_INTEROP_TARGET=distribution` they run unchanged against CNCF
//! distribution instead, which tells a stowage bug apart from a wrong test or a quirky client.
//! Features the reference registry lacks (the OCI 1.1 referrers API) are gated on [`Kind`].

use std::path::Path;

use crate::distribution::Distribution;
use crate::server::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stowage,
    Distribution,
}

/// A running registry; stopped when dropped.
pub struct Registry {
    pub kind: Kind,
    /// `127.0.0.1:PORT`, the host part of image references.
    pub addr: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    _stowage: Option<Server>,
    _distribution: Option<Distribution>,
}

impl Registry {
    /// Start the registry selected by `STOWAGE_INTEROP_TARGET` (`stowage`, the default, or
    /// `distribution`); `stowage_bin` is the binary under test.
    pub fn start(stowage_bin: impl AsRef<Path>) -> Registry {
        match std::env::var("STOWAGE_INTEROP_TARGET").as_deref() {
            Ok("distribution") => Registry::distribution(),
            Ok("stowage") | Err(_) => Registry::stowage(stowage_bin.as_ref(), &[]),
            Ok(other) => {
                panic!("STOWAGE_INTEROP_TARGET={other}: expected `stowage` or `distribution`")
            }
        }
    }

    pub fn stowage(bin: &Path, extra_args: &[&str]) -> Registry {
        let s = Server::spawn(bin, extra_args);
        Registry {
            kind: Kind::Stowage,
            addr: s.addr.clone(),
            url: s.url.clone(),
            _stowage: Some(s),
            _distribution: None,
        }
    }

    pub fn distribution() -> Registry {
        let d = Distribution::spawn();
        Registry {
            kind: Kind::Distribution,
            addr: d.addr.clone(),
            url: d.url.clone(),
            _stowage: None,
            _distribution: Some(d),
        }
    }

    /// `ADDR/repo:tag` (or `ADDR/repo@digest` when `reference` is a digest).
    pub fn reference(&self, repo: &str, reference: &str) -> String {
        if reference.contains(':') {
            format!("{}/{repo}@{reference}", self.addr)
        } else {
            format!("{}/{repo}:{reference}", self.addr)
        }
    }

    /// `docker://ADDR/repo:tag`, the containers/image transport form.
    pub fn docker_ref(&self, repo: &str, reference: &str) -> String {
        format!("docker://{}", self.reference(repo, reference))
    }
}
