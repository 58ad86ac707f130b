//! Stage: escalation. A route's tiers tell more receivers about alerts that fire
//! unacknowledged (and unmuted) for longer than each tier's `after`. An alert's
//! tier only rises; an acknowledgement stops it rising.

use std::time::Duration;

use crate::model::{Alert, Timestamp};

/// The tier `alert` has reached at `now` under `tiers`, at least `current`.
pub fn tier_at(
    alert: &Alert,
    tiers: &[(Duration, Vec<String>)],
    current: u8,
    now: Timestamp,
) -> u8 {
    let since = alert.fired_at.unwrap_or(alert.since);
    let mut tier = current;
    for (i, (after, _)) in tiers.iter().enumerate() {
        let k = (i + 1) as u8;
        if k > tier && now - since >= after.as_millis() as i64 {
            tier = k;
        }
    }
    tier
}

/// When `alert` reaches its next tier, if it has one left.
pub fn next_due(
    alert: &Alert,
    tiers: &[(Duration, Vec<String>)],
    current: u8,
) -> Option<Timestamp> {
    let since = alert.fired_at.unwrap_or(alert.since);
    tiers
        .get(current as usize)
        .map(|(after, _)| since + after.as_millis() as i64)
}
