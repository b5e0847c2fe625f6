//! File I/O helpers of the filesystem backend, kept apart from its layout and durability rules:
//! a write path that copies as little as possible and starts writeback early, and a read path
//! that hands the kernel's copy straight to the response.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::fs_hook::Hooks;
use crate::{ByteStream, StorageError};

/// Chunks smaller than this are gathered before a `write` (fewer syscalls); larger ones are
/// written straight from the request's buffer (no copy).
const SMALL_CHUNK: usize = 64 * 1024;
/// Size of the gathering buffer (allocated only when small chunks arrive).
const GATHER: usize = 256 * 1024;
/// Start writeback of an upload's dirty pages every this many bytes, in the background, so the
/// fsync that acknowledges it finds little left to do and the disk works while data arrives.
const FLUSH_EVERY: u64 = 64 * 1024 * 1024;
/// Bytes per chunk when serving a blob.
pub const READ_CHUNK: usize = 1024 * 1024;

/// Writes an upload file: gathers small chunks, passes large ones through, and flushes
/// progressively from a helper thread.
pub struct UploadWriter {
    file: File,
    /// The file was created by this append (its directory entry needs an fsync too).
    created: bool,
    gather: Vec<u8>,
    since_flush: u64,
    flusher: Option<(SyncSender<()>, JoinHandle<io::Result<()>>)>,
    hooks: Hooks,
    path: PathBuf,
}

impl UploadWriter {
    pub fn new(file: File, created: bool) -> UploadWriter {
        UploadWriter {
            file,
            created,
            gather: Vec::new(),
            since_flush: 0,
            flusher: None,
            hooks: Hooks::default(),
            path: PathBuf::new(),
        }
    }

    /// Route every write through the store's I/O hooks (`path` names the file for them).
    pub(crate) fn hooked(mut self, hooks: Hooks, path: PathBuf) -> UploadWriter {
        self.hooks = hooks;
        self.path = path;
        self
    }

    /// Whether the file was created for this append.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Append a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.len() >= SMALL_CHUNK {
            self.drain()?;
            self.hooks.write_all(&mut self.file, &self.path, chunk)?;
        } else {
            self.gather.extend_from_slice(chunk);
            if self.gather.len() >= GATHER {
                self.drain()?;
            }
        }
        self.since_flush += chunk.len() as u64;
        if self.since_flush >= FLUSH_EVERY {
            self.since_flush = 0;
            self.kick_flush()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.gather.is_empty() {
            self.hooks
                .write_all(&mut self.file, &self.path, &self.gather)?;
            self.gather.clear();
        }
        Ok(())
    }

    /// Ask the flusher thread (started on first use) for a background `fdatasync`; skipped
    /// when one is still running.
    fn kick_flush(&mut self) -> io::Result<()> {
        if self.flusher.is_none() {
            let clone = self.file.try_clone()?;
            let (tx, rx) = sync_channel::<()>(1);
            let handle = std::thread::Builder::new()
                .name("stowage-flush".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        clone.sync_data()?;
                    }
                    Ok(())
                })?;
            self.flusher = Some((tx, handle));
        }
        if let Some((tx, _)) = &self.flusher {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    return Err(io::Error::other("flusher thread stopped"));
                }
            }
        }
        Ok(())
    }

    /// Undo a failed append: drop everything past `len` (so a full disk gets its space back
    /// and the upload stays as acknowledged).
    pub fn abandon(mut self, len: u64) {
        self.gather.clear();
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            let _ = handle.join();
        }
        let _ = self.file.set_len(len);
    }

    /// Write what is gathered, stop the flusher, and return the file. When the last write
    /// fails (a full disk, an I/O error), the file is cut back to `undo_to` first, as
    /// [`UploadWriter::abandon`] does.
    pub fn finish(mut self, undo_to: u64) -> io::Result<File> {
        if let Err(e) = self.drain() {
            self.abandon(undo_to);
            return Err(e);
        }
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            handle
                .join()
                .map_err(|_| io::Error::other("flusher thread panicked"))??;
        }
        Ok(self.file)
    }
}

/// Read buffers a blob stream keeps for reuse: enough for the chunks queued towards the
/// response ([`QUEUED`]) plus the one being read and a few still inside the HTTP layer.
const POOL: usize = QUEUED + 4;
/// Chunks read ahead of the response.
const QUEUED: usize = 4;

/// A read buffer lent to the response. When the response drops the chunk (its bytes are in
/// the socket), the buffer goes back to the reading thread, which reads the next chunk into
/// it: a download allocates a handful of buffers, never clears them, and its memory stays
/// mapped (no page faults per chunk).
struct Lent {
    buf: Vec<u8>,
    len: usize,
    home: SyncSender<Vec<u8>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The reader may be done (or the pool full): the buffer is then simply freed.
        let _ = self.home.try_send(std::mem::take(&mut self.buf));
    }
}

/// Open the blob file at `path` and stream `len` bytes from `start`, all on one blocking
/// thread: `pread` of [`READ_CHUNK`] at a time into reused buffers handed to the response
/// without a copy, at most [`QUEUED`] chunks ahead of it. Fails early when the file is missing
/// or shorter than `start + len`; a file that shrinks or fails while streaming ends the stream
/// with an error item (the response is cut short, the process carries on).
pub async fn read_stream(path: PathBuf, start: u64, len: u64) -> Result<ByteStream, StorageError> {
    let (opened_tx, opened_rx) = oneshot::channel::<Result<(), StorageError>>();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUED);
    tokio::task::spawn_blocking(move || {
        let file = match open_range(&path, start, len) {
            Ok(file) => file,
            Err(e) => {
                let _ = opened_tx.send(Err(e));
                return;
            }
        };
        if opened_tx.send(Ok(())).is_ok() {
            stream_range(&file, &path, start, len, &tx);
        }
    });
    opened_rx
        .await
        .map_err(|_| StorageError::Io(io::Error::other("blob reader stopped")))??;
    Ok(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}

/// Open a blob file and check it holds `start + len` bytes.
fn open_range(path: &Path, start: u64, len: u64) -> Result<File, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let file_len = file.metadata()?.len();
    if start
        .checked_add(len)
        .is_none_or(|wanted| file_len < wanted)
    {
        return Err(StorageError::Io(io::Error::other(format!(
            "blob file {} is shorter than recorded",
            path.display()
        ))));
    }
    Ok(file)
}

/// The reading loop of [`read_stream`].
fn stream_range(
    file: &File,
    path: &Path,
    start: u64,
    len: u64,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) {
    let (home, back) = sync_channel::<Vec<u8>>(POOL);
    let buf_size = (len as usize).min(READ_CHUNK);
    let end = start + len;
    let mut off = start;
    while off < end {
        let n = ((end - off) as usize).min(READ_CHUNK);
        let mut buf = back.try_recv().unwrap_or_else(|_| vec![0u8; buf_size]);
        let item = match file.read_exact_at(&mut buf[..n], off) {
            Ok(()) => Ok(Bytes::from_owner(Lent {
                buf,
                len: n,
                home: home.clone(),
            })),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "blob file {} ended at offset {off} or soon after, before {end}",
                    path.display()
                ),
            )),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return; // the client went away, or the read failed (reported)
        }
        off += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_keeps_order_across_small_and_large_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = UploadWriter::new(File::create(&path).unwrap(), true);
        let mut want = Vec::new();
        for i in 0..200u32 {
            let len = if i % 7 == 0 {
                100_000
            } else {
                (i as usize * 37) % 5000
            };
            let chunk: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            w.write(&chunk).unwrap();
            want.extend_from_slice(&chunk);
        }
        w.finish(0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
