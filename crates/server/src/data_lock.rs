//! One `stowage serve` per data directory.
//!
//! The filesystem blob store and the SQLite metadata store are written by one process: its
//! in-process guards (one writer per upload session, the SQLite writer thread) are what keep
//! two requests from writing the same bytes. A second `serve` on the same directory would
//! bypass them, so `serve` holds an exclusive advisory lock on `<data>/serve.lock` for its
//! whole life (released by the kernel however the process ends, `kill -9` included) and a
//! second one refuses to start, naming the holder. Offline commands on a store (`stowage user`,
//! `token`, `backup`) do not take it: SQLite serialises their writes with the server's.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::startup::ServeError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// Held for as long as the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

/// Lock `data` (which must exist) for this process, or say who holds it.
pub fn acquire(data: &Path) -> Result<DataLock, ServeError> {
    let path = data.join(LOCK_FILE);
    let lock_error = |source| ServeError::DataDirLock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(ServeError::DataDirInUse {
                dir: data.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("process {holder}")
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(lock_error(e)),
    }
    // The holder's pid, for the message above (advice only: the lock is what counts).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
    Ok(DataLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains("in use by process"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        acquire(dir.path()).expect("free again once released");
    }
}
