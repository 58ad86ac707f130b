//! The ports: the traits adapters implement and the engine calls.
//!
//! - [`SeriesQuery`]: what rules read (the store, or an in-memory set in tests).
//! - [`Collector`]: gathers samples from a target.
//! - [`Notifier`]: delivers a notification to a receiver.
//! - [`Action`]: runs a remediation; [`Leadership`] says whether this instance may.
//!
//! The engine never names an adapter type; the binary builds adapters from config
//! and hands them over as trait objects.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

/// Why a notification is sent. Stored on every outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// The alert started flapping; further changes are held until it settles.
    Flapping,
    /// A test sent by `warden notify test`.
    Test,
}

impl NotifyReason {
    /// The snake_case name used in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyReason::FirstNotification => "first_notification",
            NotifyReason::NewAlertsInGroup => "new_alerts_in_group",
            NotifyReason::Resolved => "resolved",
            NotifyReason::RepeatInterval => "repeat_interval",
            NotifyReason::Escalation => "escalation",
            NotifyReason::Acknowledged => "acknowledged",
            NotifyReason::Flapping => "flapping",
            NotifyReason::Test => "test",
        }
    }
}

impl std::str::FromStr for NotifyReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("invalid notification reason '{s}'"))
    }
}

/// Who acknowledged an alert, and until when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Acknowledgement {
    /// Who.
    pub by: String,
    /// Why, or what is being done.
    pub comment: String,
    /// When (unix ms).
    pub at: Timestamp,
    /// When the acknowledgement lapses (unix ms), if it does before the alert resolves.
    pub expires_at: Option<Timestamp>,
}

/// One alert as a notifier sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NotifiedAlert {
    /// The alert (labels, annotations, value, fingerprint, since).
    pub alert: Alert,
    /// Its state at the time of the notification (`Resolved` for resolves).
    pub status: AlertState,
    /// When it resolved, for resolved alerts.
    pub ended_at: Option<Timestamp>,
    /// True when this receiver hears of this alert firing for the first time.
    #[serde(default)]
    pub new: bool,
    /// The acknowledgement, if an operator acknowledged the alert.
    #[serde(default)]
    pub acknowledged: Option<Acknowledgement>,
}

impl NotifiedAlert {
    /// A firing or resolved alert with no acknowledgement, new to the receiver when
    /// firing.
    pub fn of(alert: Alert, status: AlertState, ended_at: Option<Timestamp>) -> Self {
        Self {
            new: status == AlertState::Firing,
            alert,
            status,
            ended_at,
            acknowledged: None,
        }
    }
}

/// A message to one receiver about a group of alerts: one outbox row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    /// The outbox row's id: the idempotency key of this delivery (0 when not from
    /// the outbox, e.g. a test send).
    pub id: i64,
    /// The receiver's name.
    pub receiver: String,
    /// Why it is sent.
    pub reason: NotifyReason,
    /// The group's identity (route and `group_by` label values).
    pub group_key: String,
    /// The group's `group_by` labels.
    pub group_labels: Labels,
    /// The alerts: firing ones first, then resolved ones.
    pub alerts: Vec<NotifiedAlert>,
    /// When the notification was decided (unix ms).
    pub created_at: Timestamp,
}

impl Notification {
    /// `resolved` when every alert has resolved, else `firing`.
    pub fn status(&self) -> AlertState {
        if self.alerts.iter().all(|a| a.status == AlertState::Resolved) {
            AlertState::Resolved
        } else {
            AlertState::Firing
        }
    }

    /// The alerts with `status`.
    pub fn with_status(&self, status: AlertState) -> impl Iterator<Item = &NotifiedAlert> {
        self.alerts.iter().filter(move |a| a.status == status)
    }

    /// Labels every alert shares.
    pub fn common_labels(&self) -> Labels {
        let mut it = self.alerts.iter();
        let Some(first) = it.next() else {
            return Labels::empty();
        };
        let mut common = first.alert.labels.clone();
        for a in it {
            let drop: Vec<String> = common
                .iter()
                .filter(|(k, v)| a.alert.labels.get(k) != Some(*v))
                .map(|(k, _)| k.to_string())
                .collect();
            for k in drop {
                common.remove(&k);
            }
        }
        common
    }
}

/// Durable notes a notifier keeps between deliveries, per receiver: for example the
/// Slack channel and `ts` of the message posted for an alert, so a resolve updates
/// that message instead of posting a new one. Writes are durable when `put` returns.
pub trait DeliveryMemo: Send + Sync {
    /// The value stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>>;
    /// Stores `value` under `key`, replacing any previous value.
    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// A memo that keeps nothing (test sends, previews).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemo;

impl DeliveryMemo for NoMemo {
    fn get<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
    fn put<'a>(&'a self, _key: &'a str, _value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Delivers notifications. Adapters build the request, send it and classify the
/// answer; retries, backoff, timeouts and ordering live in the engine.
pub trait Notifier: Send + Sync {
    /// The receiver's name from the config.
    fn name(&self) -> &str;

    /// The kind, as in the config (`pagerduty`, `slack`, …).
    fn kind(&self) -> &'static str {
        "notifier"
    }

