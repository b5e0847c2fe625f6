//! The filesystem backend's I/O fault hook: the one seam through which tests make a write come
//! up short or torn, or an fsync, hard link or rename fail, at exactly the call they choose.
//!
//! Every durability-relevant system call of the backend goes through [`Hooks`]. Without the
//! `testing` feature `Hooks` is an empty struct and each check is an inlined `Ok(())`, so the
//! binary pays nothing; with it, a test installs an [`IoHook`]
//! (`FsBlobStore::with_io_hook`) that is asked before each call what should go wrong.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// A point in the backend where a fault can be injected.
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoPoint {
    /// A `write` of upload bytes.
    Write,
    /// An `fsync`/`fdatasync` of an upload or blob file.
    FileSync,
    /// An `fsync` of a directory (after a new entry appeared in it).
    DirSync,
    /// The hard link that publishes a blob at its content address.
    Link,
    /// A rename (replacing an upload copied off a published blob).
    Rename,
}

#[cfg(any(test, feature = "testing"))]
impl IoPoint {
    /// A stable name (`fs.write`, `fs.fsync`, `fs.dirsync`, `fs.link`, `fs.rename`).
    pub fn name(self) -> &'static str {
        match self {
            IoPoint::Write => "fs.write",
            IoPoint::FileSync => "fs.fsync",
            IoPoint::DirSync => "fs.dirsync",
            IoPoint::Link => "fs.link",
            IoPoint::Rename => "fs.rename",
        }
    }
}

/// What goes wrong at an [`IoPoint`].
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFault {
    /// The call fails with this errno and has no effect.
    Fail(i32),
    /// A write: the first `keep` bytes reach the file, then the call fails with `errno` (a
    /// short write ending in `ENOSPC`, or a torn one ending in `EIO`). Other points: `Fail`.
    Partial { keep: usize, errno: i32 },
    /// The call takes effect, then reports failure with this errno (an fsync whose error
    /// comes late, a link on a network file system whose reply was lost).
    AfterEffect(i32),
}

/// Decides, before each hooked call, whether it fails and how.
#[cfg(any(test, feature = "testing"))]
pub trait IoHook: Send + Sync {
    /// The fault for this call at `point` on `path`, or None to let it through. May block (to
    /// add latency): it runs on the blocking thread doing the I/O.
    fn before(&self, point: IoPoint, path: &Path) -> Option<IoFault>;
}

/// The hook of one store (nothing at all without the `testing` feature).
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    #[cfg(any(test, feature = "testing"))]
    pub(crate) hook: Option<std::sync::Arc<dyn IoHook>>,
}

impl Hooks {
    #[cfg(any(test, feature = "testing"))]
    fn ask(&self, point: IoPoint, path: &Path) -> Option<IoFault> {
        self.hook.as_ref().and_then(|h| h.before(point, path))
    }

    /// Run `op` (a sync, link or rename at `point`) as the hook says.
    #[inline(always)]
    #[cfg_attr(not(any(test, feature = "testing")), allow(unused_variables))]
    fn call(
        &self,
        point: IoPoint,
        path: &Path,
        op: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        #[cfg(any(test, feature = "testing"))]
        match self.ask(point, path) {
            None => {}
            Some(IoFault::Fail(errno) | IoFault::Partial { errno, .. }) => {
                return Err(io::Error::from_raw_os_error(errno));
            }
            Some(IoFault::AfterEffect(errno)) => {
                op()?;
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        op()
    }

    /// `fsync`/`fdatasync` a file (`data_only`: `fdatasync`).
    #[inline(always)]
    pub(crate) fn sync_file(&self, file: &File, path: &Path, data_only: bool) -> io::Result<()> {
        self.call(IoPoint::FileSync, path, || {
            if data_only {
                file.sync_data()
            } else {
                file.sync_all()
            }
        })
    }

    /// `fsync` a directory.
    #[inline(always)]
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.call(IoPoint::DirSync, dir, || File::open(dir)?.sync_all())
    }

    /// Hard-link `src` to `dst`.
    #[inline(always)]
    pub(crate) fn hard_link(&self, src: &Path, dst: &Path) -> io::Result<()> {
        self.call(IoPoint::Link, dst, || std::fs::hard_link(src, dst))
    }

    /// Rename `src` to `dst`.
    #[inline(always)]
    pub(crate) fn rename(&self, src: &Path, dst: &Path) -> io::Result<()> {
        self.call(IoPoint::Rename, dst, || std::fs::rename(src, dst))
    }

    /// `write_all` of upload bytes.
    #[inline(always)]
    #[cfg_attr(not(any(test, feature = "testing")), allow(unused_variables))]
    pub(crate) fn write_all(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<()> {
        #[cfg(any(test, feature = "testing"))]
        match self.ask(IoPoint::Write, path) {
            None => {}
            Some(IoFault::Fail(errno)) => return Err(io::Error::from_raw_os_error(errno)),
            Some(IoFault::Partial { keep, errno }) => {
                file.write_all(&buf[..keep.min(buf.len())])?;
                return Err(io::Error::from_raw_os_error(errno));
            }
            Some(IoFault::AfterEffect(errno)) => {
                file.write_all(buf)?;
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        file.write_all(buf)
    }
}
