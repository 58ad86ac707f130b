//! The scheduler: runs every collector on its own interval, bounded by its timeout.

use crate::model::{Labels, Sample};
use crate::store::{Batch, Ingest};

/// Writes samples for one collector entry, adding its target labels (`instance`
/// and the entry's `labels`) and its freshness window.
#[derive(Debug, Clone)]
pub struct Pusher {
    target: Labels,
    fresh_ms: i64,
    ingest: Ingest,
}

impl Pusher {
    /// A pusher that labels samples with `target` and marks them fresh for `fresh_ms`.
    pub fn new(target: Labels, fresh_ms: i64, ingest: Ingest) -> Self {
        Self {
            target,
            fresh_ms,
            ingest,
        }
    }

    /// The target labels applied to every sample.
    pub fn target_labels(&self) -> &Labels {
        &self.target
    }

    /// Adds the target labels to `samples` (target labels win on conflict).
    pub fn label(&self, samples: &mut [Sample]) {
        if self.target.is_empty() {
            return;
        }
        for s in samples {
            s.labels = s.labels.merged(&self.target);
        }
    }

    /// Labels and queues samples without waiting; false if the store queue is full.
    pub fn push(&self, mut samples: Vec<Sample>) -> bool {
        self.label(&mut samples);
        self.ingest.try_send(Batch {
            samples,
            fresh_ms: self.fresh_ms,
        })
    }

    /// Labels and queues samples, waiting for room.
    pub async fn send(&self, mut samples: Vec<Sample>) -> bool {
        self.label(&mut samples);
        self.ingest
            .send(Batch {
                samples,
                fresh_ms: self.fresh_ms,
            })
            .await
    }
}

/// One configured collector entry, ready to run.
pub struct CollectorSpec {
    /// The kind (`host`, `process`, …), the `collector` label of `warden_collector_up`.
    pub kind: &'static str,
    /// The entry's `name` (the `instance` label).
    pub instance: String,
    /// How often it runs.
    pub interval: std::time::Duration,
    /// How long one run may take before it counts as failed.
    pub timeout: std::time::Duration,
    /// Labels added to every sample (besides `instance`).
    pub labels: Labels,
    /// The collector.
    pub collector: Box<dyn crate::ports::Collector>,
}

impl std::fmt::Debug for CollectorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorSpec")
            .field("kind", &self.kind)
            .field("instance", &self.instance)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}