    /// Whether this receiver wants resolved notifications. Default true.
    fn send_resolved(&self) -> bool {
        true
    }

    /// Sends one notification. `memo` keeps notes across deliveries of this receiver.
    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// What `notify` would send, rendered for a human (`warden notify preview`).
    fn preview(&self, n: &Notification) -> String {
        format!("{n:#?}")
    }

    /// Records a remediation attempt with this receiver (a PagerDuty change event,
    /// a Slack note). `Ok(false)`: this kind has no such record (the default).
    fn action_note<'a>(
        &'a self,
        _note: &'a ActionNote,
    ) -> BoxFuture<'a, Result<bool, NotifyError>> {
        Box::pin(async { Ok(false) })
    }
}

/// One remediation attempt as receivers hear of it: when it waits for approval
/// and when it ends.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionNote {
    /// The attempt's id in the audit log.
    pub id: i64,
    /// The action's name.
    pub action: String,
    /// Its kind.
    pub kind: String,
    /// The attempt's state (`pending_approval`, `succeeded`, `failed`, …).
    pub state: String,
    /// The rule whose alert asked (`""` for a manual run).
    pub rule: String,
    /// The alert's labels (routes match on these).
    pub labels: Labels,
    /// One line for people: `restart-web on instance=web-2: succeeded (exit 0)`.
    pub summary: String,
    /// Why it was refused, failed, denied or expired.
    pub reason: Option<String>,
    /// Who approved, denied or asked.
    pub by: Option<String>,
    /// When (unix ms).
    pub at: Timestamp,
}

/// Where the runner sends [`ActionNote`]s; the binary routes them to receivers
/// like the alert that caused the attempt. Must not block.
pub trait ActionNotes: Send + Sync {
    /// Tells the receivers routed for `note.labels`.
    fn tell(&self, note: ActionNote);
}

/// Why an action could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The action was refused before anything ran (an unsafe label value, a
    /// missing template variable, nothing to do). Nothing changed on the target.
    #[error("{0}")]
    Refused(String),
    /// The action could not be started (the command does not exist, the URL does
    /// not resolve, an internal error). Counts as a failed attempt.
    #[error("{0}")]
    Failed(String),
}

/// A request to run one remediation.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    /// The audit log id of this attempt.
    pub id: i64,
    /// The rule whose alert asked, or `""` for a manual run.
    pub rule: String,
    /// The alert's labels (for a manual run: the labels the operator gave).
    pub labels: Labels,
    /// The alert's value (`None` for a manual run).
    pub value: Option<f64>,
    /// Extra template variables (`{{replicas}}` when a scale action runs another
    /// action), on top of the labels, `value` and `rule`.
    pub vars: BTreeMap<String, String>,
    /// Render and report what would run, but run nothing.
    pub dry_run: bool,
}

impl ActionRequest {
    /// The value of template variable `name`: `vars` first, then `value`, `rule`,
    /// then the labels.
    pub fn var(&self, name: &str) -> Option<String> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        match name {
            "value" => self.value.map(crate::template::format_value),
            "rule" if !self.rule.is_empty() => Some(self.rule.clone()),
            _ => self.labels.get(name).map(str::to_string),
        }
    }
}

/// What an action gets besides the request.
#[derive(Clone)]
pub struct ActionContext {
    /// The store, for actions that read metrics (the scale action's current count,
    /// a restart's named-collector health check).
    pub query: Arc<dyn SeriesQuery>,
    /// Cancelled when warden shuts down: a running action should stop (and kill
    /// what it started) promptly.
    pub cancel: CancellationToken,
}

impl fmt::Debug for ActionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionContext").finish_non_exhaustive()
    }
}

/// What an action did (or, for a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ActionOutcome {
    /// Whether it worked: exit status 0, an expected HTTP status, a healthy service.
    pub ok: bool,
    /// The exit status of a command, or the HTTP status of a call.
    pub status: Option<i32>,
    /// What ran (or would run): the argument vector, the URL and body, the desired
    /// replica count. Stored in the audit log as JSON.
    pub args: serde_json::Value,
    /// Captured output or response body, bounded, plus what the action noted
    /// (health check results, why it failed).
    pub output: String,
}

/// Runs one remediation. Guardrails (cooldown, budget, concurrency, approval,
/// verification, the kill switch) live in the engine, not in actions; an action
/// renders its request, runs it once within its own time limit and reports.
pub trait Action: Send + Sync {
    /// The action's name from the config.
    fn name(&self) -> &str;

    /// The kind, as in the config (`exec`, `restart`, `http`, `scale`).
    fn kind(&self) -> &'static str;

    /// Runs the action for `req` (or, with `req.dry_run`, reports what it would run).
    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>>;
}

/// Decides whether this instance may act. One node is always the leader; an HA
/// mode can elect one instance (an etcd lease) and hand out a fencing token.
pub trait Leadership: Send + Sync {
    /// True when this instance may run remediations now.
    fn is_leader(&self) -> bool;
    /// The fencing token of the current term, if leadership is elected.
    fn fencing_token(&self) -> Option<u64> {
        None
    }
}

/// The leadership of a single node: always the leader.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

impl Leadership for SingleNode {
    fn is_leader(&self) -> bool {
        true
    }
}
