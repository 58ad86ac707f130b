//! The durable outbox: one row per notification to one receiver, written in the
//! same transaction as the state change that decided it, delivered in id order
//! per receiver, marked delivered only after the receiver accepted it, and kept
//! afterwards as the delivery history.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::model::{AlertState, Timestamp};
use crate::ports::{Notification, NotifyReason};

/// Where an outbox row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// The receiver accepted it.
    Delivered,
    /// The receiver refused it for good (400, `invalid_payload`); not retried.
    Failed,
    /// Not delivered within `dead_after`; given up.
    Dead,
}

impl RowState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::Delivered => "delivered",
            RowState::Failed => "failed",
            RowState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> RowState {
        match s {
            "delivered" => RowState::Delivered,
            "failed" => RowState::Failed,
            "dead" => RowState::Dead,
            _ => RowState::Pending,
        }
    }
}

/// Writes `n` as a pending row; returns its id.
pub fn insert(tx: &Transaction<'_>, n: &Notification) -> rusqlite::Result<i64> {
    let payload = serde_json::to_string(n)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO outbox (receiver, group_key, reason, payload, created_at, state, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?5)",
    )?
    .execute(params![n.receiver, n.group_key, n.reason.as_str(), payload, n.created_at])?;
    let id = tx.last_insert_rowid();
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox_alerts (fingerprint, outbox_id, status) VALUES (?1, ?2, ?3)",
    )?;
    for a in &n.alerts {
        st.execute(params![
            a.alert.fingerprint.to_string(),
            id,
            a.status.as_str()
        ])?;
    }
    Ok(id)
}

/// A row waiting for delivery.
#[derive(Debug, Clone)]
pub struct Due {
    /// The notification (its `id` is the row id).
    pub notification: Notification,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before (unix ms).
    pub next_attempt_at: Timestamp,
}

/// The oldest pending rows of `receiver`, in id order.
pub fn pending(conn: &Connection, receiver: &str, limit: usize) -> rusqlite::Result<Vec<Due>> {
    let mut st = conn.prepare_cached(
        "SELECT id, payload, attempts, next_attempt_at FROM outbox
         WHERE receiver = ?1 AND state = 'pending' ORDER BY id LIMIT ?2",
    )?;
    let rows = st.query_map(params![receiver, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, payload, attempts, next) = row?;
        match serde_json::from_str::<Notification>(&payload) {
            Ok(mut n) => {
                n.id = id;
                out.push(Due {
                    notification: n,
                    attempts: attempts as u32,
                    next_attempt_at: next,
                });
            }
            Err(e) => {
                tracing::error!(id, error = %e, "unreadable outbox row; marking it failed");
                // Read-only connection here: the worker marks it when it sees no rows.
                out.push(Due {
                    notification: Notification {
                        id,
                        receiver: receiver.to_string(),
                        reason: NotifyReason::FirstNotification,
                        group_key: String::new(),
                        group_labels: Default::default(),
                        alerts: Vec::new(),
                        created_at: 0,
                    },
                    attempts: attempts as u32,
                    next_attempt_at: next,
                });
            }
        }
    }
    Ok(out)
}

/// Marks row `id` delivered.
pub fn mark_delivered(tx: &Transaction<'_>, id: i64, now: Timestamp) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?2, last_error = NULL WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Records a failed attempt; `next` = `None` ends the row in `end`.
pub fn mark_failed(
    tx: &Transaction<'_>,
    id: i64,
    error: &str,
    next: Option<Timestamp>,
    end: RowState,
    now: Timestamp,
) -> rusqlite::Result<()> {
    match next {
        Some(at) => tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, at, error])?,
        None => tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, state = ?2, last_error = ?3, done_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, end.as_str(), error, now])?,
    };
    Ok(())
}

/// Rows that failed or died since `since`, per receiver.
pub fn undelivered_since(
    conn: &Connection,
    since: Timestamp,
) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT receiver, count(*) FROM outbox WHERE state IN ('failed', 'dead') AND done_at >= ?1 GROUP BY receiver",
    )?;
    let rows = st.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Pending rows, per receiver.
