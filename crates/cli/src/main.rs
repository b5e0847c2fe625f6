//! The `stowage` binary: a thin command-line layer over the server crate.
//!
//! `stowage serve` runs the registry; `stowage config check` validates a configuration file.
//! Configuration is layered defaults -> file (`--config` / `STOWAGE_CONFIG`) -> environment
//! and flags (each flag has a `STOWAGE_*` variable; an explicit flag wins over the variable).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stowage_server::Config;

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
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data {
        config.data_dir = Some(d);
    }
    if let Some(f) = args.log_format {
        config.log.format = f;
    }
    if let Some(l) = args.log_level {
        config.log.level = l;
    }
    config.check()?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => match Config::from_file(&file) {
            Ok(_) => {
                println!("{}: configuration is valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            let config = match serve_config(args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
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
            let result = rt.block_on(stowage_server::serve(config, |addr, data| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "stowage listening on http://{addr}");
                let _ = writeln!(out, "data directory: {}", data.display());
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
