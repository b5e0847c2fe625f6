//! Registry credentials from the files people already have, and storing them where docker
//! would.
//!
//! Reading, most specific first: the containers `auth.json` (`--authfile`,
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`; keys may name
//! `host/namespace/repo`), then docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`):
//! `credHelpers` for the host, `auths` (an `auth` of base64 `user:password`, or
//! `identitytoken`), then `credsStore`. Helpers are the `docker-credential-NAME` programs. Docker
//! Hub is keyed `https://index.docker.io/v1/`. An identity token comes back with the user name
//! `<token>`, as helpers return it.
//!
//! Writing (`stowage login`): into the helper docker would use, else into the file, atomically
//! (temporary file, fsync, rename) with mode 0600, keeping every field this code does not own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::image_ref::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};

/// A user name and a secret (password, access token, or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <secret>)", self.username)
    }
}

/// The user name helpers and docker use for an identity (refresh) token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credential {
    /// Whether the secret is an OAuth2 refresh token rather than a password. (A user name of
    /// `<token>NAME` is an identity token for user NAME, which `store` keeps beside it as
    /// docker does, so skopeo and podman accept the entry.)
    pub fn is_identity_token(&self) -> bool {
        self.username.starts_with(IDENTITY_TOKEN_USER)
    }
}

/// Why credentials could not be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper}: {message}")]
    Helper { helper: String, message: String },
}

/// Where credentials are looked up and stored.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    /// An explicit containers auth file (`--authfile` or `$REGISTRY_AUTH_FILE`): read first,
    /// and written by login instead of docker's config.
    pub authfile: Option<PathBuf>,
    /// The containers auth file read when no explicit one is given.
    pub default_authfile: Option<PathBuf>,
    /// docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// Where `docker-credential-*` helpers are looked for (None: `$PATH`).
    pub helper_dir: Option<PathBuf>,
}

impl CredentialFiles {
    /// The usual places, from the environment (`authfile` overrides `$REGISTRY_AUTH_FILE`).
    pub fn from_env(authfile: Option<PathBuf>) -> CredentialFiles {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let docker_config = env("DOCKER_CONFIG")
            .map(|d| d.join("config.json"))
            .or_else(|| env("HOME").map(|h| h.join(".docker/config.json")));
        CredentialFiles {
            authfile: authfile.or_else(|| env("REGISTRY_AUTH_FILE")),
            default_authfile: env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
            docker_config,
            helper_dir: None,
        }
    }

    /// Credentials for `repository` on `registry`, if any file or helper has them.
    pub fn lookup(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, CredError> {
        for file in self.authfile.iter().chain(self.default_authfile.iter()) {
            if let Some(text) = read_file(file)?
                && let Source::Credential(c) = resolve(file, &text, registry, repository, false)?
            {
                return Ok(Some(c));
            }
        }
        let Some(config) = &self.docker_config else {
            return Ok(None);
        };
        let Some(text) = read_file(config)? else {
            return Ok(None);
        };
        match resolve(config, &text, registry, repository, true)? {
            Source::Credential(c) => Ok(Some(c)),
            Source::Helper(helper) => self.helper_get(&helper, &server_url(registry)),
            Source::Nothing => Ok(None),
        }
    }

    /// Store credentials for `registry` where docker (or, with an explicit auth file, podman)
    /// would. Returns a description of where they went.
    pub fn store(&self, registry: &str, cred: &Credential) -> Result<String, CredError> {
        if let Some(file) = &self.authfile {
            let mut doc = read_json(file)?.unwrap_or_else(|| Value::Object(Map::new()));
            set_auth(&mut doc, &auth_key(registry, false), cred);
            write_json_atomic(file, &doc)?;
            return Ok(file.display().to_string());
        }
        let config = self.docker_config.as_ref().ok_or_else(|| CredError::File {
            path: PathBuf::from("~/.docker/config.json"),
            message: "neither $DOCKER_CONFIG nor $HOME is set".into(),
        })?;
        let mut doc = read_json(config)?.unwrap_or_else(|| Value::Object(Map::new()));
        let helper = helper_for(&doc, registry).or_else(|| {
            doc.get("credsStore")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        });
        if let Some(helper) = helper {
            self.helper_store(&helper, &server_url(registry), cred)?;
            // docker records the host with an empty entry so `docker logout` finds it.
            if let Some(auths) = auths_mut(&mut doc) {
                auths
                    .entry(auth_key(registry, true))
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            write_json_atomic(config, &doc)?;
            return Ok(format!("credential helper docker-credential-{helper}"));
        }
        set_auth(&mut doc, &auth_key(registry, true), cred);
        write_json_atomic(config, &doc)?;
        Ok(config.display().to_string())
    }

    /// Forget credentials for `registry` everywhere they were stored; true if any were.
    pub fn erase(&self, registry: &str) -> Result<bool, CredError> {
        let mut found = false;
        for (file, docker) in self
            .authfile
            .iter()
            .chain(self.default_authfile.iter())
            .map(|f| (f, false))
            .chain(self.docker_config.iter().map(|f| (f, true)))
        {
            let Some(mut doc) = read_json(file)? else {
                continue;
            };
            if docker
                && let Some(helper) = helper_for(&doc, registry).or_else(|| {
                    doc.get("credsStore")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                })
            {
                found |= self.helper_erase(&helper, &server_url(registry))?;
            }
            let keys: Vec<String> = doc
                .get("auths")
                .and_then(Value::as_object)
                .map(|a| {
                    a.keys()
                        .filter(|k| normalize_key(k) == registry_key(registry))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                continue;
            }
            if let Some(auths) = auths_mut(&mut doc) {
                for k in keys {
                    auths.remove(&k);
                }
            }
            write_json_atomic(file, &doc)?;
            found = true;
        }
        Ok(found)
    }
}

/// The registry as it appears in credential keys (Docker Hub's aliases folded to one).
fn registry_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.into()
        }
        other => other.to_string(),
    }
}

