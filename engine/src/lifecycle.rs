//! The alert lifecycle: one instance per (rule, label set), moving
//! inactive → pending → firing → resolved, persisted so a restart neither forgets
//! nor re-announces.
//!
//! [`AlertBook::apply`] is pure (time is a parameter), so every timer rule is unit
//! tested without sleeping; [`persist`] writes its [`Change`]s in one transaction.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Transaction, params};
use serde::Serialize;

use crate::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity, Timestamp};

/// How long a restart may take for pending alerts to keep their pending-since time
/// (Prometheus' `for_outage_tolerance`).
pub const OUTAGE_TOLERANCE: Duration = Duration::from_secs(3_600);

/// What the lifecycle needs to know of a rule.
#[derive(Debug, Clone)]
pub struct RuleMeta {
    /// The rule's name.
    pub name: String,
    /// Its severity.
    pub severity: Severity,
    /// How long an instance must be active before it fires.
    pub pending_for: Duration,
    /// How long a firing instance stays firing after it stops being returned.
    pub keep_firing_for: Duration,
    /// The rule's evaluation interval (a gap over twice this resets pending).
    pub interval: Duration,
}

/// One instance a rule returned in an evaluation.
#[derive(Debug, Clone)]
pub struct ActiveInstance {
    /// Full labels (series + rule + `alertname` + `severity`).
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// Rendered annotations.
    pub annotations: Annotations,
}

/// A state change of one alert instance.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The alert as it is after the change (for `Inactive`/`Resolved`: as it was last).
    pub alert: Alert,
    /// The state before (`None` = inactive).
    pub from: Option<AlertState>,
    /// The state after (`None` = inactive without having fired).
    pub to: Option<AlertState>,
    /// When.
    pub at: Timestamp,
}

impl Change {
    /// `pending`, `firing`, `resolved` or `inactive`.
    pub fn to_str(&self) -> &'static str {
        self.to.map(|s| s.as_str()).unwrap_or("inactive")
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    last_active: Timestamp,
    last_eval: Timestamp,
    /// The first evaluation that no longer returned a firing alert: where
    /// `keep_firing_for` counts from, as Prometheus' `KeepFiringSince`.
    missing_since: Option<Timestamp>,
}

/// The active alerts, by fingerprint.
#[derive(Debug, Default)]
pub struct AlertBook {
    alerts: HashMap<Fingerprint, Tracked>,
}

/// The result of applying one evaluation.
#[derive(Debug, Default)]
pub struct Applied {
    /// The rule evaluated (empty for changes not from one evaluation).
    pub rule: String,
    /// State changes, to record in history and announce.
    pub changes: Vec<Change>,
    /// Every alert still active after this evaluation (state, value and times to
    /// persist).
    pub active: Vec<(Alert, Timestamp, Timestamp)>,
    /// Fingerprints no longer active.
    pub gone: Vec<Fingerprint>,
}

