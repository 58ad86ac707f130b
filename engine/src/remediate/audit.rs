//! The audit log: one row per remediation attempt, from the moment it is asked
//! for (pending approval, queued, refused) to its end (succeeded, failed, dry run,
//! denied, expired, cancelled) and its verification. A row is written before an
//! action starts, so a crash can leave a `running` row but never an unrecorded run.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::model::{Labels, Timestamp};

/// Where an attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Waiting for an operator to approve or deny it, until `expires_at`.
    PendingApproval,
    /// Allowed, waiting for a free concurrency slot.
    Queued,
    /// The action runs.
    Running,
    /// The action ran and reported success (see `verified`).
    Succeeded,
    /// The action ran and failed, or could not start.
    Failed,
    /// Dry run: rendered and audited, nothing ran.
    DryRun,
    /// Not run: the kill switch, the budget, an unsafe label value (`reason` says).
    Refused,
    /// An operator denied it.
    Denied,
    /// Nobody approved it in time.
    Expired,
    /// The alert resolved (or the action left the config) before it ran.
    Cancelled,
}

impl AttemptState {
    /// Every state, in the order of the list above.
    pub const ALL: [AttemptState; 10] = [
        AttemptState::PendingApproval,
        AttemptState::Queued,
        AttemptState::Running,
        AttemptState::Succeeded,
        AttemptState::Failed,
        AttemptState::DryRun,
        AttemptState::Refused,
        AttemptState::Denied,
        AttemptState::Expired,
        AttemptState::Cancelled,
    ];

    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::PendingApproval => "pending_approval",
            AttemptState::Queued => "queued",
            AttemptState::Running => "running",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Failed => "failed",
            AttemptState::DryRun => "dry_run",
            AttemptState::Refused => "refused",
            AttemptState::Denied => "denied",
            AttemptState::Expired => "expired",
            AttemptState::Cancelled => "cancelled",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One attempt, as `GET /api/v1/actions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The attempt's id.
    pub id: i64,
    /// The action's name.
    pub action: String,
    /// The action's kind (`exec`, `restart`, `http`, `scale`).
    pub kind: String,
    /// The rule whose alert asked for it; `""` for a manual run.
    pub rule: String,
    /// The alert's fingerprint, for alert-triggered attempts.
    pub fingerprint: Option<String>,
    /// The alert's labels (or the labels given to a manual run).
    pub labels: Labels,
    /// The target: the labels named by the action's `target_by`.
    pub target: Labels,
    /// Where the attempt is.
    pub state: AttemptState,
    /// Why it was refused, failed, denied, expired or cancelled.
    pub reason: Option<String>,
    /// What ran (or would run): argument vector, URL and body, replica count.
    pub args: Option<serde_json::Value>,
    /// When it was asked for (unix ms).
    pub created_at: Timestamp,
    /// When the action started (unix ms).
    pub started_at: Option<Timestamp>,
    /// When the action ended (unix ms).
    pub ended_at: Option<Timestamp>,
    /// The command's exit status or the HTTP status.
    pub exit_status: Option<i32>,
    /// Captured output, bounded.
    pub output: Option<String>,
    /// Whether the alert resolved within `verify_within` after the run (`null`:
    /// not verified, or not yet).
    pub verified: Option<bool>,
    /// Who asked for a manual run.
    pub requested_by: Option<String>,
    /// Who approved it (for a manual run: the one who asked).
    pub approved_by: Option<String>,
    /// Who denied it.
    pub denied_by: Option<String>,
    /// The operator's comment.
    pub comment: Option<String>,
    /// Until when it waits for approval (unix ms).
    pub expires_at: Option<Timestamp>,
    /// A dry run.
    pub dry_run: bool,
}

/// A new row.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// The action's name.
    pub action: String,
    /// Its kind.
    pub kind: String,
    /// The rule, `""` for manual runs.
    pub rule: String,
    /// The alert's fingerprint.
    pub fingerprint: Option<String>,
    /// The labels.
    pub labels: Labels,
    /// The target.
    pub target: Labels,
    /// The first state.
    pub state: AttemptState,
    /// Why, for refusals.
    pub reason: Option<String>,
    /// What would run, if known.
    pub args: Option<serde_json::Value>,
    /// Now.
    pub created_at: Timestamp,
    /// When it started, for rows written as `running`.
    pub started_at: Option<Timestamp>,
    /// Who asked (manual runs).
    pub requested_by: Option<String>,
    /// Who approved (manual runs: the one who asked).
    pub approved_by: Option<String>,
    /// The operator's comment.
    pub comment: Option<String>,
    /// Approval deadline.
    pub expires_at: Option<Timestamp>,
    /// A dry run.
    pub dry_run: bool,
}

/// A change to a row; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The new state.
    pub state: Option<AttemptState>,
    /// Why.
    pub reason: Option<String>,
    /// What ran.
    pub args: Option<serde_json::Value>,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Exit or HTTP status.
    pub exit_status: Option<i32>,
    /// Output.
    pub output: Option<String>,
    /// Verification result.
    pub verified: Option<bool>,
    /// Approver.
    pub approved_by: Option<String>,
    /// Denier.
    pub denied_by: Option<String>,
    /// Comment.
    pub comment: Option<String>,
}

const COLUMNS: &str = "id, action, kind, rule, fingerprint, labels, target, state, reason, args, created_at, started_at, ended_at, exit_status, output, verified, requested_by, approved_by, denied_by, comment, expires_at, dry_run";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let labels: String = r.get(5)?;
    let target: String = r.get(6)?;
    let state: String = r.get(7)?;
    let args: Option<String> = r.get(9)?;
    Ok(AuditEntry {
        id: r.get(0)?,
        action: r.get(1)?,
        kind: r.get(2)?,
        rule: r.get(3)?,
        fingerprint: r.get(4)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        target: serde_json::from_str(&target).unwrap_or_default(),
        state: AttemptState::parse(&state).unwrap_or(AttemptState::Failed),
        reason: r.get(8)?,
        args: args.and_then(|a| serde_json::from_str(&a).ok()),
        created_at: r.get(10)?,
        started_at: r.get(11)?,
        ended_at: r.get(12)?,
        exit_status: r.get(13)?,
        output: r.get(14)?,
        verified: r.get::<_, Option<i64>>(15)?.map(|v| v != 0),
        requested_by: r.get(16)?,
        approved_by: r.get(17)?,
        denied_by: r.get(18)?,
        comment: r.get(19)?,
        expires_at: r.get(20)?,
        dry_run: r.get::<_, i64>(21)? != 0,
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Inserts a row and returns it.
pub fn insert(tx: &Transaction<'_>, a: &NewAttempt) -> rusqlite::Result<AuditEntry> {
    tx.prepare_cached(
        "INSERT INTO remediation_attempts (action, kind, rule, fingerprint, labels, target, state, reason, args, created_at,
           requested_by, approved_by, comment, expires_at, dry_run, started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        a.action,
        a.kind,
        a.rule,
        a.fingerprint,
        json(&a.labels),
        json(&a.target),
        a.state.as_str(),
        a.reason,
        a.args.as_ref().map(json),
        a.created_at,
        a.requested_by,
        a.approved_by,
        a.comment,
        a.expires_at,
        a.dry_run as i64,
        a.started_at,
    ])?;
    let id = tx.last_insert_rowid();
    get(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Applies `u` to row `id` and returns the row.
pub fn update(tx: &Transaction<'_>, id: i64, u: &Update) -> rusqlite::Result<AuditEntry> {
    tx.prepare_cached(
        "UPDATE remediation_attempts SET
           state = coalesce(?2, state), reason = coalesce(?3, reason), args = coalesce(?4, args),
           started_at = coalesce(?5, started_at), ended_at = coalesce(?6, ended_at),
           exit_status = coalesce(?7, exit_status), output = coalesce(?8, output),
           verified = coalesce(?9, verified), approved_by = coalesce(?10, approved_by),
           denied_by = coalesce(?11, denied_by), comment = coalesce(?12, comment)
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        u.state.map(AttemptState::as_str),
        u.reason,
        u.args.as_ref().map(json),
        u.started_at,
        u.ended_at,
        u.exit_status,
        u.output,
        u.verified.map(i64::from),
        u.approved_by,
        u.denied_by,
        u.comment,
    ])?;
    get(tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Row `id`, if there is one.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<AuditEntry>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM remediation_attempts WHERE id = ?1"
    ))?
    .query_row([id], from_row)
    .optional()
}

/// What [`list`] selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only rows in this state.
    pub state: Option<AttemptState>,
    /// Only rows of this action.
    pub action: Option<String>,
    /// Only rows with an id below this (paging back).
    pub before: Option<i64>,
    /// At most this many rows.
    pub limit: usize,
}

/// Rows newest first.
pub fn list(conn: &Connection, f: &Filter) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM remediation_attempts
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = st.query_map(
        params![
            f.state.map(AttemptState::as_str),
            f.action,
            f.before,
            f.limit as i64
        ],
        from_row,
    )?;
    rows.collect()
}

/// Rows that started at or after `since`, or that have not ended, oldest first:
/// what the guardrails need at start.
pub fn recent(conn: &Connection, since: Timestamp) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut st = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM remediation_attempts
         WHERE created_at >= ?1 OR state IN ('pending_approval', 'queued', 'running')
         ORDER BY id"
    ))?;
    let rows = st.query_map([since], from_row)?;
    rows.collect()
}

/// The kill switch as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSwitch {
    /// On.
    pub paused: bool,
    /// Who set it.
    pub by: Option<String>,
    /// Why.
    pub comment: Option<String>,
    /// When (unix ms).
    pub at: Timestamp,
}

/// The kill switch as stored, if it was ever set.
pub fn switch(conn: &Connection) -> rusqlite::Result<Option<StoredSwitch>> {
    conn.query_row(
        "SELECT paused, by, comment, at FROM remediation_switch WHERE id = 1",
        [],
        |r| {
            Ok(StoredSwitch {
                paused: r.get::<_, i64>(0)? != 0,
                by: r.get(1)?,
                comment: r.get(2)?,
                at: r.get(3)?,
            })
        },
    )
    .optional()
}

/// Stores the kill switch.
pub fn set_switch(
    tx: &Transaction<'_>,
    paused: bool,
    by: &str,
    comment: Option<&str>,
    at: Timestamp,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO remediation_switch (id, paused, by, comment, at) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET paused = ?1, by = ?2, comment = ?3, at = ?4",
        params![paused as i64, by, comment, at],
    )?;
    Ok(())
}
