//! `[[collector.postgres]]`: one PostgreSQL server (10 or newer): its role,
//! replication as the primary sees it (`pg_stat_replication`) and as a standby
//! lives it (replay delay, WAL receiver), replication slots, and connections.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `pg_up` | 1 when the server answered every query of the run, else 0 |
//! | `pg_error_info{reason,message}` | 1, only while `pg_up` is 0 (reasons in `docs/databases.md`) |
//! | `pg_is_primary`, `pg_in_recovery` | 1/0: not in recovery (a primary), in recovery (a standby) |
//! | `pg_timeline_id` | the timeline: a primary's current one, a standby's received one |
//! | `pg_server_version_num` | e.g. 150004 |
//! | `pg_connections`, `pg_max_connections`, `pg_connections_used_percent` | client backends, `max_connections`, their ratio |
//! | `pg_wal_position_bytes` | the current WAL position (a standby: replayed), bytes since 0/0 |
//! | `pg_replication_lag_seconds` | standby: replay delay, 0 when everything received is replayed (see below) |
//! | `pg_replication_lag_bytes` | standby: WAL received but not yet replayed |
//! | `pg_last_replay_age_seconds` | standby: time since the last replayed transaction committed on the primary |
//! | `pg_replay_paused` | standby: 1 while replay is paused (`pg_wal_replay_pause()`) |
//! | `pg_wal_receiver_up` | standby: 1 while the WAL receiver streams from the primary |
//! | `pg_wal_receiver_info{status,sender,slot}` | standby: 1 while a WAL receiver runs |
//! | `pg_wal_receiver_last_message_age_seconds` | standby: time since the primary last sent anything (WAL or keepalive) |
//! | `pg_replicas`, `pg_replicas_sync` | primary: standbys streaming, of which synchronous (`sync` or `quorum`) |
//! | `pg_replica_info{application_name,client_addr,state,sync_state}` | primary: 1 per connected standby |
//! | `pg_replica_streaming{application_name,client_addr}` | 1 when its state is `streaming` |
//! | `pg_replica_sync{…}` | 1 when its sync state is `sync` or `quorum` |
//! | `pg_replica_write_lag_seconds{…}`, `…_flush_lag_seconds`, `…_replay_lag_seconds` | primary's view of the standby's delays; 0 once it is caught up and idle |
//! | `pg_replica_lag_bytes{…}` | WAL written on the primary but not yet replayed on the standby |
//! | `pg_replica_sent_lag_bytes{…}` | WAL not yet sent to the standby |
//! | `pg_replication_slot_active{slot_name,slot_type}` | 1 when something consumes the slot |
//! | `pg_replication_slot_retained_bytes{…}` | WAL the slot keeps from being removed |
//! | `pg_replication_slot_safe_wal_bytes{…}` | WAL that can still be written before the slot is lost (PostgreSQL 13+, with `max_slot_wal_keep_size`) |
//! | `pg_replication_slot_lost{…}` | 1 when the slot's WAL is gone (`wal_status = 'lost'`, 13+) |
//!
//! **Idle or stuck.** A standby's replay delay is measured as the time since the
//! last replayed transaction committed, which also grows while the primary is
//! merely idle. So it is reported as 0 whenever everything the standby has
//! received is replayed (`pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()`).
//! A standby that stops receiving (primary gone, network cut, receiver crashed)
//! would then look idle: `pg_wal_receiver_up` 0 and a growing
//! `pg_wal_receiver_last_message_age_seconds` tell it apart, because a primary
//! sends keepalives at least every `wal_sender_timeout / 2` (30 s by default)
//! even when idle. The example rules alert on both.
//!
//! **Access.** Every query is read-only and runs with `statement_timeout` set to
//! the run's budget and `default_transaction_read_only = on`. A role with
//! `pg_monitor` (PostgreSQL 10+) sees everything: `CREATE ROLE warden LOGIN
//! PASSWORD '…' IN ROLE pg_monitor;`.
//!
//! **Connection.** One connection per entry, opened on the first run and reused;
//! after any failure it is dropped and the next run connects again. `sslmode` in
//! the DSN works as in libpq: `disable`, `prefer` (the default) and `require`
//! encrypt without checking the certificate; `verify-ca` and `verify-full` check
//! it against `ca_file` (or the system's roots) and the host name.

