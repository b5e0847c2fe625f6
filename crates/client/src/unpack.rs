//! Unpacking image layers into a root filesystem, as a runtime sees it.
//!
//! Layers are applied in order: gzip, zstd or uncompressed tars, with whiteouts (`.wh.NAME`
//! removes NAME from lower layers) and opaque directories (`.wh..wh..opq` hides everything
//! lower layers put in that directory). Regular files, directories, symlinks, hard links,
//! devices and FIFOs are created with their permissions (setuid included), ownership when
//! running as root, extended attributes (`security.capability`...) and modification times
//! (directories' last, once nothing will change them). Each layer's uncompressed bytes are
//! hashed and must match the config's `diff_ids`. Errors name a layer by its digest.
//!
//! A layer may stop right after its last entry's bytes, without the padding to a 512-byte block
//! or the two zero blocks that end a tar (`umoci insert` writes such layers; umoci, podman and
//! containerd accept them): the missing padding is supplied here. An entry whose own bytes are
//! cut short is still an error.
//!
//! Paths are resolved as if the target directory were `/`: a symlink met on the way (even an
//! absolute one like `/var/run -> /run`) is followed inside the root, and `..` never climbs
//! above it. An entry whose own name, or a hard link whose target, climbs out of the root is
//! refused: such a tar is malicious, not merely unusual.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use stowage_oci::{Digest, Hasher};

/// Why unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("layer {layer}: refused entry {entry:?}: {why}")]
    Refused {
        /// The layer's digest.
        layer: String,
        entry: String,
        why: String,
    },
    #[error(
        "layer {layer}: uncompressed content hashes to {actual}, but the config's diff_id is {expected}"
    )]
    DiffId {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}: {message}")]
    Format { layer: String, message: String },
    /// The manifest or config does not describe layers that can be unpacked.
    #[error("{0}")]
    Image(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Tar blocks are this long; an entry's bytes are padded to a multiple of it.
const BLOCK: u64 = 512;

/// Ends a layer stream the way the tar reader expects when its writer stopped early: if the
/// stream ends after the last entry's bytes but inside their padding, the missing padding is
/// supplied as zeros, and then the stream simply ends (a missing end-of-archive marker reads
/// as the end). A stream that ends inside an entry's bytes ends there, so the tar reader fails.
/// Only the real bytes pass through the hashing reader below, so `diff_id`s are unaffected.
struct Tail<R> {
    inner: R,
    /// Bytes read from `inner` so far.
    pos: u64,
    /// Where the bytes of the last entry handed out end (set by the entry loop).
    data_end: Rc<Cell<u64>>,
    /// Zeros still to supply once `inner` has ended.
    pad: u64,
    ended: bool,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.ended {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
            self.ended = true;
            let end = self.data_end.get();
            let padded = end.div_ceil(BLOCK) * BLOCK;
            if self.pos >= end && self.pos < padded {
                self.pad = padded - self.pos;
            }
        }
        let n = (self.pad.min(buf.len() as u64)) as usize;
        buf[..n].fill(0);
        self.pad -= n as u64;
        Ok(n)
    }
}

/// zstd with any number of frames (zstd:chunked layers have many).
struct Zstd<R: BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(dec) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: another may follow.
            let mut source = self.frame.take().expect("frame").into_inner();
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(
                ruzstd::decoding::StreamingDecoder::new(source)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            );
        }
    }
}

/// The uncompressed stream of a layer, by media type, else by magic bytes.
fn decompress<'a>(
    media_type: &str,
    reader: impl Read + 'a,
    layer: &str,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let mut br = BufReader::with_capacity(1 << 20, reader);
    let head = br
        .fill_buf()
        .map_err(|e| UnpackError::Format {
            layer: layer.to_string(),
            message: e.to_string(),
        })?
        .to_vec();
    let gzip = media_type.ends_with("gzip") || head.starts_with(&[0x1f, 0x8b]);
    let zstd = media_type.ends_with("zstd") || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if gzip {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(br)))
    } else if zstd {
        let frame =
            ruzstd::decoding::StreamingDecoder::new(br).map_err(|e| UnpackError::Format {
                layer: layer.to_string(),
                message: format!("zstd: {e}"),
            })?;
        Ok(Box::new(Zstd { frame: Some(frame) }))
    } else {
        Ok(Box::new(br))
    }
}

