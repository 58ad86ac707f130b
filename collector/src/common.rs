//! What every collector kind shares: the common config keys (`name`, `interval`,
//! `timeout`, `labels`) and their checks, a buffer that stamps samples, and the
//! helpers for running blocking system calls off the runtime.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, MetricName, Sample, Timestamp};
use warden_engine::ports::CollectError;

/// The default `interval` of `host` and `process` entries.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest `interval`. CPU figures are differences between two readings,
/// and sysinfo does not take a new reading within 200 ms of the previous one.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The longest default `timeout`; shorter intervals get their interval.
pub(crate) const MAX_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `labels` of a collector entry: label names validated, `instance` refused.
///
/// Checked while the file is parsed, so a bad name is reported at its position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetLabels(pub Labels);

impl<'de> Deserialize<'de> for TargetLabels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let labels = Labels::deserialize(d)?;
        if labels.get("instance").is_some() {
            return Err(serde::de::Error::custom(
                "label 'instance' comes from the entry's 'name': set 'name' instead",
            ));
        }
        Ok(Self(labels))
    }
}

/// The common keys of one entry as parsed, before checking.
pub(crate) struct CommonKeys<'a> {
    /// The kind, for messages (`host`, `process`).
    pub kind: &'static str,
    /// The span of the whole `[[collector.KIND]]` entry.
    pub entry: Range<usize>,
    /// The entry's `name`: given, or a default with no position of its own.
    pub name: NameKey<'a>,
    pub interval: Option<&'a Spanned<HumanDuration>>,
    pub timeout: Option<&'a Spanned<HumanDuration>>,
    pub labels: Option<&'a Spanned<TargetLabels>>,
    /// Label names the kind sets on its own samples; `labels` may not use them.
    pub reserved: &'static [&'static str],
}

/// Where an entry's `name` comes from.
pub(crate) enum NameKey<'a> {
    Given(&'a Spanned<String>),
    Default(String),
}

/// The common keys, checked.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub kind: &'static str,
    /// The `instance` label.
    pub instance: String,
    /// Where the name is in the file (the entry when it was defaulted).
    pub name_span: Range<usize>,
    pub interval: Duration,
    pub timeout: Duration,
    pub labels: Labels,
}

impl CommonKeys<'_> {
    /// Checks the keys, adding what is wrong to `problems`.
    pub(crate) fn check(self, problems: &mut Vec<Problem>) -> Option<Common> {
        let before = problems.len();
        let (instance, name_span) = match self.name {
            NameKey::Given(n) => (n.get_ref().clone(), n.span()),
            NameKey::Default(n) => (n, self.entry.clone()),
        };
        if instance.trim().is_empty() {
            problems.push(Problem::at(
                name_span.clone(),
                format!(
                    "{} 'name' is empty: give the entry a name such as 'web-1'",
                    self.kind
                ),
            ));
        }

        let interval = self
            .interval
            .map_or(DEFAULT_INTERVAL, |i| i.get_ref().get());
        if interval < MIN_INTERVAL {
            let span = self.interval.map_or(self.entry.clone(), Spanned::span);
            problems.push(Problem::at(
                span,
                format!(
                    "'interval' '{}' is too short: the {} collector needs at least '{}'",
                    HumanDuration(interval),
                    self.kind,
                    HumanDuration(MIN_INTERVAL)
                ),
            ));
        }

        let timeout = match self.timeout {
            None => interval.min(MAX_DEFAULT_TIMEOUT),
            Some(t) => {
                let timeout = t.get_ref().get();
                if timeout.is_zero() {
                    problems.push(Problem::at(
                        t.span(),
                        "'timeout' must be longer than '0s': write e.g. '2s'",
                    ));
                } else if timeout > interval {
                    problems.push(Problem::at(
                        t.span(),
                        format!(
                            "'timeout' '{}' is longer than 'interval' '{}': make it at most the interval",
                            HumanDuration(timeout),
                            HumanDuration(interval)
                        ),
                    ));
                }
                timeout
            }
        };

        let labels = match self.labels {
            None => Labels::empty(),
            Some(l) => {
                for name in self.reserved {
                    if l.get_ref().0.get(name).is_some() {
                        problems.push(Problem::at(
                            l.span(),
                            format!(
                                "label '{name}' is set by the {} collector on its own samples: use another label name",
                                self.kind
                            ),
                        ));
                    }
                }
                l.get_ref().0.clone()
            }
        };

        (problems.len() == before).then_some(Common {
            kind: self.kind,
            instance,
            name_span,
            interval,
            timeout,
            labels,
        })
    }
}

/// Collects the samples of one run, all stamped with the same time.
pub(crate) struct SampleBuf {
    ts: Timestamp,
    samples: Vec<Sample>,
}

impl SampleBuf {
    pub(crate) fn new(ts: Timestamp) -> Self {
        Self {
            ts,
            samples: Vec::new(),
        }
    }

    /// Adds one sample. `name` is a literal of this crate, so an invalid one is a
    /// bug: it is logged and skipped rather than taking the daemon down.
    pub(crate) fn add(&mut self, name: &'static str, labels: Labels, value: f64) {
        match MetricName::new(name) {
            Ok(name) => self.samples.push(Sample::new(name, labels, value, self.ts)),
            Err(e) => tracing::error!(error = %e, "collector bug: invalid metric name"),
        }
    }

    pub(crate) fn into_samples(self) -> Vec<Sample> {
        self.samples
    }
}

/// The message for a `key` whose regex `pattern` does not compile. The regex
/// crate's error spans several lines (pattern, caret, reason); the last says why.
pub(crate) fn bad_regex(key: &str, pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let why = text.lines().last().unwrap_or("").trim();
    let why = why.strip_prefix("error: ").unwrap_or(why);
    format!("'{key}' '{pattern}' is not a valid regex ({why})")
}

/// The `instance` label of the entry a run belongs to, for log lines.
pub(crate) fn instance_of(cx: &warden_engine::ports::CollectContext) -> String {
    cx.push
        .target_labels()
        .get("instance")
        .unwrap_or_default()
        .to_string()
}

/// A label set of one label. `name` is a literal of this crate.
pub(crate) fn one_label(name: &'static str, value: &str) -> Labels {
    let mut labels = Labels::empty();
    if let Err(e) = labels.set(name, value) {
        tracing::error!(error = %e, "collector bug: invalid label name");
    }
    labels
}

/// Runs blocking system calls (sysinfo, `/proc`) on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, CollectError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, CollectError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CollectError::Internal(format!("collector thread failed: {e}")))?
}

/// Locks a collector's state. After a panic while it was held (a bug in a system
/// library), the state is dropped and rebuilt on the next run instead of poisoning
/// every later run.
pub(crate) fn lock_state<T>(m: &Mutex<Option<T>>) -> MutexGuard<'_, Option<T>> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let mut g = poisoned.into_inner();
            *g = None;
            m.clear_poison();
            g
        }
    }
}

/// `part / whole` in percent, 0 when `whole` is 0, within `0..=100`.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)
}
