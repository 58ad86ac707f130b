//! `[[collector.redis]]`: one Redis (or Valkey) server: its role, the state of
//! replication from both sides, clients and memory, from `INFO server`,
//! `INFO replication`, `INFO clients` and `INFO memory` in one round trip.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `redis_up` | 1 when the server answered, else 0 |
//! | `redis_error_info{reason,message}` | 1, only while `redis_up` is 0 |
//! | `redis_info{version,mode,role}` | 1 |
//! | `redis_is_master` | 1 when its role is `master` |
//! | `redis_uptime_seconds`, `redis_connected_clients`, `redis_blocked_clients`, `redis_max_clients` | |
//! | `redis_memory_used_bytes`, `redis_memory_max_bytes` | `used_memory`, `maxmemory` (0: no limit) |
//! | `redis_replication_offset` | `master_repl_offset`: the replication stream position it has |
//! | `redis_connected_replicas` | master: replicas connected |
//! | `redis_replica_online{replica}` | master: 1 per replica (`ip:port`) whose state is `online` |
//! | `redis_replication_lag_bytes{replica}` | master: its offset − the replica's acknowledged offset |
//! | `redis_replica_lag_seconds{replica}` | master: seconds since the replica last acknowledged |
//! | `redis_master_link_up` | replica: 1 while the link to its master is up |
//! | `redis_master_info{master}` | replica: 1, `master` = `host:port` it replicates from |
//! | `redis_master_last_io_seconds` | replica: seconds since the master last sent anything |
//! | `redis_master_link_down_seconds` | replica: how long the link has been down |
//! | `redis_master_sync_in_progress` | replica: 1 during a full resynchronisation |
//!
//! Access: `INFO` only. With ACLs, a user with `+info +ping +client|setinfo
//! +hello +auth` suffices. One connection per entry, reused; dropped after any
//! failure and opened again on the next run.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, RedisError};
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
    up: "redis_up",
    error: "redis_error_info",
};

/// `[[collector.redis]]`: one Redis server.
///
/// ```toml
/// [[collector.redis]]
/// name = "redis-1"
/// url = "redis://10.0.0.21:6379"
/// password_env = "REDIS_PASSWORD"
/// labels = { cluster = "cache" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, e.g. `{ cluster = "cache" }`. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// `redis://[user[:password]@]host:port[/db]`, or `redis+unix:///path`.
    /// Required. Example: `url = "redis://127.0.0.1:6379"`.
    pub url: Spanned<String>,
    /// The ACL user name (Redis 6+). Default: none (the `default` user).
    #[serde(default)]
    pub username: Option<String>,
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

impl RedisConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "redis",
            entry,
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &[
                "reason", "message", "version", "mode", "role", "replica", "master",
            ],
        }
        .check(problems);
        let info = connection_info(
            "redis://127.0.0.1:6379",
            &self.url,
            self.username.as_deref(),
            db::password(&self.password, &self.password_env, &self.password_file),
            problems,
        );
        let common = common?;
        let budget = probe::budget(common.timeout);
        let collector = RedisCollector {
            link: Link::new(info?, budget),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Checks a Redis `url` and adds the user and password.
pub(crate) fn connection_info(
    example: &str,
    url: &Spanned<String>,
    username: Option<&str>,
    password: db::SecretKeys<'_>,
    problems: &mut Vec<Problem>,
) -> Option<(ConnectionInfo, Option<SecretSource>)> {
    let password = password.resolve(problems);
    let text = url.get_ref();
    let info = if text.starts_with("redis://") || text.starts_with("redis+unix://") {
        match text.as_str().into_connection_info() {
            Ok(i) => Some(i),
            Err(e) => {
                problems.push(Problem::at(
                    url.span(),
                    format!("'url' '{text}' is not a Redis URL ({e}): write e.g. '{example}'"),
                ));
                None
            }
        }
    } else {
        problems.push(Problem::at(
            url.span(),
            format!(
                "'url' '{text}' is not a redis:// or redis+unix:// URL (TLS is not supported): write e.g. '{example}'"
            ),
        ));
        None
    };
    let (info, password) = (info?, password?);
    let mut settings = info.redis_settings().clone();
    if let Some(u) = username {
        settings = settings.set_username(u);
    }
    if password.is_some() && settings.password().is_some() {
        problems.push(Problem::at(
            url.span(),
            "the URL holds a password and a 'password' key is set too: keep one",
        ));
        return None;
    }
    Some((info.set_redis_settings(settings), password))
}

/// One reused connection to a Redis server or Sentinel.
pub(crate) struct Link {
    info: ConnectionInfo,
    /// Read at each connect.
    password: Option<SecretSource>,
    budget: Duration,
    conn: Option<MultiplexedConnection>,
}

impl Link {
    pub(crate) fn new(
        (info, password): (ConnectionInfo, Option<SecretSource>),
        budget: Duration,
    ) -> Self {
        Self {
            info,
            password,
            budget,
            conn: None,
        }
    }

    /// The connection, opened when there is none.
    pub(crate) async fn get(&mut self) -> Result<MultiplexedConnection, Failure> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let mut info = self.info.clone();
        if let Some(p) = &self.password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(p.read()?.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| redis_failure(&e))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.budget))
            .set_response_timeout(Some(self.budget));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| redis_failure(&e))?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a failure.
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }
}