/// Applies layers to a root directory.
pub struct Unpacker {
    root: PathBuf,
    chown: bool,
    /// Directories and their modification times, applied at the end.
    dir_times: Vec<(PathBuf, filetime::FileTime)>,
    /// Without root: directories' real modes, applied at the end (they stay writable until).
    dir_modes: Vec<(PathBuf, u32)>,
    /// Warnings (things skipped because we are not root, unsupported xattrs...).
    pub warnings: Vec<String>,
    /// Layers applied so far.
    count: usize,
    /// The layer being applied, as errors name it (its digest).
    layer: String,
    /// Paths this layer created (an opaque marker keeps them).
    this_layer: HashSet<PathBuf>,
}

/// The lexical components of an entry name, refusing any that climbs above the root.
fn lexical(name: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err("it climbs out of the root with '..'".into());
                }
            }
            Component::Normal(n) => out.push(n.to_os_string()),
        }
    }
    Ok(out)
}

impl Unpacker {
    /// Unpack into `root` (created if missing). Ownership is applied when running as root.
    pub fn new(root: &Path) -> Result<Unpacker, UnpackError> {
        std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
        let root = root.canonicalize().map_err(|e| io(root, e))?;
        Ok(Unpacker {
            root,
            chown: rustix::process::geteuid().is_root(),
            dir_times: Vec::new(),
            dir_modes: Vec::new(),
            warnings: Vec::new(),
            count: 0,
            layer: String::new(),
            this_layer: HashSet::new(),
        })
    }

    /// Resolve the parent components inside the root, following symlinks as if the root were
    /// `/` (creating missing directories); the last component is returned unresolved.
    fn resolve_parent(
        &self,
        comps: &[std::ffi::OsString],
        create: bool,
    ) -> Result<PathBuf, String> {
        let mut stack: Vec<std::ffi::OsString> = Vec::new();
        let mut pending: Vec<std::ffi::OsString> = comps.iter().rev().cloned().collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                stack.pop();
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let mut candidate = self.root.clone();
            candidate.extend(stack.iter());
            candidate.push(&c);
            match std::fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > 64 {
                        return Err("too many levels of symlinks".into());
                    }
                    let target = std::fs::read_link(&candidate).map_err(|e| e.to_string())?;
                    if target.is_absolute() {
                        stack.clear();
                    }
                    for t in target.components().rev() {
                        match t {
                            Component::Normal(n) => pending.push(n.to_os_string()),
                            Component::ParentDir => pending.push("..".into()),
                            _ => {}
                        }
                    }
                }
                Ok(m) if m.is_dir() => stack.push(c),
                Ok(_) => return Err(format!("{} is not a directory", candidate.display())),
                Err(_) if create => {
                    std::fs::create_dir(&candidate).map_err(|e| e.to_string())?;
                    stack.push(c);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut p = self.root.clone();
        p.extend(stack.iter());
        Ok(p)
    }

    /// Where an entry named `name` goes: (parent resolved inside the root, final name).
    fn place(&self, name: &Path) -> Result<(PathBuf, std::ffi::OsString), String> {
        let comps = lexical(name)?;
        let Some((last, parents)) = comps.split_last() else {
            return Err("it names the root itself".into());
        };
        Ok((self.resolve_parent(parents, true)?, last.clone()))
    }

