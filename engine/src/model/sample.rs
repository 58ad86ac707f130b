//! Samples: one value of one series at one time.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{Labels, MetricName};

/// Unix time in milliseconds.
pub type Timestamp = i64;

/// The current wall-clock time as a [`Timestamp`].
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One value of one series: `(metric name, sorted labels, f64 value, unix ms)`.
///
/// NaN and ±Inf are valid values and are stored as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: MetricName,
    /// The label set (without the metric name).
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When it was measured.
    pub ts: Timestamp,
}

impl Sample {
    /// A sample; `name` must already be a valid metric name.
    pub fn new(name: MetricName, labels: Labels, value: f64, ts: Timestamp) -> Self {
        Self {
            name,
            labels,
            value,
            ts,
        }
    }
}

/// The newest sample of one series, as `series()` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// The metric name.
    pub name: MetricName,
    /// The series' labels.
    pub labels: Labels,
    /// The newest value.
    pub value: f64,
    /// When the newest value was measured.
    pub ts: Timestamp,
}

/// The samples of one series over a time range, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRange {
    /// The metric name.
    pub name: MetricName,
    /// The series' labels.
    pub labels: Labels,
    /// `(timestamp, value)` pairs in time order.
    pub samples: Vec<(Timestamp, f64)>,
}
