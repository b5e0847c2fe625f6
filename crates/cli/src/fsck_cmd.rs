//! `stowage fsck`: check a registry's store (`stowage_registry::fsck`), offline or beside a
//! running server (it takes no lock and writes nothing unless `--repair`).
//!
//! Exit status: 0 when the store has no integrity errors (warnings such as orphans are listed),
//! 1 when something is missing, corrupt or dangling, 2 for a usage error (no store there, a bad
//! flag). `--json` prints one JSON report on stdout for monitoring; `--deep` re-hashes every blob
//! with a progress bar on a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use stowage_metadata::sqlite::SqliteStore;
use stowage_registry::fsck::{self, Finding, FsckOptions, FsckReport, Progress};
use stowage_server::Config;
use stowage_storage::fs::FsBlobStore;

use crate::failure::Failure;

/// `stowage fsck` arguments.
#[derive(Args)]
pub struct FsckArgs {
    /// The data directory to check (wins over --config; default: the configuration's data
    /// directory, else the built-in default).
    #[arg(long, env = "STOWAGE_DATA")]
    pub data: Option<PathBuf>,
    /// Check the store of this configuration file (its `[gc] grace` applies too).
    #[arg(long, env = "STOWAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also re-hash every blob's bytes (finds bit rot; reads the whole store).
    #[arg(long)]
    pub deep: bool,
    /// Remove orphan blobs and leftover upload files older than the grace period.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Bytes without a record younger than this are in flight, not orphans (default: the
    /// configuration's `gc.grace`, 24h). E.g. 30m, 48h.
    #[arg(long, value_parser = stowage_oci::time::parse_duration)]
    pub grace: Option<Duration>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run the command.
pub fn fsck(args: &FsckArgs) -> Result<(), Failure> {
    let config = match &args.config {
        Some(c) => Config::from_file(c).map_err(|e| Failure::Usage(e.to_string()))?,
        None => Config::default(),
    };
    let data = args.data.clone().unwrap_or_else(|| config.data_dir());
    let db = data.join("metadata.db");
    if !db.is_file() {
        return Err(Failure::Usage(format!(
            "{}: no registry here (no metadata.db); name the data directory with --data or --config",
            data.display()
        )));
    }
    let meta = SqliteStore::open(&db)
        .map_err(|e| format!("cannot open the metadata in {}: {e}", db.display()))?;
    let blobs = FsBlobStore::open(&data)
        .map_err(|e| format!("cannot open the blobs in {}: {e}", data.display()))?;
    let bar = Arc::new(Bar::new(
        !args.quiet && !args.json && std::io::stderr().is_terminal(),
    ));
    let b2 = bar.clone();
    let opts = FsckOptions {
        deep: args.deep,
        repair: args.repair,
        grace: args.grace.unwrap_or(config.gc.grace),
        progress: Some(Arc::new(move |p| b2.update(p))),
    };
    let rt = crate::runtime()?;
    let report = rt
        .block_on(fsck::check(&meta, &blobs, &opts))
        .map_err(|e| format!("the check could not finish: {e}"))?;
    bar.clear();
    if args.json {
        let json = serde_json::to_string_pretty(&JsonReport::new(&data, &opts, &report))
            .map_err(|e| e.to_string())?;
        outln!("{json}");
    } else {
        print_text(&data, &report, args);
    }
    let errors = report.errors().count();
    if errors > 0 {
        return Err(Failure::Failed(format!(
            "{} has {errors} integrity error(s): see above",
            data.display()
        )));
    }
    Ok(())
}

fn print_text(data: &std::path::Path, r: &FsckReport, args: &FsckArgs) {
    for f in r.errors() {
        outln!("ERROR   {:<22} {}", f.kind.as_str(), f.detail);
    }
    for f in r.warnings() {
        let fixed = if r.repaired.contains(f) {
            " (removed)"
        } else {
            ""
        };
        outln!("warning {:<22} {}{fixed}", f.kind.as_str(), f.detail);
    }
    let c = &r.counts;
    outln!(
        "{}: {} tags, {} manifests, {} links, {} blob records, {} stored blobs{}, {} upload files{}",
        data.display(),
        c.tags,
        c.manifests,
        c.links,
        c.blob_records,
        c.stored_blobs,
        if c.recent_unrecorded > 0 {
            format!(" ({} in flight)", c.recent_unrecorded)
        } else {
            String::new()
        },
        c.upload_files,
        if args.deep {
            format!(", {:.1} MiB re-hashed", c.bytes_hashed as f64 / 1048576.0)
        } else {
            String::new()
        }
    );
    let (e, w) = (r.errors().count(), r.warnings().count());
    let removed = if r.repaired.is_empty() {
        String::new()
    } else {
        format!(", {} removed", r.repaired.len())
    };
    if e == 0 {
        outln!("consistent: no integrity errors, {w} warning(s){removed}");
    } else {
        outln!("NOT consistent: {e} integrity error(s), {w} warning(s){removed}");
    }
    if !args.repair && r.warnings().any(is_repairable) {
        outln!("orphans and leftovers older than the grace period can be removed with --repair");
    }
}

fn is_repairable(f: &Finding) -> bool {
    matches!(
        f.kind,
        fsck::FindingKind::OrphanBlob | fsck::FindingKind::LeftoverUpload
    )
}

/// The JSON report.
#[derive(Serialize)]
struct JsonReport<'a> {
    data_dir: String,
    consistent: bool,
    deep: bool,
    repair: bool,
    grace_seconds: u64,
    errors: Vec<JsonFinding<'a>>,
    warnings: Vec<JsonFinding<'a>>,
    repaired: Vec<JsonFinding<'a>>,
    counts: JsonCounts,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload: Option<&'a str>,
    detail: &'a str,
}

