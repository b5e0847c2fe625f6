//! `stowage backup DEST`: a consistent copy of a registry's data directory, taken while a
//! server may be running and writing, that `stowage serve --data DEST` serves as it was.
//!
//! Order is what makes it consistent: first a snapshot of the metadata database (one committed
//! state, through the metadata crate), then the blobs that snapshot references. Blobs are
//! immutable and published at their content address before any metadata names them, and never
//! removed by the server, so every blob the snapshot references is there to copy, whatever the
//! server does meanwhile. Each blob is copied (never hard-linked: a backup sharing inodes with
//! the source shares its disk's fate) and, unless `--no-verify`, hashed on the way and refused
//! if its bytes do not match its digest. Upload sessions in progress are left out: clients
//! restart those pushes against a restored registry. The development TLS files
//! (`--tls-self-signed`) come along, so clients that trust its CA keep trusting the restore.
//!
//! `DEST` must be new or empty; it is made private (0700, database 0600) because the database
//! holds password hashes, signing keys and secrets. A failed backup removes what it wrote.

use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::Args;
use stowage_client::transfer::Progress;
use stowage_metadata::sqlite::SqliteStore;
use stowage_server::Config;
use stowage_storage::StorageError;
use stowage_storage::fs::FsBlobStore;

use crate::failure::Failure;
use crate::progress::Reporter;

/// `stowage backup` arguments.
#[derive(Args)]
pub struct BackupArgs {
    /// The data directory to back up (wins over --config; default: the configuration's data
    /// directory, else the built-in default).
    #[arg(long, env = "STOWAGE_DATA")]
    pub data: Option<PathBuf>,
    /// Back up the data directory of this configuration file.
    #[arg(long, env = "STOWAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Copy blobs without hashing them (faster; a corrupt blob is copied as it is).
    #[arg(long)]
    pub no_verify: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where to write the backup: a new or empty directory.
    pub dest: PathBuf,
}

/// Run the command.
pub fn backup(args: &BackupArgs) -> Result<(), Failure> {
    let source = match (&args.data, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => Config::from_file(c)
            .map_err(|e| Failure::Usage(e.to_string()))?
            .data_dir(),
        (None, None) => Config::default().data_dir(),
    };
    let db = source.join("metadata.db");
    if !db.is_file() {
        return Err(Failure::Failed(format!(
            "{}: no registry here (no metadata.db); name the data directory with --data or --config",
            source.display()
        )));
    }
    let dest = &args.dest;
    let existed = dest.exists();
    if existed {
        let empty = std::fs::read_dir(dest)
            .map_err(|e| Failure::Usage(format!("{}: {e}", dest.display())))?
            .next()
            .is_none();
        if !empty {
            return Err(Failure::Usage(format!(
                "{} is not empty: a backup is written into a new or empty directory",
                dest.display()
            )));
        }
    }
    if same_dir(&source, dest) {
        return Err(Failure::Usage(
            "the backup cannot be written into the data directory itself".into(),
        ));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dest)
        .and_then(|()| std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let result = run(&source, dest, args);
    if result.is_err() {
        clean(dest, existed);
    }
    result
}

/// Whether `a` and `b` name the same existing directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Remove what a failed backup wrote (the directory too, when it made it).
fn clean(dest: &Path, existed: bool) {
    if !existed {
        let _ = std::fs::remove_dir_all(dest);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dest) {
        for e in entries.flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

fn run(source: &Path, dest: &Path, args: &BackupArgs) -> Result<(), Failure> {
    let snap = SqliteStore::snapshot_into(&source.join("metadata.db"), &dest.join("metadata.db"))
        .map_err(|e| format!("metadata snapshot: {e}"))?;
    let from = FsBlobStore::open(source)
        .map_err(|e| format!("cannot open the blobs in {}: {e}", source.display()))?;
    let to = FsBlobStore::open(dest)
        .map_err(|e| format!("cannot create the blob store in {}: {e}", dest.display()))?;
    let reporter = Reporter::new(args.quiet || !std::io::stderr().is_terminal());
    reporter.plan(&snap.blobs);
    let total: u64 = snap.blobs.iter().map(|(_, s)| s).sum();
    let mut copied = 0u64;
    for (i, (digest, size)) in snap.blobs.iter().enumerate() {
        reporter.start(digest, *size, 0);
        let r = from.export_blob(digest, *size, &to, !args.no_verify, &mut |n| {
            reporter.advance(digest, n)
        });
        match r {
            Ok(n) => copied += n,
            Err(StorageError::NotFound) => {
                reporter.finish();
                return Err(Failure::Failed(format!(
                    "blob {digest} is referenced by the metadata but missing from {}",
                    source.join("blobs").display()
                )));
            }
            Err(e) => {
                reporter.finish();
                return Err(Failure::Failed(format!("blob {digest}: {e}")));
            }
        }
        reporter.done(digest, if args.no_verify { "copied" } else { "verified" });
        if !args.quiet && !std::io::stderr().is_terminal() && (i + 1).is_multiple_of(100) {
            eprintln!("{} of {} blobs copied", i + 1, snap.blobs.len());
        }
    }
    reporter.finish();
    let tls = source.join("tls");
    if tls.is_dir() {
        copy_tree(&tls, &dest.join("tls"))
            .map_err(|e| format!("copying {}: {e}", tls.display()))?;
    }
    std::fs::File::open(dest)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    outln!(
        "backed up {} to {}: {} repositories, {} manifests, {} blobs ({:.1} MiB, {:.1} MiB copied{})",
        source.display(),
        dest.display(),
        snap.repositories,
        snap.manifests,
        snap.blobs.len(),
        total as f64 / 1048576.0,
        copied as f64 / 1048576.0,
        if args.no_verify {
            ", not verified"
        } else {
            ", every digest verified"
        }
    );
    if snap.uploads_skipped > 0 {
        eprintln!(
            "note: {} upload session(s) in progress were not backed up; those pushes must be restarted against a restore",
            snap.uploads_skipped
        );
    }
    Ok(())
}

/// Copy a small directory tree (the development CA), keeping modes, fsyncing each file.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(from)?.permissions().mode();
    std::fs::DirBuilder::new().mode(mode & 0o7777).create(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
            std::fs::set_permissions(&dst, std::fs::metadata(&src)?.permissions())?;
            std::fs::File::open(&dst)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}
