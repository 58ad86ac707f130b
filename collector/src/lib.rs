//! warden's collectors: one module per kind, each with its config struct beside
//! its `Collector` impl.
//!
//! # Layout
//! - [`host`]: this machine: CPU, memory, swap, load, disks, network, uptime
//!   (`[[collector.host]]`, [`host::HostCollector`]).
//! - [`process`]: processes found by name, command line, pidfile or warden itself,
//!   with exit detection through pidfds (`[[collector.process]]`,
//!   [`process::ProcessCollector`]).
//! - [`http`]: HTTP(S) health checks: status, body, time, served certificate
//!   (`[[collector.http]]`).
//! - [`tcp`]: TCP connect checks with optional send/expect (`[[collector.tcp]]`).
//! - [`tls`]: certificates of TLS endpoints and of files on disk, days left and
//!   validity (`[[collector.tls]]`).
//! - [`exec`]: Nagios-protocol check commands: status, perfdata, text
//!   (`[[collector.exec]]`).
//! - [`scrape`]: Prometheus/OpenMetrics exporters, with warden's own tolerant
//!   exposition parser (`[[collector.scrape]]`).
//! - [`patroni`]: a Patroni node's REST API: the node, the cluster's members,
//!   roles, lag and leaders (`[[collector.patroni]]`).
//! - [`etcd`]: an etcd member: health, leader, term, members and quorum
//!   (`[[collector.etcd]]`).
//! - [`pgbouncer`]: a PgBouncer's admin console: waiting clients, pools,
//!   traffic (`[[collector.pgbouncer]]`).
//! - [`postgres`]: a PostgreSQL server: role, timeline, replication seen from
//!   the primary and lived by a standby, slots, connections
//!   (`[[collector.postgres]]`).
//! - [`mysql`]: a MariaDB/MySQL server: writable or not, binlog, GTIDs,
//!   replica threads, lag and errors (`[[collector.mysql]]`).
//! - [`redis`]: a Redis server: role, replication offsets and links, clients,
//!   memory (`[[collector.redis]]`).
//! - [`sentinel`]: a Redis Sentinel: masters, their address, down flags,
//!   failovers, quorum (`[[collector.sentinel]]`).
//! - `db`: what the database collectors share: secrets from `*_env`/`*_file`,
//!   `KIND_up` and `KIND_error_info`, the bounded run.
//! - `probe`: what the network probes share: failure reasons, `probe_success`,
//!   the time budget inside the timeout, bounded bodies.
//! - `common`: the keys every kind shares (`name`, `interval`, `timeout`,
//!   `labels`) and their checks; the sample buffer; the blocking-call helpers.
//!
//! # Config
//! [`CollectorsConfig`] is the `[collector]` table of the config file, one array
//! per kind. Parsing is strict (`deny_unknown_fields`) and checks what it can while
//! parsing, so TOML reports the position; [`CollectorsConfig::build`] then checks
//! across fields and entries and returns every [`Problem`] at once, each with the
//! span of the key (or entry) to fix. The binary turns spans into `file:line:col`
//! with [`warden_engine::config::line_col`].
//!
//! Samples carry only the labels a collector measures (`mountpoint`,
//! `interface`, …); the scheduler's [`Pusher`](warden_engine::scheduler::Pusher)
//! adds `instance` and the entry's `labels`.

pub mod etcd;
pub mod exec;
pub mod host;
pub mod http;
pub mod mysql;
pub mod patroni;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod scrape;
pub mod sentinel;
pub mod tcp;
pub mod tls;

mod common;
mod db;
mod probe;
#[cfg(test)]
mod testing;

use std::collections::HashSet;

use serde::Deserialize;
use warden_engine::config::Problem;
use warden_engine::ports::Collector;
use warden_engine::scheduler::CollectorSpec;

pub use common::TargetLabels;

use common::Common;

