//! The dispatcher: the pipeline's state and every decision before the outbox.
//! Each method takes the open write transaction and `now`, so the state change,
//! the group state and the outbox rows it decides commit together, and every timer
//! is tested with an explicit clock.

use std::collections::{BTreeSet, HashMap};

use rusqlite::Transaction;
use serde::Serialize;

use super::config::NotifyPlan;
use super::group::{self, Group, GroupAlert};
use super::outbox;
use super::silence::{self, Silence, SilenceView};
use super::stages::dedup::{self, Candidates, LogEntry};
use super::stages::flap::FlapBook;
use super::stages::{self, Firing, MuteContext, Muted, escalate, inhibit};
use super::{ack, matchers::Matchers};
use crate::lifecycle::{Applied, Change};
use crate::model::{Alert, AlertState, Fingerprint, Labels, Timestamp};
use crate::ports::{Acknowledgement, Notification, NotifiedAlert, NotifyReason};

/// The alert name of the alert about undeliverable notifications.
pub const NOTIFICATION_FAILED: &str = "WardenNotificationFailed";

/// A receiver as the dispatcher knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverInfo {
    /// Its name.
    pub name: String,
    /// Whether it wants resolved notifications.
    pub send_resolved: bool,
}

/// Something the API announces on `/api/v1/events`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A silence was made or expired.
    Silence {
        /// The silence.
        silence: SilenceView,
    },
    /// An alert was acknowledged, un-acknowledged, or its ack ended.
    Ack {
        /// The alert.
        fingerprint: Fingerprint,
        /// The ack, `null` when it ended.
        acknowledged: Option<Acknowledgement>,
    },
}

/// Why an operation on the pipeline was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// No firing alert has this fingerprint.
    #[error("no firing alert has fingerprint '{0}'")]
    NotFiring(String),
    /// No silence has this id.
    #[error("no silence has id '{0}'")]
    NoSilence(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// What the API shows of an alert's notification state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertStatus {
    /// The acknowledgement, if any.
    pub acknowledged: Option<Acknowledgement>,
    /// Ids of active silences matching it.
    pub silenced_by: Vec<String>,
    /// Inhibitions and dependencies muting it.
    pub inhibited_by: Vec<String>,
    /// Open maintenance windows matching it.
    pub maintenance: Vec<String>,
    /// True while it flaps.
    pub flapping: bool,
}

/// A silence as asked for.
#[derive(Debug, Clone)]
pub struct NewSilence {
    /// Which alerts.
    pub matchers: Matchers,
    /// From (unix ms).
    pub starts_at: Timestamp,
    /// Until (unix ms).
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
}

