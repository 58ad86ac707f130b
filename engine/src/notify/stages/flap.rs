//! Flapping detection, Icinga-style: each alert's firing/not-firing state over the
//! last `window` evaluations of its rule, with state changes weighted from 0.8
//! (oldest) to 1.2 (newest). At or above `high` percent the alert starts
//! flapping (one notice is sent, further changes are held); below `low` it stops
//! and its current state is notified. The state is persisted, so a restart does not
//! forget a flapping alert.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{Connection, Transaction, params};

use crate::model::{Alert, Fingerprint, Timestamp};
use crate::notify::config::FlapPolicy;

/// The history of one alert.
#[derive(Debug, Clone)]
pub struct FlapState {
    /// Its rule.
    pub rule: String,
    /// Bit i = firing at the i-th newest evaluation (bit 0 = newest).
    pub history: u64,
    /// True while flapping.
    pub flapping: bool,
    /// The alert as last seen, for the notice.
    pub alert: Alert,
    /// When it changed last.
    pub changed_at: Timestamp,
}

/// What an evaluation did to flap states.
#[derive(Debug, Default)]
pub struct FlapEvents {
    /// Alerts that started flapping.
    pub started: Vec<Alert>,
    /// Alerts that stopped flapping.
    pub stopped: Vec<Fingerprint>,
}

/// Every tracked alert.
#[derive(Debug, Default)]
pub struct FlapBook {
    states: HashMap<Fingerprint, FlapState>,
    by_rule: HashMap<String, BTreeSet<Fingerprint>>,
}

/// Percent state change of `history` over `window` evaluations.
pub fn percent_change(history: u64, window: u32) -> f64 {
    let n = window.clamp(2, 64) as usize;
    let bit = |i: usize| (history >> i) & 1;
    let mut sum = 0.0;
    // Transition i is between evaluation i (newer) and i+1 (older); i = 0 is newest.
    for i in 0..n - 1 {
        if bit(i) != bit(i + 1) {
            let age = (n - 2 - i) as f64 / ((n - 2).max(1)) as f64; // 0 oldest .. 1 newest
            sum += 0.8 + 0.4 * age;
        }
    }
    100.0 * sum / (n - 1) as f64
}

impl FlapBook {
    /// True while `fp` is flapping.
    pub fn is_flapping(&self, fp: &Fingerprint) -> bool {
        self.states.get(fp).is_some_and(|s| s.flapping)
    }

    /// True when some alert of `rule` is tracked.
    pub fn tracks_rule(&self, rule: &str) -> bool {
        self.by_rule.get(rule).is_some_and(|s| !s.is_empty())
    }

    /// The state of `fp`, if tracked.
    pub fn get(&self, fp: &Fingerprint) -> Option<&FlapState> {
        self.states.get(fp)
    }

    /// Starts tracking an alert that just changed state, assuming it was steadily in
    /// the other state before.
    pub fn track(&mut self, alert: &Alert, was_firing: bool, now: Timestamp) {
        let fp = alert.fingerprint;
        if self.states.contains_key(&fp) {
            if let Some(s) = self.states.get_mut(&fp) {
                s.alert = alert.clone();
            }
            return;
        }
        self.by_rule
            .entry(alert.name.clone())
            .or_default()
            .insert(fp);
        self.states.insert(
            fp,
            FlapState {
                rule: alert.name.clone(),
                history: if was_firing { u64::MAX } else { 0 },
                flapping: false,
                alert: alert.clone(),
                changed_at: now,
            },
        );
    }

    /// Records one evaluation of `rule`, where `firing` are its firing alerts.
    pub fn record(
        &mut self,
        tx: &Transaction<'_>,
        policy: &FlapPolicy,
        rule: &str,
        firing: &BTreeSet<Fingerprint>,
        now: Timestamp,
    ) -> rusqlite::Result<FlapEvents> {
        let mut ev = FlapEvents::default();
        let Some(fps) = self.by_rule.get(rule) else {
            return Ok(ev);
        };
        let mask = if policy.window >= 64 {
            u64::MAX
        } else {
            (1u64 << policy.window) - 1
        };
        let mut drop = Vec::new();
        for fp in fps.clone() {
            let Some(s) = self.states.get_mut(&fp) else {
                continue;
            };
            s.history = (s.history << 1) | u64::from(firing.contains(&fp));
            let pct = percent_change(s.history, policy.window);
            if !s.flapping && pct >= policy.high {
                s.flapping = true;
                s.changed_at = now;
                ev.started.push(s.alert.clone());
            } else if s.flapping && pct < policy.low {
                s.flapping = false;
                s.changed_at = now;
                ev.stopped.push(fp);
            }
            let h = s.history & mask;
            let steady = h == 0 || h == mask;
            if steady && !s.flapping {
                drop.push(fp);
            } else {
                save(tx, fp, s)?;
            }
        }
        for fp in drop {
            self.states.remove(&fp);
            if let Some(set) = self.by_rule.get_mut(rule) {
                set.remove(&fp);
            }
            tx.prepare_cached("DELETE FROM flap_state WHERE fingerprint = ?1")?
                .execute([fp.to_string()])?;
        }
        Ok(ev)
    }

    /// Loads the tracked alerts.
    pub fn load(conn: &Connection) -> rusqlite::Result<FlapBook> {
        let mut st = conn.prepare(
            "SELECT fingerprint, rule, history, flapping, alert, changed_at FROM flap_state",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut book = FlapBook::default();
        for row in rows {
            let (fp, rule, history, flapping, alert, changed_at) = row?;
            let (Ok(fp), Ok(alert)) = (
                fp.parse::<Fingerprint>(),
                serde_json::from_str::<Alert>(&alert),
            ) else {
                continue;
            };
            book.by_rule.entry(rule.clone()).or_default().insert(fp);
            book.states.insert(
                fp,
                FlapState {
                    rule,
                    history: history as u64,
                    flapping,
                    alert,
                    changed_at,
                },
            );
        }
        Ok(book)
    }
}

fn save(tx: &Transaction<'_>, fp: Fingerprint, s: &FlapState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO flap_state (fingerprint, rule, history, flapping, alert, changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (fingerprint) DO UPDATE SET history = ?3, flapping = ?4, alert = ?5, changed_at = ?6",
    )?
    .execute(params![
        fp.to_string(),
        s.rule,
        s.history as i64,
        s.flapping,
        serde_json::to_string(&s.alert).unwrap_or_default(),
        s.changed_at
    ])?;
    Ok(())
}

/// The flapping stage: a flapping alert's changes are held until it settles.
pub struct FlapStage;

impl super::MuteStage for FlapStage {
    fn name(&self) -> &'static str {
        "flapping"
    }

    fn mute(&self, cx: &super::MuteContext<'_>, alert: &Alert) -> Option<super::Muted> {
        cx.flaps
            .is_flapping(&alert.fingerprint)
            .then_some(super::Muted::Flapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_change_weights_recent_changes_more() {
        assert_eq!(percent_change(0, 21), 0.0);
        assert_eq!(percent_change(u64::MAX, 21), 0.0);
        // Alternating every evaluation: every transition counts.
        let alt = 0x5555_5555_5555_5555u64;
        assert!((percent_change(alt, 21) - 100.0).abs() < 1e-9);
        let newest = percent_change(0b1, 21);
        let oldest = percent_change(1 << 20, 21);
        assert!(newest > oldest, "{newest} vs {oldest}");
        assert!((newest - 6.0).abs() < 1e-9, "1.2/20 = 6%: {newest}");
    }
}
