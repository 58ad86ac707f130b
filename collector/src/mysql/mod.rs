//! `[[collector.mysql]]`: one MariaDB or MySQL server: whether it is writable,
//! its binary log and GTID position, connections, and the state of replication
//! (`SHOW REPLICA STATUS`, falling back to `SHOW SLAVE STATUS` on servers that
//! predate it). Tested against MariaDB; MySQL's column names are read too.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `mysql_up` | 1 when the server answered every query, else 0 |
//! | `mysql_error_info{reason,message}` | 1, only while `mysql_up` is 0 |
//! | `mysql_info{version}` | 1 |
//! | `mysql_read_only` | 1 when `read_only` is on |
//! | `mysql_super_read_only` | MySQL only: 1 when `super_read_only` is on |
//! | `mysql_binlog_enabled` | 1 when the binary log is on (`log_bin`) |
//! | `mysql_server_id` | `server_id` |
//! | `mysql_is_replica` | 1 when replication is configured (a row in the replica status) |
//! | `mysql_is_primary` | 1 when writable (`read_only` off) and not a replica |
//! | `mysql_connections`, `mysql_max_connections`, `mysql_uptime_seconds` | `Threads_connected`, `max_connections`, `Uptime` |
//! | `mysql_gtid_position{domain}` | the newest applied GTID's sequence number per domain (MariaDB `gtid_current_pos`) or per source UUID (MySQL `gtid_executed`) |
//! | `mysql_replica_io_running{channel}` | 1 while the IO (receiver) thread runs (`Yes`; `Connecting` is 0) |
//! | `mysql_replica_sql_running{channel}` | 1 while the SQL (applier) thread runs |
//! | `mysql_replica_lag_seconds{channel}` | `Seconds_Behind_Master`/`_Source`; absent while the SQL thread is stopped (it is NULL then) |
//! | `mysql_replica_sql_delay_seconds{channel}` | the configured delay (`MASTER_DELAY`) |
//! | `mysql_replica_last_io_errno{channel}`, `mysql_replica_last_sql_errno{channel}` | last error numbers, 0 when none |
//! | `mysql_replica_error_info{channel,thread,errno,message}` | 1 per thread with an error |
//! | `mysql_replica_info{channel,source,using_gtid}` | 1; `source` = `host:port` it replicates from |
//! | `mysql_replica_gtid_io_position{channel,domain}` | MariaDB: newest received GTID sequence per domain (`Gtid_IO_Pos`) |
//!
//! `channel` is MariaDB's connection name or MySQL's channel name; it is absent
//! for the default, unnamed connection.
//!
//! Grants: MariaDB 10.5.9+ `GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* TO
//! warden` (older MariaDB and MySQL: `REPLICATION CLIENT`). Only `SHOW`
//! statements run. One connection per entry, reused; dropped after any failure.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};
use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, TargetLabels, instance_of};
use crate::db::{self, Found, Outcome, SecretSource, labels, number};
use crate::probe::{self, Failure, FailureLog, Reason};

const OUTCOME: Outcome = Outcome {
    up: "mysql_up",
    error: "mysql_error_info",
};

/// `[[collector.mysql]]`: one MariaDB or MySQL server.
///
/// ```toml
/// [[collector.mysql]]
/// name = "db-1"
/// url = "mysql://warden@10.0.0.31:3306"
/// password_env = "MYSQL_MONITOR_PASSWORD"
/// labels = { cluster = "shop" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, e.g. `{ cluster = "shop" }`. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// `mysql://user[:password]@host:port[/db][?require_ssl=true]`. Required.
    /// Example: `url = "mysql://warden@127.0.0.1:3306"`.
    pub url: Spanned<String>,
    /// The password, inline. Prefer `password_env` or `password_file`.
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// A file holding the password (a final newline is ignored).
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
}