/// A key of `auths` reduced to `host[/path]`: scheme and `/v1/`, `/v2/` suffixes dropped.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k.split_once('/') {
        Some((host, rest)) => format!("{}/{rest}", registry_key(host)),
        None => registry_key(k),
    }
}

/// The key login writes: docker uses the legacy URL for Hub.
fn auth_key(registry: &str, docker: bool) -> String {
    let r = registry_key(registry);
    if docker && r == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.into()
    } else {
        r
    }
}

/// The server URL helpers are asked about.
fn server_url(registry: &str) -> String {
    auth_key(registry, true)
}

/// Where one credentials file says to find `registry`'s credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the file itself.
    Credential(Credential),
    /// With the `docker-credential-NAME` helper (`credHelpers` or `credsStore`).
    Helper(String),
    /// The file says nothing about the registry.
    Nothing,
}

/// What the text of one credentials file (`file`, named in errors) says about `repository` on
/// `registry`: a containers `auth.json` (`docker: false`, keys may name `host/namespace/repo`)
/// or docker's `config.json` (`docker: true`: `credHelpers`, `auths` by host, `credsStore`).
/// An empty or all-whitespace file says nothing. Pure: helpers are named, never run.
pub fn resolve(
    file: &Path,
    text: &[u8],
    registry: &str,
    repository: &str,
    docker: bool,
) -> Result<Source, CredError> {
    let Some(doc) = parse_json(file, text)? else {
        return Ok(Source::Nothing);
    };
    if !docker {
        return Ok(from_auths(file, &doc, registry, Some(repository))?
            .map_or(Source::Nothing, Source::Credential));
    }
    if let Some(helper) = helper_for(&doc, registry) {
        return Ok(Source::Helper(helper));
    }
    if let Some(c) = from_auths(file, &doc, registry, None)? {
        return Ok(Source::Credential(c));
    }
    Ok(doc
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map_or(Source::Nothing, |s| Source::Helper(s.to_string())))
}

/// A file's bytes; None if it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, CredError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CredError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// A file's JSON document; None if the file is empty or all whitespace.
fn parse_json(path: &Path, text: &[u8]) -> Result<Option<Value>, CredError> {
    if text.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(None);
    }
    serde_json::from_slice(text)
        .map(Some)
        .map_err(|e| CredError::File {
            path: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })
}

fn read_json(path: &Path) -> Result<Option<Value>, CredError> {
    match read_file(path)? {
        Some(text) => parse_json(path, &text),
        None => Ok(None),
    }
}

fn helper_for(doc: &Value, registry: &str) -> Option<String> {
    let helpers = doc.get("credHelpers")?.as_object()?;
    let want = registry_key(registry);
    helpers
        .iter()
        .find(|(k, _)| normalize_key(k) == want)
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// Credentials from an `auths` object: for `repository`, the longest matching
/// `host/namespace/...` key wins (auth.json); then the host alone.
fn from_auths(
    file: &Path,
    doc: &Value,
    registry: &str,
    repository: Option<&str>,
) -> Result<Option<Credential>, CredError> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let host = registry_key(registry);
    let mut candidates = Vec::new();
    if let Some(repo) = repository {
        let parts: Vec<&str> = repo.split('/').collect();
        for n in (1..=parts.len()).rev() {
            candidates.push(format!("{host}/{}", parts[..n].join("/")));
        }
    }
    candidates.push(host);
    for want in candidates {
        if let Some((_, entry)) = auths.iter().find(|(k, _)| normalize_key(k) == want)
            && let Some(c) = decode_entry(file, entry)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn decode_entry(file: &Path, entry: &Value) -> Result<Option<Credential>, CredError> {
    if let Some(tok) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential {
            username: IDENTITY_TOKEN_USER.into(),
            secret: tok.to_string(),
        }));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let bad = || CredError::File {
            path: file.to_path_buf(),
            message: "an `auth` entry is not base64 of user:password".into(),
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential {
            username: u.to_string(),
            secret: p.to_string(),
        }));
    }
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    Ok(match (field("username"), field("password")) {
        (Some(u), Some(p)) => Some(Credential {
            username: u.into(),
            secret: p.into(),
        }),
        _ => None,
    })
}

