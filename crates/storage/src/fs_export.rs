//! Copying blobs out of a filesystem store into another one (`stowage backup`).
//!
//! A blob is read once, hashed while it is written to a temporary name in the destination,
//! fsynced, checked against its digest and recorded size, and only then renamed to its content
//! address (and the directory fsynced), so the destination never holds a blob under a name its
//! bytes do not have. Blobs are copied, never hard-linked: a backup that shares inodes with the
//! source shares its fate on a failing disk, and verification reads every byte anyway.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use stowage_oci::{Digest, Hasher};

use crate::StorageError;
use crate::fs::{FsBlobStore, create_dir_durable, sync_dir};
use crate::fs_hook::Hooks;

/// Copy buffer.
const BUF: usize = 1024 * 1024;

impl FsBlobStore {
    /// Copy blob `digest` (recorded as `size` bytes) into `dest`, calling `progress` with each
    /// chunk's length. With `verify`, the bytes must hash to `digest` (a mismatch is an error
    /// naming the blob, and nothing is left in `dest`); the size is always checked. A blob
    /// already in `dest` with the right size is left alone. Returns the bytes copied.
    pub fn export_blob(
        &self,
        digest: &Digest,
        size: u64,
        dest: &FsBlobStore,
        verify: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StorageError> {
        let from = self.blob_path(digest);
        let to = dest.blob_path(digest);
        if fs::metadata(&to).is_ok_and(|m| m.len() == size) {
            progress(size);
            return Ok(0);
        }
        let mut src = match File::open(&from) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let dir = to.parent().ok_or(StorageError::NotFound)?;
        create_dir_durable(dir, &Hooks::default())?;
        let mut tmp_name = to.as_os_str().to_owned();
        tmp_name.push(".partial");
        let tmp = std::path::PathBuf::from(tmp_name);
        let result = (|| {
            let mut out = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut hasher = verify.then(|| Hasher::new(digest.algorithm()));
            let mut buf = vec![0u8; BUF];
            let mut copied = 0u64;
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StorageError::from(e)),
                };
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                out.write_all(&buf[..n])?;
                copied += n as u64;
                progress(n as u64);
            }
            if copied != size {
                return Err(StorageError::Io(io::Error::other(format!(
                    "blob {digest} holds {copied} bytes, but {size} are recorded"
                ))));
            }
            if let Some(h) = hasher {
                let actual = h.finish();
                if &actual != digest {
                    return Err(StorageError::Io(io::Error::other(format!(
                        "blob {digest} is corrupt: its bytes hash to {actual}"
                    ))));
                }
            }
            out.sync_all()?;
            fs::rename(&tmp, &to)?;
            sync_dir(dir, &Hooks::default())?;
            Ok(copied)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_oci::Algorithm;

    fn put(store_root: &std::path::Path, data: &[u8]) -> Digest {
        let d = Digest::of(Algorithm::Sha256, data);
        let store = FsBlobStore::open(store_root).unwrap();
        let p = store.blob_path(&d);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        d
    }

    #[test]
    fn copies_verifies_and_refuses_corrupt_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let src = FsBlobStore::open(&tmp.path().join("a")).unwrap();
        let dst = FsBlobStore::open(&tmp.path().join("b")).unwrap();
        let d = put(&tmp.path().join("a"), b"layer bytes");
        let mut seen = 0;
        let n = src
            .export_blob(&d, 11, &dst, true, &mut |k| seen += k)
            .unwrap();
        assert_eq!((n, seen), (11, 11));
        assert_eq!(fs::read(dst.blob_path(&d)).unwrap(), b"layer bytes");
        // A corrupt source blob is refused and leaves nothing behind.
        let bad = Digest::of(Algorithm::Sha256, b"what it should be");
        let p = src.blob_path(&bad);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"what it really is").unwrap();
        let err = src
            .export_blob(&bad, 17, &dst, true, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(!dst.blob_path(&bad).exists());
        let partial = dst.blob_path(&bad).parent().unwrap().to_path_buf();
        assert_eq!(fs::read_dir(partial).unwrap().count(), 0);
        // Without verification only the size is checked.
        src.export_blob(&bad, 17, &dst, false, &mut |_| {}).unwrap();
        let missing = Digest::of(Algorithm::Sha256, b"never stored");
        assert!(matches!(
            src.export_blob(&missing, 1, &dst, true, &mut |_| {}),
            Err(StorageError::NotFound)
        ));
    }
}
