//! The remediation runner: one task owns every case (action × target), drives it
//! through approval, queueing, running and verification, and writes the audit log.

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

/// A handle on the remediation runner; cheap to clone.
#[derive(Clone)]
pub struct Remediation {
    tx: mpsc::Sender<Msg>,
    store: Store,
    status: watch::Receiver<Status>,
    names: Arc<std::sync::RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Remediation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediation").finish_non_exhaustive()
    }
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

impl Remediation {
    /// Loads the guardrails' state from the audit log and starts the runner task
    /// on `tracker`; it stops with `cancel`.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        setup: Setup,
        store: Store,
        telemetry: Telemetry,
        events: broadcast::Sender<ApiEvent>,
        leader: Arc<dyn Leadership>,
        clock: Clock,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Remediation, StoreError> {
        let (tx, rx) = mpsc::channel(256);
        let (finished_tx, finished_rx) = mpsc::channel(64);
        let stored = store.read(audit::switch)?;
        let (status_tx, status_rx) = watch::channel(Status {
            enabled: setup.switches.enabled,
            paused: false,
            paused_by: None,
            comment: None,
            since: None,
            dry_run: setup.switches.dry_run,
            running: 0,
            actions: Vec::new(),
        });
        let names = Arc::new(std::sync::RwLock::new(Vec::new()));
        let query: Arc<dyn SeriesQuery> = Arc::new(store.clone());
        let mut runner = Runner {
            actions: BTreeMap::new(),
            switches: setup.switches,
            paused: false,
            paused_by: None,
            paused_comment: None,
            paused_at: None,
            ledger: Ledger::new(),
            cases: BTreeMap::new(),
            store: store.clone(),
            query,
            events,
            leader,
            clock,
            telemetry,
            status: status_tx,
            names: names.clone(),
            finished_tx,
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            flags: HashMap::new(),
            synced: false,
            notes: setup.notes.clone(),
        };
        if let Some(sw) = stored {
            runner.paused = sw.paused;
            runner.paused_by = sw.by;
            runner.paused_comment = sw.comment;
            runner.paused_at = Some(sw.at);
        }
        if setup.switches.paused && !runner.paused {
            runner.paused = true;
            runner.paused_by = Some("config".into());
            runner.paused_comment = Some("[remediation].paused = true".into());
            runner.paused_at = Some((runner.clock)());
        }
        runner.set_actions(setup.actions);
        let recent = store.read(|c| {
            audit::recent(
                c,
                (runner.clock)() - runner.longest_window().as_millis() as i64,
            )
        })?;
        tracker.spawn(runner.run(rx, finished_rx, recent));
        Ok(Remediation {
            tx,
            store,
            status: status_rx,
            names,
        })
    }

