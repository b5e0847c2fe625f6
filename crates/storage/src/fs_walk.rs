//! Listing the blobs a filesystem store holds, a page at a time in digest order
//! (`BlobStore::list_blobs`), for the store checker and the garbage collector.
//!
//! The tree is `blobs/<alg>/<2 hex>/<hex>`; digests sort as text (`sha256:...` before
//! `sha512:...`), which is the order of the algorithm, prefix and file names. A page skips every
//! directory wholly before the key it starts after, so walking a store costs one directory read
//! per prefix directory, not one per page. Entries whose names are not digests of their
//! directory (foreign files) are skipped. A blob's age counts from its inode's change time:
//! publishing is a hard link, which sets it, where the modification time is the upload's last
//! write, possibly much earlier.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stowage_oci::{Algorithm, Digest};

use crate::StoredBlob;

/// Sorted names of the entries of `dir` (empty when it does not exist).
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    Ok(names)
}

/// Up to `limit` blobs under `blobs_root` whose digest sorts after `after`.
pub(crate) fn list(
    blobs_root: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> io::Result<Vec<StoredBlob>> {
    let now = SystemTime::now();
    let after = after.map(|d| d.to_string()).unwrap_or_default();
    let mut out = Vec::new();
    let mut algorithms: Vec<Algorithm> = sorted_names(blobs_root)?
        .iter()
        .filter_map(|n| Algorithm::parse(n).ok())
        .collect();
    algorithms.sort_by_key(|a| a.as_str());
    for alg in algorithms {
        let alg_dir = blobs_root.join(alg.as_str());
        let head = format!("{}:", alg.as_str());
        for prefix in sorted_names(&alg_dir)? {
            if prefix.len() != 2 {
                continue;
            }
            // Everything under this prefix sorts at most `<alg>:<prefix>` followed by hex, so
            // the whole directory is before `after` when that prefix of `after` is greater.
            let bound = format!("{head}{prefix}g");
            if bound <= after {
                continue;
            }
            let dir = alg_dir.join(&prefix);
            for name in sorted_names(&dir)? {
                let text = format!("{head}{name}");
                if text <= after || !name.starts_with(prefix.as_str()) {
                    continue;
                }
                let Ok(digest) = text.parse::<Digest>() else {
                    continue;
                };
                let meta = match fs::symlink_metadata(dir.join(&name)) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    // Removed since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let changed = UNIX_EPOCH + Duration::from_secs(meta.ctime().max(0) as u64);
                out.push(StoredBlob {
                    digest,
                    size: meta.len(),
                    age: now.duration_since(changed).unwrap_or_default(),
                });
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