/// The `[collector]` table: every configured collector, one array per kind.
///
/// ```toml
/// [[collector.host]]
/// interval = "5s"
///
/// [[collector.process]]
/// name = "postgres"
/// match = "postgres"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorsConfig {
    /// `[[collector.host]]`: this machine's vital signs. Usually one entry.
    #[serde(default)]
    pub host: Vec<toml::Spanned<host::HostConfig>>,
    /// `[[collector.process]]`: one entry per process (or group of processes) to
    /// watch.
    #[serde(default)]
    pub process: Vec<toml::Spanned<process::ProcessConfig>>,
    /// `[[collector.http]]`: one entry per HTTP(S) health check.
    #[serde(default)]
    pub http: Vec<toml::Spanned<http::HttpConfig>>,
    /// `[[collector.tcp]]`: one entry per TCP port to check.
    #[serde(default)]
    pub tcp: Vec<toml::Spanned<tcp::TcpConfig>>,
    /// `[[collector.tls]]`: one entry per TLS endpoint or set of certificate files.
    #[serde(default)]
    pub tls: Vec<toml::Spanned<tls::TlsConfig>>,
    /// `[[collector.exec]]`: one entry per Nagios-protocol check command.
    #[serde(default)]
    pub exec: Vec<toml::Spanned<exec::ExecConfig>>,
    /// `[[collector.scrape]]`: one entry per Prometheus exporter.
    #[serde(default)]
    pub scrape: Vec<toml::Spanned<scrape::ScrapeConfig>>,
    /// `[[collector.postgres]]`: one entry per PostgreSQL server.
    #[serde(default)]
    pub postgres: Vec<toml::Spanned<postgres::PostgresConfig>>,
    /// `[[collector.patroni]]`: one entry per Patroni node.
    #[serde(default)]
    pub patroni: Vec<toml::Spanned<patroni::PatroniConfig>>,
    /// `[[collector.etcd]]`: one entry per etcd member.
    #[serde(default)]
    pub etcd: Vec<toml::Spanned<etcd::EtcdConfig>>,
    /// `[[collector.pgbouncer]]`: one entry per PgBouncer.
    #[serde(default)]
    pub pgbouncer: Vec<toml::Spanned<pgbouncer::PgbouncerConfig>>,
    /// `[[collector.mysql]]`: one entry per MariaDB/MySQL server.
    #[serde(default)]
    pub mysql: Vec<toml::Spanned<mysql::MysqlConfig>>,
    /// `[[collector.redis]]`: one entry per Redis server.
    #[serde(default)]
    pub redis: Vec<toml::Spanned<redis::RedisConfig>>,
    /// `[[collector.sentinel]]`: one entry per Redis Sentinel.
    #[serde(default)]
    pub sentinel: Vec<toml::Spanned<sentinel::SentinelConfig>>,
}

impl CollectorsConfig {
    /// The collectors of `warden run` without a config file: this host, and warden
    /// itself as the process `warden`.
    pub fn embedded_default() -> Self {
        Self {
            host: vec![toml::Spanned::new(0..0, host::HostConfig::default())],
            process: vec![toml::Spanned::new(
                0..0,
                process::ProcessConfig::this_process("warden"),
            )],
            ..Self::default()
        }
    }

    /// Checks every entry and builds its collector, or returns every problem found.
    pub fn build(&self) -> Result<Vec<CollectorSpec>, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut built: Vec<(Common, Box<dyn Collector>)> = Vec::new();

        let mut host_name = None;
        for entry in &self.host {
            let name = || host_name.get_or_insert_with(host::host_name).clone();
            if let Some(b) = entry.get_ref().build(entry.span(), name, &mut problems) {
                built.push(b);
            }
        }
        macro_rules! build_each {
            ($($kind:ident),*) => {$(
                for entry in &self.$kind {
                    if let Some(b) = entry.get_ref().build(entry.span(), &mut problems) {
                        built.push(b);
                    }
                }
            )*};
        }
        build_each!(
            process, http, tcp, tls, exec, scrape, postgres, patroni, etcd, pgbouncer, mysql,
            redis, sentinel
        );

        duplicate_names(&built, &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(built
            .into_iter()
            .map(|(c, collector)| CollectorSpec {
                kind: c.kind,
                instance: c.instance,
                interval: c.interval,
                timeout: c.timeout,
                labels: c.labels,
                collector,
            })
            .collect())
    }
}

/// Two entries of one kind with the same name would write the same series.
fn duplicate_names(built: &[(Common, Box<dyn Collector>)], problems: &mut Vec<Problem>) {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for (c, _) in built {
        if !seen.insert((c.kind, c.instance.as_str())) {
            let hint = if c.kind == "host" {
                ": set a different 'name' on each [[collector.host]]"
            } else {
                ": give each entry its own 'name'"
            };
            problems.push(Problem::at(
                c.name_span.clone(),
                format!("duplicate {} name '{}'{hint}", c.kind, c.instance),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