    /// Apply one layer from its (compressed) bytes; `digest` (the layer blob's digest) names it
    /// in errors, `diff_id` is checked on the uncompressed stream.
    pub fn apply(
        &mut self,
        blob: impl Read,
        media_type: &str,
        digest: Option<&Digest>,
        diff_id: Option<&Digest>,
    ) -> Result<(), UnpackError> {
        self.count += 1;
        self.this_layer.clear();
        self.layer = digest.map_or_else(|| format!("#{}", self.count), Digest::to_string);
        let layer = self.layer.clone();
        let format = |message: String| UnpackError::Format {
            layer: layer.clone(),
            message,
        };
        let algorithm = diff_id.map_or(stowage_oci::Algorithm::Sha256, Digest::algorithm);
        let data_end = Rc::new(Cell::new(0));
        let mut tail = Tail {
            inner: Hashing {
                inner: decompress(media_type, blob, &layer)?,
                hasher: Hasher::new(algorithm),
            },
            pos: 0,
            data_end: data_end.clone(),
            pad: 0,
            ended: false,
        };
        {
            let mut archive = tar::Archive::new(&mut tail);
            let entries = archive.entries().map_err(|e| format(e.to_string()))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| format(format!("bad tar entry: {e}")))?;
                data_end.set(entry.raw_file_position() + entry.size());
                self.entry(&mut entry)?;
            }
        }
        // Trailing padding after the end-of-archive marker is part of the diff_id too.
        let mut hashing = tail.inner;
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| format(e.to_string()))?;
        let actual = hashing.hasher.finish();
        if let Some(expected) = diff_id
            && &actual != expected
        {
            return Err(UnpackError::DiffId {
                layer,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    fn refuse(&self, entry: &Path, why: impl Into<String>) -> UnpackError {
        UnpackError::Refused {
            layer: self.layer.clone(),
            entry: entry.display().to_string(),
            why: why.into(),
        }
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), UnpackError> {
        let name = e
            .path()
            .map_err(|err| self.refuse(Path::new("?"), err.to_string()))?
            .into_owned();
        let kind = e.header().entry_type();
        if lexical(&name).is_ok_and(|c| c.is_empty()) {
            // The root directory itself (`./`): only its metadata applies.
            if kind != tar::EntryType::Directory {
                return Err(self.refuse(&name, "only a directory may name the root"));
            }
            let header = e.header().clone();
            let root = self.root.clone();
            if self.chown {
                let (uid, gid) = (
                    header.uid().unwrap_or(0) as u32,
                    header.gid().unwrap_or(0) as u32,
                );
                std::os::unix::fs::lchown(&root, Some(uid), Some(gid))
                    .map_err(|err| io(&root, err))?;
            }
            let mode = header.mode().unwrap_or(0o755) & 0o7777;
            let now = if self.chown { mode } else { mode | 0o700 };
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(now))
                .map_err(|err| io(&root, err))?;
            if !self.chown {
                self.dir_modes.push((root.clone(), mode));
            }
            let mtime = filetime::FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0);
            self.dir_times.push((root, mtime));
            return Ok(());
        }
        let (parent, base) = self.place(&name).map_err(|why| self.refuse(&name, why))?;
        let base_str = base.to_string_lossy().to_string();
        // Whiteouts.
        if base_str == ".wh..wh..opq" {
            if let Ok(rd) = std::fs::read_dir(&parent) {
                for child in rd.flatten() {
                    let p = child.path();
                    if !self.this_layer.contains(&p) {
                        remove_any(&p).map_err(|err| io(&p, err))?;
                    }
                }
            }
            return Ok(());
        }
        if let Some(hidden) = base_str.strip_prefix(".wh.") {
            // `.wh.`, `.wh..` and `.wh...` would name the directory itself or its parent.
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(self.refuse(&name, "a whiteout must name an entry of its directory"));
            }
            let p = parent.join(hidden);
            if std::fs::symlink_metadata(&p).is_ok() {
                remove_any(&p).map_err(|err| io(&p, err))?;
            }
            return Ok(());
        }
        let path = parent.join(&base);
        let existing = std::fs::symlink_metadata(&path).ok();
        let is_dir = kind == tar::EntryType::Directory;
        match &existing {
            Some(m) if m.is_dir() && is_dir => {}
            Some(_) => remove_any(&path).map_err(|err| io(&path, err))?,
            None => {}
        }
        let header = e.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    std::fs::create_dir(&path).map_err(|err| io(&path, err))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut f = std::fs::File::create(&path).map_err(|err| io(&path, err))?;
                let want = e.size();
                let got = std::io::copy(e, &mut f).map_err(|err| io(&path, err))?;
                if got < want {
                    return Err(UnpackError::Format {
                        layer: self.layer.clone(),
                        message: format!(
                            "entry {:?} is truncated: the layer ends after {got} of its {want} bytes",
                            name.display().to_string()
                        ),
                    });
                }
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|err| self.refuse(&name, err.to_string()))?
                    .ok_or_else(|| self.refuse(&name, "symlink without a target"))?;
                std::os::unix::fs::symlink(&*target, &path).map_err(|err| io(&path, err))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|err| self.refuse(&name, err.to_string()))?
                    .ok_or_else(|| self.refuse(&name, "hard link without a target"))?
                    .into_owned();
                let (tp, tb) = self.place(&target).map_err(|why| {
                    self.refuse(
                        &name,
                        format!("hard link target {}: {why}", target.display()),
                    )
                })?;
                let src = tp.join(tb);
                std::fs::hard_link(&src, &path)
                    .map_err(|err| io(&path, format!("hard link to {}: {err}", src.display())))?;
                self.this_layer.insert(path);
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                use rustix::fs::{FileType, Mode};
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                if let Err(err) =
                    rustix::fs::mknodat(rustix::fs::CWD, &path, ft, Mode::from_raw_mode(mode), dev)
                {
                    self.warnings.push(format!(
                        "{}: cannot create the device node ({err}); run as root",
                        name.display()
                    ));
                    return Ok(());
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
            other => {
                self.warnings.push(format!(
                    "{}: skipped entry of type {other:?}",
                    name.display()
                ));
                return Ok(());
            }
        }
        if self.chown {
            let uid = header.uid().unwrap_or(0) as u32;
            let gid = header.gid().unwrap_or(0) as u32;
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(|err| io(&path, err))?;
        }
        if is_dir && !self.chown {
            // Without root a 0555 directory (as Fedora's /usr/bin) would refuse the files
            // later entries put in it: keep it writable until `finish`.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(|err| io(&path, err))?;
            self.dir_modes.push((path.clone(), mode));
        } else if kind != tar::EntryType::Symlink {
            // After chown, which clears setuid and setgid.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| io(&path, err))?;
        }
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.")
                    && let Err(err) = rustix::fs::lsetxattr(
                        &path,
                        attr,
                        ext.value_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    )
                {
                    self.warnings.push(format!(
                        "{}: cannot set xattr {attr}: {err}",
                        name.display()
                    ));
                }
            }
        }
        let mtime = filetime::FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0);
        if is_dir {
            self.dir_times.push((path.clone(), mtime));
        } else {
            filetime::set_symlink_file_times(&path, mtime, mtime).map_err(|err| io(&path, err))?;
        }
        self.this_layer.insert(path);
        Ok(())
    }

    /// Set directory modes and times (deepest first) once every layer is applied.
    pub fn finish(mut self) -> Result<Vec<String>, UnpackError> {
        self.dir_modes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode) in &self.dir_modes {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode))
                    .map_err(|err| io(p, err))?;
            }
        }
        self.dir_times
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, t) in &self.dir_times {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                filetime::set_symlink_file_times(p, *t, *t).map_err(|err| io(p, err))?;
            }
        }
        Ok(self.warnings)
    }
}