use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};
use tokio_postgres_rustls::MakeRustlsConnect;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::Sample;
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, TargetLabels, instance_of};
use crate::db::{self, Found, Outcome, SecretSource, labels, number};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tls::cert::{self, RecordingVerifier};

/// Label names the postgres collector sets on its own samples.
const RESERVED: &[&str] = &[
    "reason",
    "message",
    "status",
    "sender",
    "slot",
    "application_name",
    "client_addr",
    "state",
    "sync_state",
    "slot_name",
    "slot_type",
];

const OUTCOME: Outcome = Outcome {
    up: "pg_up",
    error: "pg_error_info",
};

/// `[[collector.postgres]]`: one PostgreSQL server.
///
/// ```toml
/// [[collector.postgres]]
/// name = "pg-1"
/// dsn = "host=10.0.0.11 port=5432 user=warden dbname=postgres"
/// password_env = "PG_MONITOR_PASSWORD"
/// labels = { cluster = "main" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The `instance` label of every sample. Required. Example: `name = "pg-1"`.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`. Connecting and the queries stop a little earlier, so
    /// the run can report `pg_up 0` with `reason="timeout"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, e.g. `{ cluster = "main" }` so rules can
    /// group by cluster. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The server, in libpq's forms: `host=… port=… user=… dbname=…` or
    /// `postgres://user@host:port/dbname`. `host` may be a Unix socket directory.
    /// Required. Example: `dsn = "host=127.0.0.1 port=5432 user=warden dbname=postgres"`.
    pub dsn: Spanned<String>,
    /// The password, inline. Prefer `password_env` or `password_file`. A password
    /// in the DSN works too.
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// The environment variable holding the password. Example:
    /// `password_env = "PG_MONITOR_PASSWORD"`.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// A file holding the password (a final newline is ignored). Example:
    /// `password_file = "/etc/warden/pg.pass"`.
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
    /// A PEM file of CA certificates for `sslmode=verify-ca`/`verify-full`.
    /// Default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
}

