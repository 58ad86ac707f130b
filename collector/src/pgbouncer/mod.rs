//! `[[collector.pgbouncer]]`: one PgBouncer, through its admin console (the
//! `pgbouncer` database, simple query protocol): clients waiting for a server
//! connection and for how long, server connections per pool, traffic totals.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `pgbouncer_up` | 1 when the admin console answered, else 0 |
//! | `pgbouncer_error_info{reason,message}` | 1, only while `pgbouncer_up` is 0 |
//! | `pgbouncer_pool_clients_active{database,user}` | clients linked to a server connection (or idle) |
//! | `pgbouncer_pool_clients_waiting{database,user}` | clients waiting for a server connection |
//! | `pgbouncer_pool_max_wait_seconds{database,user}` | how long the oldest waiting client has waited |
//! | `pgbouncer_pool_servers_active{…}`, `…_servers_idle`, `…_servers_used`, `…_servers_login` | server connections by state |
//! | `pgbouncer_clients_waiting`, `pgbouncer_max_wait_seconds` | over all pools: the sum, the longest |
//! | `pgbouncer_client_connections`, `pgbouncer_server_connections` | client and server connections in use (`SHOW LISTS`) |
//! | `pgbouncer_max_client_connections` | `max_client_conn` |
//! | `pgbouncer_queries_total{database}`, `pgbouncer_transactions_total{database}` | counters (`SHOW STATS`) |
//! | `pgbouncer_received_bytes_total{database}`, `pgbouncer_sent_bytes_total{database}` | counters |
//! | `pgbouncer_query_seconds_total{database}`, `pgbouncer_wait_seconds_total{database}` | time spent in queries, and clients' time waiting for a server |
//!
//! The admin console's own pool (`pgbouncer`) is left out. Access: list the
//! monitoring user in `stats_users` (read-only `SHOW` commands) and in the
//! `auth_file`. One connection per entry, reused; dropped after any failure.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::{Client, SimpleQueryRow};
use tokio_postgres_rustls::MakeRustlsConnect;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, TargetLabels, instance_of};
use crate::db::{self, Found, Outcome, SecretSource, labels, number};
use crate::postgres::{parse_dsn, pg_failure, result_sets, tls_connector, with_password};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tls::cert;

const OUTCOME: Outcome = Outcome {
    up: "pgbouncer_up",
    error: "pgbouncer_error_info",
};

/// `[[collector.pgbouncer]]`: one PgBouncer.
///
/// ```toml
/// [[collector.pgbouncer]]
/// name = "bouncer-1"
/// dsn = "host=10.0.0.11 port=6432 user=warden dbname=pgbouncer"
/// password_env = "PGBOUNCER_STATS_PASSWORD"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbouncerConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The admin console, as a libpq DSN or URL; `dbname` is `pgbouncer` when
    /// not given. Required. Example: `dsn = "host=127.0.0.1 port=6432 user=warden"`.
    pub dsn: Spanned<String>,
    /// The password, inline. Prefer `password_env` or `password_file`.
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// A file holding the password (a final newline is ignored).
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
    /// A PEM file of CA certificates for `sslmode=verify-ca`/`verify-full`.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
}

impl PgbouncerConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "pgbouncer",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["reason", "message", "database", "user"],
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
        let ((mut config, verify), password) = (dsn?, password?);
        if password.is_some() && config.get_password().is_some() {
            problems.push(Problem::at(
                self.dsn.span(),
                "the DSN holds a password and a 'password' key is set too: keep one",
            ));
            return None;
        }
        if config.get_dbname().is_none() {
            config.dbname("pgbouncer");
        }
        let common = common?;
        let tls = match tls_connector(roots?, verify) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::at(entry, e));
                return None;
            }
        };
        let budget = probe::budget(common.timeout);
        config.connect_timeout(budget);
        let collector = PgbouncerCollector {
            config,
            password,
            tls,
            budget,
            client: None,
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Collects one PgBouncer (see the module docs).
pub struct PgbouncerCollector {
    config: tokio_postgres::Config,
    password: Option<SecretSource>,
    tls: MakeRustlsConnect,
    budget: Duration,
    client: Option<Client>,
    log: FailureLog,
}

impl PgbouncerCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.budget, "PgBouncer", self.collect(cx)).await;
        if result.is_err() {
            self.client = None;
        }
        self.log
            .note("pgbouncer", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn collect(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, Failure> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let config = with_password(&self.config, self.password.as_ref())?;
            let (client, connection) = config
                .connect(self.tls.clone())
                .await
                .map_err(|e| pg_failure(&e))?;
            let shutdown = cx.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    r = connection => if let Err(e) = r {
                        tracing::debug!(error = %e, "pgbouncer connection ended");
                    }
                }
            });
            self.client = Some(client);
        }
        let Some(client) = &self.client else {
            return Err(Failure::new(Reason::Connect, "no connection"));
        };
        // The admin console takes one command per query.
        let mut sets = Vec::with_capacity(4);
        for command in ["SHOW POOLS", "SHOW STATS", "SHOW LISTS", "SHOW CONFIG"] {
            let messages = client
                .simple_query(command)
                .await
                .map_err(|e| pg_failure(&e))?;
            sets.push(result_sets(messages).into_iter().next().unwrap_or_default());
        }
        Ok(samples(&sets[0], &sets[1], &sets[2], &sets[3]))
    }
}

