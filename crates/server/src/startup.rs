//! Why `serve` (or opening a data directory's stores) failed, each with the message the
//! operator sees.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure to start (or to run) the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr}: the address is already in use (is another registry running?); stop it or choose another address with {setting}"
    )]
    AddressInUse {
        addr: SocketAddr,
        /// The flag or key that names the address.
        setting: &'static str,
    },
    #[error("cannot listen on {addr} ({setting}): {source}")]
    Bind {
        addr: SocketAddr,
        setting: &'static str,
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
    #[error("cannot create data directory {}: {source}", path.display())]
    CreateDataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {}: {source}", path.display())]
    OpenDatabaseFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {} private: {source}", path.display())]
    MakePrivate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data directory {} is in use by {holder} (another `stowage serve`?): two servers on one directory would corrupt uploads. Stop the other server, or give this one its own --data",
        dir.display()
    )]
    DataDirInUse {
        dir: PathBuf,
        /// "process PID", or "another process" when the holder did not say.
        holder: String,
    },
    #[error("cannot lock {}: {source}", path.display())]
    DataDirLock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open blob store in {}: {source}", dir.display())]
    BlobStore {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open metadata database in {}: {source}", dir.display())]
    MetadataStore {
        dir: PathBuf,
        source: stowage_metadata::MetadataError,
    },
    /// Loading users, tokens and signing keys failed.
    #[error("{0}")]
    Auth(#[from] stowage_identity::IdentityError),
    /// The certificate, key or development CA (the message names the file).
    #[error("{0}")]
    Tls(String),
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    /// The accept loop failed.
    #[error("server error: {0}")]
    Server(std::io::Error),
    #[error("server task failed: {0}")]
    Task(tokio::task::JoinError),
}