impl AlertBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Active alerts, most severe first, then oldest first.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.alerts.values().map(|t| t.alert.clone()).collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.since.cmp(&b.since))
                .then(a.name.cmp(&b.name))
        });
        v
    }

    /// Number of alerts in `state`.
    pub fn count(&self, state: AlertState) -> usize {
        self.alerts
            .values()
            .filter(|t| t.alert.state == state)
            .count()
    }

    /// Applies one evaluation of `rule` at `now`.
    pub fn apply(
        &mut self,
        rule: &RuleMeta,
        instances: Vec<ActiveInstance>,
        now: Timestamp,
    ) -> Applied {
        let mut out = Applied {
            rule: rule.name.clone(),
            ..Applied::default()
        };
        let gap_limit = 2 * rule.interval.as_millis() as i64;
        let mut seen: Vec<Fingerprint> = Vec::with_capacity(instances.len());
        for inst in instances {
            let fp = Fingerprint::of(&rule.name, &inst.labels);
            if seen.contains(&fp) {
                continue;
            }
            seen.push(fp);
            match self.alerts.get_mut(&fp) {
                Some(t) => {
                    t.alert.value = inst.value;
                    t.alert.annotations = inst.annotations;
                    if t.alert.state == AlertState::Pending
                        && gap_limit > 0
                        && now - t.last_eval > gap_limit
                    {
                        // Evaluation stalled: as in Prometheus, pending starts over.
                        t.alert.since = now;
                    }
                    t.last_active = now;
                    t.last_eval = now;
                    t.missing_since = None;
                    if t.alert.state == AlertState::Pending
                        && now - t.alert.since >= rule.pending_for.as_millis() as i64
                    {
                        t.alert.state = AlertState::Firing;
                        t.alert.fired_at = Some(now);
                        out.changes.push(Change {
                            alert: t.alert.clone(),
                            from: Some(AlertState::Pending),
                            to: Some(AlertState::Firing),
                            at: now,
                        });
                    }
                }
                None => {
                    let fires_now = rule.pending_for.is_zero();
                    let alert = Alert {
                        name: rule.name.clone(),
                        state: if fires_now {
                            AlertState::Firing
                        } else {
                            AlertState::Pending
                        },
                        severity: rule.severity,
                        labels: inst.labels,
                        annotations: inst.annotations,
                        value: inst.value,
                        fingerprint: fp,
                        since: now,
                        fired_at: fires_now.then_some(now),
                    };
                    out.changes.push(Change {
                        alert: alert.clone(),
                        from: None,
                        to: Some(alert.state),
                        at: now,
                    });
                    self.alerts.insert(
                        fp,
                        Tracked {
                            alert,
                            last_active: now,
                            last_eval: now,
                            missing_since: None,
                        },
                    );
                }
            }
        }
        let keep_ms = rule.keep_firing_for.as_millis() as i64;
        let mine: Vec<Fingerprint> = self
            .alerts
            .iter()
            .filter(|(fp, t)| t.alert.name == rule.name && !seen.contains(fp))
            .map(|(fp, _)| *fp)
            .collect();
        for fp in mine {
            let Some(t) = self.alerts.get_mut(&fp) else {
                continue;
            };
            t.last_eval = now;
            // As in Prometheus, a firing alert keeps firing while less than
            // `keep_firing_for` has passed since the first evaluation that no
            // longer returned it.
            if t.alert.state == AlertState::Firing && keep_ms > 0 {
                let since = *t.missing_since.get_or_insert(now);
                if now - since < keep_ms {
                    continue;
                }
            }
            if let Some(t) = self.alerts.remove(&fp) {
                let from = t.alert.state;
                let to = (from == AlertState::Firing).then_some(AlertState::Resolved);
                let mut alert = t.alert;
                if to.is_some() {
                    alert.state = AlertState::Resolved;
                }
                out.changes.push(Change {
                    alert,
                    from: Some(from),
                    to,
                    at: now,
                });
                out.gone.push(fp);
            }
        }
        for t in self.alerts.values().filter(|t| t.alert.name == rule.name) {
            out.active
                .push((t.alert.clone(), t.last_active, t.last_eval));
        }
        out
    }

    /// Drops every alert of rules not in `rules` (a rule was deleted or renamed),
    /// resolving firing ones.
    pub fn retain_rules(&mut self, rules: &[&str], now: Timestamp) -> Applied {
        let mut out = Applied::default();
        let gone: Vec<Fingerprint> = self
            .alerts
            .iter()
            .filter(|(_, t)| !rules.contains(&t.alert.name.as_str()))
            .map(|(fp, _)| *fp)
            .collect();
        for fp in gone {
            if let Some(t) = self.alerts.remove(&fp) {
                let from = t.alert.state;
                let mut alert = t.alert;
                let to = (from == AlertState::Firing).then_some(AlertState::Resolved);
                if to.is_some() {
                    alert.state = AlertState::Resolved;
                }
                out.changes.push(Change {
                    alert,
                    from: Some(from),
                    to,
                    at: now,
                });
                out.gone.push(fp);
            }
        }
        out
    }

    /// Loads the active alerts from the store. Alerts whose last evaluation is within
    /// [`OUTAGE_TOLERANCE`] of `now` keep their times, as if no time had passed.
    pub fn load(conn: &rusqlite::Connection, now: Timestamp) -> rusqlite::Result<AlertBook> {
        let mut st = conn.prepare(
            "SELECT fingerprint, rule, severity, labels, annotations, state, value, active_since, fired_at, last_active, last_eval FROM alerts",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<f64>>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
            ))
        })?;
        let mut book = AlertBook::new();
        for row in rows {
            let (fp, rule, sev, labels, ann, state, value, since, fired_at, last_active, last_eval) =
                row?;
            let (Ok(fingerprint), Ok(severity), Ok(labels), Ok(annotations), Ok(state)) = (
                fp.parse::<Fingerprint>(),
                sev.parse::<Severity>(),
                serde_json::from_str::<Labels>(&labels),
                serde_json::from_str::<Annotations>(&ann),
                state.parse::<AlertState>(),
            ) else {
                tracing::warn!(fingerprint = %fp, "skipping an unreadable stored alert");
                continue;
            };
            let restored = now - last_eval <= OUTAGE_TOLERANCE.as_millis() as i64;
            book.alerts.insert(
                fingerprint,
                Tracked {
                    alert: Alert {
                        name: rule,
                        state,
                        severity,
                        labels,
                        annotations,
                        value: value.unwrap_or(f64::NAN),
                        fingerprint,
                        since,
                        fired_at,
                    },
                    last_active: if restored {
                        now.max(last_active)
                    } else {
                        last_active
                    },
                    last_eval: if restored { now } else { last_eval },
                    // Restored: as if no time had passed, so a missing alert's
                    // keep_firing_for counts from the next evaluation. Older:
                    // it counts from when the alert was last returned.
                    missing_since: (!restored).then_some(last_active),
                },
            );
        }
        Ok(book)
    }
}

