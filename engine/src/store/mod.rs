//! The store: one SQLite file (WAL) holding samples, alert state and history.
//!
//! # Layout
//! - `head`: the recent window of every series in memory ([`SeriesSet`]); rules and
//!   short queries read only this.
//! - `chunk`: the compressed encoding of a run of samples of one series.
//! - `schema`: versioned migrations.
//! - `writer`: the one thread that writes. Each ingested batch is appended to the
//!   head, announced to subscribers (so rules re-evaluate at once) and written
//!   durably as one `batches` row; compaction later folds batch rows into per-series
//!   chunks. This is Prometheus' head + WAL shape on SQLite: one row per batch keeps
//!   ingest far above what a row per sample allows.
//!
//! Reads use their own connection (WAL lets them run beside the writer).

pub mod chunk;
mod head;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use head::{DEFAULT_FRESH_MS, SeriesId, SeriesSet};

use crate::model::{
    Labels, MetricName, Sample, Selector, SeriesPoint, SeriesRange, Timestamp, now_ms,
};
use crate::ports::{QueryError, SeriesQuery};

/// Samples written together: one collection run, one push or one scrape.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The samples, labels complete.
    pub samples: Vec<Sample>,
    /// How long each of these series stays fresh after its newest sample (ms).
    pub fresh_ms: i64,
}

/// The write side of the store as producers see it: a bounded channel.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Batch>,
}

impl Ingest {
    /// A detached ingest handle and the receiving end (for tests of producers).
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues a batch, waiting while the queue is full. False when the store is gone.
    pub async fn send(&self, batch: Batch) -> bool {
        self.tx.send(batch).await.is_ok()
    }

    /// Queues a batch without waiting. False when the queue is full or the store gone.
    pub fn try_send(&self, batch: Batch) -> bool {
        self.tx.try_send(batch).is_ok()
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be opened or is not a warden database.
    #[error("cannot open store '{path}': {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// SQLite refused an operation.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread has stopped.
    #[error("store writer has stopped")]
    Closed,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The SQLite file; `:memory:` is not supported (readers need the file).
    pub path: PathBuf,
    /// How long samples are kept.
    pub retention: Duration,
    /// How much recent data stays in memory.
    pub head: Duration,
    /// How often batch rows are folded into chunks.
    pub compact_every: Duration,
}

impl StoreOptions {
    /// Options with the defaults for everything but the path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            retention: Duration::from_secs(15 * 86_400),
            head: Duration::from_secs(3_600),
            compact_every: Duration::from_secs(300),
        }
    }
}

/// Counters the store keeps about itself, for `/metrics` (clones share the values).
#[derive(Debug, Clone)]
pub struct StoreStats {
    /// Samples ingested.
    pub samples_ingested: Counter,
    /// Write transactions that failed (their samples stay in memory only).
    pub write_errors: Counter,
    /// Duration of each sample write transaction, seconds.
    pub write_seconds: Histogram,
}

