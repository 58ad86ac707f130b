//! The remediation runner: one task owns every case (action × target), drives it
//! through approval, queueing, running and verification, and writes the audit log.
//!
//! - `handle`: [`Remediation`], the handle everyone else holds.
//! - `drive`: timers, guardrail checks, starting runs, their ends.
//! - `operator`: approve, deny, manual runs, the kill switch.
//! - `record`: the audit log and notes to receivers.
//! - `flags`: the series behind warden's own remediation alerts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::audit::{self, AttemptState, AuditEntry, NewAttempt, Update};
use super::config::{GroupSize, Guardrails, Limit, Switches};
use super::guard::{CaseKey, Hold, Ledger, limit_of};
use crate::api::ApiEvent;
use crate::model::{Fingerprint, Labels, MetricName, Sample, Selector, Timestamp, now_ms};
use crate::ports::{
    Action, ActionContext, ActionError, ActionNote, ActionNotes, ActionOutcome, ActionRequest,
    Leadership, SeriesQuery,
};
use crate::store::{Batch, Store, StoreError};
use crate::telemetry::{ActionLabels, Telemetry};

/// The runner's clock (unix ms); tests pass their own.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// How often timers (cooldowns, approval expiry, verification) are checked.
const TICK: Duration = Duration::from_millis(200);
/// How often warden's own remediation series are written again.
const REFRESH: Duration = Duration::from_secs(2);
/// Most bytes of output kept in the audit log per attempt, whatever an action
/// captures.
const MAX_OUTPUT: usize = 64 * 1024;

/// The actions and switches from the config.
#[derive(Clone, Default)]
pub struct Setup {
    /// Each action with its guardrails.
    pub actions: Vec<(Arc<dyn Action>, Guardrails)>,
    /// `[remediation]` (and `--dry-run`).
    pub switches: Switches,
    /// Where attempts are told (PagerDuty change events, Slack notes).
    pub notes: Option<Arc<dyn ActionNotes>>,
}

/// One alert as the runner hears of it.
#[derive(Debug, Clone)]
pub struct AlertSignal {
    /// The rule.
    pub rule: String,
    /// The alert's labels.
    pub labels: Labels,
    /// The alert's fingerprint.
    pub fingerprint: Fingerprint,
    /// The alert's value.
    pub value: f64,
    /// True while firing; false once resolved (or gone before firing).
    pub firing: bool,
    /// The rule's `remediate` list.
    pub remediate: Vec<String>,
}

/// Why a request to the runner failed; the API maps these to 404, 409, 400, 503.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemediationError {
    /// No such action or attempt.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state (not pending, refused by a guardrail);
    /// the attempt's row when one was written.
    #[error("{0}")]
    Conflict(String, Option<Box<AuditEntry>>),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The runner or the store is not available.
    #[error("{0}")]
    Unavailable(String),
}

/// One action as `/api/v1/actions/status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionInfo {
    /// The name.
    pub name: String,
    /// The kind.
    pub kind: String,
    /// Cooldown, e.g. `"1m"`.
    pub cooldown: String,
    /// Attempts per window.
    pub max_attempts: u32,
    /// The budget's window.
    pub window: String,
    /// Labels naming a target.
    pub target_by: Vec<String>,
    /// Labels forming a concurrency group.
    pub group_by: Vec<String>,
    /// Approval needed.
    pub approval: bool,
    /// Verification window, `null` when off.
    pub verify_within: Option<String>,
    /// Always a dry run.
    pub dry_run: bool,
}

/// The switches and actions as they are now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// `[remediation].enabled`.
    pub enabled: bool,
    /// The kill switch.
    pub paused: bool,
    /// Who set the kill switch last.
    pub paused_by: Option<String>,
    /// Their comment.
    pub comment: Option<String>,
    /// When it was set last (unix ms).
    pub since: Option<Timestamp>,
    /// Every action is a dry run (`--dry-run` or `[remediation].dry_run`).
    pub dry_run: bool,
    /// Attempts running now.
    pub running: u32,
    /// The configured actions.
    pub actions: Vec<ActionInfo>,
}