impl PostgresConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "postgres",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: RESERVED,
        }
        .check(problems);
        let password =
            db::password(&self.password, &self.password_env, &self.password_file).resolve(problems);
        let dsn = parse_dsn(&self.dsn, problems);
        let roots = match cert::roots(self.ca_file.as_ref().map(|c| c.get_ref().as_path())) {
            Ok(r) => Some(r),
            Err(e) => {
                let span = self.ca_file.as_ref().map_or(entry.clone(), Spanned::span);
                problems.push(Problem::at(span, format!("'ca_file': {e}")));
                None
            }
        };
        let (mut config, verify) = dsn?;
        let password = password?;
        if password.is_some() && config.get_password().is_some() {
            problems.push(Problem::at(
                self.dsn.span(),
                "the DSN holds a password and a 'password' key is set too: keep one",
            ));
            return None;
        }
        let common = common?;
        let tls = tls_connector(roots?, verify).map_err(|e| {
            problems.push(Problem::at(entry.clone(), e));
        });
        let budget = probe::budget(common.timeout);
        config.connect_timeout(budget);
        if config.get_application_name().is_none() {
            config.application_name("warden");
        }
        let collector = PostgresCollector {
            config,
            password,
            tls: tls.ok()?,
            budget,
            conn: None,
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Parses a DSN, accepting libpq's `sslmode=verify-ca|verify-full` (which
/// tokio-postgres does not know) as `require` plus certificate checks.
pub(crate) fn parse_dsn(
    dsn: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<(tokio_postgres::Config, bool)> {
    let text = dsn.get_ref();
    let mut verify = false;
    let mut rewritten = text.clone();
    for mode in ["verify-full", "verify-ca"] {
        let needle = format!("sslmode={mode}");
        if rewritten.contains(&needle) {
            verify = true;
            rewritten = rewritten.replace(&needle, "sslmode=require");
        }
    }
    match tokio_postgres::Config::from_str(&rewritten) {
        Ok(c) => {
            let mut ok = true;
            if c.get_hosts().is_empty() {
                problems.push(Problem::at(
                    dsn.span(),
                    "the DSN names no host: add e.g. 'host=127.0.0.1'",
                ));
                ok = false;
            }
            if c.get_user().is_none() {
                problems.push(Problem::at(
                    dsn.span(),
                    "the DSN names no user: add e.g. 'user=warden'",
                ));
                ok = false;
            }
            ok.then_some((c, verify))
        }
        Err(e) => {
            problems.push(Problem::at(
                dsn.span(),
                format!(
                    "'dsn' is not a PostgreSQL connection string ({e}): write e.g. 'host=127.0.0.1 port=5432 user=warden dbname=postgres'"
                ),
            ));
            None
        }
    }
}

/// The TLS connector: certificates checked only for `verify-*` modes, as libpq.
pub(crate) fn tls_connector(
    roots: Arc<rustls::RootCertStore>,
    verify: bool,
) -> Result<MakeRustlsConnect, String> {
    let verifier = Arc::new(RecordingVerifier::new(roots, verify));
    let cfg = cert::client_config(verifier, None, &[b"postgresql"])?;
    Ok(MakeRustlsConnect::new(cfg))
}

/// Collects one PostgreSQL server (see the module docs).
pub struct PostgresCollector {
    config: tokio_postgres::Config,
    /// Read at each connect.
    password: Option<SecretSource>,
    tls: MakeRustlsConnect,
    budget: Duration,
    conn: Option<Conn>,
    log: FailureLog,
}

/// An open connection and what was learnt when it opened.
struct Conn {
    client: Client,
    /// The queries of one run, for this server's version.
    queries: String,
}

impl PostgresCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let budget = self.budget;
        let result = db::within(budget, "PostgreSQL", self.collect(cx)).await;
        if result.is_err() {
            self.conn = None;
        }
        self.log
            .note("postgres", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn collect(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, Failure> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            let config = with_password(&self.config, self.password.as_ref())?;
            self.conn = Some(connect(&config, &self.tls, self.budget, cx).await?);
        }
        let Some(conn) = &self.conn else {
            return Err(Failure::new(Reason::Connect, "no connection"));
        };
        let messages = conn
            .client
            .simple_query(&conn.queries)
            .await
            .map_err(|e| pg_failure(&e))?;
        let sets = result_sets(messages);
        parse_run(&sets)
    }
}

/// `config` with the password read now, if one is configured.
pub(crate) fn with_password(
    config: &tokio_postgres::Config,
    password: Option<&SecretSource>,
) -> Result<tokio_postgres::Config, Failure> {
    let mut config = config.clone();
    if let Some(p) = password {
        config.password(p.read()?.expose());
    }
    Ok(config)
}

/// Opens a connection, its background task ended by the collector's shutdown,
/// and prepares the session: read-only, bounded statements.
async fn connect(
    config: &tokio_postgres::Config,
    tls: &MakeRustlsConnect,
    budget: Duration,
    cx: &CollectContext,
) -> Result<Conn, Failure> {
    let (client, connection) = config
        .connect(tls.clone())
        .await
        .map_err(|e| pg_failure(&e))?;
    let shutdown = cx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            r = connection => if let Err(e) = r {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        }
    });
    let setup = format!(
        "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
         SET default_transaction_read_only = on; SHOW server_version_num",
        ms = budget.as_millis().max(1)
    );
    let messages = client
        .simple_query(&setup)
        .await
        .map_err(|e| pg_failure(&e))?;
    let sets = result_sets(messages);
    let version = sets
        .last()
        .and_then(|rows| rows.first())
        .and_then(|r| number(text(r, 0)))
        .unwrap_or(0.0) as u32;
    if version < 100_000 {
        return Err(Failure::new(
            Reason::Protocol,
            format!("server_version_num {version}: warden needs PostgreSQL 10 or newer"),
        ));
    }
    Ok(Conn {
        client,
        queries: queries(version),
    })
}

/// The WAL position a lag is measured against: the primary's current one, or
/// on a standby what it has replayed.
const CURRENT_LSN: &str =
    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END";

