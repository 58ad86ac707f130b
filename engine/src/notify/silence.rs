//! Silences: matchers with a start, an end, a comment and an author. While active,
//! matching alerts are recorded but not sent (their resolves still are, to every
//! receiver that saw them fire).

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::matchers::{self, ApiMatcherValue, Matchers, parse_matcher};
use crate::model::{Labels, Timestamp};

/// One silence.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Its id (16 hex digits).
    pub id: String,
    /// Which alerts it silences.
    pub matchers: Matchers,
    /// From when (unix ms).
    pub starts_at: Timestamp,
    /// Until when (unix ms).
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was last changed (expired).
    pub updated_at: Timestamp,
}

/// `pending`, `active` or `expired`.
pub fn state_at(s: &Silence, now: Timestamp) -> &'static str {
    if now < s.starts_at {
        "pending"
    } else if now < s.ends_at {
        "active"
    } else {
        "expired"
    }
}

impl Silence {
    /// True when active at `now` and matching `labels`.
    pub fn mutes(&self, labels: &Labels, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at && self.matchers.matches(labels)
    }

    /// The API form.
    pub fn view(&self, now: Timestamp) -> SilenceView {
        SilenceView {
            id: self.id.clone(),
            matchers: matchers::to_api(&self.matchers),
            matchers_text: self.matchers.texts(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            state: state_at(self, now),
        }
    }
}

/// A silence as `/api/v1/silences` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SilenceView {
    /// Its id.
    pub id: String,
    /// Matchers: label → value (equality) or `{"op","value"}`.
    pub matchers: std::collections::BTreeMap<String, ApiMatcherValue>,
    /// The same matchers as `name="value"` strings.
    pub matchers_text: Vec<String>,
    /// Unix ms.
    pub starts_at: Timestamp,
    /// Unix ms.
    pub ends_at: Timestamp,
    /// Why.
    pub comment: String,
    /// Who.
    pub created_by: String,
    /// Unix ms.
    pub created_at: Timestamp,
    /// Unix ms.
    pub updated_at: Timestamp,
    /// `pending`, `active` or `expired`.
    pub state: &'static str,
}

/// Inserts or replaces `s`.
pub fn save(tx: &Transaction<'_>, s: &Silence) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET matchers = ?2, starts_at = ?3, ends_at = ?4, comment = ?5,
           created_by = ?6, updated_at = ?8",
    )?
    .execute(params![
        s.id,
        serde_json::to_string(&s.matchers.texts()).unwrap_or_else(|_| "[]".into()),
        s.starts_at,
        s.ends_at,
        s.comment,
        s.created_by,
        s.created_at,
        s.updated_at
    ])?;
    Ok(())
}

/// Every stored silence.
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Silence>> {
    let mut st = conn.prepare(
        "SELECT id, matchers, starts_at, ends_at, comment, created_by, created_at, updated_at FROM silences ORDER BY created_at",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, i64>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, m, starts_at, ends_at, comment, created_by, created_at, updated_at) = row?;
        let texts: Vec<String> = serde_json::from_str(&m).unwrap_or_default();
        let parsed: Result<Vec<_>, _> = texts.iter().map(|t| parse_matcher(t)).collect();
        let Ok(parsed) = parsed else {
            tracing::warn!(silence = %id, "skipping a stored silence with unreadable matchers");
            continue;
        };
        out.push(Silence {
            id,
            matchers: Matchers(parsed),
            starts_at,
            ends_at,
            comment,
            created_by,
            created_at,
            updated_at,
        });
    }
    Ok(out)
}

/// Deletes silences that expired before `cutoff`.
pub fn purge(tx: &Transaction<'_>, cutoff: Timestamp) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM silences WHERE ends_at < ?1", [cutoff])
}

/// A new random silence id.
pub fn new_id(tx: &Transaction<'_>) -> rusqlite::Result<String> {
    tx.query_row("SELECT lower(hex(randomblob(8)))", [], |r| r.get(0))
}