/// Writes an evaluation's outcome: active alerts upserted, gone ones deleted, every
/// change appended to history.
pub fn persist(tx: &Transaction<'_>, applied: &Applied) -> rusqlite::Result<()> {
    let mut up = tx.prepare_cached(
        "INSERT INTO alerts (fingerprint, rule, severity, labels, annotations, state, value, active_since, fired_at, last_active, last_eval)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (fingerprint) DO UPDATE SET annotations = ?5, state = ?6, value = ?7, active_since = ?8,
           fired_at = ?9, last_active = ?10, last_eval = ?11",
    )?;
    for (a, last_active, last_eval) in &applied.active {
        up.execute(params![
            a.fingerprint.to_string(),
            a.name,
            a.severity.as_str(),
            json(&a.labels),
            json(&a.annotations),
            a.state.as_str(),
            finite(a.value),
            a.since,
            a.fired_at,
            last_active,
            last_eval
        ])?;
    }
    let mut del = tx.prepare_cached("DELETE FROM alerts WHERE fingerprint = ?1")?;
    for fp in &applied.gone {
        del.execute([fp.to_string()])?;
    }
    let mut hist = tx.prepare_cached(
        "INSERT INTO alert_history (fingerprint, rule, severity, labels, annotations, from_state, to_state, value, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for c in &applied.changes {
        hist.execute(params![
            c.alert.fingerprint.to_string(),
            c.alert.name,
            c.alert.severity.as_str(),
            json(&c.alert.labels),
            json(&c.alert.annotations),
            c.from.map(|s| s.as_str()),
            c.to_str(),
            finite(c.alert.value),
            c.at
        ])?;
    }
    Ok(())
}

/// SQLite stores NaN as NULL; keep ±Inf and finite values.
fn finite(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// One row of alert history, as `/api/v1/alerts/history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The rule.
    pub name: String,
    /// Its severity.
    pub severity: String,
    /// Its labels.
    pub labels: serde_json::Value,
    /// Its annotations.
    pub annotations: serde_json::Value,
    /// State before (`null` = inactive).
    pub from: Option<String>,
    /// State after: `pending`, `firing`, `resolved` or `inactive`.
    pub to: String,
    /// The value at the change.
    pub value: Option<f64>,
    /// When (unix ms).
    pub at: Timestamp,
}

