//! Running external client tools (skopeo, podman, ctr, python) from tests.
//!
//! Owns: finding a required tool on PATH (a missing tool is a test failure, never a skip: CI
//! installs them all), running a command with a deadline, and panicking with the full command
//! line, exit status, stdout and stderr when it fails, so a red test explains itself.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one client command may take before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Absolute path of `name` on PATH; panics (failing the test) if it is not installed.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "required tool `{name}` is not on PATH; `.ci/run` installs it (see its apt/pip steps)"
        )
    })
}

/// Absolute path of `name` on PATH, if present.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic with everything we know unless the command succeeded.
    pub fn ok(self) -> Output {
        if !self.success() {
            panic!("{}", self.describe("command failed"));
        }
        self
    }

    pub fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// Keep failure messages readable: debug logs of a client can be megabytes.
fn tail(s: &str) -> &str {
    const MAX: usize = 20_000;
    if s.len() <= MAX {
        return s;
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Run `cmd` to completion (stdin closed) within `timeout`; never panics on a non-zero exit.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// Run `cmd` to completion within `timeout`, writing `stdin` to it (or closing its stdin);
/// never panics on a non-zero exit.
pub fn run_with_input(cmd: &mut Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let command = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let text = text.to_string();
        // A writer thread, so a command that never reads stdin cannot block the caller.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(text.as_bytes());
        });
    }
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let s = child.wait().expect("wait after kill");
            let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
            panic!(
                "timed out after {timeout:?} ({s}): {command}\n--- stderr ---\n{}",
                tail(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
        command,
    }
}

/// Run `cmd` with [`DEFAULT_TIMEOUT`]; panics unless it exits 0. Returns its output.
pub fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, DEFAULT_TIMEOUT).ok()
}

/// Run `cmd` with [`DEFAULT_TIMEOUT`], whatever its exit status.
pub fn try_run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, DEFAULT_TIMEOUT)
}

/// Run the `stowage` binary `bin` on the store in `data` (`ARGS --data DATA`, for `user` and
/// `token` commands), with `stdin` written to it, ignoring any `STOWAGE_CONFIG` or
/// `STOWAGE_SERVER` of the caller's environment; panics unless it exits 0.
pub fn stowage_on_store(
    bin: &std::path::Path,
    data: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .env_remove("STOWAGE_CONFIG")
        .env_remove("STOWAGE_SERVER");
    run_with_input(&mut cmd, stdin, DEFAULT_TIMEOUT).ok()
}

/// An htpasswd line (`user:$2y$05$...`, bcrypt as Apache's `htpasswd -B` writes it).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let hash = bcrypt::hash_with_result(password, 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    assert!(hash.starts_with("$2y$05$"), "{hash}");
    format!("{user}:{hash}\n")
}

/// `stowage user add NAME EXTRA... --password-stdin` on the store in `data`, for a `(name,
/// password)` pair; panics unless it succeeds.
pub fn add_store_user(
    bin: &std::path::Path,
    data: &std::path::Path,
    (name, password): (&str, &str),
    extra: &[&str],
) -> Output {
    let mut args = vec!["user", "add", name];
    args.extend_from_slice(extra);
    args.push("--password-stdin");
    stowage_on_store(bin, data, &args, Some(&format!("{password}\n")))
}

/// The administrator the auth interop tests make on a store, as (name, password).
pub const ADMIN: (&str, &str) = ("admin", "admin-password-1");
/// The ordinary user the auth interop tests make on a store: may pull and push `team/**`.
pub const DEV: (&str, &str) = ("dev", "dev-password-1");

/// Make [`ADMIN`] (an administrator) and [`DEV`] (granted `team/**:pull` and `team/**:push`)
/// on the store in `data`, before a server starts on it.
pub fn add_admin_and_dev(bin: &std::path::Path, data: &std::path::Path) {
    add_store_user(bin, data, ADMIN, &["--admin"]);
    add_store_user(
        bin,
        data,
        DEV,
        &["--grant", "team/**:pull", "--grant", "team/**:push"],
    );
}

/// `stowage token create --user USER --scope SCOPE` on the store in `data`; returns the secret
/// (the last line printed), panicking if there is none.
pub fn create_store_token(
    bin: &std::path::Path,
    data: &std::path::Path,
    user: &str,
    scope: &str,
) -> String {
    let out = stowage_on_store(
        bin,
        data,
        &["token", "create", "--user", user, "--scope", scope],
        None,
    );
    let secret = out.stdout.lines().last().unwrap_or("").trim().to_string();
    assert!(!secret.is_empty(), "{}", out.describe("no token printed"));
    secret
}

/// A client's final error, lowercased: from its last `level=fatal` (skopeo), `Error:` (podman)
/// or `ctr:` line to the end (debug logs before it are not the verdict).
pub fn final_error(out: &Output) -> String {
    let lines: Vec<&str> = out.stderr.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| {
            l.contains("level=fatal") || l.starts_with("Error:") || l.starts_with("ctr:")
        })
        .unwrap_or(0);
    lines[start..].join("\n").to_lowercase()
}

/// Whether a (lowercased) client error is about the server's certificate.
pub fn is_certificate_error(e: &str) -> bool {
    e.contains("x509") || e.contains("certificate")
}