impl MysqlConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "mysql",
            entry,
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &[
                "reason",
                "message",
                "version",
                "domain",
                "channel",
                "thread",
                "errno",
                "source",
                "using_gtid",
            ],
        }
        .check(problems);
        let password =
            db::password(&self.password, &self.password_env, &self.password_file).resolve(problems);
        let example = "mysql://warden@127.0.0.1:3306";
        let opts = match Opts::from_url(self.url.get_ref()) {
            Ok(o) => Some(o),
            Err(e) => {
                problems.push(Problem::at(
                    self.url.span(),
                    format!(
                        "'url' '{}' is not a MySQL URL ({e}): write e.g. '{example}'",
                        self.url.get_ref()
                    ),
                ));
                None
            }
        };
        let (opts, password) = (opts?, password?);
        if opts.user().is_none() {
            problems.push(Problem::at(
                self.url.span(),
                format!("'url' names no user: write e.g. '{example}'"),
            ));
            return None;
        }
        let builder = OptsBuilder::from_opts(opts.clone())
            // Talk to the address given; do not switch to a local socket.
            .prefer_socket(false)
            .stmt_cache_size(0);
        if password.is_some() && opts.pass().is_some() {
            problems.push(Problem::at(
                self.url.span(),
                "the URL holds a password and a 'password' key is set too: keep one",
            ));
            return None;
        }
        let common = common?;
        let collector = MysqlCollector {
            opts: builder.into(),
            password,
            budget: probe::budget(common.timeout),
            conn: None,
            replica_stmt: "SHOW REPLICA STATUS",
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Collects one MariaDB/MySQL server (see the module docs).
pub struct MysqlCollector {
    opts: Opts,
    /// Read at each connect.
    password: Option<SecretSource>,
    budget: Duration,
    conn: Option<Conn>,
    /// `SHOW REPLICA STATUS`, or `SHOW SLAVE STATUS` once the server refused it.
    replica_stmt: &'static str,
    log: FailureLog,
}

/// One result row as column name → text (`None` for NULL).
type TextRow = HashMap<String, Option<String>>;

impl MysqlCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.budget, "MySQL", self.collect()).await;
        if result.is_err() {
            // A half-read answer leaves the connection unusable; drop it without
            // waiting for a goodbye.
            self.conn = None;
        }
        self.log
            .note("mysql", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn collect(&mut self) -> Result<Vec<Sample>, Failure> {
        if self.conn.is_none() {
            let mut opts = OptsBuilder::from_opts(self.opts.clone());
            if let Some(p) = &self.password {
                opts = opts.pass(Some(p.read()?.expose()));
            }
            let conn = Conn::new(opts).await.map_err(|e| mysql_failure(&e))?;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::new(Reason::Connect, "no connection"));
        };
        let variables = query(
            conn,
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'super_read_only', \
             'log_bin', 'server_id', 'max_connections', 'version', 'gtid_current_pos', \
             'gtid_executed')",
        )
        .await?;
        let status = query(
            conn,
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Uptime')",
        )
        .await?;
        let replicas = match query(conn, self.replica_stmt).await {
            Err(f) if self.replica_stmt == "SHOW REPLICA STATUS" && f.reason == Reason::Query => {
                self.replica_stmt = "SHOW SLAVE STATUS";
                query(conn, self.replica_stmt).await?
            }
            other => other?,
        };
        Ok(samples(&pairs(&variables), &pairs(&status), &replicas))
    }
}

async fn query(conn: &mut Conn, sql: &str) -> Result<Vec<TextRow>, Failure> {
    let rows: Vec<Row> = conn.query(sql).await.map_err(|e| mysql_failure(&e))?;
    Ok(rows.iter().map(text_row).collect())
}

fn text_row(row: &Row) -> TextRow {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = match row.as_ref(i) {
                None | Some(Value::NULL) => None,
                Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                Some(Value::Int(n)) => Some(n.to_string()),
                Some(Value::UInt(n)) => Some(n.to_string()),
                Some(Value::Float(n)) => Some(n.to_string()),
                Some(Value::Double(n)) => Some(n.to_string()),
                Some(other) => Some(format!("{other:?}")),
            };
            (c.name_str().into_owned(), v)
        })
        .collect()
}