/// Collects one Redis server (see the module docs).
pub struct RedisCollector {
    link: Link,
    log: FailureLog,
}

impl RedisCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.link.budget(), "Redis", self.collect()).await;
        if result.is_err() {
            self.link.reset();
        }
        self.log
            .note("redis", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn collect(&mut self) -> Result<Vec<Sample>, Failure> {
        let mut conn = self.link.get().await?;
        let sections: Vec<String> = redis::pipe()
            .cmd("INFO")
            .arg("server")
            .cmd("INFO")
            .arg("replication")
            .cmd("INFO")
            .arg("clients")
            .cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_failure(&e))?;
        Ok(parse_info(&info_fields(&sections.join("\n"))))
    }
}

/// The `key:value` lines of `INFO` output.
pub(crate) fn info_fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .collect()
}

/// `a=1,b=2` (a replica line of `INFO replication`) as pairs.
pub(crate) fn info_pairs(value: &str) -> HashMap<&str, &str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn parse_info(f: &HashMap<&str, &str>) -> Vec<Sample> {
    let none = Labels::empty;
    let get = |k: &str| f.get(k).copied();
    let num = |k: &str| number(get(k));
    let mut out = Found::default();
    let role = get("role").unwrap_or("");
    out.add(
        "redis_info",
        labels(&[
            ("version", get("redis_version").unwrap_or("")),
            ("mode", get("redis_mode").unwrap_or("")),
            ("role", role),
        ]),
        1.0,
    );
    out.flag("redis_is_master", none(), role == "master");
    out.add_opt("redis_uptime_seconds", none(), num("uptime_in_seconds"));
    out.add_opt("redis_connected_clients", none(), num("connected_clients"));
    out.add_opt("redis_blocked_clients", none(), num("blocked_clients"));
    out.add_opt("redis_max_clients", none(), num("maxclients"));
    out.add_opt("redis_memory_used_bytes", none(), num("used_memory"));
    out.add_opt("redis_memory_max_bytes", none(), num("maxmemory"));
    let offset = num("master_repl_offset");
    out.add_opt("redis_replication_offset", none(), offset);
    if role == "master" {
        out.add_opt("redis_connected_replicas", none(), num("connected_slaves"));
        let mut i = 0;
        while let Some(line) = get(&format!("slave{i}")) {
            i += 1;
            let r = info_pairs(line);
            let replica = format!(
                "{}:{}",
                r.get("ip").copied().unwrap_or(""),
                r.get("port").copied().unwrap_or("")
            );
            let id = || labels(&[("replica", replica.as_str())]);
            out.flag(
                "redis_replica_online",
                id(),
                r.get("state") == Some(&"online"),
            );
            if let (Some(master), Some(acked)) = (offset, number(r.get("offset").copied())) {
                out.add(
                    "redis_replication_lag_bytes",
                    id(),
                    (master - acked).max(0.0),
                );
            }
            out.add_opt(
                "redis_replica_lag_seconds",
                id(),
                number(r.get("lag").copied()),
            );
        }
    } else {
        out.flag(
            "redis_master_link_up",
            none(),
            get("master_link_status") == Some("up"),
        );
        let master = format!(
            "{}:{}",
            get("master_host").unwrap_or(""),
            get("master_port").unwrap_or("")
        );
        out.add(
            "redis_master_info",
            labels(&[("master", master.as_str())]),
            1.0,
        );
        // -1 while the link is down.
        out.add_opt(
            "redis_master_last_io_seconds",
            none(),
            num("master_last_io_seconds_ago").filter(|v| *v >= 0.0),
        );
        out.add_opt(
            "redis_master_link_down_seconds",
            none(),
            num("master_link_down_since_seconds").filter(|v| *v >= 0.0),
        );
        out.add_opt(
            "redis_master_sync_in_progress",
            none(),
            num("master_sync_in_progress"),
        );
    }
    out.into_samples()
}

/// The failure of a redis error.
pub(crate) fn redis_failure(e: &RedisError) -> Failure {
    let detail = probe::error_chain(e);
    let code = e.code().unwrap_or("");
    // A pipeline's errors come wrapped, their codes only in the text.
    let says = |c: &str| {
        code == c || detail.contains(&format!("\"{c}\"")) || detail.contains(&format!("{c} "))
    };
    let reason = if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || says("NOAUTH")
        || says("WRONGPASS")
        || detail.contains("invalid username-password")
        || detail.contains("invalid password")
    {
        Reason::Auth
    } else if says("NOPERM") {
        Reason::Permission
    } else if says("LOADING") || says("BUSY") || says("MASTERDOWN") || says("TRYAGAIN") {
        Reason::Unavailable
    } else if e.is_timeout() {
        Reason::Timeout
    } else if e.is_connection_refusal() {
        Reason::Refused
    } else if e.is_io_error() || e.is_connection_dropped() {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut found = Reason::Reset;
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                found = Failure::io("", io).reason;
                break;
            }
            source = err.source();
        }
        found
    } else if !code.is_empty() {
        Reason::Query
    } else {
        Reason::Protocol
    };
    Failure::new(reason, detail)
}

impl Collector for RedisCollector {
    fn kind(&self) -> &'static str {
        "redis"
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
