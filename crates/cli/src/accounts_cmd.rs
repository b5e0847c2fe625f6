//! `stowage user ...` and `stowage token ...`: account management, either directly on a store
//! (`--data DIR` or `--config FILE`; this is how the first administrator is made, and a running
//! server picks the change up within its reload interval) or through a running server's admin
//! API (`--server URL`, authenticated with `--username` and a password from `--password-stdin`
//! or `STOWAGE_PASSWORD`, or the login `stowage login`, docker or podman stored for that host).
//!
//! Output is meant for scripts too: `token create` prints the secret alone on its last line,
//! `token list` and `user list` print one entry per line, its id or name first.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use stowage_identity::accounts::{AccountError, Accounts, NewToken, TokenInfo, UserInfo};
use stowage_identity::admin::{
    AdminRoute, ImportUsers, Imported, NewTokenRequest, NewUser, UserChange,
};
use stowage_metadata::AuthStore;
use stowage_metadata::sqlite::SqliteStore;
use stowage_oci::time::{parse_duration, rfc3339};
use stowage_server::Config;

use crate::remote::{Connect, Remote};

/// Where account commands act.
#[derive(Args, Clone, Default)]
pub struct Target {
    /// Work on this data directory's store directly.
    #[arg(long, env = "STOWAGE_DATA", global = true)]
    pub data: Option<PathBuf>,
    /// Work on the store of this configuration file.
    #[arg(long, env = "STOWAGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Work through this running server's admin API (https://host:port).
    #[arg(long, env = "STOWAGE_SERVER", global = true)]
    pub server: Option<String>,
    /// User name for --server (default: the stored login for that host).
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// Read passwords from standard input, one line each, in the order they are needed: with
    /// --server and --username, the caller's password first; then, for `user add` and `user
    /// passwd`, the new password.
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// Read only the --server password from standard input (the new password is prompted for).
    #[arg(long = "server-password-stdin", global = true)]
    pub server_password_stdin: bool,
    /// Trust this CA certificate (PEM) for --server.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate verification for --server (testing only).
    #[arg(long, global = true)]
    pub insecure: bool,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Make it an administrator (every right, and user management).
        #[arg(long)]
        admin: bool,
        /// A right to give, e.g. 'team/**:pull,push' or 'registry:catalog:*' (repeatable).
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// List users: name, admin or -, grants.
    List,
    /// Change a user's password (its JWTs and refresh tokens stop working).
    Passwd { name: String },
    /// Remove a user with its tokens.
    Remove { name: String },
    /// Give a user rights (grants such as 'team/**:pull,push'); --admin makes it an administrator.
    Grant {
        name: String,
        grants: Vec<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Take rights away (the same grant strings); --admin removes administration.
    Ungrant {
        name: String,
        grants: Vec<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Import users from an htpasswd file (bcrypt, as made by `htpasswd -B`).
    Import {
        file: PathBuf,
        /// Rights the imported users get (repeatable).
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an access token; prints its secret once, alone on the last line.
    Create {
        /// The user it acts for (default with --server: yourself).
        #[arg(long)]
        user: Option<String>,
        /// What it may do, e.g. 'repository:team/**:pull' (repeatable; `admin`, also written
        /// 'registry:admin:*', lets it use the admin API: manage tokens within its own scopes).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime such as 30d or 12h (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// A label to recognise it by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets): id, user, name, scopes, expiry, last use.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token (and everything minted with it).
    Revoke { id: String },
}

/// Read a password: a line of stdin (when asked to, or when stdin is not a terminal), or a
/// prompt on the terminal.
fn read_password(from_stdin: bool, prompt: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    let prompting = !from_stdin && stdin.is_terminal();
    if prompting {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if prompting {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}

/// A password for client commands (same rules as for account commands).
pub fn read_password_public(from_stdin: bool, prompt: &str) -> Result<String, String> {
    read_password(from_stdin, prompt)
}

/// A visible line from the terminal (a user name).
pub fn read_line_prompt(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read: {e}"))?;
    let v = line.trim().to_string();
    if v.is_empty() {
        return Err("nothing entered".into());
    }
    Ok(v)
}

/// Turn terminal echo off or on (through `stty`, which acts on the inherited terminal).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

fn fmt_time(t: Option<i64>) -> String {
    t.map_or("-".into(), rfc3339)
}

fn print_users(users: &[UserInfo]) {
    let mut out = std::io::stdout().lock();
    for u in users {
        let grants = if u.grants.is_empty() {
            "-".into()
        } else {
            u.grants.join(" ")
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}",
            u.name,
            if u.admin { "admin" } else { "-" },
            grants
        );
    }
}

fn print_tokens(tokens: &[TokenInfo]) {
    let mut out = std::io::stdout().lock();
    for t in tokens {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\texpires={}\tlast_used={}",
            t.id,
            t.user,
            if t.name.is_empty() { "-" } else { &t.name },
            t.scopes.join(" "),
            fmt_time(t.expires),
            fmt_time(t.last_used),
        );
    }
}

fn print_new_token(t: &NewToken) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "created token {} for {} (scopes: {}; expires: {})",
        t.info.id,
        t.info.user,
        t.info.scopes.join(" "),
        fmt_time(t.info.expires)
    );
    let _ = writeln!(out, "{}", t.secret);
}

/// Either a store or a server.
enum Backend {
    /// The accounts, and the SQLite store under them (checkpointed when the command is done).
    Store(Accounts, Arc<SqliteStore>),
    Server(Remote),
}

impl Backend {
    /// After a command on a store: move its writes from the WAL into `metadata.db`, so a copy of
    /// that file alone has them. A running server reading the store can delay this; the writes
    /// are committed either way, so a failure is only worth a note.
    async fn finish(&self) {
        if let Backend::Store(_, sqlite) = self
            && let Err(e) = sqlite.checkpoint().await
        {
            eprintln!("note: the change is committed but still in metadata.db-wal ({e})");
        }
    }
}

async fn backend(t: &Target) -> Result<Backend, String> {
    if let Some(url) = &t.server {
        let connect = Connect {
            ca_file: t.ca_file.clone(),
            insecure: t.insecure,
            username: t.username.clone(),
            password: || server_password(t),
        };
        return Ok(Backend::Server(Remote::new(url, connect).await?));
    }
    let data = match (&t.data, &t.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => Config::from_file(c).map_err(|e| e.to_string())?.data_dir(),
        (None, None) => Config::default().data_dir(),
    };
    let sqlite = stowage_server::open_sqlite_store(&data).map_err(|e| e.to_string())?;
    let store: Arc<dyn AuthStore> = sqlite.clone();
    Ok(Backend::Store(Accounts::new(store), sqlite))
}

fn e(e: AccountError) -> String {
    e.to_string()
}

pub async fn user(cmd: UserCommand, t: &Target) -> Result<(), String> {
    let b = backend(t).await?;
    let result = user_on(&b, cmd, t).await;
    b.finish().await;
    result
}

async fn user_on(b: &Backend, cmd: UserCommand, t: &Target) -> Result<(), String> {
    match cmd {
        UserCommand::Add {
            name,
            admin,
            grants,
        } => {
            let pw = read_password(t.password_stdin, &format!("Password for {name}: "))?;
            let u = match b {
                Backend::Store(a, _) => a.add_user(&name, &pw, admin, &grants).await.map_err(e)?,
                Backend::Server(r) => {
                    let body = NewUser {
                        name: name.clone(),
                        password: pw,
                        admin,
                        grants,
                    };
                    r.call(&AdminRoute::AddUser, Some(&body)).await?
                }
            };
            outln!(
                "created user {}{}",
                u.name,
                if u.admin { " (admin)" } else { "" }
            );
        }
        UserCommand::List => {
            let users: Vec<UserInfo> = match b {
                Backend::Store(a, _) => a.list_users().await.map_err(e)?,
                Backend::Server(r) => r.get(&AdminRoute::ListUsers).await?,
            };
            print_users(&users);
        }
        UserCommand::Passwd { name } => {
            let pw = read_password(t.password_stdin, &format!("New password for {name}: "))?;
            match b {
                Backend::Store(a, _) => a.set_password(&name, &pw).await.map_err(e)?,
                Backend::Server(r) => {
                    let body = UserChange {
                        password: Some(pw),
                        ..UserChange::default()
                    };
                    let _: UserInfo = r
                        .call(&AdminRoute::ChangeUser(name.clone()), Some(&body))
                        .await?;
                }
            }
            outln!("password changed for {name}");
        }
        UserCommand::Remove { name } => {
            match b {
                Backend::Store(a, _) => a.remove_user(&name).await.map_err(e)?,
                Backend::Server(r) => r.call_empty(&AdminRoute::RemoveUser(name.clone())).await?,
            }
            outln!("removed user {name}");
        }
        UserCommand::Grant {
            name,
            grants,
            admin,
        }
        | UserCommand::Ungrant {
            name,
            grants,
            admin,
        } if grants.is_empty() && !admin => {
            return Err(format!(
                "nothing to change for {name}: give grants such as 'team/**:pull' or --admin"
            ));
        }
        UserCommand::Grant {
            name,
            grants,
            admin,
        } => {
            let u = change(b, &name, &grants, &[], admin.then_some(true)).await?;
            print_users(&[u]);
        }
        UserCommand::Ungrant {
            name,
            grants,
            admin,
        } => {
            let u = change(b, &name, &[], &grants, admin.then_some(false)).await?;
            print_users(&[u]);
        }
        UserCommand::Import { file, grants } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
            let (imported, skipped): (usize, usize) = match b {
                Backend::Store(a, _) => a.import_htpasswd(&text, &grants).await.map_err(e)?,
                Backend::Server(r) => {
                    let body = ImportUsers {
                        htpasswd: text,
                        grants,
                    };
                    let counts: Imported = r.call(&AdminRoute::ImportUsers, Some(&body)).await?;
                    (counts.imported, counts.skipped)
                }
            };
            outln!("imported {imported} users ({skipped} already existed and were left alone)");
        }
    }
    Ok(())
}

async fn change(
    b: &Backend,
    name: &str,
    grant: &[String],
    revoke: &[String],
    admin: Option<bool>,
) -> Result<UserInfo, String> {
    match b {
        Backend::Store(a, _) => a.change_rights(name, grant, revoke, admin).await.map_err(e),
        Backend::Server(r) => {
            let body = UserChange {
                password: None,
                grant: grant.to_vec(),
                revoke: revoke.to_vec(),
                admin,
            };
            r.call(&AdminRoute::ChangeUser(name.to_string()), Some(&body))
                .await
        }
    }
}

pub async fn token(cmd: TokenCommand, t: &Target) -> Result<(), String> {
    let b = backend(t).await?;
    let result = token_on(&b, cmd).await;
    b.finish().await;
    result
}

async fn token_on(b: &Backend, cmd: TokenCommand) -> Result<(), String> {
    match cmd {
        TokenCommand::Create {
            user,
            scopes,
            expires,
            name,
        } => {
            let expires = expires
                .map(|s| parse_duration(&s))
                .transpose()?
                .filter(|d| !d.is_zero());
            let made: NewToken = match b {
                Backend::Store(a, _) => {
                    let user = user.ok_or("--user is required when working on a store")?;
                    a.create_token(&user, &scopes, expires, &name)
                        .await
                        .map_err(e)?
                }
                Backend::Server(r) => {
                    let body = NewTokenRequest {
                        user,
                        scopes,
                        expires_in: expires.map(|d: Duration| d.as_secs()),
                        name,
                    };
                    r.call(&AdminRoute::CreateToken, Some(&body)).await?
                }
            };
            print_new_token(&made);
        }
        TokenCommand::List { user } => {
            let tokens: Vec<TokenInfo> = match b {
                Backend::Store(a, _) => a.list_tokens(user.as_deref()).await.map_err(e)?,
                Backend::Server(r) => r.get(&AdminRoute::ListTokens(user)).await?,
            };
            print_tokens(&tokens);
        }
        TokenCommand::Revoke { id } => {
            match b {
                Backend::Store(a, _) => a.revoke_token(&id).await.map_err(e)?,
                Backend::Server(r) => r.call_empty(&AdminRoute::RevokeToken(id.clone())).await?,
            }
            outln!("revoked token {id}");
        }
    }
    Ok(())
}

/// Read the caller's password for --server (first stdin line when asked to).
pub fn server_password(t: &Target) -> Result<Option<String>, String> {
    if t.server_password_stdin || (t.password_stdin && t.username.is_some()) {
        return read_password(true, "").map(Some);
    }
    Ok(std::env::var("STOWAGE_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty()))
}