/// `Variable_name` → `Value` of a `SHOW VARIABLES`/`SHOW STATUS` result.
fn pairs(rows: &[TextRow]) -> HashMap<String, String> {
    rows.iter()
        .filter_map(|r| {
            let k = r.get("Variable_name")?.clone()?;
            let v = r.get("Value")?.clone().unwrap_or_default();
            Some((k.to_ascii_lowercase(), v))
        })
        .collect()
}

/// The first of `names` a replica status row has (MySQL 8.0.22 renamed the
/// columns from master/slave to source/replica; MariaDB kept the old ones).
fn col<'a>(row: &'a TextRow, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| row.get(*n))
        .and_then(|v| v.as_deref())
}

fn samples(
    vars: &HashMap<String, String>,
    status: &HashMap<String, String>,
    replicas: &[TextRow],
) -> Vec<Sample> {
    let none = Labels::empty;
    let var = |k: &str| vars.get(k).map(String::as_str);
    let mut out = Found::default();
    out.add(
        "mysql_info",
        labels(&[("version", var("version").unwrap_or(""))]),
        1.0,
    );
    let read_only = number(var("read_only")) == Some(1.0);
    out.flag("mysql_read_only", none(), read_only);
    out.add_opt(
        "mysql_super_read_only",
        none(),
        number(var("super_read_only")),
    );
    out.add_opt("mysql_binlog_enabled", none(), number(var("log_bin")));
    out.add_opt("mysql_server_id", none(), number(var("server_id")));
    out.add_opt(
        "mysql_max_connections",
        none(),
        number(var("max_connections")),
    );
    out.add_opt(
        "mysql_connections",
        none(),
        number(status.get("threads_connected").map(String::as_str)),
    );
    out.add_opt(
        "mysql_uptime_seconds",
        none(),
        number(status.get("uptime").map(String::as_str)),
    );
    let gtids = var("gtid_current_pos")
        .or(var("gtid_executed"))
        .unwrap_or("");
    for (domain, seq) in gtid_positions(gtids) {
        out.add(
            "mysql_gtid_position",
            labels(&[("domain", domain.as_str())]),
            seq,
        );
    }
    let is_replica = !replicas.is_empty();
    out.flag("mysql_is_replica", none(), is_replica);
    out.flag("mysql_is_primary", none(), !read_only && !is_replica);

    for r in replicas {
        let channel = col(r, &["Connection_name", "Channel_Name", "Channel_name"]).unwrap_or("");
        let id = || labels(&[("channel", channel)]);
        let running = |names: &[&str]| col(r, names).is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        out.flag(
            "mysql_replica_io_running",
            id(),
            running(&["Slave_IO_Running", "Replica_IO_Running"]),
        );
        out.flag(
            "mysql_replica_sql_running",
            id(),
            running(&["Slave_SQL_Running", "Replica_SQL_Running"]),
        );
        out.add_opt(
            "mysql_replica_lag_seconds",
            id(),
            number(col(r, &["Seconds_Behind_Master", "Seconds_Behind_Source"])),
        );
        out.add_opt(
            "mysql_replica_sql_delay_seconds",
            id(),
            number(col(r, &["SQL_Delay"])),
        );
        for (thread, errno_col, error_col) in [
            ("io", "Last_IO_Errno", "Last_IO_Error"),
            ("sql", "Last_SQL_Errno", "Last_SQL_Error"),
        ] {
            let errno = number(col(r, &[errno_col])).unwrap_or(0.0);
            let metric = if thread == "io" {
                "mysql_replica_last_io_errno"
            } else {
                "mysql_replica_last_sql_errno"
            };
            out.add(metric, id(), errno);
            if errno != 0.0 {
                let message: String = col(r, &[error_col])
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                let errno = format!("{errno}");
                out.add(
                    "mysql_replica_error_info",
                    labels(&[
                        ("channel", channel),
                        ("thread", thread),
                        ("errno", errno.as_str()),
                        ("message", message.as_str()),
                    ]),
                    1.0,
                );
            }
        }
        let source = format!(
            "{}:{}",
            col(r, &["Master_Host", "Source_Host"]).unwrap_or(""),
            col(r, &["Master_Port", "Source_Port"]).unwrap_or("")
        );
        let using_gtid = col(r, &["Using_Gtid"])
            .map(|v| v.to_ascii_lowercase())
            .or_else(|| {
                col(r, &["Auto_Position"])
                    .map(|v| if v == "1" { "auto_position" } else { "no" }.to_string())
            })
            .unwrap_or_default();
        out.add(
            "mysql_replica_info",
            labels(&[
                ("channel", channel),
                ("source", source.as_str()),
                ("using_gtid", using_gtid.as_str()),
            ]),
            1.0,
        );
        for (domain, seq) in
            gtid_positions(col(r, &["Gtid_IO_Pos", "Retrieved_Gtid_Set"]).unwrap_or(""))
        {
            out.add(
                "mysql_replica_gtid_io_position",
                labels(&[("channel", channel), ("domain", domain.as_str())]),
                seq,
            );
        }
    }
    out.into_samples()
}

