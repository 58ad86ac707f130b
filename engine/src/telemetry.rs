//! warden's metrics about itself, served on `/metrics` in Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::model::now_ms;
use crate::store::Store;

/// Labels of per-collector metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectorLabels {
    /// The collector kind.
    pub collector: String,
    /// The entry's name.
    pub instance: String,
}

/// Labels of per-rule metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule's name.
    pub rule: String,
}

/// Labels of per-action metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The action's name.
    pub action: String,
    /// The attempt state entered.
    pub state: String,
}

/// Labels of per-state metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `pending` or `firing`.
    pub state: String,
}

/// Labels of per-receiver metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// The receiver's name.
    pub receiver: String,
}

/// The subsystems whose progress the systemd watchdog checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// The collector scheduler.
    Scheduler,
    /// The rule evaluator.
    Rules,
}

/// Every metric warden keeps about itself. Clones share the values.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Collector runs that failed or timed out.
    pub collector_failures: Family<CollectorLabels, Counter>,
    /// Duration of collector runs.
    pub collector_duration: Family<CollectorLabels, Histogram>,
    /// 1 when the collector's last run succeeded.
    pub collector_up: Family<CollectorLabels, Gauge>,
    /// Rule evaluations.
    pub rule_evaluations: Counter,
    /// Rule evaluations that failed.
    pub rule_errors: Family<RuleLabels, Counter>,
    /// Duration of one rule's evaluation.
    pub rule_duration: Histogram,
    /// Rule files that failed to compile and run on their previous version.
    pub rule_files_invalid: Gauge,
    /// Active alerts by state.
    pub alerts: Family<StateLabels, Gauge>,
    /// Delivery attempts that failed.
    pub notification_failures: Counter,
    /// Notifications a receiver accepted.
    pub notifications_sent: Family<ReceiverLabels, Counter>,
    /// Notifications given up (refused for good or dead-lettered).
    pub notifications_undelivered: Family<ReceiverLabels, Counter>,
    /// Outbox rows waiting for delivery.
    pub outbox_pending: Family<ReceiverLabels, Gauge>,
    /// Remediation attempts entering each state, per action.
    pub remediation_attempts: Family<ActionLabels, Counter>,
    beats: Arc<[AtomicI64; 2]>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            collector_failures: Family::default(),
            collector_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_5, 4.0, 9))
            }),
            collector_up: Family::default(),
            rule_evaluations: Counter::default(),
            rule_errors: Family::default(),
            rule_duration: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            rule_files_invalid: Gauge::default(),
            alerts: Family::default(),
            notification_failures: Counter::default(),
            notifications_sent: Family::default(),
            notifications_undelivered: Family::default(),
            outbox_pending: Family::default(),
            remediation_attempts: Family::default(),
            beats: Arc::new([AtomicI64::new(now_ms()), AtomicI64::new(now_ms())]),
        }
    }
}

impl Telemetry {
    /// Records that `which` made progress now.
    pub fn beat(&self, which: Loop) {
        self.beats[which as usize].store(now_ms(), Ordering::Relaxed);
    }

    /// The last progress mark of `which` (unix ms).
    pub fn last_beat(&self, which: Loop) -> i64 {
        self.beats[which as usize].load(Ordering::Relaxed)
    }

    /// The oldest progress mark of all loops (unix ms).
    pub fn oldest_beat(&self) -> i64 {
        self.beats
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// The registry to encode, including the store's own counters.
    pub fn registry(&self, store: &Store) -> Registry {
        let mut r = Registry::with_prefix("warden");
        let stats = store.stats().clone();
        r.register(
            "samples_ingested",
            "Samples written to the store",
            stats.samples_ingested,
        );
        r.register(
            "store_write_errors",
            "Sample writes the store failed to make durable",
            stats.write_errors,
        );
        r.register(
            "store_write_duration_seconds",
            "Duration of sample write transactions",
            stats.write_seconds,
        );
        let (series, samples) = store.head_size();
        let g: Gauge = Gauge::default();
        g.set(series as i64);
        r.register("head_series", "Series in the in-memory head", g);
        let g: Gauge = Gauge::default();
        g.set(samples as i64);
        r.register("head_samples", "Samples in the in-memory head", g);
        r.register(
            "collector_failures",
            "Collector runs that failed or timed out",
            self.collector_failures.clone(),
        );
        r.register(
            "collector_duration_seconds",
            "Duration of collector runs",
            self.collector_duration.clone(),
        );
        r.register(
            "collector_up",
            "1 when the collector's last run succeeded",
            self.collector_up.clone(),
        );
        r.register(
            "rule_evaluations",
            "Rule evaluations",
            self.rule_evaluations.clone(),
        );
        r.register(
            "rule_errors",
            "Rule evaluations that failed",
            self.rule_errors.clone(),
        );
        r.register(
            "rule_evaluation_duration_seconds",
            "Duration of one rule evaluation",
            self.rule_duration.clone(),
        );
        r.register(
            "rule_files_invalid",
            "Rule files that failed to compile",
            self.rule_files_invalid.clone(),
        );
        r.register("alerts", "Active alerts by state", self.alerts.clone());
        r.register(
            "notification_failures",
            "Notification delivery attempts that failed",
            self.notification_failures.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications a receiver accepted",
            self.notifications_sent.clone(),
        );
        r.register(
            "notifications_given_up",
            "Notifications refused for good or dead-lettered",
            self.notifications_undelivered.clone(),
        );
        r.register(
            "outbox_pending",
            "Notifications waiting for delivery",
            self.outbox_pending.clone(),
        );
        r.register(
            "remediation_attempts",
            "Remediation attempts entering each state, per action",
            self.remediation_attempts.clone(),
        );
        r
    }

    /// `/metrics` text in the Prometheus 0.0.4 format.
    pub fn encode(&self, store: &Store) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry(store)).is_err() {
            out.clear();
        }
        openmetrics_to_004(&out)
    }
}

/// prometheus-client writes OpenMetrics; scrapers asking for 0.0.4 expect counter
/// families named with their `_total` suffix, no `# UNIT` and no `# EOF`.
fn openmetrics_to_004(om: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in om.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            counters.push(name);
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let fixed = ["# TYPE ", "# HELP "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(fixed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}