#[derive(Serialize)]
struct JsonCounts {
    tags: u64,
    manifests: u64,
    links: u64,
    blob_records: u64,
    stored_blobs: u64,
    in_flight: u64,
    upload_files: u64,
    bytes_hashed: u64,
}

impl<'a> JsonFinding<'a> {
    fn of(f: &'a Finding) -> JsonFinding<'a> {
        JsonFinding {
            kind: f.kind.as_str(),
            repository: f.repository.as_deref(),
            tag: f.tag.as_deref(),
            digest: f.digest.as_deref(),
            upload: f.upload.as_deref(),
            detail: &f.detail,
        }
    }
}

impl<'a> JsonReport<'a> {
    fn new(data: &std::path::Path, opts: &FsckOptions, r: &'a FsckReport) -> JsonReport<'a> {
        let c = &r.counts;
        JsonReport {
            data_dir: data.display().to_string(),
            consistent: r.is_consistent(),
            deep: opts.deep,
            repair: opts.repair,
            grace_seconds: opts.grace.as_secs(),
            errors: r.errors().map(JsonFinding::of).collect(),
            warnings: r.warnings().map(JsonFinding::of).collect(),
            repaired: r.repaired.iter().map(JsonFinding::of).collect(),
            counts: JsonCounts {
                tags: c.tags,
                manifests: c.manifests,
                links: c.links,
                blob_records: c.blob_records,
                stored_blobs: c.stored_blobs,
                in_flight: c.recent_unrecorded,
                upload_files: c.upload_files,
                bytes_hashed: c.bytes_hashed,
            },
        }
    }
}

/// A one-line progress display on stderr: the phase, then the deep pass's bytes.
struct Bar {
    on: bool,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    total: u64,
    done: u64,
    drawn: bool,
    last: Option<Instant>,
}

impl Bar {
    fn new(on: bool) -> Bar {
        Bar {
            on,
            state: Mutex::new(BarState::default()),
        }
    }

    fn update(&self, p: Progress) {
        if !self.on {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let line = match p {
            Progress::Phase(name) => format!("checking {name}..."),
            Progress::Hashing { bytes, .. } => {
                s.total = bytes;
                format!(
                    "re-hashing blobs: 0.0 of {:.1} MiB",
                    bytes as f64 / 1048576.0
                )
            }
            Progress::Hashed(n) => {
                s.done += n;
                if s.last
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
                {
                    return;
                }
                let pct = if s.total == 0 {
                    100.0
                } else {
                    s.done as f64 * 100.0 / s.total as f64
                };
                format!(
                    "re-hashing blobs: {:.1} of {:.1} MiB ({pct:.0}%)",
                    s.done as f64 / 1048576.0,
                    s.total as f64 / 1048576.0
                )
            }
        };
        s.last = Some(Instant::now());
        s.drawn = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn clear(&self) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