fn auths_mut(doc: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = doc.as_object_mut()?;
    obj.entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Set `auths[key]` to the credential, keeping the entry's other fields.
fn set_auth(doc: &mut Value, key: &str, cred: &Credential) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Some(auths) = auths_mut(doc) else { return };
    let entry = auths
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let obj = entry.as_object_mut().expect("an object");
    if cred.is_identity_token() {
        obj.insert("identitytoken".into(), Value::String(cred.secret.clone()));
        match cred
            .username
            .strip_prefix(IDENTITY_TOKEN_USER)
            .filter(|u| !u.is_empty())
        {
            // docker writes the user name with an empty password beside the token.
            Some(user) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
                obj.insert("auth".into(), Value::String(b64));
            }
            None => {
                obj.remove("auth");
            }
        }
    } else {
        obj.remove("identitytoken");
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cred.username, cred.secret));
        obj.insert("auth".into(), Value::String(b64));
    }
}

/// Write JSON atomically with mode 0600 (a temporary file in the same directory, fsync, rename).
fn write_json_atomic(path: &Path, doc: &Value) -> Result<(), CredError> {
    // A symlinked config (dotfiles repositories do this) is written through, as docker does.
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            resolved.as_path()
        }
        _ => path,
    };
    let err = |message: String| CredError::File {
        path: path.to_path_buf(),
        message,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its directory: {e}")))?;
    let mut text = serde_json::to_vec_pretty(doc).map_err(|e| err(e.to_string()))?;
    text.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("credentials"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(format!("cannot write: {e}"))
    })
}

impl CredentialFiles {
    fn run_helper(
        &self,
        helper: &str,
        action: &str,
        input: &[u8],
    ) -> Result<(bool, String, String), CredError> {
        let name = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(d) => d.join(&name),
            None => PathBuf::from(&name),
        };
        let program = program.display().to_string();
        let herr = |message: String| CredError::Helper {
            helper: helper.to_string(),
            message,
        };
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                herr(format!(
                    "cannot run {program}: {e} (is it installed and on PATH?)"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input)
                .map_err(|e| herr(format!("cannot talk to it: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| herr(format!("it failed: {e}")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    fn helper_get(&self, helper: &str, server: &str) -> Result<Option<Credential>, CredError> {
        let (ok, stdout, stderr) = self.run_helper(helper, "get", server.as_bytes())?;
        if !ok {
            let msg = if stdout.is_empty() { stderr } else { stdout };
            if msg.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            return Err(CredError::Helper {
                helper: helper.into(),
                message: msg,
            });
        }
        let v: Value = serde_json::from_str(&stdout).map_err(|e| CredError::Helper {
            helper: helper.into(),
            message: format!("unexpected answer: {e}"),
        })?;
        let username = v
            .get("Username")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
        Ok((!secret.is_empty()).then(|| Credential {
            username: username.to_string(),
            secret: secret.to_string(),
        }))
    }

    fn helper_store(&self, helper: &str, server: &str, cred: &Credential) -> Result<(), CredError> {
        let username = if cred.is_identity_token() {
            IDENTITY_TOKEN_USER
        } else {
            cred.username.as_str()
        };
        let input =
            serde_json::json!({"ServerURL": server, "Username": username, "Secret": cred.secret});
        let (ok, stdout, stderr) =
            self.run_helper(helper, "store", input.to_string().as_bytes())?;
        if ok {
            Ok(())
        } else {
            Err(CredError::Helper {
                helper: helper.into(),
                message: if stdout.is_empty() { stderr } else { stdout },
            })
        }
    }

    fn helper_erase(&self, helper: &str, server: &str) -> Result<bool, CredError> {
        let (ok, stdout, stderr) = self.run_helper(helper, "erase", server.as_bytes())?;
        if ok {
            return Ok(true);
        }
        let msg = if stdout.is_empty() { stderr } else { stdout };
        if msg.to_ascii_lowercase().contains("not found") {
            return Ok(false);
        }
        Err(CredError::Helper {
            helper: helper.into(),
            message: msg,
        })
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
