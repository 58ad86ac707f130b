//! Groups: the alerts a route gathers under the same values of its `group_by`
//! labels, notified together, with a notification log per receiver. Persisted
//! row by row as they change, so a restart resumes every timer and never re-sends
//! what a receiver already has.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Connection, Transaction, params};

use super::stages::dedup::LogEntry;
use crate::model::{Alert, AlertState, Fingerprint, Labels, Timestamp};

/// An alert in a group.
#[derive(Debug, Clone)]
pub struct GroupAlert {
    /// The alert as last seen.
    pub alert: Alert,
    /// `Firing` or `Resolved`.
    pub status: AlertState,
    /// When it resolved.
    pub ended_at: Option<Timestamp>,
    /// The escalation tier it reached (0 = none).
    pub escalated: u8,
}

/// One group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Route id + group labels.
    pub key: String,
    /// Index of the route in the tree.
    pub route: usize,
    /// The route's stable id.
    pub route_id: u64,
    /// The `group_by` labels.
    pub labels: Labels,
    /// Its alerts.
    pub alerts: BTreeMap<Fingerprint, GroupAlert>,
    /// When it was made.
    pub created_at: Timestamp,
    /// True once its first flush happened.
    pub flushed: bool,
    /// Its next flush (unix ms).
    pub next_flush: Timestamp,
    /// What each receiver was told.
    pub log: BTreeMap<String, LogEntry>,
}

/// Writes the group row.
pub fn save_group(tx: &Transaction<'_>, g: &Group) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notify_groups (key, route_id, labels, created_at, flushed) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET flushed = ?5",
    )?
    .execute(params![
        g.key,
        format!("{:016x}", g.route_id),
        serde_json::to_string(&g.labels).unwrap_or_else(|_| "{}".into()),
        g.created_at,
        g.flushed
    ])?;
    Ok(())
}

/// Deletes the group and everything in it.
pub fn delete_group(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM notify_groups WHERE key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM notify_group_alerts WHERE group_key = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM notify_log WHERE group_key = ?1")?
        .execute([key])?;
    Ok(())
}

/// Writes one alert of a group.
pub fn save_alert(tx: &Transaction<'_>, key: &str, a: &GroupAlert) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notify_group_alerts (group_key, fingerprint, alert, status, ended_at, escalated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (group_key, fingerprint) DO UPDATE SET alert = ?3, status = ?4, ended_at = ?5, escalated = ?6",
    )?
    .execute(params![
        key,
        a.alert.fingerprint.to_string(),
        serde_json::to_string(&a.alert).unwrap_or_default(),
        a.status.as_str(),
        a.ended_at,
        a.escalated
    ])?;
    Ok(())
}

/// Deletes one alert of a group.
pub fn delete_alert(tx: &Transaction<'_>, key: &str, fp: Fingerprint) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM notify_group_alerts WHERE group_key = ?1 AND fingerprint = ?2")?
        .execute(params![key, fp.to_string()])?;
    Ok(())
}

/// Writes a receiver's log entry.
pub fn save_log(
    tx: &Transaction<'_>,
    key: &str,
    receiver: &str,
    e: &LogEntry,
) -> rusqlite::Result<()> {
    let seen: Vec<String> = e.seen.iter().map(|f| f.to_string()).collect();
    tx.prepare_cached(
        "INSERT INTO notify_log (group_key, receiver, seen, last_sent) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_key, receiver) DO UPDATE SET seen = ?3, last_sent = ?4",
    )?
    .execute(params![
        key,
        receiver,
        serde_json::to_string(&seen).unwrap_or_else(|_| "[]".into()),
        e.last_sent
    ])?;
    Ok(())
}

/// Deletes a receiver's log entry.
pub fn delete_log(tx: &Transaction<'_>, key: &str, receiver: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM notify_log WHERE group_key = ?1 AND receiver = ?2")?
        .execute(params![key, receiver])?;
    Ok(())
}

/// A stored group, before its route is resolved.
pub struct StoredGroup {
    /// The group (route index unset).
    pub group: Group,
}

/// Loads every group with its alerts and log.
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<StoredGroup>> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    {
        let mut st =
            conn.prepare("SELECT key, route_id, labels, created_at, flushed FROM notify_groups")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })?;
        for row in rows {
            let (key, route_id, labels, created_at, flushed) = row?;
            let route_id = u64::from_str_radix(&route_id, 16).unwrap_or(u64::MAX);
            groups.insert(
                key.clone(),
                Group {
                    key,
                    route: 0,
                    route_id,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    alerts: BTreeMap::new(),
                    created_at,
                    flushed,
                    next_flush: 0,
                    log: BTreeMap::new(),
                },
            );
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT group_key, alert, status, ended_at, escalated FROM notify_group_alerts",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (key, alert, status, ended_at, escalated) = row?;
            let (Some(g), Ok(alert), Ok(status)) = (
                groups.get_mut(&key),
                serde_json::from_str::<Alert>(&alert),
                status.parse::<AlertState>(),
            ) else {
                tracing::warn!(group = %key, "skipping an unreadable grouped alert");
                continue;
            };
            g.alerts.insert(
                alert.fingerprint,
                GroupAlert {
                    alert,
                    status,
                    ended_at,
                    escalated: escalated.clamp(0, 255) as u8,
                },
            );
        }
    }
    {
        let mut st = conn.prepare("SELECT group_key, receiver, seen, last_sent FROM notify_log")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (key, receiver, seen, last_sent) = row?;
            let Some(g) = groups.get_mut(&key) else {
                continue;
            };
            let seen: Vec<String> = serde_json::from_str(&seen).unwrap_or_default();
            let seen: BTreeSet<Fingerprint> = seen.iter().filter_map(|s| s.parse().ok()).collect();
            g.log.insert(receiver, LogEntry { seen, last_sent });
        }
    }
    Ok(groups
        .into_values()
        .map(|group| StoredGroup { group })
        .collect())
}
