//! Stage: dedup and repeat. For each receiver of a group, the notification log
//! says which alerts it was told are firing (and not yet told resolved) and when
//! it was last told anything. From that and the group's current alerts this stage
//! decides whether to notify and why, as Alertmanager's `DedupStage` does, except
//! that an alert muted after it fired stays in the log, so its resolve is still
//! sent when it resolves.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::model::{Fingerprint, Timestamp};
use crate::ports::NotifyReason;

/// What one receiver was told about one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEntry {
    /// Alerts it was told are firing and not yet told resolved.
    pub seen: BTreeSet<Fingerprint>,
    /// When it was last notified (unix ms); 0 = never.
    pub last_sent: Timestamp,
}

/// What the group holds for one receiver at a flush.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Firing alerts this receiver may be told about (not muted, tier reached).
    pub firing: Vec<Fingerprint>,
    /// How many of them are not acknowledged.
    pub unacked: usize,
    /// Resolved alerts it saw fire (and whose resolve is not held).
    pub resolved: Vec<Fingerprint>,
}

/// Why to notify, or `None`.
pub fn decide(
    entry: &LogEntry,
    c: &Candidates,
    escalation_tier: bool,
    repeat: Duration,
    now: Timestamp,
) -> Option<NotifyReason> {
    let has_new = c.firing.iter().any(|fp| !entry.seen.contains(fp));
    if has_new {
        return Some(if escalation_tier {
            NotifyReason::Escalation
        } else if entry.last_sent == 0 && entry.seen.is_empty() {
            NotifyReason::FirstNotification
        } else {
            NotifyReason::NewAlertsInGroup
        });
    }
    if !c.resolved.is_empty() {
        return Some(NotifyReason::Resolved);
    }
    if c.unacked > 0 && now - entry.last_sent >= repeat.as_millis() as i64 {
        return Some(NotifyReason::RepeatInterval);
    }
    None
}

/// The log after a notification with `c` was sent.
pub fn record(entry: &mut LogEntry, c: &Candidates, now: Timestamp) {
    entry.seen.extend(c.firing.iter().copied());
    for fp in &c.resolved {
        entry.seen.remove(fp);
    }
    entry.last_sent = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u64) -> Fingerprint {
        Fingerprint(n)
    }

    #[test]
    fn reasons_in_order() {
        let rep = Duration::from_secs(3600);
        let mut e = LogEntry::default();
        let mut c = Candidates {
            firing: vec![fp(1)],
            unacked: 1,
            resolved: vec![],
        };
        assert_eq!(
            decide(&e, &c, false, rep, 0),
            Some(NotifyReason::FirstNotification)
        );
        record(&mut e, &c, 1_000);
        assert_eq!(decide(&e, &c, false, rep, 2_000), None);
        c.firing.push(fp(2));
        c.unacked = 2;
        assert_eq!(
            decide(&e, &c, false, rep, 2_000),
            Some(NotifyReason::NewAlertsInGroup)
        );
        record(&mut e, &c, 2_000);
        c = Candidates {
            firing: vec![fp(2)],
            unacked: 1,
            resolved: vec![fp(1)],
        };
        assert_eq!(
            decide(&e, &c, false, rep, 3_000),
            Some(NotifyReason::Resolved)
        );
        record(&mut e, &c, 3_000);
        assert_eq!(e.seen, BTreeSet::from([fp(2)]));
        c.resolved.clear();
        assert_eq!(decide(&e, &c, false, rep, 3_000 + 3_599_999), None);
        assert_eq!(
            decide(&e, &c, false, rep, 3_000 + 3_600_000),
            Some(NotifyReason::RepeatInterval)
        );
        c.unacked = 0;
        assert_eq!(
            decide(&e, &c, false, rep, 3_000 + 3_600_000),
            None,
            "acknowledged alerts are not repeated"
        );
        assert_eq!(
            decide(&LogEntry::default(), &c, true, rep, 0),
            Some(NotifyReason::Escalation)
        );
    }

    #[test]
    fn a_muted_alert_stays_seen_so_its_resolve_goes_out() {
        let rep = Duration::from_secs(3600);
        let mut e = LogEntry::default();
        record(
            &mut e,
            &Candidates {
                firing: vec![fp(1)],
                unacked: 1,
                resolved: vec![],
            },
            0,
        );
        // Silenced: it is no longer a candidate while firing…
        let silenced = Candidates::default();
        assert_eq!(decide(&e, &silenced, false, rep, 10), None);
        // …but still in the log when it resolves.
        assert!(e.seen.contains(&fp(1)));
    }
}
