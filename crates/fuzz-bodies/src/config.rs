//! The server's TOML configuration (`Config::from_toml`), checked against `stowage config
//! check` (`config_check::check_text`), which reads the same file key by key.

use stowage_server::config::{Config, ConfigError};
use stowage_server::config_check::check_text;

use crate::Target;
use crate::input::text;

pub const CONFIG: Target = Target {
    name: "config",
    body: config,
    outcomes: &["ok", "parse", "invalid"],
};

/// A configuration file. A configuration that loads has no problems, and `config check`
/// finds a problem exactly when loading fails (compared only for files without a `tls` table,
/// whose certificate files `config check` would read).
pub fn config(data: &[u8]) -> &'static str {
    let s = text(data);
    let result = Config::from_toml(&s);
    let names_files = toml::from_str::<toml::Table>(&s).map_or(true, |t| t.contains_key("tls"));
    if !names_files {
        let problems = check_text(&s);
        assert_eq!(
            problems.is_empty(),
            result.is_ok(),
            "config check says {problems:?}, loading says {:?}",
            result.as_ref().err().map(ToString::to_string)
        );
    }
    match result {
        Ok(c) => {
            assert!(c.problems().is_empty());
            "ok"
        }
        Err(ConfigError::Parse(_)) => "parse",
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            "invalid"
        }
        Err(e @ (ConfigError::Read { .. } | ConfigError::InFile { .. })) => {
            panic!("parsing text touched a file: {e}")
        }
    }
}
