//! The SQLite metadata backend (embedded default).
//!
//! One writer thread owns the only writing connection and commits in groups: it takes every
//! write waiting in its queue, runs each in a savepoint inside one transaction, commits once
//! (one WAL fsync), and only then answers the callers. Concurrent pushes therefore share fsyncs
//! instead of queueing behind one each. Reads run on a small pool of WAL reader connections on
//! the blocking thread pool and never wait for the writer.
//!
//! [`SqliteStore::checkpoint`] moves everything from the WAL into the database file and
//! truncates the WAL (the server calls it at shutdown, so `metadata.db` alone holds the data);
//! [`SqliteStore::snapshot_into`] (in `backup`) writes a consistent copy for backups.

mod auth_store;
mod backup;
mod inventory;
mod schema;
mod store;

pub use backup::Snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use stowage_storage::{Op, OpObserver};
use tokio::sync::{mpsc, oneshot};

use crate::{MetadataError, Result};

/// Largest number of writes folded into one commit.
const MAX_BATCH: usize = 256;

type Completion = Box<dyn FnOnce(std::result::Result<(), MetadataError>) + Send>;
/// A queued write: run it on the connection (or, with `None`, just fail it), returning whether
/// its statements succeeded and how to answer its caller once the commit outcome is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;

/// What the writer thread is asked to do.
enum Msg {
    /// A write for the next group commit.
    Write(Job),
    /// Once every write queued before it is committed: checkpoint the WAL into the database
    /// file and truncate it.
    Checkpoint(oneshot::Sender<Result<()>>),
}

/// SQLite-backed [`crate::MetadataStore`].
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Msg>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// Bounds concurrent reads (and so reader connections and blocking threads): each reader
    /// connection keeps its own page cache, so an unbounded pool grows memory with load.
    read_permits: Arc<tokio::sync::Semaphore>,
}

/// Reader connections: enough to keep both cores busy while some reads wait on disk.
const MAX_READERS: usize = 4;

impl SqliteStore {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_observed(path, None)
    }

    /// Like [`SqliteStore::open`], reporting each commit to `observer` before callers are answered.
    pub fn open_observed(path: &Path, observer: Option<OpObserver>) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MetadataError::Backend(e.to_string()))?;
        }
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("stowage-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, observer))
            .map_err(|e| MetadataError::Backend(e.to_string()))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            read_permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        })
    }

    /// Run a write in the next group commit; resolves once it is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let out = match conn {
                Some(conn) => f(conn).map_err(MetadataError::from),
                None => Err(MetadataError::Backend("transaction could not start".into())),
            };
            let ok = out.is_ok();
            let done: Completion = Box::new(move |committed| {
                let r = match (out, committed) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(e),
                };
                let _ = tx.send(r);
            });
            (ok, done)
        });
        self.writer
            .send(Msg::Write(job))
            .map_err(|_| MetadataError::Backend("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| MetadataError::Backend("writer thread stopped".into()))?
    }

    /// Once every write queued so far is committed, copy the WAL into the database file and
    /// truncate the WAL (`PRAGMA wal_checkpoint(TRUNCATE)`), so the `.db` file alone holds
    /// everything. Call it at shutdown, after in-flight requests have finished: writes that
    /// come later land in the WAL again.
    pub async fn checkpoint(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(Msg::Checkpoint(tx))
            .map_err(|_| MetadataError::Backend("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| MetadataError::Backend("writer thread stopped".into()))?
    }

    /// Run a read on a pooled reader connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let permit = self
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MetadataError::Backend("reader pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = readers.lock().expect("reader pool").pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open(&path)?;
                    c.busy_timeout(std::time::Duration::from_secs(30))?;
                    c
                }
            };
            let out = f(&conn);
            readers.lock().expect("reader pool").push(conn);
            out.map_err(MetadataError::from)
        })
        .await
        .map_err(|e| MetadataError::Backend(e.to_string()))?
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    observer: Option<OpObserver>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.blocking_recv() {
                Some(m) => m,
                None => return,
            },
        };
        let first = match first {
            Msg::Write(job) => job,
            Msg::Checkpoint(done) => {
                let _ = done.send(checkpoint(&conn));
                continue;
            }
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(j)) => jobs.push(j),
                // Handled once this batch is committed: it must see these writes.
                Ok(m @ Msg::Checkpoint(_)) => {
                    next = Some(m);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_batch(&conn, jobs, observer.as_ref());
    }
}

/// Run `jobs` in one transaction, each in its own savepoint, and answer them.
fn commit_batch(conn: &Connection, jobs: Vec<Job>, observer: Option<&OpObserver>) {
    let mut completions = Vec::with_capacity(jobs.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "metadata: cannot begin transaction");
        let err = MetadataError::from(e);
        for job in jobs {
            job(None).1(Err(err.clone()));
        }
        return;
    }
    for job in jobs {
        // Each write in its own savepoint: a failing write is undone alone, the rest commit.
        if let Err(e) = conn.execute_batch("SAVEPOINT w") {
            job(None).1(Err(MetadataError::from(e)));
            continue;
        }
        let (ok, done) = job(Some(conn));
        if !ok {
            let _ = conn.execute_batch("ROLLBACK TO w");
        }
        let _ = conn.execute_batch("RELEASE w");
        completions.push(done);
    }
    let result = conn.execute_batch("COMMIT").map_err(MetadataError::from);
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    } else if let Some(o) = observer {
        o(Op::Commit {
            what: format!("{} writes", completions.len()),
        });
    }
    for c in completions {
        c(result.clone());
    }
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`: fails when a reader kept it from copying everything.
fn checkpoint(conn: &Connection) -> Result<()> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        return Err(MetadataError::Backend(
            "checkpoint incomplete: another connection kept reading the database".into(),
        ));
    }
    Ok(())
}
