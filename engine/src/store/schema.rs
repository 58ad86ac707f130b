//! Versioned schema migrations, applied in order at open. `PRAGMA user_version`
//! holds the number of migrations applied; each one runs in its own transaction.

use rusqlite::Connection;

/// The migrations, oldest first. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: series, samples (recent batches + compacted chunks), alert state and history.
    r#"
    CREATE TABLE series (
        id        INTEGER PRIMARY KEY,
        metric    TEXT NOT NULL,
        labels    TEXT NOT NULL,          -- JSON object, keys sorted
        fresh_ms  INTEGER NOT NULL,
        last_ts   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (metric, labels)
    );
    -- Each ingested batch, durable at once; folded into chunks by compaction.
    CREATE TABLE batches (
        id     INTEGER PRIMARY KEY,
        data   BLOB NOT NULL
    );
    CREATE TABLE chunks (
        id        INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL,
        start_ts  INTEGER NOT NULL,
        end_ts    INTEGER NOT NULL,
        data      BLOB NOT NULL
    );
    CREATE INDEX chunks_by_series ON chunks (series_id, end_ts);
    CREATE INDEX chunks_by_end ON chunks (end_ts);
    CREATE TABLE alerts (
        fingerprint   TEXT PRIMARY KEY,
        rule          TEXT NOT NULL,
        severity      TEXT NOT NULL,
        labels        TEXT NOT NULL,
        annotations   TEXT NOT NULL,
        state         TEXT NOT NULL,     -- pending | firing
        value         REAL,
        active_since  INTEGER NOT NULL,  -- first seen active; never moves while active
        fired_at      INTEGER,
        last_active   INTEGER NOT NULL,  -- last evaluation that returned it
        last_eval     INTEGER NOT NULL
    );
    CREATE TABLE alert_history (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        rule        TEXT NOT NULL,
        severity    TEXT NOT NULL,
        labels      TEXT NOT NULL,
        annotations TEXT NOT NULL,
        from_state  TEXT,
        to_state    TEXT NOT NULL,
        value       REAL,
        at          INTEGER NOT NULL
    );
    CREATE INDEX alert_history_by_at ON alert_history (at);
    "#,
    // 2: the notification pipeline: groups and their notification log, the outbox
    // and its delivery history, silences, acknowledgements, flap state and the
    // notifiers' memos (e.g. Slack message ids).
    r#"
    CREATE INDEX alert_history_by_fingerprint ON alert_history (fingerprint, at);
    CREATE TABLE notify_groups (
        key         TEXT PRIMARY KEY,      -- route id + group labels
        route_id    TEXT NOT NULL,
        labels      TEXT NOT NULL,         -- JSON
        created_at  INTEGER NOT NULL,
        flushed     INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE notify_group_alerts (
        group_key   TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        alert       TEXT NOT NULL,         -- JSON
        status      TEXT NOT NULL,         -- firing | resolved
        ended_at    INTEGER,
        escalated   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (group_key, fingerprint)
    ) WITHOUT ROWID;
    CREATE TABLE notify_log (
        group_key   TEXT NOT NULL,
        receiver    TEXT NOT NULL,
        seen        TEXT NOT NULL,         -- JSON: fingerprints told firing, not yet told resolved
        last_sent   INTEGER NOT NULL,
        PRIMARY KEY (group_key, receiver)
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        receiver        TEXT NOT NULL,
        group_key       TEXT NOT NULL,
        reason          TEXT NOT NULL,
        payload         TEXT NOT NULL,     -- JSON notification
        created_at      INTEGER NOT NULL,
        state           TEXT NOT NULL,     -- pending | delivered | failed | dead
        attempts        INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        done_at         INTEGER
    );
    CREATE INDEX outbox_pending ON outbox (receiver, id) WHERE state = 'pending';
    CREATE INDEX outbox_done ON outbox (done_at) WHERE state != 'pending';
    CREATE TABLE outbox_alerts (
        fingerprint TEXT NOT NULL,
        outbox_id   INTEGER NOT NULL,
        status      TEXT NOT NULL,
        PRIMARY KEY (fingerprint, outbox_id)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_alerts_by_row ON outbox_alerts (outbox_id);
    CREATE TABLE silences (
        id          TEXT PRIMARY KEY,
        matchers    TEXT NOT NULL,         -- JSON array of 'name="value"' texts
        starts_at   INTEGER NOT NULL,
        ends_at     INTEGER NOT NULL,
        comment     TEXT NOT NULL,
        created_by  TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE acks (
        fingerprint TEXT PRIMARY KEY,
        by          TEXT NOT NULL,
        comment     TEXT NOT NULL,
        at          INTEGER NOT NULL,
        expires_at  INTEGER
    );
    CREATE TABLE flap_state (
        fingerprint TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        history     INTEGER NOT NULL,      -- bit 0 = newest evaluation, 1 = firing
        flapping    INTEGER NOT NULL,
        alert       TEXT NOT NULL,         -- JSON, for the flapping notice
        changed_at  INTEGER NOT NULL
    );
    CREATE TABLE notify_memo (
        receiver    TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        at          INTEGER NOT NULL,
        PRIMARY KEY (receiver, key)
    ) WITHOUT ROWID;
    "#,
    // 3: the remediation audit log and the kill switch.
    r#"
    CREATE TABLE remediation_attempts (
        id           INTEGER PRIMARY KEY,
        action       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        rule         TEXT NOT NULL,      -- '' for manual runs
        fingerprint  TEXT,               -- the alert's, NULL for manual runs
        labels       TEXT NOT NULL,      -- JSON object
        target       TEXT NOT NULL,      -- JSON object: the labels named by target_by
        state        TEXT NOT NULL,
        reason       TEXT,
        args         TEXT,               -- JSON: what ran or would run
        created_at   INTEGER NOT NULL,
        started_at   INTEGER,
        ended_at     INTEGER,
        exit_status  INTEGER,
        output       TEXT,
        verified     INTEGER,            -- NULL: not verified; 1/0
        requested_by TEXT,
        approved_by  TEXT,
        denied_by    TEXT,
        comment      TEXT,
        expires_at   INTEGER,
        dry_run      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX remediation_attempts_by_state ON remediation_attempts (state, id);
    CREATE INDEX remediation_attempts_by_created ON remediation_attempts (created_at);
    CREATE TABLE remediation_switch (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        paused  INTEGER NOT NULL,
        by      TEXT,
        comment TEXT,
        at      INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const VERSION: usize = MIGRATIONS.len();

/// Applies the migrations the database has not seen. Refuses a database written by
/// a newer warden rather than guessing.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let have: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())? as usize;
    if have > VERSION {
        return Err(format!(
            "the database has schema version {have}, newer than this warden's {VERSION}: upgrade warden or use another file"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}