/// The pipeline's state.
pub struct Dispatcher {
    plan: NotifyPlan,
    receivers: Vec<ReceiverInfo>,
    groups: HashMap<String, Group>,
    by_alert: HashMap<Fingerprint, BTreeSet<String>>,
    firing: Firing,
    silences: Vec<Silence>,
    acks: HashMap<Fingerprint, Acknowledgement>,
    flaps: FlapBook,
    wake: BTreeSet<String>,
    events: Vec<NotifyEvent>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("groups", &self.groups.len())
            .field("firing", &self.firing.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Loads the state from the store. Call [`Dispatcher::reconcile`] in a write
    /// transaction next, so groups match the routes and the active alerts.
    pub fn load(
        conn: &rusqlite::Connection,
        plan: NotifyPlan,
        receivers: Vec<ReceiverInfo>,
        now: Timestamp,
    ) -> rusqlite::Result<Self> {
        let mut d = Dispatcher {
            plan,
            receivers,
            groups: HashMap::new(),
            by_alert: HashMap::new(),
            firing: HashMap::new(),
            silences: silence::load(conn)?,
            acks: ack::load(conn)?,
            flaps: FlapBook::load(conn)?,
            wake: BTreeSet::new(),
            events: Vec::new(),
        };
        for stored in group::load(conn)? {
            let mut g = stored.group;
            g.route = d.plan.routes.by_id(g.route_id).unwrap_or(usize::MAX);
            let t = d
                .plan
                .routes
                .get(g.route.min(d.plan.routes.all().len() - 1))
                .timing;
            // Timers are not persisted: a group resumes one wait after the restart.
            g.next_flush = if g.flushed {
                now + t.group_interval.as_millis() as i64
            } else {
                (g.created_at + t.group_wait.as_millis() as i64).max(now)
            };
            for (fp, a) in &g.alerts {
                d.by_alert.entry(*fp).or_default().insert(g.key.clone());
                if a.status == AlertState::Firing {
                    d.firing.insert(*fp, a.alert.clone());
                }
            }
            d.groups.insert(g.key.clone(), g);
        }
        Ok(d)
    }

    /// The plan in force.
    pub fn plan(&self) -> &NotifyPlan {
        &self.plan
    }

    /// The configured receivers.
    pub fn receivers(&self) -> &[ReceiverInfo] {
        &self.receivers
    }

    /// Makes the state agree with the routes and with `active` (the firing alerts
    /// of the alert book): groups of routes that no longer exist are routed again,
    /// firing alerts the pipeline does not know join their groups, and alerts it
    /// thinks fire that are no longer active resolve.
    pub fn reconcile(
        &mut self,
        tx: &Transaction<'_>,
        active: &[Alert],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let orphans: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.route == usize::MAX || self.plan.routes.all()[g.route].id != g.route_id)
            .map(|g| g.key.clone())
            .collect();
        let mut moved: Vec<GroupAlert> = Vec::new();
        for key in orphans {
            if let Some(g) = self.groups.remove(&key) {
                tracing::info!(group = %key, "route changed; routing its alerts again");
                group::delete_group(tx, &key)?;
                for (fp, a) in g.alerts {
                    if let Some(keys) = self.by_alert.get_mut(&fp) {
                        keys.remove(&key);
                    }
                    if a.status == AlertState::Firing {
                        moved.push(a);
                    }
                }
            }
        }
        for a in moved {
            self.route_alert(tx, &a.alert, now)?;
        }
        let active_fps: BTreeSet<Fingerprint> = active.iter().map(|a| a.fingerprint).collect();
        for a in active {
            if !self.firing.contains_key(&a.fingerprint) {
                self.on_firing(tx, a, now)?;
            }
        }
        let stale: Vec<Alert> = self
            .firing
            .values()
            .filter(|a| !active_fps.contains(&a.fingerprint))
            .cloned()
            .collect();
        for mut a in stale {
            a.state = AlertState::Resolved;
            self.on_resolved(tx, &a, now)?;
        }
        self.flush_due(tx, now)
    }

    /// Replaces the plan (a config reload), then reconciles.
    pub fn reconfigure(
        &mut self,
        tx: &Transaction<'_>,
        plan: NotifyPlan,
        receivers: Vec<ReceiverInfo>,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.plan = plan;
        self.receivers = receivers;
        for g in self.groups.values_mut() {
            g.route = self.plan.routes.by_id(g.route_id).unwrap_or(usize::MAX);
        }
        let active: Vec<Alert> = self.firing.values().cloned().collect();
        self.reconcile(tx, &active, now)
    }

    /// Takes in one round of evaluations: state changes join or leave groups, flap
    /// states advance, and due groups are flushed into the outbox, all in `tx`.
    pub fn apply(
        &mut self,
        tx: &Transaction<'_>,
        applied: &[Applied],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        for a in applied {
            self.ingest_changes(tx, &a.changes, now)?;
            if let Some(policy) = self.plan.flapping
                && !a.rule.is_empty()
            {
                let firing: BTreeSet<Fingerprint> = a
                    .active
                    .iter()
                    .filter(|(al, _, _)| al.state == AlertState::Firing)
                    .map(|(al, _, _)| al.fingerprint)
                    .collect();
                let ev = self.flaps.record(tx, &policy, &a.rule, &firing, now)?;
                for alert in ev.started {
                    self.flapping_notice(tx, &alert, now)?;
                }
                for fp in ev.stopped {
                    for key in self.by_alert.get(&fp).into_iter().flatten() {
                        if let Some(g) = self.groups.get_mut(key) {
                            g.next_flush = g.next_flush.min(now);
                        }
                    }
                }
            }
        }
        self.flush_due(tx, now)
    }

