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

    /// Adds the target labels to `samples`. A label the sample already has is
    /// kept: built-in collectors never set target labels (their config refuses
    /// the names), and a scrape decides clashes itself (`honor_labels`: it renames
    /// the target's label to `exported_<name>`, or keeps it on purpose).
    pub fn label(&self, samples: &mut [Sample]) {
        if self.target.is_empty() {
            return;
        }
        for s in samples {
            s.labels = self.target.merged(&s.labels);
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

/// Runs every collector entry on its own task until `shutdown` is cancelled.
///
/// Each entry runs on its own interval; a run that errors or exceeds the entry's
/// timeout is dropped and recorded as `warden_collector_up{collector,instance} 0`
/// plus a log line, and never delays the other entries.
pub fn spawn_all(
    specs: Vec<CollectorSpec>,
    ingest: &Ingest,
    telemetry: &crate::telemetry::Telemetry,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    for spec in specs {
        let ingest = ingest.clone();
        let telemetry = telemetry.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(run_one(spec, ingest, telemetry, shutdown));
    }
}

fn internal_sample(
    name: &str,
    labels: &Labels,
    value: f64,
    ts: crate::model::Timestamp,
) -> Option<Sample> {
    crate::model::MetricName::new(name)
        .ok()
        .map(|n| Sample::new(n, labels.clone(), value, ts))
}

async fn run_one(
    mut spec: CollectorSpec,
    ingest: Ingest,
    telemetry: crate::telemetry::Telemetry,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use crate::telemetry::{CollectorLabels, Loop};

    let mut target = spec.labels.clone();
    if target.set("instance", &spec.instance).is_err() {
        tracing::error!(instance = %spec.instance, "invalid instance label");
    }
    // Fresh for two intervals (plus the timeout, so a slow target does not flap).
    let fresh_ms = (2 * spec.interval + spec.timeout).as_millis() as i64;
    let pusher = Pusher::new(target.clone(), fresh_ms, ingest);
    let meta = Labels::new([
        ("collector", spec.kind),
        ("instance", spec.instance.as_str()),
    ])
    .unwrap_or_default();
    let key = CollectorLabels {
        collector: spec.kind.to_string(),
        instance: spec.instance.clone(),
    };
    let cx = crate::ports::CollectContext {
        now: crate::model::now_ms(),
        push: pusher.clone(),
        shutdown: shutdown.child_token(),
    };
    let mut cx = cx;
    let mut tick = tokio::time::interval(spec.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut was_up = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = std::time::Instant::now();
        cx.now = crate::model::now_ms();
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(spec.timeout, spec.collector.collect(&cx)) => r,
        };
        let elapsed = started.elapsed();
        telemetry
            .collector_duration
            .get_or_create(&key)
            .observe(elapsed.as_secs_f64());
        telemetry.beat(Loop::Scheduler);
        let now = crate::model::now_ms();
        let (mut samples, up) = match result {
            Ok(Ok(samples)) => {
                if !was_up {
                    tracing::info!(collector = spec.kind, instance = %spec.instance, "collector recovered");
                }
                (samples, true)
            }
            Ok(Err(e)) => {
                if was_up {
                    tracing::warn!(collector = spec.kind, instance = %spec.instance, error = %e, "collector failed");
                } else {
                    tracing::debug!(collector = spec.kind, instance = %spec.instance, error = %e, "collector still failing");
                }
                (Vec::new(), false)
            }
            Err(_) => {
                if was_up {
                    tracing::warn!(collector = spec.kind, instance = %spec.instance, timeout = ?spec.timeout, "collector timed out");
                }
                (Vec::new(), false)
            }
        };
        was_up = up;
        if !up {
            telemetry.collector_failures.get_or_create(&key).inc();
        }
        telemetry
            .collector_up
            .get_or_create(&key)
            .set(i64::from(up));
        pusher.label(&mut samples);
        // warden's own series carry `collector` and `instance` only, not the target's labels.
        samples.extend(internal_sample(
            "warden_collector_up",
            &meta,
            if up { 1.0 } else { 0.0 },
            now,
        ));
        samples.extend(internal_sample(
            "warden_collector_duration_seconds",
            &meta,
            elapsed.as_secs_f64(),
            now,
        ));
        if !pusher
            .ingest
            .send(crate::store::Batch { samples, fresh_ms })
            .await
        {
            break;
        }
    }
    cx.shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricName;
    use crate::ports::{BoxFuture, CollectContext, CollectError, Collector};
    use std::time::Duration;

    struct Fixed(f64);
    impl Collector for Fixed {
        fn kind(&self) -> &'static str {
            "fixed"
        }
        fn collect<'a>(
            &'a mut self,
            cx: &'a CollectContext,
        ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
            let v = self.0;
            Box::pin(async move {
                Ok(vec![Sample::new(
                    MetricName::new("x").unwrap(),
                    Labels::empty(),
                    v,
                    cx.now,
                )])
            })
        }
    }

    struct Hangs;
    impl Collector for Hangs {
        fn kind(&self) -> &'static str {
            "hangs"
        }
        fn collect<'a>(
            &'a mut self,
            _: &'a CollectContext,
        ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
            Box::pin(async {
                std::future::pending::<()>().await;
                Ok(vec![])
            })
        }
    }

    fn spec(kind: &'static str, c: Box<dyn Collector>, interval_ms: u64) -> CollectorSpec {
        CollectorSpec {
            kind,
            instance: kind.to_string(),
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms / 2),
            labels: Labels::new([("team", "db")]).unwrap(),
            collector: c,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_collector_does_not_delay_others() {
        let (ingest, mut rx) = Ingest::channel(64);
        let tracker = tokio_util::task::TaskTracker::new();
        let token = tokio_util::sync::CancellationToken::new();
        let telemetry = crate::telemetry::Telemetry::default();
        spawn_all(
            vec![
                spec("hangs", Box::new(Hangs), 10_000),
                spec("fixed", Box::new(Fixed(7.0)), 1_000),
            ],
            &ingest,
            &telemetry,
            &tracker,
            &token,
        );
        let mut fixed_runs = 0;
        let mut hang_down = false;
        while fixed_runs < 5 || !hang_down {
            let b = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .unwrap()
                .unwrap();
            for s in &b.samples {
                if s.name.as_str() == "x" {
                    assert_eq!(s.labels.get("instance"), Some("fixed"));
                    assert_eq!(s.labels.get("team"), Some("db"));
                    fixed_runs += 1;
                }
                if s.name.as_str() == "warden_collector_up"
                    && s.labels.get("collector") == Some("hangs")
                {
                    assert_eq!(s.value, 0.0);
                    hang_down = true;
                }
            }
        }
        token.cancel();
        tracker.close();
        tracker.wait().await;
    }
}