type Reply<T> = oneshot::Sender<Result<T, RemediationError>>;

enum Msg {
    Alerts {
        signals: Vec<AlertSignal>,
        full: bool,
    },
    Decide {
        id: i64,
        approve: bool,
        by: String,
        comment: Option<String>,
        reply: Reply<AuditEntry>,
    },
    Run {
        action: String,
        labels: Labels,
        by: String,
        comment: Option<String>,
        reply: Reply<AuditEntry>,
    },
    Switch {
        paused: bool,
        by: String,
        comment: Option<String>,
        reply: Reply<Status>,
    },
    Reconfigure(Setup),
}

/// What a spawned run reports.
struct Finished {
    id: i64,
    result: Result<ActionOutcome, ActionError>,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Nothing in progress.
    Idle,
    /// Waiting for approval until `expires`.
    Approval { id: i64, expires: Timestamp },
    /// Allowed, waiting for a slot.
    Queued { id: i64 },
    /// Running, holding a slot of `group`.
    Running { id: i64, group: Labels },
    /// Ran; the alert must resolve by `until`.
    Verifying { id: i64, until: Timestamp },
    /// Denied or expired: nothing more until the alerts resolve.
    Closed,
}

struct Case {
    key: CaseKey,
    rule: String,
    labels: Labels,
    fingerprint: Option<Fingerprint>,
    value: Option<f64>,
    /// Alerts that want this action on this target now.
    firing: BTreeSet<Fingerprint>,
    phase: Phase,
    /// The kind of the last refusal audited in this episode, so a held case is
    /// audited once, not at every tick.
    refusal: Option<&'static str>,
    /// Manual run details of the attempt in progress.
    manual: Option<(String, Option<String>)>,
    exhausted: bool,
    failed: bool,
}

impl Case {
    fn new(key: CaseKey) -> Self {
        Self {
            key,
            rule: String::new(),
            labels: Labels::empty(),
            fingerprint: None,
            value: None,
            firing: BTreeSet::new(),
            phase: Phase::Idle,
            refusal: None,
            manual: None,
            exhausted: false,
            failed: false,
        }
    }
}

struct Slot {
    action: Arc<dyn Action>,
    guard: Guardrails,
}

struct Runner {
    actions: BTreeMap<String, Slot>,
    switches: Switches,
    paused: bool,
    paused_by: Option<String>,
    paused_comment: Option<String>,
    paused_at: Option<Timestamp>,
    ledger: Ledger,
    cases: BTreeMap<CaseKey, Case>,
    store: Store,
    query: Arc<dyn SeriesQuery>,
    events: broadcast::Sender<ApiEvent>,
    leader: Arc<dyn Leadership>,
    clock: Clock,
    telemetry: Telemetry,
    status: watch::Sender<Status>,
    names: Arc<std::sync::RwLock<Vec<String>>>,
    finished_tx: mpsc::Sender<Finished>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Flags last written: (metric, labels) → value.
    flags: HashMap<(&'static str, Labels), f64>,
    synced: bool,
    notes: Option<Arc<dyn ActionNotes>>,
}

/// Truncates `s` to at most `max` bytes on a character boundary, marking the cut.
fn bound(mut s: String, max: usize) -> String {
    if s.len() > max {
        let cut = s.floor_char_boundary(max);
        s.truncate(cut);
        s.push_str("\n[output truncated]");
    }
    s
}

fn info(name: &str, slot: &Slot) -> ActionInfo {
    let g = &slot.guard;
    ActionInfo {
        name: name.to_string(),
        kind: slot.action.kind().to_string(),
        cooldown: crate::duration::format(g.cooldown),
        max_attempts: g.max_attempts,
        window: crate::duration::format(g.window),
        target_by: g.target_by.clone(),
        group_by: g.group_by.clone(),
        approval: g.approval.is_some(),
        verify_within: g.verify_within.map(crate::duration::format),
        dry_run: g.dry_run,
    }
}

fn state_counter(telemetry: &Telemetry, action: &str, state: AttemptState) {
    telemetry
        .remediation_attempts
        .get_or_create(&ActionLabels {
            action: action.to_string(),
            state: state.as_str().to_string(),
        })
        .inc();
}

impl Runner {
    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    fn longest_window(&self) -> Duration {
        self.actions
            .values()
            .map(|s| s.guard.window.max(s.guard.cooldown))
            .max()
            .unwrap_or(super::config::DEFAULT_WINDOW)
    }