    /// Takes in state changes (from rules or from external sources) and flushes due
    /// groups.
    pub fn ingest(
        &mut self,
        tx: &Transaction<'_>,
        changes: &[Change],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.ingest_changes(tx, changes, now)?;
        self.flush_due(tx, now)
    }

    fn ingest_changes(
        &mut self,
        tx: &Transaction<'_>,
        changes: &[Change],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        for c in changes {
            match c.to {
                Some(AlertState::Firing) => {
                    if self.plan.flapping.is_some() {
                        self.flaps.track(&c.alert, false, now);
                    }
                    self.on_firing(tx, &c.alert, now)?;
                }
                Some(AlertState::Resolved) => {
                    if self.plan.flapping.is_some() {
                        self.flaps.track(&c.alert, true, now);
                    }
                    self.on_resolved(tx, &c.alert, c.at)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_firing(
        &mut self,
        tx: &Transaction<'_>,
        alert: &Alert,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.firing.insert(alert.fingerprint, alert.clone());
        self.route_alert(tx, alert, now)
    }

    fn route_alert(
        &mut self,
        tx: &Transaction<'_>,
        alert: &Alert,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        for idx in self.plan.routes.matching(&alert.labels) {
            let route = self.plan.routes.get(idx);
            let key = route.group_key(&alert.labels);
            let g = match self.groups.get_mut(&key) {
                Some(g) => g,
                None => {
                    let g = Group {
                        key: key.clone(),
                        route: idx,
                        route_id: route.id,
                        labels: route.group_labels(&alert.labels),
                        alerts: Default::default(),
                        created_at: now,
                        flushed: false,
                        next_flush: now + route.timing.group_wait.as_millis() as i64,
                        log: Default::default(),
                    };
                    group::save_group(tx, &g)?;
                    self.groups.entry(key.clone()).or_insert(g)
                }
            };
            let escalated = g.alerts.get(&alert.fingerprint).map_or(0, |a| a.escalated);
            let ga = GroupAlert {
                alert: alert.clone(),
                status: AlertState::Firing,
                ended_at: None,
                escalated,
            };
            group::save_alert(tx, &key, &ga)?;
            g.alerts.insert(alert.fingerprint, ga);
            self.by_alert
                .entry(alert.fingerprint)
                .or_default()
                .insert(key);
        }
        Ok(())
    }

    fn on_resolved(
        &mut self,
        tx: &Transaction<'_>,
        alert: &Alert,
        at: Timestamp,
    ) -> rusqlite::Result<()> {
        let fp = alert.fingerprint;
        self.firing.remove(&fp);
        if self.acks.remove(&fp).is_some() {
            ack::delete(tx, fp)?;
            self.events.push(NotifyEvent::Ack {
                fingerprint: fp,
                acknowledged: None,
            });
        }
        for key in self.by_alert.get(&fp).cloned().unwrap_or_default() {
            if let Some(g) = self.groups.get_mut(&key)
                && let Some(ga) = g.alerts.get_mut(&fp)
            {
                ga.alert = alert.clone();
                ga.alert.state = AlertState::Resolved;
                ga.status = AlertState::Resolved;
                ga.ended_at = Some(at);
                group::save_alert(tx, &key, ga)?;
            }
        }
        Ok(())
    }

    /// Runs the timers due at `now`: lapsed acks end, escalations rise, due groups
    /// flush.
    pub fn tick(&mut self, tx: &Transaction<'_>, now: Timestamp) -> rusqlite::Result<()> {
        let lapsed: Vec<Fingerprint> = self
            .acks
            .iter()
            .filter(|(_, a)| a.expires_at.is_some_and(|e| e <= now))
            .map(|(fp, _)| *fp)
            .collect();
        for fp in lapsed {
            self.acks.remove(&fp);
            ack::delete(tx, fp)?;
            self.events.push(NotifyEvent::Ack {
                fingerprint: fp,
                acknowledged: None,
            });
        }
        self.flush_due(tx, now)
    }

    /// When the next timer is due, if any.
    pub fn next_due(&self) -> Option<Timestamp> {
        let groups = self.groups.values().map(|g| g.next_flush);
        let acks = self.acks.values().filter_map(|a| a.expires_at);
        let escalations = self.groups.values().flat_map(|g| {
            let tiers = &self.plan.routes.get(g.route).escalate;
            g.alerts.values().filter_map(move |a| {
                if tiers.is_empty() || a.status != AlertState::Firing {
                    return None;
                }
                escalate::next_due(&a.alert, tiers, a.escalated)
            })
        });
        groups.chain(acks).chain(escalations).min()
    }

    fn mute_context<'a>(
        &'a self,
        sources: &'a inhibit::Sources,
        now: Timestamp,
    ) -> MuteContext<'a> {
        MuteContext {
            plan: &self.plan,
            silences: &self.silences,
            inhibit: sources,
            flaps: &self.flaps,
            now,
        }
    }

    /// Raises escalation tiers and flushes every group that is due.
    fn flush_due(&mut self, tx: &Transaction<'_>, now: Timestamp) -> rusqlite::Result<()> {
        let sources = inhibit::Sources::new(&self.plan.inhibits, &self.firing);
        self.escalate(tx, &sources, now)?;
        let due: Vec<String> = self
            .groups
            .values()
            .filter(|g| g.next_flush <= now)
            .map(|g| g.key.clone())
            .collect();
        for key in due {
            self.flush_group(tx, &key, &sources, now)?;
        }
        Ok(())
    }

    fn escalate(
        &mut self,
        tx: &Transaction<'_>,
        sources: &inhibit::Sources,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let mut raised: Vec<(String, Fingerprint, u8)> = Vec::new();
        {
            let cx = self.mute_context(sources, now);
            for g in self.groups.values() {
                let tiers = &self.plan.routes.get(g.route).escalate;
                if tiers.is_empty() {
                    continue;
                }
                for (fp, a) in &g.alerts {
                    if a.status != AlertState::Firing
                        || self.acks.contains_key(fp)
                        || stages::muted(&cx, &a.alert).is_some()
                    {
                        continue;
                    }
                    let t = escalate::tier_at(&a.alert, tiers, a.escalated, now);
                    if t > a.escalated {
                        raised.push((g.key.clone(), *fp, t));
                    }
                }
            }
        }
        for (key, fp, t) in raised {
            if let Some(g) = self.groups.get_mut(&key)
                && let Some(a) = g.alerts.get_mut(&fp)
            {
                a.escalated = t;
                group::save_alert(tx, &key, a)?;
                g.next_flush = g.next_flush.min(now);
            }
        }
        Ok(())
    }

    /// Receivers of a group's route with their tier (0 = the route's own).
    fn tiers_of(&self, route: usize) -> Vec<(String, u8)> {
        let r = self.plan.routes.get(route);
        let mut out: Vec<(String, u8)> = r.receivers.iter().map(|n| (n.clone(), 0)).collect();
        for (i, (_, names)) in r.escalate.iter().enumerate() {
            for n in names {
                if !out.iter().any(|(o, _)| o == n) {
                    out.push((n.clone(), (i + 1) as u8));
                }
            }
        }
        out
    }

    fn send_resolved(&self, receiver: &str) -> bool {
        self.receivers
            .iter()
            .find(|r| r.name == receiver)
            .is_none_or(|r| r.send_resolved)
    }

    fn flush_group(
        &mut self,
        tx: &Transaction<'_>,
        key: &str,
        sources: &inhibit::Sources,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let Some(g) = self.groups.get(key) else {
            return Ok(());
        };
        let route = self.plan.routes.get(g.route);
        let repeat = route.timing.repeat_interval;
        let interval = route.timing.group_interval.as_millis() as i64;
        let tiers = self.tiers_of(g.route);
        let muted: HashMap<Fingerprint, bool> = {
            let cx = self.mute_context(sources, now);
            g.alerts
                .iter()
                .map(|(fp, a)| {
                    (
                        *fp,
                        a.status == AlertState::Firing && stages::muted(&cx, &a.alert).is_some(),
                    )
                })
                .collect()
        };
        // The alert about failed deliveries never goes to the receiver that failed.
        let excluded = |receiver: &str, a: &Alert| {
            a.name == NOTIFICATION_FAILED && a.labels.get("receiver") == Some(receiver)
        };
        let mut rows: Vec<Notification> = Vec::new();
        let mut logs: Vec<(String, LogEntry, bool)> = Vec::new();
        for (receiver, tier) in &tiers {
            let mut entry = g.log.get(receiver).cloned().unwrap_or_default();
            let mut c = Candidates::default();
            for (fp, a) in &g.alerts {
                match a.status {
                    AlertState::Firing => {
                        if muted.get(fp) == Some(&true)
                            || (*tier > 0 && a.escalated < *tier)
                            || excluded(receiver, &a.alert)
                        {
                            continue;
                        }
                        c.firing.push(*fp);
                        if !self.acks.contains_key(fp) {
                            c.unacked += 1;
                        }
                    }
                    _ => {
                        if entry.seen.contains(fp) && !self.flaps.is_flapping(fp) {
                            c.resolved.push(*fp);
                        }
                    }
                }
            }
            let mut changed = false;
            if !self.send_resolved(receiver) && !c.resolved.is_empty() {
                for fp in c.resolved.drain(..) {
                    entry.seen.remove(&fp);
                }
                changed = true;
            }
            if let Some(reason) = dedup::decide(&entry, &c, *tier > 0, repeat, now) {
                let mut alerts = Vec::with_capacity(c.firing.len() + c.resolved.len());
                for fp in &c.firing {
                    if let Some(a) = g.alerts.get(fp) {
                        alerts.push(NotifiedAlert {
                            alert: a.alert.clone(),
                            status: AlertState::Firing,
                            ended_at: None,
                            new: !entry.seen.contains(fp),
                            acknowledged: self.acks.get(fp).cloned(),
                        });
                    }
                }
                for fp in &c.resolved {
                    if let Some(a) = g.alerts.get(fp) {
                        alerts.push(NotifiedAlert {
                            alert: a.alert.clone(),
                            status: AlertState::Resolved,
                            ended_at: a.ended_at,
                            new: false,
                            acknowledged: None,
                        });
                    }
                }
                rows.push(Notification {
                    id: 0,
                    receiver: receiver.clone(),
                    reason,
                    group_key: key.to_string(),
                    group_labels: g.labels.clone(),
                    alerts,
                    created_at: now,
                });
                dedup::record(&mut entry, &c, now);
                changed = true;
            }
            logs.push((receiver.clone(), entry, changed));
        }
        for n in &rows {
            outbox::insert(tx, n)?;
            self.wake.insert(n.receiver.clone());
        }
        let Some(g) = self.groups.get_mut(key) else {
            return Ok(());
        };
        let current: BTreeSet<&str> = tiers.iter().map(|(r, _)| r.as_str()).collect();
        let stale: Vec<String> = g
            .log
            .keys()
            .filter(|r| !current.contains(r.as_str()))
            .cloned()
            .collect();
        for r in stale {
            g.log.remove(&r);
            group::delete_log(tx, key, &r)?;
        }
        for (receiver, entry, changed) in logs {
            if changed {
                group::save_log(tx, key, &receiver, &entry)?;
            }
            if entry.seen.is_empty() && entry.last_sent == 0 {
                continue;
            }
            g.log.insert(receiver, entry);
        }
        // Resolved alerts nobody still has to hear about leave the group.
        let gone: Vec<Fingerprint> = g
            .alerts
            .iter()
            .filter(|(fp, a)| {
                a.status == AlertState::Resolved && !g.log.values().any(|e| e.seen.contains(fp))
            })
            .map(|(fp, _)| *fp)
            .collect();
        for fp in gone {
            g.alerts.remove(&fp);
            group::delete_alert(tx, key, fp)?;
            if let Some(keys) = self.by_alert.get_mut(&fp) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_alert.remove(&fp);
                }
            }
        }
        if g.alerts.is_empty() {
            group::delete_group(tx, key)?;
            self.groups.remove(key);
            return Ok(());
        }
        if !g.flushed {
            g.flushed = true;
            group::save_group(tx, g)?;
        }
        g.next_flush = now + interval.max(1);
        Ok(())
    }

