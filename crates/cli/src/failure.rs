//! How a command fails, and the exit status that says so: 2 when the command line itself is
//! wrong (an invalid reference, location, platform or flag value, a destination that must be
//! empty and is not), 1 for anything that went wrong while doing the work. docs/CLI.md
//! promises this split to scripts.

use std::process::ExitCode;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// Invalid usage: exit status 2.
    Usage(String),
    /// The work failed: exit status 1.
    Failed(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Failed(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Failed(s.to_string())
    }
}

/// Mark an error as invalid usage.
pub fn usage<T>(r: Result<T, String>) -> Result<T, Failure> {
    r.map_err(Failure::Usage)
}

/// Print every line of `message` as an error on stderr.
pub fn report(message: &str) {
    for line in message.lines() {
        eprintln!("error: {line}");
    }
}

/// The exit status for a command's result, after printing its error.
pub fn exit(r: Result<(), Failure>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            report(&e);
            ExitCode::from(2)
        }
        Err(Failure::Failed(e)) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
