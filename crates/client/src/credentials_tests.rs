//! Tests of `credentials` against real files and a real helper program in a temp directory.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn files(dir: &Path) -> CredentialFiles {
    CredentialFiles {
        authfile: None,
        default_authfile: None,
        docker_config: Some(dir.join("docker/config.json")),
        helper_dir: Some(dir.to_path_buf()),
    }
}

fn cred(u: &str, p: &str) -> Credential {
    Credential {
        username: u.into(),
        secret: p.into(),
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn docker_config_auths_hub_and_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    let doc = serde_json::json!({
        "auths": {
            "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
            "ghcr.io": {"auth": b64("gh:tok:with:colons")},
            "https://quay.io/v2/": {"identitytoken": "refresh-me"},
            "registry.example.com": {"username": "u", "password": "p"}
        },
        "psFormat": "kept"
    });
    std::fs::write(dir.path().join("docker/config.json"), doc.to_string()).unwrap();
    assert_eq!(
        f.lookup("docker.io", "library/ubuntu").unwrap(),
        Some(cred("hubuser", "hubpass"))
    );
    assert_eq!(
        f.lookup("ghcr.io", "o/r").unwrap(),
        Some(cred("gh", "tok:with:colons")),
        "only the first colon separates"
    );
    let q = f.lookup("quay.io", "x").unwrap().unwrap();
    assert!(q.is_identity_token());
    assert_eq!(q.secret, "refresh-me");
    assert_eq!(
        f.lookup("registry.example.com", "x").unwrap(),
        Some(cred("u", "p"))
    );
    assert_eq!(f.lookup("other.example.com", "x").unwrap(), None);
}

#[test]
fn auth_json_prefers_the_most_specific_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = files(dir.path());
    let auth = dir.path().join("auth.json");
    f.authfile = Some(auth.clone());
    let doc = serde_json::json!({"auths": {
        "registry.example.com": {"auth": b64("host:h")},
        "registry.example.com/team": {"auth": b64("ns:n")},
        "registry.example.com/team/app": {"auth": b64("repo:r")}
    }});
    std::fs::write(&auth, doc.to_string()).unwrap();
    assert_eq!(
        f.lookup("registry.example.com", "team/app").unwrap(),
        Some(cred("repo", "r"))
    );
    assert_eq!(
        f.lookup("registry.example.com", "team/other").unwrap(),
        Some(cred("ns", "n"))
    );
    assert_eq!(
        f.lookup("registry.example.com", "solo").unwrap(),
        Some(cred("host", "h"))
    );
}

#[test]
fn login_writes_atomically_0600_keeping_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    let path = dir.path().join("docker/config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        r#"{"auths":{"ghcr.io":{"auth":"eDp5","email":"e@x"}},"detachKeys":"ctrl-q"}"#,
    )
    .unwrap();
    f.store("docker.io", &cred("me", "pw")).unwrap();
    f.store("ghcr.io", &cred("gh", "new")).unwrap();
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["detachKeys"], "ctrl-q");
    assert_eq!(
        doc["auths"]["ghcr.io"]["email"], "e@x",
        "fields we do not own are kept"
    );
    assert_eq!(
        doc["auths"]["https://index.docker.io/v1/"]["auth"],
        b64("me:pw")
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(f.lookup("ghcr.io", "x").unwrap(), Some(cred("gh", "new")));
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    assert!(f.erase("ghcr.io").unwrap());
    assert!(!f.erase("ghcr.io").unwrap());
    assert_eq!(f.lookup("ghcr.io", "x").unwrap(), None);
    assert_eq!(
        f.lookup("docker.io", "library/x").unwrap(),
        Some(cred("me", "pw"))
    );
}

#[test]
fn identity_tokens_are_stored_as_docker_does() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    f.store("reg.example.com", &cred(IDENTITY_TOKEN_USER, "rt"))
        .unwrap();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("docker/config.json")).unwrap())
            .unwrap();
    assert_eq!(doc["auths"]["reg.example.com"]["identitytoken"], "rt");
    assert!(doc["auths"]["reg.example.com"].get("auth").is_none());
    // With the user name, docker's form: `auth` of "USER:" beside the token.
    f.store("reg.example.com", &cred("<token>alice", "rt2"))
        .unwrap();
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("docker/config.json")).unwrap())
            .unwrap();
    assert_eq!(doc["auths"]["reg.example.com"]["auth"], b64("alice:"));
    let back = f.lookup("reg.example.com", "x").unwrap().unwrap();
    assert!(back.is_identity_token());
    assert_eq!(back.secret, "rt2");
}