/// The statements of one run, as one simple-protocol round trip. Functions that
/// fail during recovery are guarded by `CASE`, so one text serves both roles.
fn queries(version: u32) -> String {
    let main = format!(
        "SELECT pg_is_in_recovery(), \
           current_setting('server_version_num'), \
           current_setting('max_connections'), \
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
           CASE WHEN pg_is_in_recovery() THEN NULL \
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
           pg_wal_lsn_diff({CURRENT_LSN}, '0/0'), \
           CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END, \
           CASE WHEN pg_is_in_recovery() THEN \
             CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL \
                   AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0 \
               ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END END, \
           CASE WHEN pg_is_in_recovery() THEN \
             greatest(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0) END, \
           CASE WHEN pg_is_in_recovery() THEN \
             extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
    );
    let sender = if version >= 110_000 {
        "coalesce(sender_host || ':' || sender_port, '')"
    } else {
        "''"
    };
    let receiver = format!(
        "SELECT status, {sender}, coalesce(slot_name, ''), \
           extract(epoch FROM now() - last_msg_receipt_time), received_tli \
         FROM pg_stat_wal_receiver"
    );
    let replication = format!(
        "SELECT coalesce(application_name, ''), coalesce(host(client_addr), 'local'), \
           coalesce(state, ''), coalesce(sync_state, ''), \
           extract(epoch FROM write_lag), extract(epoch FROM flush_lag), \
           extract(epoch FROM replay_lag), \
           pg_wal_lsn_diff({CURRENT_LSN}, replay_lsn), pg_wal_lsn_diff({CURRENT_LSN}, sent_lsn) \
         FROM pg_stat_replication"
    );
    let wal_status = if version >= 130_000 {
        "wal_status, safe_wal_size"
    } else {
        "NULL, NULL"
    };
    let slots = format!(
        "SELECT slot_name, slot_type, active, pg_wal_lsn_diff({CURRENT_LSN}, restart_lsn), \
           {wal_status} \
         FROM pg_replication_slots"
    );
    format!("{main}; {receiver}; {replication}; {slots}")
}

/// The rows of each statement of a simple query, in order.
pub(crate) fn result_sets(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<SimpleQueryRow>> {
    let mut sets = Vec::new();
    let mut rows = Vec::new();
    for m in messages {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(r),
            SimpleQueryMessage::CommandComplete(_) => sets.push(std::mem::take(&mut rows)),
            _ => {}
        }
    }
    sets
}

/// Column `i` of a row as text; `None` for NULL or a missing column.
fn text(row: &SimpleQueryRow, i: usize) -> Option<&str> {
    row.try_get(i).ok().flatten()
}

