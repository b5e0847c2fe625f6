//! `stowage config check`: every problem in a configuration file, not just the first.
//!
//! serde stops at the first unknown key or bad value, so the file is parsed as plain TOML and
//! each key is tried alone against the typed configuration (sections key by key), so a value
//! that does not parse into its type (an address, a CIDR range, a pattern, a duration) is
//! reported by its key. What passes is assembled into a configuration whose values are then
//! validated as a whole ([`Config::problems`]), and the TLS certificate and key files it names are read, parsed and
//! matched against each other ([`crate::tls::check_files`]).

use std::path::Path;

use toml::{Table, Value};

use crate::config::Config;

/// Every problem in the configuration file at `path`, one message each (empty: valid).
pub fn check_file(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => check_text(&text),
        Err(e) => vec![format!("cannot read {}: {e}", path.display())],
    }
}

/// Every problem in a configuration document.
pub fn check_text(text: &str) -> Vec<String> {
    let table: Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => return vec![e.to_string().trim_end().to_string()],
    };
    let mut problems = Vec::new();
    let mut good = Table::new();
    for (key, value) in &table {
        if let Some(v) = walk(&[key.as_str()], value, &mut problems) {
            good.insert(key.clone(), v);
        }
    }
    let config = match Value::Table(good).try_into::<Config>() {
        Ok(c) => c,
        Err(e) => {
            problems.push(one_line(&e));
            return problems;
        }
    };
    problems.extend(config.problems());
    if !config.tls.self_signed
        && let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key)
    {
        problems.extend(crate::tls::check_files(&crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }));
    }
    problems
}

/// `value` at `path`, wrapped in the tables leading to it from the top.
fn nest(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        let mut t = Table::new();
        t.insert((*key).to_string(), inner);
        Value::Table(t)
    })
}

fn accepted(path: &[&str], value: &Value) -> Result<(), toml::de::Error> {
    nest(path, value.clone()).try_into::<Config>().map(drop)
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The problem of the key at `path`: its message, named by the key (the position in the
/// one-key document tried is no help to the reader, so it is left out).
fn problem(path: &[&str], e: &toml::de::Error) -> String {
    let key = path.join(".");
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    if message.starts_with(&key) {
        message
    } else {
        format!("{key}: {message}")
    }
}

/// Try the key at `path` alone: keep it when accepted; when it is a known section with bad
/// keys inside, keep the good ones and report each bad one; otherwise report it.
fn walk(path: &[&str], value: &Value, problems: &mut Vec<String>) -> Option<Value> {
    let err = match accepted(path, value) {
        Ok(()) => return Some(value.clone()),
        Err(e) => e,
    };
    if let Value::Table(inner) = value
        && accepted(path, &Value::Table(Table::new())).is_ok()
    {
        let mut kept = Table::new();
        for (k, v) in inner {
            let mut sub = path.to_vec();
            sub.push(k);
            if let Some(v) = walk(&sub, v, problems) {
                kept.insert(k.clone(), v);
            }
        }
        return Some(Value::Table(kept));
    }
    problems.push(problem(path, &err));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_has_no_problems() {
        assert!(check_text("listen = \"0.0.0.0:5000\"\n[log]\nlevel = \"debug\"\n").is_empty());
        assert!(check_text("").is_empty());
    }

    #[test]
    fn every_problem_is_reported() {
        let p = check_text(
            r#"
listen = "nope"
bogus = 1
delete_enabled = "yes"
[log]
format = "xml"
colour = true
[manifests]
max_sise = 1
max_size = 1024
[uploads]
purge_after = "5 years"
[nonsense]
a = 1
b = 2
"#,
        );
        let all = p.join("\n");
        for says in [
            "listen must be",
            "bogus",
            "delete_enabled",
            "log.format",
            "log.colour",
            "manifests.max_sise",
            "manifests.max_size must be at least",
            "uploads.purge_after",
            "nonsense",
        ] {
            assert!(all.contains(says), "missing {says:?} in:\n{all}");
        }
        assert_eq!(
            p.iter().filter(|l| l.contains("nonsense")).count(),
            1,
            "an unknown section is one problem:\n{all}"
        );
        assert_eq!(p.len(), 9, "{all}");
    }

    #[test]
    fn a_syntax_error_is_one_problem() {
        let p = check_text("listen = [");
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn tls_files_are_read_and_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.key");
        let p = check_text(&format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            junk.display().to_string(),
            missing.display().to_string()
        ));
        let all = p.join("\n");
        assert_eq!(p.len(), 2, "{all}");
        assert!(
            all.contains("junk.pem") && all.contains("no certificate"),
            "{all}"
        );
        assert!(
            all.contains("missing.key") && all.contains("cannot read"),
            "{all}"
        );
    }
}