    async fn ask<T>(&self, f: impl FnOnce(Reply<T>) -> Msg) -> Result<T, RemediationError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(f(reply)).await.map_err(|_| {
            RemediationError::Unavailable("the remediation runner has stopped".into())
        })?;
        rx.await.map_err(|_| {
            RemediationError::Unavailable("the remediation runner has stopped".into())
        })?
    }

    /// Alert changes and the firing alerts of rules with `remediate` (sent every
    /// round); with `full`, `signals` is every such firing alert, and alerts not
    /// in it are no longer firing.
    pub async fn alerts(&self, signals: Vec<AlertSignal>, full: bool) {
        let _ = self.tx.send(Msg::Alerts { signals, full }).await;
    }

    /// Approves attempt `id`.
    pub async fn approve(
        &self,
        id: i64,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Decide {
            id,
            approve: true,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Denies attempt `id`.
    pub async fn deny(
        &self,
        id: i64,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Decide {
            id,
            approve: false,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Runs `action` for `labels` on an operator's request, under the same
    /// guardrails (except approval: asking is approving).
    pub async fn run(
        &self,
        action: String,
        labels: Labels,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Run {
            action,
            labels,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Sets the kill switch.
    pub async fn set_paused(
        &self,
        paused: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<Status, RemediationError> {
        self.ask(|reply| Msg::Switch {
            paused,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Replaces the actions and switches (config reload).
    pub async fn reconfigure(&self, setup: Setup) {
        let _ = self.tx.send(Msg::Reconfigure(setup)).await;
    }

    /// The switches and actions now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The configured action names.
    pub fn action_names(&self) -> Vec<String> {
        self.names.read().map(|n| n.clone()).unwrap_or_default()
    }

    /// Audit rows, newest first.
    pub fn list(&self, f: &audit::Filter) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.read(|c| audit::list(c, f))
    }

    /// One audit row.
    pub fn get(&self, id: i64) -> Result<Option<AuditEntry>, StoreError> {
        self.store.read(|c| audit::get(c, id))
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

    async fn finish_row(&mut self, id: i64, state: AttemptState, reason: &str) {
        let now = self.now();
        self.write_update(
            id,
            Update {
                state: Some(state),
                reason: Some(reason.to_string()),
                ended_at: Some(now),
                ..Update::default()
            },
        )
        .await;
    }

    async fn write_update(&mut self, id: i64, u: Update) -> Option<AuditEntry> {
        let state = u.state;
        match self.store.write(move |tx| audit::update(tx, id, &u)).await {
            Ok(e) => {
                if let Some(st) = state {
                    state_counter(&self.telemetry, &e.action, st);
                    self.note(&e);
                }
                let _ = self.events.send(ApiEvent::Action {
                    entry: Box::new(e.clone()),
                });
                Some(e)
            }
            Err(err) => {
                tracing::error!(id, error = %err, "could not update the remediation audit log");
                None
            }
        }
    }

    async fn write_insert(&mut self, a: NewAttempt) -> Result<AuditEntry, RemediationError> {
        let state = a.state;
        match self.store.write(move |tx| audit::insert(tx, &a)).await {
            Ok(e) => {
                state_counter(&self.telemetry, &e.action, state);
                self.note(&e);
                let _ = self.events.send(ApiEvent::Action {
                    entry: Box::new(e.clone()),
                });
                Ok(e)
            }
            Err(err) => {
                tracing::error!(error = %err, "could not write the remediation audit log; not acting");
                Err(RemediationError::Unavailable(format!(
                    "the audit log cannot be written ({err}); nothing runs unaudited"
                )))
            }
        }
    }

    /// Tells receivers of an attempt that waits for approval or has ended.
    fn note(&self, e: &AuditEntry) {
        let Some(notes) = &self.notes else {
            return;
        };
        let told = matches!(
            e.state,
            AttemptState::PendingApproval
                | AttemptState::Succeeded
                | AttemptState::Failed
                | AttemptState::DryRun
                | AttemptState::Refused
                | AttemptState::Denied
                | AttemptState::Expired
        );
        if !told {
            return;
        }
        let target = if e.target.is_empty() {
            String::new()
        } else {
            format!(" on {}", e.target)
        };
        let status = e
            .exit_status
            .map(|s| format!(" (status {s})"))
            .unwrap_or_default();
        notes.tell(ActionNote {
            id: e.id,
            action: e.action.clone(),
            kind: e.kind.clone(),
            state: e.state.as_str().to_string(),
            rule: e.rule.clone(),
            labels: e.labels.clone(),
            summary: format!(
                "warden {} {}{target}: {}{status}",
                e.kind,
                e.action,
                e.state.as_str().replace('_', " ")
            ),
            reason: e.reason.clone(),
            by: e
                .denied_by
                .clone()
                .or_else(|| e.approved_by.clone())
                .or_else(|| e.requested_by.clone()),
            at: e.ended_at.unwrap_or(e.created_at),
        });
    }

    fn new_row(&self, case: &Case, state: AttemptState) -> NewAttempt {
        let kind = self
            .actions
            .get(&case.key.action)
            .map(|s| s.action.kind())
            .unwrap_or("unknown");
        NewAttempt {
            action: case.key.action.clone(),
            kind: kind.to_string(),
            rule: if case.manual.is_some() && case.firing.is_empty() {
                String::new()
            } else {
                case.rule.clone()
            },
            fingerprint: if case.manual.is_some() && case.firing.is_empty() {
                None
            } else {
                case.fingerprint.map(|f| f.to_string())
            },
            labels: case.labels.clone(),
            target: case.key.target.clone(),
            state,
            reason: None,
            args: None,
            created_at: self.now(),
            started_at: None,
            requested_by: case.manual.as_ref().map(|m| m.0.clone()),
            approved_by: case.manual.as_ref().map(|m| m.0.clone()),
            comment: case.manual.as_ref().and_then(|m| m.1.clone()),
            expires_at: None,
            dry_run: false,
        }
    }

    /// Audits a refusal once per episode and kind.
    async fn refuse(&mut self, key: &CaseKey, kind: &'static str, reason: String) {
        let Some(case) = self.cases.get(key) else {
            return;
        };
        if case.refusal == Some(kind) {
            return;
        }
        let mut row = self.new_row(case, AttemptState::Refused);
        row.reason = Some(reason.clone());
        tracing::warn!(action = %key.action, target = %key.target, reason = %reason, "remediation refused");
        let _ = self.write_insert(row).await;
        if let Some(case) = self.cases.get_mut(key) {
            case.refusal = Some(kind);
        }
    }

    /// Drives every case one step.
    async fn step(&mut self) {
        if !self.synced {
            return;
        }
        let now = self.now();
        let keys: Vec<CaseKey> = self.cases.keys().cloned().collect();
        for key in keys {
            let Some(case) = self.cases.get(&key) else {
                continue;
            };
            match case.phase.clone() {
                Phase::Idle if !case.firing.is_empty() => self.consider(&key).await,
                Phase::Idle => self.remove(&key),
                Phase::Approval { id, expires } if now >= expires => {
                    self.finish_row(id, AttemptState::Expired, "nobody approved it in time")
                        .await;
                    if let Some(c) = self.cases.get_mut(&key) {
                        c.phase = Phase::Closed;
                    }
                }
                Phase::Queued { id } => {
                    self.start(&key, Some(id)).await;
                }
                Phase::Verifying { id, until } if now >= until => {
                    let verify = self
                        .actions
                        .get(&key.action)
                        .and_then(|s| s.guard.verify_within)
                        .map(crate::duration::format)
                        .unwrap_or_default();
                    self.write_update(
                        id,
                        Update {
                            verified: Some(false),
                            reason: Some(format!(
                                "verification failed: the alert did not resolve within {verify}"
                            )),
                            ..Update::default()
                        },
                    )
                    .await;
                    tracing::warn!(action = %key.action, target = %key.target, "remediation did not fix the alert");
                    if let Some(c) = self.cases.get_mut(&key) {
                        c.failed = true;
                        c.phase = Phase::Idle;
                    }
                }
                _ => {}
            }
        }
    }

    /// An idle case whose alert fires: ask for approval, queue or run, if the
    /// switches and guardrails allow.
    async fn consider(&mut self, key: &CaseKey) {
        if !self.switches.enabled {
            return;
        }
        let Some(slot) = self.actions.get(&key.action) else {
            return;
        };
        let guard = slot.guard.clone();
        let dry = self.switches.dry_run || guard.dry_run;
        if self.paused && !dry {
            let why = format!(
                "paused: the kill switch is on (set by {})",
                self.paused_by.as_deref().unwrap_or("unknown")
            );
            self.refuse(key, "paused", why).await;
            return;
        }
        let now = self.now();
        match self.ledger.check(&guard, key, now) {
            Ok(()) => {}
            Err(Hold::Cooldown { .. }) => return,
            Err(h @ Hold::Budget { .. }) => {
                if let Some(c) = self.cases.get_mut(key)
                    && !c.exhausted
                {
                    c.exhausted = true;
                    tracing::error!(action = %key.action, target = %key.target, "remediation budget spent; warden keeps watching and escalates");
                }
                self.refuse(key, "budget", h.reason(now)).await;
                return;
            }
            Err(Hold::Concurrency { .. }) => {}
        }
        if let Some(c) = self.cases.get_mut(key) {
            c.exhausted = false;
            c.refusal = None;
        }
        if let (Some(expiry), false) = (guard.approval, dry) {
            let preview = self.preview(key).await;
            let Some(case) = self.cases.get(key) else {
                return;
            };
            let mut row = self.new_row(case, AttemptState::PendingApproval);
            row.expires_at = Some(now + expiry.as_millis() as i64);
            match preview {
                Ok(o) => row.args = Some(o.args),
                Err(e) => row.reason = Some(format!("preview failed: {e}")),
            }
            if let Ok(e) = self.write_insert(row).await {
                tracing::info!(id = e.id, action = %key.action, target = %key.target, "remediation waits for approval");
                if let Some(c) = self.cases.get_mut(key) {
                    c.phase = Phase::Approval {
                        id: e.id,
                        expires: e.expires_at.unwrap_or(now),
                    };
                }
            }
            return;
        }
        self.start(key, None).await;
    }

    /// What the action would run for the case (a dry run of the action).
    async fn preview(&self, key: &CaseKey) -> Result<ActionOutcome, ActionError> {
        let Some(slot) = self.actions.get(&key.action) else {
            return Err(ActionError::Refused("the action is not configured".into()));
        };
        let Some(case) = self.cases.get(key) else {
            return Err(ActionError::Refused("no such case".into()));
        };
        let req = self.request(case, 0, true);
        let cx = self.context();
        slot.action.run(&req, &cx).await
    }

    fn request(&self, case: &Case, id: i64, dry_run: bool) -> ActionRequest {
        ActionRequest {
            id,
            rule: case.rule.clone(),
            labels: case.labels.clone(),
            value: case.value,
            vars: BTreeMap::new(),
            dry_run,
        }
    }

    fn context(&self) -> ActionContext {
        ActionContext {
            query: self.query.clone(),
            cancel: self.cancel.child_token(),
        }
    }

    fn group_limit(&self, guard: &Guardrails, group: &Labels) -> u32 {
        let size = match &guard.limit {
            Limit::Percent {
                size: GroupSize::Fixed(n),
                ..
            } => Some(*n as usize),
            Limit::Percent {
                size: GroupSize::Metric(m),
                ..
            } => Some(self.group_size(m, group)),
            Limit::Count(_) => None,
        };
        limit_of(&guard.limit, size)
    }

    fn group_size(&self, metric: &MetricName, group: &Labels) -> usize {
        let mut sel = Selector::metric(metric.clone());
        for (k, v) in group.iter() {
            sel = sel.with(crate::model::Matcher::eq(k, v));
        }
        self.query
            .latest(&sel, self.now())
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Starts an attempt on `key`: the queued row `id`, or a new row. Without a
    /// free slot (or leadership) the attempt stays (or is written as) `queued`.
    /// Returns the row's id.
    async fn start(&mut self, key: &CaseKey, id: Option<i64>) -> Option<i64> {
        let slot = self.actions.get(&key.action)?;
        let guard = slot.guard.clone();
        let action = slot.action.clone();
        let dry = self.switches.dry_run || guard.dry_run;
        let case = self.cases.get(key)?;
        let names: Vec<&str> = guard.group_by.iter().map(String::as_str).collect();
        let group = case.labels.keep_only(&names);
        let now = self.now();
        let free = dry
            || (self.leader.is_leader()
                && self
                    .ledger
                    .check_slot(&key.action, &group, self.group_limit(&guard, &group))
                    .is_ok()
                && self.ledger.running_total() < self.switches.max_running);
        if !free {
            if id.is_none() {
                let row = self.new_row(case, AttemptState::Queued);
                let e = self.write_insert(row).await.ok()?;
                tracing::info!(id = e.id, action = %key.action, target = %key.target, "remediation queued: no free slot in its group");
                if let Some(c) = self.cases.get_mut(key) {
                    c.phase = Phase::Queued { id: e.id };
                }
                return Some(e.id);
            }
            return id;
        }
        if dry {
            let id = match id {
                Some(id) => id,
                None => {
                    let row = self.new_row(case, AttemptState::DryRun);
                    self.write_insert(row).await.ok()?.id
                }
            };
            let Some(case) = self.cases.get(key) else {
                return Some(id);
            };
            let req = self.request(case, id, true);
            let cx = self.context();
            let res = action.run(&req, &cx).await;
            self.ledger.record(key, now, now);
            let u = match res {
                Ok(o) => Update {
                    state: Some(AttemptState::DryRun),
                    args: Some(o.args),
                    output: Some(bound(o.output, MAX_OUTPUT)),
                    started_at: Some(now),
                    ended_at: Some(now),
                    reason: guard
                        .approval
                        .map(|_| "dry run: a real run would wait for approval".to_string()),
                    ..Update::default()
                },
                Err(e) => Update {
                    state: Some(AttemptState::Refused),
                    reason: Some(format!("dry run: {e}")),
                    started_at: Some(now),
                    ended_at: Some(now),
                    ..Update::default()
                },
            };
            tracing::info!(id, action = %key.action, target = %key.target, "remediation dry run");
            self.write_update(id, u).await;
            if let Some(c) = self.cases.get_mut(key) {
                c.phase = Phase::Idle;
                c.manual = None;
                if c.firing.is_empty() {
                    self.cases.remove(key);
                }
            }
            return Some(id);
        }
        let id = match id {
            Some(id) => {
                self.write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Running),
                        started_at: Some(now),
                        ..Update::default()
                    },
                )
                .await?;
                id
            }
            None => {
                let mut row = self.new_row(case, AttemptState::Running);
                row.started_at = Some(now);
                self.write_insert(row).await.ok()?.id
            }
        };
        let case = self.cases.get_mut(key)?;
        let req = ActionRequest {
            id,
            rule: case.rule.clone(),
            labels: case.labels.clone(),
            value: case.value,
            vars: BTreeMap::new(),
            dry_run: false,
        };
        case.phase = Phase::Running {
            id,
            group: group.clone(),
        };
        self.ledger.begin(key, &group, now);
        tracing::info!(id, action = %key.action, target = %key.target, "remediation starts");
        let cx = self.context();
        let done = self.finished_tx.clone();
        self.tracker.spawn(async move {
            let result = action.run(&req, &cx).await;
            let _ = done.send(Finished { id, result }).await;
        });
        Some(id)
    }

    async fn finished(&mut self, f: Finished) {
        let Some(key) = self
            .cases
            .iter()
            .find(|(_, c)| matches!(&c.phase, Phase::Running { id, .. } if *id == f.id))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let now = self.now();
        let group = match self.cases.get(&key).map(|c| &c.phase) {
            Some(Phase::Running { group, .. }) => group.clone(),
            _ => Labels::empty(),
        };
        self.ledger.end(&key, &group, now);
        let verify = self
            .actions
            .get(&key.action)
            .and_then(|s| s.guard.verify_within);
        let (mut u, ok) = match f.result {
            Ok(o) => (
                Update {
                    state: Some(if o.ok {
                        AttemptState::Succeeded
                    } else {
                        AttemptState::Failed
                    }),
                    args: Some(o.args),
                    exit_status: o.status,
                    output: Some(bound(o.output, MAX_OUTPUT)),
                    ended_at: Some(now),
                    ..Update::default()
                },
                o.ok,
            ),
            Err(ActionError::Refused(r)) => (
                Update {
                    state: Some(AttemptState::Refused),
                    reason: Some(r),
                    ended_at: Some(now),
                    ..Update::default()
                },
                false,
            ),
            Err(e) => (
                Update {
                    state: Some(AttemptState::Failed),
                    reason: Some(e.to_string()),
                    ended_at: Some(now),
                    ..Update::default()
                },
                false,
            ),
        };
        let Some(case) = self.cases.get_mut(&key) else {
            return;
        };
        case.manual = None;
        if ok {
            match verify {
                Some(v) if !case.firing.is_empty() => {
                    case.phase = Phase::Verifying {
                        id: f.id,
                        until: now + v.as_millis() as i64,
                    };
                }
                Some(_) if case.fingerprint.is_some() => {
                    // The alert resolved while the action ran.
                    u.verified = Some(true);
                    case.phase = Phase::Idle;
                }
                _ => case.phase = Phase::Idle,
            }
            case.failed = false;
        } else {
            case.failed = !case.firing.is_empty();
            case.phase = Phase::Idle;
            if u.state == Some(AttemptState::Failed) && u.reason.is_none() {
                u.reason = Some("the action reported failure".into());
            }
        }
        tracing::info!(id = f.id, action = %key.action, target = %key.target, ok, "remediation ended");
        self.write_update(f.id, u).await;
        if let Some(c) = self.cases.get(&key)
            && c.firing.is_empty()
            && c.phase == Phase::Idle
        {
            self.cases.remove(&key);
        }
    }

    async fn decide(
        &mut self,
        id: i64,
        approve: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        let key = self
            .cases
            .iter()
            .find(|(_, c)| matches!(c.phase, Phase::Approval { id: i, .. } if i == id))
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            let row = self
                .store
                .read(|c| audit::get(c, id))
                .map_err(|e| RemediationError::Unavailable(e.to_string()))?;
            return Err(match row {
                None => RemediationError::NotFound(format!("no attempt with id {id}")),
                Some(e) => RemediationError::Conflict(
                    format!("attempt {id} is {}, not pending_approval", e.state.as_str()),
                    Some(Box::new(e)),
                ),
            });
        };
        if !approve {
            let now = self.now();
            let e = self
                .write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Denied),
                        denied_by: Some(by.clone()),
                        comment,
                        reason: Some(format!("denied by {by}")),
                        ended_at: Some(now),
                        ..Update::default()
                    },
                )
                .await
                .ok_or_else(|| {
                    RemediationError::Unavailable("the audit log cannot be written".into())
                })?;
            tracing::info!(id, by = %by, "remediation denied");
            if let Some(c) = self.cases.get_mut(&key) {
                c.phase = Phase::Closed;
            }
            return Ok(e);
        }
        if !self.switches.enabled || self.paused {
            return Err(RemediationError::Conflict(
                "remediation is paused: resume it first (the attempt keeps waiting until it expires)".into(),
                None,
            ));
        }
        let Some(guard) = self.actions.get(&key.action).map(|s| s.guard.clone()) else {
            return Err(RemediationError::NotFound(format!(
                "action '{}' is no longer configured",
                key.action
            )));
        };
        let now = self.now();
        if let Err(h @ Hold::Budget { .. }) = self.ledger.check(&guard, &key, now) {
            let e = self
                .write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Refused),
                        approved_by: Some(by),
                        comment,
                        reason: Some(h.reason(now)),
                        ended_at: Some(now),
                        ..Update::default()
                    },
                )
                .await;
            if let Some(c) = self.cases.get_mut(&key) {
                c.phase = Phase::Idle;
                c.exhausted = true;
            }
            return Err(RemediationError::Conflict(h.reason(now), e.map(Box::new)));
        }
        self.write_update(
            id,
            Update {
                state: Some(AttemptState::Queued),
                approved_by: Some(by.clone()),
                comment,
                ..Update::default()
            },
        )
        .await
        .ok_or_else(|| RemediationError::Unavailable("the audit log cannot be written".into()))?;
        tracing::info!(id, by = %by, "remediation approved");
        if let Some(c) = self.cases.get_mut(&key) {
            c.phase = Phase::Queued { id };
        }
        self.start(&key, Some(id)).await;
        self.current(id)
    }

    fn current(&self, id: i64) -> Result<AuditEntry, RemediationError> {
        self.store
            .read(|c| audit::get(c, id))
            .map_err(|e| RemediationError::Unavailable(e.to_string()))?
            .ok_or_else(|| RemediationError::NotFound(format!("no attempt with id {id}")))
    }

    async fn manual(
        &mut self,
        action: String,
        labels: Labels,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        let Some(key) = self.target_of(&action, &labels) else {
            let known: Vec<&str> = self.actions.keys().map(String::as_str).collect();
            return Err(RemediationError::NotFound(format!(
                "no action '{action}': configured are {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !self.switches.enabled {
            return Err(RemediationError::Conflict(
                "remediation is disabled in the config ([remediation].enabled = false)".into(),
                None,
            ));
        }
        let guard = self
            .actions
            .get(&action)
            .map(|s| s.guard.clone())
            .unwrap_or_default();
        let dry = self.switches.dry_run || guard.dry_run;
        if let Some(c) = self.cases.get(&key) {
            match &c.phase {
                Phase::Idle | Phase::Closed => {}
                Phase::Approval { id, .. } => {
                    return Err(RemediationError::Conflict(
                        format!(
                            "attempt {id} on this target waits for approval: approve it instead"
                        ),
                        None,
                    ));
                }
                Phase::Queued { id } | Phase::Running { id, .. } | Phase::Verifying { id, .. } => {
                    return Err(RemediationError::Conflict(
                        format!("attempt {id} on this target is in progress"),
                        None,
                    ));
                }
            }
        }
        let case = self
            .cases
            .entry(key.clone())
            .or_insert_with(|| Case::new(key.clone()));
        if case.firing.is_empty() {
            case.labels = labels;
            case.rule = String::new();
            case.fingerprint = None;
            case.value = None;
        }
        case.manual = Some((by.clone(), comment));
        case.phase = Phase::Idle;
        let now = self.now();
        let hold = if self.paused && !dry {
            Some(format!(
                "paused: the kill switch is on (set by {})",
                self.paused_by.as_deref().unwrap_or("unknown")
            ))
        } else {
            self.ledger
                .check(&guard, &key, now)
                .err()
                .map(|h| h.reason(now))
        };
        if let Some(reason) = hold {
            let Some(case) = self.cases.get(&key) else {
                return Err(RemediationError::Unavailable("case vanished".into()));
            };
            let mut row = self.new_row(case, AttemptState::Refused);
            row.reason = Some(reason.clone());
            let e = self.write_insert(row).await;
            if let Some(c) = self.cases.get_mut(&key) {
                c.manual = None;
                if c.firing.is_empty() {
                    self.cases.remove(&key);
                }
            }
            return Err(RemediationError::Conflict(reason, e.ok().map(Box::new)));
        }
        tracing::info!(action = %action, by = %by, "manual remediation requested");
        match self.start(&key, None).await {
            Some(id) => self.current(id),
            None => {
                if let Some(c) = self.cases.get_mut(&key) {
                    c.manual = None;
                }
                Err(RemediationError::Unavailable(
                    "the audit log cannot be written; nothing runs unaudited".into(),
                ))
            }
        }
    }

    async fn switch(
        &mut self,
        paused: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<Status, RemediationError> {
        if !paused && !self.switches.enabled {
            return Err(RemediationError::Conflict(
                "remediation is disabled in the config ([remediation].enabled = false); the API cannot turn it on".into(),
                None,
            ));
        }
        let now = self.now();
        let (b, c) = (by.clone(), comment.clone());
        self.store
            .write(move |tx| audit::set_switch(tx, paused, &b, c.as_deref(), now))
            .await
            .map_err(|e| RemediationError::Unavailable(e.to_string()))?;
        self.paused = paused;
        self.paused_by = Some(by.clone());
        self.paused_comment = comment;
        self.paused_at = Some(now);
        if !paused {
            for c in self.cases.values_mut() {
                if c.refusal == Some("paused") {
                    c.refusal = None;
                }
            }
        }
        tracing::warn!(by = %by, paused, "remediation kill switch set");
        self.write_flags(true).await;
        self.publish();
        Ok(self.status.borrow().clone())
    }

    /// Writes warden's own remediation series: `warden_remediation_exhausted` and
    /// `warden_remediation_failed` (1 per flagged target, 0 once when a flag
    /// clears) and `warden_remediation_paused`. With `all`, every active flag is
    /// written again to stay fresh.
    async fn write_flags(&mut self, all: bool) {
        let mut want: HashMap<(&'static str, Labels), f64> = HashMap::new();
        for c in self.cases.values() {
            let mut labels = c.key.target.clone();
            let _ = labels.set("action", &c.key.action);
            if !c.rule.is_empty() {
                let _ = labels.set("rule", &c.rule);
            }
            if c.exhausted {
                want.insert(("warden_remediation_exhausted", labels.clone()), 1.0);
            }
            if c.failed {
                want.insert(("warden_remediation_failed", labels), 1.0);
            }
        }
        want.insert(
            ("warden_remediation_paused", Labels::empty()),
            if self.paused && self.switches.enabled {
                1.0
            } else {
                0.0
            },
        );
        let mut out: Vec<(&'static str, Labels, f64)> = Vec::new();
        for ((m, l), v) in &want {
            if all || self.flags.get(&(*m, l.clone())) != Some(v) {
                out.push((m, l.clone(), *v));
            }
        }
        for (m, l) in self.flags.keys() {
            if !want.contains_key(&(*m, l.clone())) {
                out.push((m, l.clone(), 0.0));
            }
        }
        // A cleared flag was written as 0 above and is forgotten, so its 0 is
        // written once; the paused gauge is always kept.
        self.flags = want;
        if out.is_empty() {
            return;
        }
        // Samples carry the wall clock: they go to the store like any other.
        let ts = now_ms();
        let samples: Vec<Sample> = out
            .into_iter()
            .filter_map(|(m, l, v)| MetricName::new(m).ok().map(|n| Sample::new(n, l, v, ts)))
            .collect();
        let _ = self
            .store
            .ingest()
            .send(Batch {
                samples,
                fresh_ms: 3 * REFRESH.as_millis() as i64,
            })
            .await;
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
