//! The `stowage` binary: a thin command-line layer over the server crate.
//!
//! `stowage serve` runs the registry; `stowage config check` validates a configuration file;
//! `stowage user` and `stowage token` manage accounts (see `accounts_cmd`); `stowage backup`
//! copies a data directory consistently (see `backup_cmd`); `stowage fsck` checks a store
//! (see `fsck_cmd`).
//! Configuration is layered defaults -> file (`--config` / `STOWAGE_CONFIG`) -> environment
//! and flags (each flag has a `STOWAGE_*` variable; an explicit flag wins over the variable).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stowage_server::Config;
use stowage_server::config::{LogFormat, LogLevel};

/// `println!` for results: a closed stdout (`stowage tags REF | head`) ends the program
/// quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

mod accounts_cmd;
mod backup_cmd;
mod client_cmd;
mod failure;
mod fsck_cmd;
mod inspect_cmd;
mod net;
mod progress;
mod remote;

use client_cmd::Net;
use failure::Failure;

use accounts_cmd::{Target, TokenCommand, UserCommand};

#[derive(Parser)]
#[command(
    name = "stowage",
    version,
    about = "Container registry server and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server (defaults: 127.0.0.1:5000, data under ~/.local/share/stowage).
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Log in to a registry: check the credentials, then store them where docker would.
    Login {
        /// The registry host (docker.io, ghcr.io, localhost:5000...).
        host: String,
        #[arg(long, short)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Forget the stored credentials for a registry.
    Logout {
        host: String,
        #[command(flatten)]
        net: Net,
    },
    /// Pull an image into an OCI layout directory (default ./NAME, tagged as the reference).
    Pull {
        reference: String,
        /// Where to: oci:DIR[:TAG] (or a path).
        dest: Option<String>,
        /// The platform to pull from a multi-platform image (default: this machine).
        #[arg(long)]
        platform: Option<String>,
        /// Pull every platform and keep the index.
        #[arg(long)]
        all_platforms: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Push an image from an OCI layout (oci:DIR[:TAG]) to a registry.
    Push {
        source: String,
        reference: String,
        /// Push only this platform of a multi-platform layout.
        #[arg(long)]
        platform: Option<String>,
        #[arg(long, hide = true)]
        all_platforms: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Copy an image between registries and layouts (all platforms by default).
    Copy {
        source: String,
        destination: String,
        /// Copy only this platform.
        #[arg(long)]
        platform: Option<String>,
        #[arg(long, hide = true)]
        all_platforms: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Describe an image: manifest or index, platforms, layers, config.
    Inspect {
        reference: String,
        /// Print the manifest exactly as served.
        #[arg(long)]
        raw: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        /// Look at this platform's image of an index.
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        net: Net,
    },
    /// List a repository's tags (every page).
    Tags {
        reference: String,
        #[command(flatten)]
        net: Net,
    },
    /// Print the digest of the manifest a reference names.
    Digest {
        reference: String,
        #[command(flatten)]
        net: Net,
    },
    /// Delete a tag (REPO:TAG), or with --manifest the image by digest with all its tags.
    Delete {
        reference: String,
        #[arg(long)]
        manifest: bool,
        #[command(flatten)]
        net: Net,
    },
    /// Unpack an image into DIR as the root filesystem a runtime would see.
    Unpack {
        reference: String,
        dir: String,
        /// The platform to unpack from a multi-platform image (default: this machine).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        net: Net,
    },
    /// Back up a registry's data directory (consistent, also while a server runs) into DEST.
    Backup(backup_cmd::BackupArgs),
    /// Check a registry's store: tags, manifests, links and blob bytes agree (--deep re-hashes
    /// every blob). Exit 0: consistent; 1: integrity errors; 2: usage error.
    Fsck(fsck_cmd::FsckArgs),
    /// Manage users (on a store with --data/--config, or a server with --server).
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Manage access tokens (on a store with --data/--config, or a server with --server).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (key reference: docs/CONFIGURATION.md).
    #[arg(long, env = "STOWAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, ADDRESS:PORT (config key `listen`).
    #[arg(long, env = "STOWAGE_LISTEN")]
    listen: Option<String>,
    /// Data directory for blobs, uploads and metadata (config key `data_dir`).
    #[arg(long, env = "STOWAGE_DATA")]
    data: Option<PathBuf>,
    /// Log format, text or json (config key `log.format`).
    #[arg(long, env = "STOWAGE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or debug (config key `log.level`).
    #[arg(long, env = "STOWAGE_LOG_LEVEL")]
    log_level: Option<String>,
    /// Require credentials (config key `auth.enabled`).
    #[arg(long, env = "STOWAGE_AUTH")]
    auth: bool,
    /// A repository pattern anyone may pull, e.g. 'library/**' (repeatable; `auth.public`).
    /// STOWAGE_PUBLIC holds one or more, separated by commas or whitespace.
    #[arg(long = "public", env = "STOWAGE_PUBLIC")]
    public: Vec<String>,
    /// Serve HTTPS with a generated development certificate kept in the data directory
    /// (`tls.self_signed`); its CA file is printed at start.
    #[arg(long, env = "STOWAGE_TLS_SELF_SIGNED")]
    tls_self_signed: bool,
    /// PEM certificate chain for HTTPS (`tls.cert`).
    #[arg(long, env = "STOWAGE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (`tls.key`).
    #[arg(long, env = "STOWAGE_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without starting anything.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

fn serve_config(args: ServeArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        // A bad file: every problem in it, as `config check` reports them.
        Some(path) => Config::from_file(path).map_err(|first| {
            let all = stowage_server::config_check::check_file(path);
            if all.is_empty() {
                first.to_string()
            } else {
                let at = |p: &String| format!("{}: {p}", path.display());
                all.iter().map(at).collect::<Vec<_>>().join("\n")
            }
        })?,
        None => Config::default(),
    };
    // Every bad flag is reported with every other problem, as `config check` does.
    let mut problems = Vec::new();
    let mut flag = |r: Result<(), String>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };
    if let Some(l) = args.listen {
        flag(stowage_server::config::parse_listen(&l).map(|a| config.listen = a));
    }
    if let Some(d) = args.data {
        config.data_dir = Some(d);
    }
    if let Some(f) = args.log_format {
        flag(LogFormat::parse(&f).map(|f| config.log.format = f));
    }
    if let Some(l) = args.log_level {
        flag(LogLevel::parse(&l).map(|l| config.log.level = l));
    }
    if args.auth {
        config.auth.enabled = true;
    }
    // `STOWAGE_PUBLIC='library/** team/base'` arrives as one value: split it (patterns never
    // hold commas or whitespace).
    for p in args
        .public
        .iter()
        .flat_map(|p| p.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|p| !p.is_empty())
    {
        flag(config.auth.add_public(p));
    }
    if args.tls_self_signed {
        config.tls.self_signed = true;
    }
    if let Some(c) = args.tls_cert {
        config.tls.cert = Some(c);
    }
    if let Some(k) = args.tls_key {
        config.tls.key = Some(k);
    }
    problems.extend(config.problems());
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn finish(r: Result<(), String>) -> ExitCode {
    failure::exit(r.map_err(Failure::Failed))
}

/// Run a client command: its flags checked first (a bad value is a usage error, exit 2).
fn run_client(net: &Net, work: impl std::future::Future<Output = Result<(), Failure>>) -> ExitCode {
    failure::exit((|| {
        failure::usage(net.check())?;
        let rt = runtime()?;
        rt.block_on(work)
    })())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Login {
            host,
            username,
            password_stdin,
            net,
        } => run_client(
            &net,
            client_cmd::login(&net, &host, username, password_stdin),
        ),
        Command::Logout { host, net } => failure::exit(
            failure::usage(net.check()).and_then(|()| client_cmd::logout(&net, &host)),
        ),
        Command::Pull {
            reference,
            dest,
            platform,
            all_platforms,
            net,
        } => run_client(
            &net,
            client_cmd::pull(&net, &reference, dest.as_deref(), &platform, all_platforms),
        ),
        Command::Push {
            source,
            reference,
            platform,
            all_platforms,
            net,
        } => run_client(
            &net,
            client_cmd::push(&net, &source, &reference, &platform, all_platforms),
        ),
        Command::Copy {
            source,
            destination,
            platform,
            all_platforms,
            net,
        } => run_client(
            &net,
            client_cmd::copy(&net, &source, &destination, &platform, all_platforms),
        ),
        Command::Inspect {
            reference,
            raw,
            json,
            platform,
            net,
        } => run_client(
            &net,
            inspect_cmd::inspect(&net, &reference, raw, json, &platform),
        ),
        Command::Tags { reference, net } => run_client(&net, client_cmd::tags(&net, &reference)),
        Command::Digest { reference, net } => {
            run_client(&net, client_cmd::digest(&net, &reference))
        }
        Command::Delete {
            reference,
            manifest,
            net,
        } => run_client(&net, client_cmd::delete(&net, &reference, manifest)),
        Command::Unpack {
            reference,
            dir,
            platform,
            net,
        } => run_client(&net, client_cmd::unpack(&net, &reference, &dir, &platform)),
        Command::Backup(args) => failure::exit(backup_cmd::backup(&args)),
        Command::Fsck(args) => failure::exit(fsck_cmd::fsck(&args)),
        Command::User { command, target } => {
            finish(runtime().and_then(|rt| rt.block_on(accounts_cmd::user(command, &target))))
        }
        Command::Token { command, target } => {
            finish(runtime().and_then(|rt| rt.block_on(accounts_cmd::token(command, &target))))
        }
        Command::Config(ConfigCommand::Check { file }) => {
            let problems = stowage_server::config_check::check_file(&file);
            if problems.is_empty() {
                outln!("{}: configuration is valid", file.display());
                return ExitCode::SUCCESS;
            }
            for p in &problems {
                eprintln!("error: {}: {p}", file.display());
            }
            eprintln!(
                "{}: {} problem{}",
                file.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Command::Serve(args) => {
            let config = match serve_config(args) {
                Ok(c) => c,
                Err(e) => {
                    failure::report(&e);
                    return ExitCode::FAILURE;
                }
            };
            stowage_server::init_logging(&config);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(stowage_server::serve(config, |ready| {
                let mut out = std::io::stdout().lock();
                let scheme = if ready.https { "https" } else { "http" };
                let _ = writeln!(out, "stowage listening on {scheme}://{}", ready.addr);
                let _ = writeln!(out, "data directory: {}", ready.data_dir.display());
                if let Some(ca) = &ready.ca_cert {
                    let _ = writeln!(
                        out,
                        "development CA certificate (trust it in clients): {}",
                        ca.display()
                    );
                }
                let _ = writeln!(
                    out,
                    "authentication: {}",
                    if ready.auth {
                        "on"
                    } else {
                        "off (anyone may push and pull)"
                    }
                );
                let _ = out.flush();
            }));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