/// The newest sequence number per domain of a GTID position: MariaDB
/// `domain-server-seq[,…]`, or MySQL `uuid:1-100:102[,…]` (per source UUID,
/// the highest transaction number).
pub(crate) fn gtid_positions(text: &str) -> Vec<(String, f64)> {
    let mut found: Vec<(String, f64)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = if let Some((uuid, ranges)) = part.split_once(':') {
            let max = ranges
                .split(':')
                .filter_map(|r| r.rsplit('-').next()?.parse::<f64>().ok())
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            max.map(|m| (uuid.to_string(), m))
        } else {
            let mut it = part.splitn(3, '-');
            match (
                it.next(),
                it.next(),
                it.next().and_then(|s| s.parse::<f64>().ok()),
            ) {
                (Some(domain), Some(_server), Some(seq)) => Some((domain.to_string(), seq)),
                _ => None,
            }
        };
        if let Some((domain, seq)) = parsed {
            match found.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, s)) => *s = s.max(seq),
                None => found.push((domain, seq)),
            }
        }
    }
    found
}

/// The failure of a mysql_async error.
fn mysql_failure(e: &mysql_async::Error) -> Failure {
    use mysql_async::Error as E;
    let detail = probe::error_chain(e);
    match e {
        E::Server(s) => {
            let reason = match s.code {
                // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR,
                // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
                1045 | 1044 | 1698 => Reason::Auth,
                // ER_SPECIFIC_ACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR
                1227 | 1142 | 1143 => Reason::Permission,
                // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, ER_HOST_BLOCKED
                1040 | 1053 | 1129 | 1203 => Reason::Unavailable,
                // ER_STATEMENT_TIMEOUT (MariaDB), ER_QUERY_TIMEOUT (MySQL)
                1969 | 3024 => Reason::Timeout,
                _ => Reason::Query,
            };
            Failure::new(
                reason,
                format!("error {} ({}): {}", s.code, s.state, s.message),
            )
        }
        E::Io(mysql_async::IoError::Io(io)) => Failure::new(Failure::io("", io).reason, detail),
        E::Io(_) => Failure::new(Reason::Tls, detail),
        E::Driver(_) | E::Other(_) => {
            let lower = detail.to_ascii_lowercase();
            let reason = if lower.contains("connection") && lower.contains("closed") {
                Reason::Reset
            } else {
                Reason::Protocol
            };
            Failure::new(reason, detail)
        }
        E::Url(_) => Failure::new(Reason::Protocol, detail),
    }
}

impl Collector for MysqlCollector {
    fn kind(&self) -> &'static str {
        "mysql"
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