impl Default for StoreStats {
    fn default() -> Self {
        Self {
            samples_ingested: Counter::default(),
            write_errors: Counter::default(),
            write_seconds: Histogram::new(exponential_buckets(0.000_1, 4.0, 9)),
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Command {
    Exec(Job),
    Flush(oneshot::Sender<()>),
    Compact(oneshot::Sender<()>),
}

pub(crate) struct Shared {
    pub(crate) head: RwLock<SeriesSet>,
    pub(crate) head_ms: i64,
    pub(crate) retention_ms: i64,
    pub(crate) stats: StoreStats,
    pub(crate) updates: broadcast::Sender<Arc<Vec<MetricName>>>,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    // std Mutex: queries hold it only for the synchronous SQLite call, never across
    // an await.
    reader: Arc<Mutex<Connection>>,
    ingest: Ingest,
    commands: mpsc::Sender<Command>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let err = |reason: String| StoreError::Open {
        path: path.to_path_buf(),
        reason,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| err(e.to_string()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| err(e.to_string()))?;
    // Reading the schema proves the file is a database and not something else.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| err(format!("{e} (is it a SQLite database?)")))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store, migrates it, loads the head and starts
    /// the writer thread. Must be called inside a tokio runtime.
    pub fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        let path = opts.path.clone();
        let err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        let mut conn = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(|e| err(e.to_string()))?;
        schema::migrate(&mut conn).map_err(err)?;
        let reader = open_conn(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;

        let head_ms = opts.head.as_millis() as i64;
        let mut head = SeriesSet::new();
        let next_id = writer::load_head(&conn, &mut head, now_ms() - head_ms)
            .map_err(|e| err(e.to_string()))?;
        let (updates, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            head: RwLock::new(head),
            head_ms,
            retention_ms: opts.retention.as_millis() as i64,
            stats: StoreStats::default(),
            updates,
        });
        let (ingest, batches) = Ingest::channel(4096);
        let (commands, command_rx) = mpsc::channel(256);
        let handle = writer::spawn(
            conn,
            shared.clone(),
            batches,
            command_rx,
            next_id,
            opts.compact_every,
        )
        .map_err(|e| err(e.to_string()))?;
        Ok(Store {
            shared,
            reader: Arc::new(Mutex::new(reader)),
            ingest,
            commands,
            writer: Arc::new(Mutex::new(Some(handle))),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where producers send samples.
    pub fn ingest(&self) -> Ingest {
        self.ingest.clone()
    }

    /// Announces the metric names of every batch as soon as it is in the head.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<MetricName>>> {
        self.shared.updates.subscribe()
    }

    /// The store's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Number of series and samples in memory.
    pub fn head_size(&self) -> (usize, usize) {
        match self.shared.head.read() {
            Ok(h) => (h.series_count(), h.sample_count()),
            Err(_) => (0, 0),
        }
    }

    /// Runs `f` on the writer's connection inside one transaction and returns its
    /// result. All writes other than samples go through here.
    pub async fn write<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let res = conn.transaction().and_then(|t| {
                let r = f(&t)?;
                t.commit()?;
                Ok(r)
            });
            let _ = tx.send(res);
        });
        self.commands
            .send(Command::Exec(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::from)
    }

    /// Runs `f` on the read connection (synchronously; call from blocking contexts
    /// or for short queries).
    pub fn read<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R>,
    {
        let conn = self.reader.lock().map_err(|_| StoreError::Closed)?;
        Ok(f(&conn)?)
    }

    /// Waits until every batch queued before this call is written.
    pub async fn flush(&self) -> Result<(), StoreError> {
        // Batches and commands travel on two channels; the writer drains batches
        // before it answers a flush, and the ingest queue is drained first here.
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Folds every batch row into chunks now.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Compact(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Flushes, compacts and stops the writer thread. Other handles stop working.
    pub async fn close(self) -> Result<(), StoreError> {
        self.flush().await?;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        let Store {
            commands,
            ingest,
            reader,
            ..
        } = self;
        drop(commands);
        drop(ingest);
        drop(reader);
        if let Some(h) = handle {
            // The writer ends (after a last compaction) once every handle is gone;
            // a clone still held elsewhere must not hang shutdown, so wait briefly.
            let join = tokio::task::spawn_blocking(move || h.join());
            if tokio::time::timeout(std::time::Duration::from_secs(10), join)
                .await
                .is_err()
            {
                tracing::warn!(
                    "store writer still in use at close; its batches are durable, compaction resumes at the next start"
                );
            }
        }
        Ok(())
    }
}

/// Merges two time-ordered runs; on equal timestamps `newer` wins.
fn merge(older: Vec<(Timestamp, f64)>, newer: Vec<(Timestamp, f64)>) -> Vec<(Timestamp, f64)> {
    if older.is_empty() {
        return newer;
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() || j < newer.len() {
        match (older.get(i), newer.get(j)) {
            (Some(a), Some(b)) if a.0 < b.0 => {
                out.push(*a);
                i += 1;
            }
            (Some(a), Some(b)) if a.0 == b.0 => {
                out.push(*b);
                i += 1;
                j += 1;
            }
            (_, Some(b)) => {
                out.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                out.push(*a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// A series a range query selected, with what the head holds of it.
struct Selected {
    id: SeriesId,
    name: MetricName,
    labels: Labels,
    in_head: Vec<(Timestamp, f64)>,
    /// Part of the range is older than the head holds.
    on_disk: bool,
}

impl SeriesQuery for Store {
    fn latest(&self, sel: &Selector, at: Timestamp) -> Result<Vec<SeriesPoint>, QueryError> {
        let h = self
            .shared
            .head
            .read()
            .map_err(|_| QueryError::Store("head lock poisoned".into()))?;
        h.latest(sel, at)
    }

    fn range(
        &self,
        sel: &Selector,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<SeriesRange>, QueryError> {
        let head_from = now_ms() - self.shared.head_ms;
        let selected: Vec<Selected> = {
            let h = self
                .shared
                .head
                .read()
                .map_err(|_| QueryError::Store("head lock poisoned".into()))?;
            h.select(sel)
                .into_iter()
                .filter_map(|id| {
                    let (n, l) = h.describe(id)?;
                    let on_disk = start < head_from && h.oldest(id).is_none_or(|o| o > start);
                    Some(Selected {
                        id,
                        name: n.clone(),
                        labels: l.clone(),
                        in_head: h.samples_in(id, start, end),
                        on_disk,
                    })
                })
                .collect()
        };
        let disk_ids: Vec<SeriesId> = selected
            .iter()
            .filter(|s| s.on_disk)
            .map(|s| s.id)
            .collect();
        let mut disk = if disk_ids.is_empty() {
            HashMap::new()
        } else {
            self.read(|c| writer::read_chunks_of(c, &disk_ids, start, end))
                .map_err(|e| QueryError::Store(e.to_string()))?
        };
        let mut out = Vec::with_capacity(selected.len());
        for s in selected {
            let samples = match disk.remove(&s.id) {
                Some(older) => merge(older, s.in_head),
                None => s.in_head,
            };
            if !samples.is_empty() {
                out.push(SeriesRange {
                    name: s.name,
                    labels: s.labels,
                    samples,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
