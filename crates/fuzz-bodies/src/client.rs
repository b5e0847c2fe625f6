//! Targets over `stowage-client`'s readers of what others wrote: `WWW-Authenticate`
//! challenges from a registry, and docker's `config.json` / containers' `auth.json`.

use std::path::Path;

use stowage_client::auth::parse_challenges;
use stowage_client::credentials::{CredError, IDENTITY_TOKEN_USER, Source, resolve};

use crate::Target;
use crate::input::{Input, text};

pub const CHALLENGE: Target = Target {
    name: "challenge",
    body: challenge,
    outcomes: &["none", "bearer-realm", "bearer", "basic", "other"],
};

/// `WWW-Authenticate` values, one per line. Every challenge has a lowercase scheme without
/// spaces and lowercase parameter names without separators; the label is the first's kind.
pub fn challenge(data: &[u8]) -> &'static str {
    let s = text(data);
    let values: Vec<&str> = s.split('\n').collect();
    let challenges = parse_challenges(&values);
    for c in &challenges {
        assert!(!c.scheme.is_empty() && !c.scheme.contains(' '), "{c:?}");
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for k in c.params.keys() {
            assert!(!k.is_empty() && !k.contains([' ', ',']), "{c:?}");
            assert_eq!(*k, k.to_ascii_lowercase());
        }
    }
    assert!(challenges.len() <= s.len());
    match challenges.first() {
        None => "none",
        Some(c) if c.scheme == "bearer" && c.param("realm").is_some() => "bearer-realm",
        Some(c) if c.scheme == "bearer" => "bearer",
        Some(c) if c.scheme == "basic" => "basic",
        Some(_) => "other",
    }
}

pub const CREDENTIALS: Target = Target {
    name: "credentials",
    body: credentials,
    outcomes: &[
        "ok-credential",
        "ok-identity-token",
        "ok-helper",
        "ok-nothing",
        "not-json",
        "auth-not-base64",
    ],
};

/// `d` (docker's `config.json`) or anything else (a containers `auth.json`), then
/// `<registry>\n<repository>\n<file text>`. Only docker's file names helpers; a helper is
/// named, never run.
pub fn credentials(data: &[u8]) -> &'static str {
    let (docker, rest) = match data.split_first() {
        Some((b'd', rest)) => (true, rest),
        Some((_, rest)) => (false, rest),
        None => (false, data),
    };
    let mut input = Input::new(rest);
    let registry = text(input.line()).into_owned();
    let repository = text(input.line()).into_owned();
    let file = Path::new("fuzz.json");
    match resolve(file, input.rest(), &registry, &repository, docker) {
        Ok(Source::Credential(c)) if c.username == IDENTITY_TOKEN_USER => {
            assert!(!c.secret.is_empty());
            "ok-identity-token"
        }
        Ok(Source::Credential(_)) => "ok-credential",
        Ok(Source::Helper(_)) => {
            assert!(docker, "an auth.json named a helper");
            "ok-helper"
        }
        Ok(Source::Nothing) => "ok-nothing",
        Err(CredError::File { path, message }) => {
            assert_eq!(path, file);
            if message.starts_with("not valid JSON") {
                "not-json"
            } else if message.starts_with("an `auth` entry is not base64") {
                "auth-not-base64"
            } else {
                // Not in `outcomes`: the replay test names it.
                "unlisted-file-error"
            }
        }
        Err(CredError::Helper { .. }) => panic!("a helper ran while reading a file"),
    }
}