pub fn pending_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT receiver, count(*) FROM outbox WHERE state = 'pending' GROUP BY receiver",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Deletes finished rows older than `cutoff`, and memos not touched since.
pub fn purge(tx: &Transaction<'_>, cutoff: Timestamp) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM outbox_alerts WHERE outbox_id IN (SELECT id FROM outbox WHERE state != 'pending' AND done_at < ?1)",
        [cutoff],
    )?;
    tx.execute("DELETE FROM notify_memo WHERE at < ?1", [cutoff])?;
    tx.execute(
        "DELETE FROM outbox WHERE state != 'pending' AND done_at < ?1",
        [cutoff],
    )
}

/// One alert of an outbox row, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RowAlert {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// Its rule.
    pub name: String,
    /// `firing` or `resolved` in this notification.
    pub status: AlertState,
}

/// An outbox row as `/api/v1/notifications` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RowView {
    /// Row id.
    pub id: i64,
    /// Receiver.
    pub receiver: String,
    /// Why it was sent.
    pub reason: String,
    /// The group.
    pub group_key: String,
    /// `pending`, `delivered`, `failed` or `dead`.
    pub state: RowState,
    /// Attempts so far.
    pub attempts: i64,
    /// When it was decided (unix ms).
    pub created_at: Timestamp,
    /// Next attempt (unix ms), for pending rows.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was delivered or given up (unix ms).
    pub done_at: Option<Timestamp>,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// The alerts in it.
    pub alerts: Vec<RowAlert>,
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only rows about this alert.
    pub fingerprint: Option<String>,
    /// Only rows to this receiver.
    pub receiver: Option<String>,
    /// Only rows in this state.
    pub state: Option<String>,
    /// At most this many (newest first).
    pub limit: usize,
}

/// Outbox rows, newest first.
pub fn list(conn: &Connection, f: &ListFilter) -> rusqlite::Result<Vec<RowView>> {
    let mut st = conn.prepare_cached(
        "SELECT id, receiver, reason, group_key, state, attempts, created_at, next_attempt_at, done_at, last_error, payload FROM outbox
         WHERE (?1 IS NULL OR id IN (SELECT outbox_id FROM outbox_alerts WHERE fingerprint = ?1))
           AND (?2 IS NULL OR receiver = ?2) AND (?3 IS NULL OR state = ?3)
         ORDER BY id DESC LIMIT ?4",
    )?;
    let rows = st.query_map(
        params![f.fingerprint, f.receiver, f.state, f.limit as i64],
        |r| {
            let state = RowState::parse(&r.get::<_, String>(4)?);
            let payload: String = r.get(10)?;
            let alerts = serde_json::from_str::<Notification>(&payload)
                .map(|n| {
                    n.alerts
                        .iter()
                        .map(|a| RowAlert {
                            fingerprint: a.alert.fingerprint.to_string(),
                            name: a.alert.name.clone(),
                            status: a.status,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(RowView {
                id: r.get(0)?,
                receiver: r.get(1)?,
                reason: r.get(2)?,
                group_key: r.get(3)?,
                state,
                attempts: r.get(5)?,
                created_at: r.get(6)?,
                next_attempt_at: (state == RowState::Pending).then(|| r.get(7)).transpose()?,
                done_at: r.get(8)?,
                last_error: r.get(9)?,
                alerts,
            })
        },
    )?;
    rows.collect()
}

/// The memo value of `receiver` under `key`.
pub fn memo_get(conn: &Connection, receiver: &str, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM notify_memo WHERE receiver = ?1 AND key = ?2")?
        .query_row(params![receiver, key], |r| r.get(0))
        .optional()
}

/// Stores a memo value.
pub fn memo_put(
    tx: &Transaction<'_>,
    receiver: &str,
    key: &str,
    value: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO notify_memo (receiver, key, value, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (receiver, key) DO UPDATE SET value = ?3, at = ?4",
    )?
    .execute(params![receiver, key, value, now])?;
    Ok(())
}
