//! Acknowledgements: an operator says "I am on it". An ack stops repeats and
//! escalation of the alert, is sent to receivers that saw it fire (PagerDuty
//! `acknowledge`, a Slack message update), lapses at its `expires_at`, and ends
//! when the alert resolves.

use std::collections::HashMap;

use rusqlite::{Connection, Transaction, params};

use crate::model::Fingerprint;
use crate::ports::Acknowledgement;

/// Stores `a` for `fp`.
pub fn save(tx: &Transaction<'_>, fp: Fingerprint, a: &Acknowledgement) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO acks (fingerprint, by, comment, at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (fingerprint) DO UPDATE SET by = ?2, comment = ?3, at = ?4, expires_at = ?5",
    )?
    .execute(params![fp.to_string(), a.by, a.comment, a.at, a.expires_at])?;
    Ok(())
}

/// Removes the ack of `fp`.
pub fn delete(tx: &Transaction<'_>, fp: Fingerprint) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM acks WHERE fingerprint = ?1")?
        .execute([fp.to_string()])?;
    Ok(())
}

/// Every stored ack.
pub fn load(conn: &Connection) -> rusqlite::Result<HashMap<Fingerprint, Acknowledgement>> {
    let mut st = conn.prepare("SELECT fingerprint, by, comment, at, expires_at FROM acks")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Acknowledgement {
                by: r.get(1)?,
                comment: r.get(2)?,
                at: r.get(3)?,
                expires_at: r.get(4)?,
            },
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (fp, a) = row?;
        if let Ok(fp) = fp.parse::<Fingerprint>() {
            out.insert(fp, a);
        }
    }
    Ok(out)
}