/// Remove a file, symlink or directory tree.
fn remove_any(p: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(p)?;
    if m.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

/// Whether a path's inode is shared (used by tests comparing hard links).
pub fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;

/// Unpack the image `manifest` (an image manifest, not an index) stored in `layout` into
/// `root`. Returns warnings (device nodes skipped when not root, unsupported xattrs).
pub fn unpack_from_layout(
    layout: &crate::layout::Layout,
    manifest: &[u8],
    root: &Path,
) -> Result<Vec<String>, UnpackError> {
    let bad = UnpackError::Image;
    let m: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| bad(e.to_string()))?;
    let config_digest: Digest = m["config"]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad("the manifest has no config".into()))?;
    let config: serde_json::Value = serde_json::from_slice(
        &layout
            .read_blob(&config_digest)
            .map_err(|e| bad(e.to_string()))?,
    )
    .map_err(|e| bad(format!("config: {e}")))?;
    let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let layers = m["layers"].as_array().cloned().unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(bad(format!(
            "the config lists {} diff_ids for {} layers",
            diff_ids.len(),
            layers.len()
        )));
    }
    let mut u = Unpacker::new(root)?;
    for (l, id) in layers.iter().zip(&diff_ids) {
        let d: Digest = l["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad("a layer has no digest".into()))?;
        let path = layout.blob_path(&d);
        let f = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        u.apply(
            f,
            l["mediaType"].as_str().unwrap_or_default(),
            Some(&d),
            Some(id),
        )?;
    }
    u.finish()
}