/// The samples of one run's result sets.
fn parse_run(sets: &[Vec<SimpleQueryRow>]) -> Result<Vec<Sample>, Failure> {
    let [main, receiver, replication, slots] = sets else {
        return Err(Failure::new(
            Reason::Protocol,
            format!("expected 4 result sets, got {}", sets.len()),
        ));
    };
    let Some(m) = main.first() else {
        return Err(Failure::new(
            Reason::Protocol,
            "the status query returned no row",
        ));
    };
    let none = warden_engine::model::Labels::empty;
    let mut f = Found::default();
    let in_recovery = number(text(m, 0)).unwrap_or(0.0) == 1.0;
    f.flag("pg_is_primary", none(), !in_recovery);
    f.flag("pg_in_recovery", none(), in_recovery);
    f.add_opt("pg_server_version_num", none(), number(text(m, 1)));
    let max = number(text(m, 2));
    let used = number(text(m, 3));
    f.add_opt("pg_max_connections", none(), max);
    f.add_opt("pg_connections", none(), used);
    if let (Some(max), Some(used)) = (max, used)
        && max > 0.0
    {
        f.add("pg_connections_used_percent", none(), used / max * 100.0);
    }
    f.add_opt("pg_wal_position_bytes", none(), number(text(m, 5)));

    let mut timeline = number(text(m, 4));
    if in_recovery {
        f.add_opt("pg_replay_paused", none(), number(text(m, 6)));
        f.add_opt("pg_replication_lag_seconds", none(), number(text(m, 7)));
        f.add_opt("pg_replication_lag_bytes", none(), number(text(m, 8)));
        f.add_opt("pg_last_replay_age_seconds", none(), number(text(m, 9)));
        let streaming = receiver.iter().any(|r| text(r, 0) == Some("streaming"));
        f.flag("pg_wal_receiver_up", none(), streaming);
        for r in receiver {
            let status = text(r, 0).unwrap_or("");
            f.add(
                "pg_wal_receiver_info",
                labels(&[
                    ("status", status),
                    ("sender", text(r, 1).unwrap_or("")),
                    ("slot", text(r, 2).unwrap_or("")),
                ]),
                1.0,
            );
            f.add_opt(
                "pg_wal_receiver_last_message_age_seconds",
                none(),
                number(text(r, 3)),
            );
            timeline = timeline.or(number(text(r, 4)));
        }
    }
    f.add_opt("pg_timeline_id", none(), timeline);

    let mut streaming = 0.0;
    let mut sync = 0.0;
    for r in replication {
        let app = text(r, 0).unwrap_or("");
        let addr = text(r, 1).unwrap_or("");
        let state = text(r, 2).unwrap_or("");
        let sync_state = text(r, 3).unwrap_or("");
        let id = || labels(&[("application_name", app), ("client_addr", addr)]);
        f.add(
            "pg_replica_info",
            labels(&[
                ("application_name", app),
                ("client_addr", addr),
                ("state", state),
                ("sync_state", sync_state),
            ]),
            1.0,
        );
        let is_streaming = state == "streaming";
        let is_sync = matches!(sync_state, "sync" | "quorum");
        streaming += f64::from(u8::from(is_streaming));
        sync += f64::from(u8::from(is_streaming && is_sync));
        f.flag("pg_replica_streaming", id(), is_streaming);
        f.flag("pg_replica_sync", id(), is_sync);
        // NULL lag times: the standby caught up and nothing was written since.
        f.add(
            "pg_replica_write_lag_seconds",
            id(),
            number(text(r, 4)).unwrap_or(0.0),
        );
        f.add(
            "pg_replica_flush_lag_seconds",
            id(),
            number(text(r, 5)).unwrap_or(0.0),
        );
        f.add(
            "pg_replica_replay_lag_seconds",
            id(),
            number(text(r, 6)).unwrap_or(0.0),
        );
        f.add_opt("pg_replica_lag_bytes", id(), number(text(r, 7)));
        f.add_opt("pg_replica_sent_lag_bytes", id(), number(text(r, 8)));
    }
    if !in_recovery || !replication.is_empty() {
        f.add("pg_replicas", none(), streaming);
        f.add("pg_replicas_sync", none(), sync);
    }

    for r in slots {
        let id = || {
            labels(&[
                ("slot_name", text(r, 0).unwrap_or("")),
                ("slot_type", text(r, 1).unwrap_or("")),
            ])
        };
        f.add_opt("pg_replication_slot_active", id(), number(text(r, 2)));
        f.add_opt(
            "pg_replication_slot_retained_bytes",
            id(),
            number(text(r, 3)),
        );
        if let Some(status) = text(r, 4) {
            f.flag("pg_replication_slot_lost", id(), status == "lost");
        }
        f.add_opt(
            "pg_replication_slot_safe_wal_bytes",
            id(),
            number(text(r, 5)),
        );
    }
    Ok(f.into_samples())
}

/// The failure of a tokio-postgres error: the server's SQLSTATE when it sent
/// one, else what the connection did.
pub(crate) fn pg_failure(e: &tokio_postgres::Error) -> Failure {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        // PgBouncer reports a failed login as a protocol violation.
        let reason = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || db.message().contains("authentication failed")
        {
            Reason::Auth
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            Reason::Permission
        } else if *code == SqlState::QUERY_CANCELED {
            Reason::Timeout
        } else if *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::INVALID_CATALOG_NAME
        {
            Reason::Unavailable
        } else {
            Reason::Query
        };
        return Failure::new(
            reason,
            format!("{} ({}): {}", db.severity(), code.code(), db.message()),
        );
    }
    let detail = probe::error_chain(e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Failure::new(Reason::Tls, detail);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
            {
                return Failure::new(Reason::Tls, detail);
            }
            return Failure::new(Failure::io("", io).reason, detail);
        }
        source = err.source();
    }
    let lower = detail.to_ascii_lowercase();
    let reason = if lower.contains("password missing") {
        Reason::Auth
    } else if lower.contains("tls") || lower.contains("ssl") {
        Reason::Tls
    } else if e.is_closed() {
        Reason::Reset
    } else if lower.contains("timeout") || lower.contains("timed out") {
        Reason::Timeout
    } else {
        Reason::Protocol
    };
    Failure::new(reason, detail)
}

impl Collector for PostgresCollector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}

#[cfg(test)]
mod tests;