    fn flapping_notice(
        &mut self,
        tx: &Transaction<'_>,
        alert: &Alert,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let sources = inhibit::Sources::new(&self.plan.inhibits, &self.firing);
        let cx = self.mute_context(&sources, now);
        if stages::all_mutes(&cx, alert)
            .iter()
            .any(|m| *m != Muted::Flapping)
        {
            return Ok(());
        }
        let group_labels = Labels::empty();
        for receiver in self.plan.routes.receivers(&alert.labels) {
            let n = Notification {
                id: 0,
                receiver: receiver.clone(),
                reason: NotifyReason::Flapping,
                group_key: format!("flapping:{}", alert.fingerprint),
                group_labels: group_labels.clone(),
                alerts: vec![NotifiedAlert {
                    alert: alert.clone(),
                    status: alert.state,
                    ended_at: None,
                    new: false,
                    acknowledged: self.acks.get(&alert.fingerprint).cloned(),
                }],
                created_at: now,
            };
            outbox::insert(tx, &n)?;
            self.wake.insert(receiver);
        }
        tracing::info!(alert = %alert.name, labels = %alert.labels, "alert is flapping; holding its notifications until it settles");
        Ok(())
    }

    /// Acknowledges firing alert `fp`; every receiver that saw it fire is told.
    pub fn ack(
        &mut self,
        tx: &Transaction<'_>,
        fp: Fingerprint,
        by: String,
        comment: String,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Acknowledgement, OpError> {
        let Some(alert) = self.firing.get(&fp).cloned() else {
            return Err(OpError::NotFiring(fp.to_string()));
        };
        if by.trim().is_empty() {
            return Err(OpError::Invalid(
                "'by' is required: who acknowledges".into(),
            ));
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(OpError::Invalid("'expires_at' is in the past".into()));
        }
        let a = Acknowledgement {
            by,
            comment,
            at: now,
            expires_at,
        };
        let res = (|| -> rusqlite::Result<()> {
            ack::save(tx, fp, &a)?;
            for key in self.by_alert.get(&fp).cloned().unwrap_or_default() {
                let Some(g) = self.groups.get(&key) else {
                    continue;
                };
                let current = g
                    .alerts
                    .get(&fp)
                    .map_or(alert.clone(), |ga| ga.alert.clone());
                for (receiver, entry) in &g.log {
                    if !entry.seen.contains(&fp) {
                        continue;
                    }
                    let n = Notification {
                        id: 0,
                        receiver: receiver.clone(),
                        reason: NotifyReason::Acknowledged,
                        group_key: key.clone(),
                        group_labels: g.labels.clone(),
                        alerts: vec![NotifiedAlert {
                            alert: current.clone(),
                            status: AlertState::Firing,
                            ended_at: None,
                            new: false,
                            acknowledged: Some(a.clone()),
                        }],
                        created_at: now,
                    };
                    outbox::insert(tx, &n)?;
                    self.wake.insert(receiver.clone());
                }
            }
            Ok(())
        })();
        res.map_err(|e| OpError::Invalid(format!("store: {e}")))?;
        self.acks.insert(fp, a.clone());
        self.events.push(NotifyEvent::Ack {
            fingerprint: fp,
            acknowledged: Some(a.clone()),
        });
        Ok(a)
    }

    /// Removes the ack of `fp`; repeats and escalation resume.
    pub fn unack(&mut self, tx: &Transaction<'_>, fp: Fingerprint) -> Result<(), OpError> {
        if self.acks.remove(&fp).is_none() {
            return Err(OpError::NotFiring(format!(
                "{fp} (or it is not acknowledged)"
            )));
        }
        ack::delete(tx, fp).map_err(|e| OpError::Invalid(format!("store: {e}")))?;
        self.events.push(NotifyEvent::Ack {
            fingerprint: fp,
            acknowledged: None,
        });
        Ok(())
    }

    /// Makes a silence.
    pub fn add_silence(
        &mut self,
        tx: &Transaction<'_>,
        s: NewSilence,
        now: Timestamp,
    ) -> Result<SilenceView, OpError> {
        if !s.matchers.is_selective() {
            return Err(OpError::Invalid(
                "a silence needs at least one matcher that does not match every alert".into(),
            ));
        }
        if s.ends_at <= s.starts_at || s.ends_at <= now {
            return Err(OpError::Invalid(
                "'ends_at' must be after 'starts_at' and in the future".into(),
            ));
        }
        if s.created_by.trim().is_empty() {
            return Err(OpError::Invalid("'created_by' is required".into()));
        }
        let id = silence::new_id(tx).map_err(|e| OpError::Invalid(format!("store: {e}")))?;
        let sil = Silence {
            id,
            matchers: s.matchers,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            comment: s.comment,
            created_by: s.created_by,
            created_at: now,
            updated_at: now,
        };
        silence::save(tx, &sil).map_err(|e| OpError::Invalid(format!("store: {e}")))?;
        let view = sil.view(now);
        self.silences.push(sil);
        self.events.push(NotifyEvent::Silence {
            silence: view.clone(),
        });
        Ok(view)
    }

    /// Expires silence `id` now.
    pub fn expire_silence(
        &mut self,
        tx: &Transaction<'_>,
        id: &str,
        now: Timestamp,
    ) -> Result<SilenceView, OpError> {
        let Some(s) = self.silences.iter_mut().find(|s| s.id == id) else {
            return Err(OpError::NoSilence(id.to_string()));
        };
        if s.ends_at > now {
            s.ends_at = now.max(s.starts_at);
            s.updated_at = now;
            silence::save(tx, s).map_err(|e| OpError::Invalid(format!("store: {e}")))?;
        }
        let view = s.view(now);
        self.events.push(NotifyEvent::Silence {
            silence: view.clone(),
        });
        // Alerts it muted are notified at their group's next flush.
        Ok(view)
    }

    /// Deletes silences expired before `cutoff`.
    pub fn purge(&mut self, tx: &Transaction<'_>, cutoff: Timestamp) -> rusqlite::Result<()> {
        silence::purge(tx, cutoff)?;
        self.silences.retain(|s| s.ends_at >= cutoff);
        outbox::purge(tx, cutoff)?;
        Ok(())
    }

    /// Every silence, newest first.
    pub fn silences(&self, now: Timestamp) -> Vec<SilenceView> {
        let mut v: Vec<SilenceView> = self.silences.iter().map(|s| s.view(now)).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        v
    }

    /// The notification state of each alert, for the API.
    pub fn status(&self, alerts: &[Alert], now: Timestamp) -> Vec<AlertStatus> {
        let sources = inhibit::Sources::new(&self.plan.inhibits, &self.firing);
        let cx = self.mute_context(&sources, now);
        alerts
            .iter()
            .map(|a| {
                let mut st = AlertStatus {
                    acknowledged: self.acks.get(&a.fingerprint).cloned(),
                    flapping: self.flaps.is_flapping(&a.fingerprint),
                    ..Default::default()
                };
                for m in stages::all_mutes(&cx, a) {
                    match m {
                        Muted::Silenced { ids } => st.silenced_by = ids,
                        Muted::Inhibited { rule } => st.inhibited_by.push(rule),
                        Muted::Maintenance { name } => st.maintenance.push(name),
                        Muted::Flapping => {}
                    }
                }
                st
            })
            .collect()
    }

    /// Receivers with new outbox rows since the last call.
    pub fn take_wake(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.wake)
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<NotifyEvent> {
        std::mem::take(&mut self.events)
    }

    /// True when flap states of `rule`'s alerts are tracked.
    pub fn tracks_rule(&self, rule: &str) -> bool {
        self.plan.flapping.is_some() && self.flaps.tracks_rule(rule)
    }

    /// Number of groups (for tests and telemetry).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The acknowledgement of `fp`.
    pub fn ack_of(&self, fp: &Fingerprint) -> Option<&Acknowledgement> {
        self.acks.get(fp)
    }
}
