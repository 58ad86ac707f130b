//! The store: one SQLite file (WAL) holding samples, alert state and history.
//!
//! # Layout
//! - `head`: the recent window of every series in memory ([`SeriesSet`]).
//! - `chunk`: the compressed on-disk encoding of a run of samples.
//! - `schema`: versioned migrations.
//! - `writer`: the one thread that writes; everything else reads.

mod head;

pub use head::{DEFAULT_FRESH_MS, SeriesId, SeriesSet};

use tokio::sync::mpsc;

use crate::model::Sample;

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
