//! The model: the values every part of warden passes around.
//!
//! Strings live only at the edges (config, wire, Rhai); inside, a metric name is a
//! [`MetricName`], a label set is [`Labels`], an alert's identity is a
//! [`Fingerprint`].

mod alert;
mod labels;
mod sample;
mod selector;
mod severity;

pub use alert::{Alert, AlertState, Annotations, Fingerprint};
pub use labels::{Labels, LabelsError, MetricName};
pub use sample::{Sample, SeriesPoint, SeriesRange, Timestamp, now_ms};
pub use selector::{MatchOp, Matcher, Selector, SelectorError};
pub use severity::Severity;