/// Reads history, newest first; `fingerprint` narrows it to one alert.
pub fn history(
    conn: &rusqlite::Connection,
    fingerprint: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT fingerprint, rule, severity, labels, annotations, from_state, to_state, value, at FROM alert_history
         WHERE (?1 IS NULL OR fingerprint = ?1) ORDER BY at DESC, id DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![fingerprint, limit as i64], |r| {
        Ok(HistoryEntry {
            fingerprint: r.get(0)?,
            name: r.get(1)?,
            severity: r.get(2)?,
            labels: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
            annotations: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
            from: r.get(5)?,
            to: r.get(6)?,
            value: r.get(7)?,
            at: r.get(8)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pending: u64, keep: u64) -> RuleMeta {
        RuleMeta {
            name: "R".into(),
            severity: Severity::Critical,
            pending_for: Duration::from_secs(pending),
            keep_firing_for: Duration::from_secs(keep),
            interval: Duration::from_secs(10),
        }
    }

    fn inst(instance: &str, v: f64) -> ActiveInstance {
        ActiveInstance {
            labels: Labels::new([("instance", instance), ("alertname", "R")]).unwrap(),
            value: v,
            annotations: Annotations::new(),
        }
    }

    fn states(a: &Applied) -> Vec<(Option<AlertState>, Option<AlertState>)> {
        a.changes.iter().map(|c| (c.from, c.to)).collect()
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let r = rule(30, 0);
        let mut b = AlertBook::new();
        let a = b.apply(&r, vec![inst("a", 1.0)], 0);
        assert_eq!(states(&a), vec![(None, Some(AlertState::Pending))]);
        assert!(b.apply(&r, vec![inst("a", 2.0)], 10_000).changes.is_empty());
        assert!(b.apply(&r, vec![inst("a", 2.0)], 20_000).changes.is_empty());
        let a = b.apply(&r, vec![inst("a", 3.0)], 30_000);
        assert_eq!(
            states(&a),
            vec![(Some(AlertState::Pending), Some(AlertState::Firing))]
        );
        assert_eq!(
            a.changes[0].alert.since, 0,
            "since never moves while active"
        );
        assert_eq!(a.changes[0].alert.value, 3.0);
        let a = b.apply(&r, vec![], 40_000);
        assert_eq!(
            states(&a),
            vec![(Some(AlertState::Firing), Some(AlertState::Resolved))]
        );
        assert_eq!(b.alerts().len(), 0);
    }

    #[test]
    fn zero_pending_fires_at_once_and_pending_that_clears_is_inactive() {
        let mut b = AlertBook::new();
        let a = b.apply(&rule(0, 0), vec![inst("a", 1.0)], 0);
        assert_eq!(states(&a), vec![(None, Some(AlertState::Firing))]);
        let r = rule(60, 0);
        let mut b = AlertBook::new();
        b.apply(&r, vec![inst("a", 1.0)], 0);
        let a = b.apply(&r, vec![], 10_000);
        assert_eq!(states(&a), vec![(Some(AlertState::Pending), None)]);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let r = rule(0, 30);
        let mut b = AlertBook::new();
        b.apply(&r, vec![inst("a", 1.0)], 0);
        // Missing from 10 s on: firing while less than 30 s have passed since
        // then (Prometheus' KeepFiringSince), so resolved at 40 s.
        assert!(b.apply(&r, vec![], 10_000).changes.is_empty());
        assert!(b.apply(&r, vec![], 20_000).changes.is_empty());
        assert!(b.apply(&r, vec![], 30_000).changes.is_empty());
        // Returned again: the count starts over.
        assert!(b.apply(&r, vec![inst("a", 1.0)], 35_000).changes.is_empty());
        assert!(b.apply(&r, vec![], 45_000).changes.is_empty());
        assert!(b.apply(&r, vec![], 70_000).changes.is_empty());
        let a = b.apply(&r, vec![], 75_000);
        assert_eq!(
            states(&a),
            vec![(Some(AlertState::Firing), Some(AlertState::Resolved))]
        );
    }

    #[test]
    fn a_gap_in_evaluation_restarts_pending() {
        let r = rule(30, 0);
        let mut b = AlertBook::new();
        b.apply(&r, vec![inst("a", 1.0)], 0);
        // 25 s without evaluation > 2 × 10 s interval.
        assert!(b.apply(&r, vec![inst("a", 1.0)], 25_000).changes.is_empty());
        assert!(
            b.apply(&r, vec![inst("a", 1.0)], 35_000).changes.is_empty(),
            "restarted at 25 s"
        );
        let a = b.apply(&r, vec![inst("a", 1.0)], 55_000);
        assert_eq!(
            states(&a),
            vec![(Some(AlertState::Pending), Some(AlertState::Firing))]
        );
    }

    #[test]
    fn instances_are_tracked_per_label_set() {
        let r = rule(0, 0);
        let mut b = AlertBook::new();
        b.apply(&r, vec![inst("a", 1.0), inst("b", 1.0)], 0);
        let a = b.apply(&r, vec![inst("b", 1.0)], 10_000);
        assert_eq!(a.changes.len(), 1);
        assert_eq!(a.changes[0].alert.labels.get("instance"), Some("a"));
        assert_eq!(b.count(AlertState::Firing), 1);
    }

    #[tokio::test]
    async fn state_survives_a_restart_without_new_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(&crate::store::StoreOptions::new(dir.path().join("w.db")))
                .unwrap();
        let r = rule(30, 0);
        let mut b = AlertBook::new();
        for (instances, now) in [
            (vec![inst("a", 1.0), inst("b", 1.0)], 0),
            (vec![inst("a", 1.0)], 10_000),
            (vec![inst("a", 1.0)], 20_000),
            (vec![inst("a", 1.0)], 30_000),
        ] {
            let applied = b.apply(&r, instances, now);
            store.write(move |tx| persist(tx, &applied)).await.unwrap();
        }

        let mut b2 = store.read(|c| AlertBook::load(c, 31_000)).unwrap();
        let alerts = b2.alerts();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].state, AlertState::Firing);
        assert_eq!(alerts[0].since, 0);
        assert!(
            b2.apply(&r, vec![inst("a", 1.0)], 40_000)
                .changes
                .is_empty(),
            "no second announcement"
        );
        let h = store.read(|c| history(c, None, 10)).unwrap();
        assert_eq!(h[0].to, "firing");
        assert_eq!(h.len(), 4, "pending a, pending b, inactive b, firing a");
        store.close().await.unwrap();
    }
}
