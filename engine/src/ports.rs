//! The ports: the traits adapters implement and the engine calls.
//!
//! - [`SeriesQuery`]: what rules read (the store, or an in-memory set in tests).
//! - [`Collector`]: gathers samples from a target.
//! - [`Notifier`]: delivers a notification to a receiver.
//! - [`Action`]: runs a remediation.
//!
//! The engine never names an adapter type; the binary builds adapters from config
//! and hands them over as trait objects.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{
    Alert, AlertState, Labels, Sample, Selector, SeriesPoint, SeriesRange, Timestamp,
};
use crate::scheduler::Pusher;

/// A boxed, sendable future, so the port traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The store could not be read.
    #[error("store read failed: {0}")]
    Store(String),
    /// The query asked for too much.
    #[error("query too large: {0}")]
    TooLarge(String),
}

/// Read access to stored series, synchronous because rules run on a blocking thread.
pub trait SeriesQuery: Send + Sync {
    /// The newest sample at or before `at` of each series matching `sel`, leaving out
    /// stale series (newest sample older than the series' freshness window).
    fn latest(&self, sel: &Selector, at: Timestamp) -> Result<Vec<SeriesPoint>, QueryError>;

    /// Every sample in `[start, end]` of each series matching `sel`; series with no
    /// sample in the range are left out.
    fn range(
        &self,
        sel: &Selector,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<SeriesRange>, QueryError>;
}

/// Why a collection failed. The scheduler turns it into `warden_collector_up 0` and a
/// log line; it never stops the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The target could not be reached or answered wrongly.
    #[error("{0}")]
    Target(String),
    /// The collector itself could not work (permissions, missing OS support).
    #[error("collector failed: {0}")]
    Internal(String),
}

/// What a collector gets on every run.
pub struct CollectContext {
    /// The time to stamp samples with.
    pub now: Timestamp,
    /// Writes samples out of band (for example the moment a watched process exits);
    /// target labels and freshness are applied by the pusher.
    pub push: Pusher,
    /// Cancelled when this collector is stopped (shutdown or reload); tasks a
    /// collector spawns must end with it.
    pub shutdown: CancellationToken,
}

/// Gathers samples from one target. One instance per `[[collector.KIND]]` entry.
///
/// The scheduler adds the `instance` label and the entry's `labels` to every sample,
/// bounds each run by the entry's `timeout`, and runs entries independently.
pub trait Collector: Send {
    /// The kind, as in the config (`host`, `process`, `http`, …).
    fn kind(&self) -> &'static str;

    /// One collection run.
    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>>;
}

/// Why a delivery failed, and whether to try again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Try again later (network error, 429, 5xx), no sooner than `retry_after`.
    #[error("retryable: {reason}")]
    Retryable {
        /// What went wrong.
        reason: String,
        /// The receiver's `Retry-After`, if it gave one.
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (400, bad credentials, unknown channel).
    #[error("permanent: {reason}")]
    Permanent {
        /// What went wrong.
        reason: String,
    },
}

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyReason {
    /// The first notification about these alerts.
    FirstNotification,
    /// New alerts joined the group.
    NewAlertsInGroup,
    /// Some alerts resolved.
    Resolved,
    /// The repeat interval passed.
    RepeatInterval,
    /// Unacknowledged for too long; the next tier is told.
    Escalation,
    /// An operator acknowledged.
    Acknowledged,
}

/// One alert as a notifier sees it.
#[derive(Debug, Clone)]
pub struct NotifiedAlert {
    /// The alert (labels, annotations, value, fingerprint, since).
    pub alert: Alert,
    /// Its state at the time of the notification (`Resolved` for resolves).
    pub status: AlertState,
    /// When it resolved, for resolved alerts.
    pub ended_at: Option<Timestamp>,
}

/// A message to one receiver about a group of alerts.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// Why it is sent.
    pub reason: NotifyReason,
    /// The group's key (its `group_by` labels).
    pub group_labels: Labels,
    /// The alerts.
    pub alerts: Vec<NotifiedAlert>,
}

/// Delivers notifications. Adapters build the request, send it and classify the
/// answer; retries and backoff live in the engine.
pub trait Notifier: Send + Sync {
    /// The receiver's name from the config.
    fn name(&self) -> &str;

    /// Sends one notification.
    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The action ran and failed.
    #[error("action failed: {0}")]
    Failed(String),
    /// The action was refused before running (unsafe argument, missing config).
    #[error("action refused: {0}")]
    Refused(String),
}

/// A request to run a remediation for an alert.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    /// The rule that asked.
    pub rule: String,
    /// The alert's labels.
    pub labels: Labels,
    /// The alert's value.
    pub value: f64,
}

/// What an action did.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// The exit status of a command, or the HTTP status of a call.
    pub exit_status: Option<i32>,
    /// Captured output, bounded.
    pub output: String,
}

/// Runs one remediation. Guardrails (cooldown, budget, concurrency, approval) live
/// in the engine, not in actions.
pub trait Action: Send + Sync {
    /// The action's name from the config.
    fn name(&self) -> &str;

    /// Runs the action for `req`.
    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>>;
}