/// A column by name, as text.
fn get<'a>(row: &'a SimpleQueryRow, name: &str) -> Option<&'a str> {
    let i = row.columns().iter().position(|c| c.name() == name)?;
    row.try_get(i).ok().flatten()
}

fn samples(
    pools: &[SimpleQueryRow],
    stats: &[SimpleQueryRow],
    lists: &[SimpleQueryRow],
    config: &[SimpleQueryRow],
) -> Vec<Sample> {
    let none = Labels::empty;
    let mut out = Found::default();
    let mut waiting = 0.0;
    let mut max_wait: f64 = 0.0;
    for p in pools {
        let database = get(p, "database").unwrap_or("");
        if database == "pgbouncer" {
            continue;
        }
        let user = get(p, "user").unwrap_or("");
        let id = || labels(&[("database", database), ("user", user)]);
        let num = |c: &str| number(get(p, c));
        out.add_opt("pgbouncer_pool_clients_active", id(), num("cl_active"));
        out.add_opt("pgbouncer_pool_clients_waiting", id(), num("cl_waiting"));
        out.add_opt("pgbouncer_pool_servers_active", id(), num("sv_active"));
        out.add_opt("pgbouncer_pool_servers_idle", id(), num("sv_idle"));
        out.add_opt("pgbouncer_pool_servers_used", id(), num("sv_used"));
        out.add_opt("pgbouncer_pool_servers_login", id(), num("sv_login"));
        let wait = num("maxwait").unwrap_or(0.0) + num("maxwait_us").unwrap_or(0.0) / 1e6;
        out.add("pgbouncer_pool_max_wait_seconds", id(), wait);
        waiting += num("cl_waiting").unwrap_or(0.0);
        max_wait = max_wait.max(wait);
    }
    out.add("pgbouncer_clients_waiting", none(), waiting);
    out.add("pgbouncer_max_wait_seconds", none(), max_wait);

    for s in stats {
        let database = get(s, "database").unwrap_or("");
        if database == "pgbouncer" {
            continue;
        }
        let id = || labels(&[("database", database)]);
        let num = |c: &str| number(get(s, c));
        out.add_opt("pgbouncer_queries_total", id(), num("total_query_count"));
        out.add_opt(
            "pgbouncer_transactions_total",
            id(),
            num("total_xact_count"),
        );
        out.add_opt(
            "pgbouncer_received_bytes_total",
            id(),
            num("total_received"),
        );
        out.add_opt("pgbouncer_sent_bytes_total", id(), num("total_sent"));
        // Microseconds in PgBouncer's counters.
        out.add_opt(
            "pgbouncer_query_seconds_total",
            id(),
            num("total_query_time").map(|us| us / 1e6),
        );
        out.add_opt(
            "pgbouncer_wait_seconds_total",
            id(),
            num("total_wait_time").map(|us| us / 1e6),
        );
    }

    for l in lists {
        let metric = match get(l, "list") {
            Some("used_clients") => "pgbouncer_client_connections",
            Some("used_servers") => "pgbouncer_server_connections",
            _ => continue,
        };
        out.add_opt(metric, none(), number(get(l, "items")));
    }
    for c in config {
        if get(c, "key") == Some("max_client_conn") {
            out.add_opt(
                "pgbouncer_max_client_connections",
                none(),
                number(get(c, "value")),
            );
        }
    }
    out.into_samples()
}

impl Collector for PgbouncerCollector {
    fn kind(&self) -> &'static str {
        "pgbouncer"
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