    fn set_actions(&mut self, actions: Vec<(Arc<dyn Action>, Guardrails)>) {
        self.actions = actions
            .into_iter()
            .map(|(action, guard)| (action.name().to_string(), Slot { action, guard }))
            .collect();
        if let Ok(mut n) = self.names.write() {
            *n = self.actions.keys().cloned().collect();
        }
        self.publish();
    }

    fn publish(&self) {
        let status = Status {
            enabled: self.switches.enabled,
            paused: self.paused,
            paused_by: self.paused_by.clone(),
            comment: self.paused_comment.clone(),
            since: self.paused_at,
            dry_run: self.switches.dry_run,
            running: self.ledger.running_total(),
            actions: self.actions.iter().map(|(n, s)| info(n, s)).collect(),
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        mut finished_rx: mpsc::Receiver<Finished>,
        recent: Vec<AuditEntry>,
    ) {
        self.restore(recent).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval(REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => self.handle(m).await,
                    None => break,
                },
                Some(f) = finished_rx.recv() => self.finished(f).await,
                _ = tick.tick() => {}
                _ = refresh.tick() => {
                    self.write_flags(true).await;
                    let keep = self.longest_window();
                    let now = self.now();
                    self.ledger.prune(now, keep);
                    continue;
                }
            }
            self.step().await;
            self.write_flags(false).await;
            self.publish();
        }
        // Runs still going get the cancel signal with everyone else; record what
        // ends within the grace period.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while self.ledger.running_total() > 0 {
            match tokio::time::timeout_at(deadline, finished_rx.recv()).await {
                Ok(Some(f)) => self.finished(f).await,
                _ => break,
            }
        }
    }

    /// Rebuilds the ledger from the audit log; attempts interrupted by a stop are
    /// marked failed, pending approvals wait again.
    async fn restore(&mut self, recent: Vec<AuditEntry>) {
        let now = self.now();
        for e in recent {
            let key = CaseKey {
                action: e.action.clone(),
                target: e.target.clone(),
            };
            match e.state {
                AttemptState::Running | AttemptState::Queued => {
                    if let Some(started) = e.started_at {
                        self.ledger.record(&key, started, now);
                    }
                    self.write_update(
                        e.id,
                        Update {
                            state: Some(AttemptState::Failed),
                            reason: Some(
                                "interrupted: warden stopped before the attempt ended".into(),
                            ),
                            ended_at: Some(now),
                            ..Update::default()
                        },
                    )
                    .await;
                }
                AttemptState::PendingApproval => {
                    let case = self
                        .cases
                        .entry(key.clone())
                        .or_insert_with(|| Case::new(key));
                    case.rule = e.rule.clone();
                    case.labels = e.labels.clone();
                    case.fingerprint = e.fingerprint.as_deref().and_then(|f| f.parse().ok());
                    case.phase = Phase::Approval {
                        id: e.id,
                        expires: e.expires_at.unwrap_or(now),
                    };
                }
                AttemptState::Succeeded | AttemptState::Failed | AttemptState::DryRun => {
                    if let Some(started) = e.started_at {
                        self.ledger
                            .record(&key, started, e.ended_at.unwrap_or(started));
                    }
                }
                _ => {}
            }
        }
    }

    async fn handle(&mut self, m: Msg) {
        match m {
            Msg::Alerts { signals, full } => self.alerts(signals, full).await,
            Msg::Decide {
                id,
                approve,
                by,
                comment,
                reply,
            } => {
                let r = self.decide(id, approve, by, comment).await;
                let _ = reply.send(r);
            }
            Msg::Run {
                action,
                labels,
                by,
                comment,
                reply,
            } => {
                let r = self.manual(action, labels, by, comment).await;
                let _ = reply.send(r);
            }
            Msg::Switch {
                paused,
                by,
                comment,
                reply,
            } => {
                let r = self.switch(paused, by, comment).await;
                let _ = reply.send(r);
            }
            Msg::Reconfigure(setup) => {
                self.switches = setup.switches;
                self.notes = setup.notes;
                self.set_actions(setup.actions);
                let gone: Vec<CaseKey> = self
                    .cases
                    .keys()
                    .filter(|k| !self.actions.contains_key(&k.action))
                    .cloned()
                    .collect();
                for k in gone {
                    self.drop_case(&k, "the action is no longer in the config")
                        .await;
                }
            }
        }
    }

    fn target_of(&self, action: &str, labels: &Labels) -> Option<CaseKey> {
        let slot = self.actions.get(action)?;
        let names: Vec<&str> = slot.guard.target_by.iter().map(String::as_str).collect();
        Some(CaseKey {
            action: action.to_string(),
            target: labels.keep_only(&names),
        })
    }

    async fn alerts(&mut self, signals: Vec<AlertSignal>, full: bool) {
        let mut firing_now: BTreeSet<(CaseKey, Fingerprint)> = BTreeSet::new();
        for s in &signals {
            for action in &s.remediate {
                let Some(key) = self.target_of(action, &s.labels) else {
                    tracing::warn!(rule = %s.rule, action = %action, "rule names an action that is not configured");
                    continue;
                };
                if s.firing {
                    firing_now.insert((key.clone(), s.fingerprint));
                    let case = self
                        .cases
                        .entry(key.clone())
                        .or_insert_with(|| Case::new(key));
                    case.firing.insert(s.fingerprint);
                    case.rule = s.rule.clone();
                    case.labels = s.labels.clone();
                    case.fingerprint = Some(s.fingerprint);
                    case.value = Some(s.value);
                } else if let Some(case) = self.cases.get_mut(&key) {
                    case.firing.remove(&s.fingerprint);
                }
            }
        }
        if full {
            self.synced = true;
            for case in self.cases.values_mut() {
                let key = case.key.clone();
                case.firing
                    .retain(|fp| firing_now.contains(&(key.clone(), *fp)));
            }
        }
        let resolved: Vec<CaseKey> = self
            .cases
            .values()
            .filter(|c| c.firing.is_empty())
            .map(|c| c.key.clone())
            .collect();
        for k in resolved {
            self.resolved(&k).await;
        }
    }

    /// Every alert that wanted `key` has resolved.
    async fn resolved(&mut self, key: &CaseKey) {
        if !self.synced {
            return;
        }
        let Some(case) = self.cases.get(key) else {
            return;
        };
        match case.phase.clone() {
            Phase::Approval { id, .. } => {
                self.finish_row(
                    id,
                    AttemptState::Cancelled,
                    "the alert resolved before approval",
                )
                .await;
                self.remove(key);
            }
            Phase::Queued { id } if case.manual.is_none() => {
                self.finish_row(
                    id,
                    AttemptState::Cancelled,
                    "the alert resolved before a slot was free",
                )
                .await;
                self.remove(key);
            }
            Phase::Verifying { id, .. } => {
                self.write_update(
                    id,
                    Update {
                        verified: Some(true),
                        ..Update::default()
                    },
                )
                .await;
                self.remove(key);
            }
            Phase::Idle | Phase::Closed => self.remove(key),
            Phase::Running { .. } | Phase::Queued { .. } => {}
        }
    }

    /// Forgets a case; its flags clear.
    fn remove(&mut self, key: &CaseKey) {
        self.cases.remove(key);
    }

    async fn drop_case(&mut self, key: &CaseKey, why: &str) {
        let Some(case) = self.cases.get(key) else {
            return;
        };
        match case.phase.clone() {
            Phase::Approval { id, .. } | Phase::Queued { id } => {
                self.finish_row(id, AttemptState::Cancelled, why).await;
                self.remove(key);
            }
            Phase::Running { .. } => {}
            _ => self.remove(key),
        }
    }
}

mod drive;
mod flags;
mod handle;
mod operator;
mod record;

pub use handle::Remediation;

#[cfg(test)]
#[path = "../runner_tests.rs"]
mod tests;
