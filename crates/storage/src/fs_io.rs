//! File I/O helpers of the filesystem backend, kept apart from its layout and durability rules:
//! a write path that copies as little as possible and starts writeback early, and a read path
//! that hands the kernel's copy straight to the response.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::ByteStream;

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
}

impl UploadWriter {
    pub fn new(file: File, created: bool) -> UploadWriter {
        UploadWriter {
            file,
            created,
            gather: Vec::new(),
            since_flush: 0,
            flusher: None,
        }
    }

    /// Whether the file was created for this append.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Append a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.len() >= SMALL_CHUNK {
            self.drain()?;
            self.file.write_all(chunk)?;
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
            self.file.write_all(&self.gather)?;
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

    /// Write what is gathered, stop the flusher, and return the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.drain()?;
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            handle
                .join()
                .map_err(|_| io::Error::other("flusher thread panicked"))??;
        }
        Ok(self.file)
    }
}

/// Stream `len` bytes of `file` (already positioned) from a blocking thread, one
/// `READ_CHUNK` buffer per message, reading straight into the buffer that is sent.
pub fn read_stream(mut file: File, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(READ_CHUNK);
            let mut buf = BytesMut::zeroed(n);
            let result = file.read_exact(&mut buf).map(|()| buf.freeze());
            let failed = result.is_err();
            if tx.blocking_send(result).is_err() || failed {
                return; // the client went away, or the read failed (reported)
            }
            left -= n as u64;
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
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
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
