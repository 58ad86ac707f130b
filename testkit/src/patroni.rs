//! A Patroni cluster for tests: one etcd and Patroni nodes (Debian's `patroni`)
//! each running its own PostgreSQL, with short timings (`ttl` 10 s,
//! `loop_wait` 1 s) so a failover happens within about 15 s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::etcd::Etcd;
use crate::proc::{Server, Workdir, find_binary, port_open, wait_until};

fn binary() -> PathBuf {
    find_binary(&["/usr/bin/patroni", "/usr/local/bin/patroni"])
        .expect("patroni is not installed (scripts/test installs it)")
}

/// One Patroni node and its PostgreSQL.
#[derive(Debug)]
pub struct Node {
    /// The member name.
    pub name: String,
    /// The REST API port on 127.0.0.1.
    pub api_port: u16,
    /// The PostgreSQL port on 127.0.0.1.
    pub pg_port: u16,
    dir: Arc<Workdir>,
    server: Option<Server>,
}

/// The superuser password of the cluster's PostgreSQL.
pub const SUPERUSER_PASSWORD: &str = "su-secret";

impl Node {
    fn start(dir: &Arc<Workdir>, etcd: &Etcd, name: &str) -> Node {
        let api_port = crate::free_port();
        let pg_port = crate::free_port();
        let bin_dir = crate::pg::bin_dir().expect("PostgreSQL is not installed");
        let d = dir.path().display();
        let config = format!(
            "scope: warden-test\nname: {name}\n\
             log: {{level: INFO}}\n\
             restapi: {{listen: '127.0.0.1:{api_port}', connect_address: '127.0.0.1:{api_port}'}}\n\
             etcd3: {{hosts: '127.0.0.1:{etcd_port}'}}\n\
             bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 1\n    retry_timeout: 3\n\
             \x20   maximum_lag_on_failover: 104857600\n\
             \x20   postgresql:\n      use_pg_rewind: false\n      use_slots: true\n\
             \x20     parameters: {{fsync: 'off', wal_level: replica, hot_standby: 'on', \
             max_wal_senders: 5, max_replication_slots: 5, max_connections: 30, \
             shared_buffers: 16MB, wal_receiver_status_interval: 1s}}\n\
             \x20 initdb: [{{encoding: UTF8}}, {{locale: C}}]\n\
             postgresql:\n  listen: '127.0.0.1:{pg_port}'\n  connect_address: '127.0.0.1:{pg_port}'\n\
             \x20 data_dir: {d}/{name}\n  bin_dir: {bin}\n  pgpass: {d}/{name}.pgpass\n\
             \x20 authentication:\n    replication: {{username: replicator, password: rep-secret}}\n\
             \x20   superuser: {{username: postgres, password: {SUPERUSER_PASSWORD}}}\n\
             \x20 parameters: {{unix_socket_directories: '{d}'}}\n\
             \x20 pg_hba: ['local all all trust', 'host replication replicator 127.0.0.1/32 md5', \
             'host all all 127.0.0.1/32 md5']\n",
            etcd_port = etcd.port,
            bin = bin_dir.display(),
        );
        let file = dir.write(&format!("{name}.yml"), &config);
        let mut cmd = dir.command(binary());
        cmd.arg(file);
        let log = dir.path().join(format!("{name}.log"));
        let server = Server::start(name, cmd, &log, libc::SIGTERM);
        Node {
            name: name.to_string(),
            api_port,
            pg_port,
            dir: dir.clone(),
            server: Some(server),
        }
    }

    /// GET `path` of the REST API; the body.
    pub fn api(&self, path: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.api_port))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    }

    /// `http://127.0.0.1:API_PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// Kills Patroni and its PostgreSQL with SIGKILL, as a crashed machine: the
    /// leader lock is not released and expires after `ttl`.
    pub fn crash(&mut self) {
        let pidfile = self.dir.path().join(&self.name).join("postmaster.pid");
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
        {
            // SAFETY: the postmaster this node started; its backends follow it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Stops the node (Patroni stops its PostgreSQL).
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An etcd and two Patroni nodes: `pg1` bootstraps and leads, `pg2` replicates.
#[derive(Debug)]
pub struct PatroniCluster {
    pub nodes: Vec<Node>,
    pub etcd: Etcd,
}

impl PatroniCluster {
    /// Starts etcd and two nodes; waits until `pg1` leads and `pg2` streams.
    pub fn start(prefix: &str) -> PatroniCluster {
        let dir = Arc::new(Workdir::new(prefix, "postgres"));
        let etcd = Etcd::start(&dir, "etcd");
        let first = Node::start(&dir, &etcd, "pg1");
        wait_until(
            Duration::from_secs(60),
            "pg1 to bootstrap and lead",
            || first.log_text(),
            || {
                port_open(first.api_port)
                    && first
                        .api("/cluster")
                        .is_ok_and(|c| c.contains("\"leader\""))
            },
        );
        let second = Node::start(&dir, &etcd, "pg2");
        wait_until(
            Duration::from_secs(60),
            "pg2 to stream from pg1",
            || second.log_text(),
            || {
                first.api("/cluster").is_ok_and(|c| {
                    c.contains("\"streaming\"") || c.matches("\"running\"").count() >= 2
                }) && second
                    .api("/patroni")
                    .is_ok_and(|p| p.contains("\"replica\""))
            },
        );
        PatroniCluster {
            nodes: vec![first, second],
            etcd,
        }
    }
}