/// A credential helper that keeps one credential in a file next to itself.
fn install_helper(dir: &Path, name: &str) {
    let store = dir.join(format!("{name}.store"));
    let script = format!(
        r#"#!/bin/sh
case "$1" in
  get) read url; if [ -f "{s}" ] && grep -q "\"ServerURL\":\"$url\"" "{s}"; then cat "{s}"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) cat > "{s}" ;;
  erase) read url; if [ -f "{s}" ]; then rm "{s}"; else echo "credentials not found"; exit 1; fi ;;
esac
"#,
        s = store.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_are_used_for_their_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    install_helper(dir.path(), "fake");
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(
        dir.path().join("docker/config.json"),
        r#"{"credHelpers":{"reg.example.com":"fake"},"auths":{}}"#,
    )
    .unwrap();
    assert_eq!(
        f.lookup("reg.example.com", "x").unwrap(),
        None,
        "helper has nothing yet"
    );
    let where_ = f.store("reg.example.com", &cred("hu", "hp")).unwrap();
    assert!(where_.contains("docker-credential-fake"), "{where_}");
    assert_eq!(
        f.lookup("reg.example.com", "x").unwrap(),
        Some(cred("hu", "hp"))
    );
    // The password never lands in the file.
    let text = std::fs::read_to_string(dir.path().join("docker/config.json")).unwrap();
    assert!(
        !text.contains(&b64("hu:hp")) && !text.contains("hp"),
        "{text}"
    );
    assert!(f.erase("reg.example.com").unwrap());
    assert_eq!(f.lookup("reg.example.com", "x").unwrap(), None);
    // A missing helper is a clear error.
    std::fs::write(
        dir.path().join("docker/config.json"),
        r#"{"credsStore":"absent"}"#,
    )
    .unwrap();
    let e = f.lookup("any.example.com", "x").unwrap_err().to_string();
    assert!(e.contains("docker-credential-absent"), "{e}");
}

#[test]
fn broken_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(dir.path().join("docker/config.json"), "{not json").unwrap();
    let e = f.lookup("x.example.com", "r").unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    std::fs::write(
        dir.path().join("docker/config.json"),
        r#"{"auths":{"x.example.com":{"auth":"!!!"}}}"#,
    )
    .unwrap();
    let e = f.lookup("x.example.com", "r").unwrap_err().to_string();
    assert!(e.contains("base64"), "{e}");
}

#[test]
fn resolve_reads_one_file_without_running_helpers() {
    let file = Path::new("config.json");
    let docker = br#"{"credHelpers":{"ghcr.io":"gh"},"credsStore":"desktop",
        "auths":{"quay.io":{"auth":"dTpw"},"bad.io":{"auth":"!!"}}}"#;
    let r = |registry: &str, docker_file: bool, text: &[u8]| {
        resolve(file, text, registry, "team/app", docker_file)
    };
    assert_eq!(
        r("ghcr.io", true, docker).unwrap(),
        Source::Helper("gh".into())
    );
    assert_eq!(
        r("quay.io", true, docker).unwrap(),
        Source::Credential(cred("u", "p"))
    );
    assert_eq!(
        r("other.io", true, docker).unwrap(),
        Source::Helper("desktop".into())
    );
    let e = r("bad.io", true, docker).unwrap_err().to_string();
    assert!(e.starts_with("config.json: an `auth` entry"), "{e}");
    // An auth.json names no helpers, and matches namespaces.
    let auth = br#"{"credHelpers":{"ghcr.io":"gh"},"auths":{"ghcr.io/team":{"auth":"dTpw"}}}"#;
    assert_eq!(
        r("ghcr.io", false, auth).unwrap(),
        Source::Credential(cred("u", "p"))
    );
    assert_eq!(r("quay.io", false, auth).unwrap(), Source::Nothing);
    assert_eq!(r("quay.io", true, b" \n").unwrap(), Source::Nothing);
    let e = r("quay.io", true, b"{").unwrap_err().to_string();
    assert!(e.starts_with("config.json: not valid JSON"), "{e}");
}
