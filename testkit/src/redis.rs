//! Redis servers and Sentinels for tests, from `redis-server` and
//! `redis-sentinel`, without persistence, on free loopback ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::proc::{Server, Workdir, find_binary, output_within, port_open, wait_until};

fn binary(name: &str) -> PathBuf {
    find_binary(&[
        &format!("/usr/bin/{name}"),
        &format!("/usr/local/bin/{name}"),
    ])
    .unwrap_or_else(|| panic!("{name} is not installed (scripts/test installs it)"))
}

/// One Redis server or Sentinel.
#[derive(Debug)]
pub struct Redis {
    /// Its name (log file name).
    pub name: String,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: Arc<Workdir>,
    /// `redis-server` arguments (or the Sentinel's config file).
    args: Vec<String>,
    sentinel: bool,
    server: Option<Server>,
}

impl Redis {
    /// A server with extra `redis-server` options (`["--requirepass", "x"]`).
    pub fn server(dir: &Arc<Workdir>, name: &str, extra: &[&str]) -> Redis {
        let port = crate::free_port();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dbfilename",
            &format!("{name}.rdb"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--dir".into());
        args.push(dir.path().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut r = Redis {
            name: name.to_string(),
            port,
            dir: dir.clone(),
            args,
            sentinel: false,
            server: None,
        };
        r.start();
        r
    }

    /// A replica of `master`, with extra options.
    pub fn replica(dir: &Arc<Workdir>, name: &str, master: &Redis, extra: &[&str]) -> Redis {
        let port = master.port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", port.as_str()];
        all.extend_from_slice(extra);
        let r = Redis::server(dir, name, &all);
        wait_until(
            Duration::from_secs(20),
            "the replica to sync",
            || r.log_text(),
            || {
                r.cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            },
        );
        r
    }

    /// A Sentinel watching `master` as `master_name`, quorum `quorum`; it calls
    /// a master down after 1 s and fails over fast.
    /// `auth_pass` is the master's password, if it has one.
    pub fn sentinel(
        dir: &Arc<Workdir>,
        name: &str,
        master_name: &str,
        master: &Redis,
        quorum: u32,
        auth_pass: Option<&str>,
    ) -> Redis {
        let port = crate::free_port();
        let conf = dir.write(
            &format!("{name}.conf"),
            &format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {master_name} 127.0.0.1 {mport} {quorum}\n\
                 sentinel down-after-milliseconds {master_name} 1000\n\
                 sentinel failover-timeout {master_name} 4000\n\
                 sentinel parallel-syncs {master_name} 1\n{auth}",
                dir = dir.path().display(),
                mport = master.port,
                auth = auth_pass
                    .map(|p| format!("sentinel auth-pass {master_name} {p}\n"))
                    .unwrap_or_default(),
            ),
        );
        let mut r = Redis {
            name: name.to_string(),
            port,
            dir: dir.clone(),
            args: vec![conf.display().to_string()],
            sentinel: true,
            server: None,
        };
        r.start();
        r
    }

    /// Starts it (again) and waits for `PING`.
    pub fn start(&mut self) {
        if self.server.is_some() {
            return;
        }
        let program = if self.sentinel {
            "redis-sentinel"
        } else {
            "redis-server"
        };
        let mut cmd = self.dir.command(binary(program));
        cmd.args(&self.args);
        let log = self.dir.path().join(format!("{}.log", self.name));
        self.server = Some(Server::start(&self.name, cmd, &log, libc::SIGTERM));
        let port = self.port;
        wait_until(
            Duration::from_secs(20),
            &format!("{} to answer PING", self.name),
            || self.log_text(),
            || port_open(port) && self.try_cli(&["PING"]).is_ok_and(|o| o.contains("PONG")),
        );
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(5));
        }
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// `redis-cli -p PORT ARGS…`: its output, or the error.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = std::process::Command::new(binary("redis-cli"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(pw) = self.password() {
            cmd.args(["--no-auth-warning", "-a", &pw]);
        }
        cmd.args(args);
        let out = output_within(&mut cmd, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.starts_with("ERR") && !text.starts_with("NOAUTH") {
            Ok(text)
        } else {
            Err(format!("{text} {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// `redis-cli`, panicking on error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?} on {}: {e}", self.name))
    }

    /// The `--requirepass` it was started with.
    fn password(&self) -> Option<String> {
        let i = self.args.iter().position(|a| a == "--requirepass")?;
        self.args.get(i + 1).cloned()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A primary, one replica and one Sentinel (quorum 1) watching the primary as
/// `main`; the primary and the replica require the password
/// [`REDIS_PASSWORD`].
#[derive(Debug)]
pub struct RedisSet {
    pub sentinel: Redis,
    pub replica: Redis,
    pub primary: Redis,
}

/// The password of a [`RedisSet`]'s servers.
pub const REDIS_PASSWORD: &str = "redis-secret";

impl RedisSet {
    /// Starts the three in a new work dir.
    pub fn start(prefix: &str) -> RedisSet {
        let dir = Arc::new(Workdir::new(prefix, "redis"));
        let auth = [
            "--requirepass",
            REDIS_PASSWORD,
            "--masterauth",
            REDIS_PASSWORD,
        ];
        let primary = Redis::server(&dir, "primary", &auth);
        let replica = Redis::replica(&dir, "replica", &primary, &auth);
        let sentinel = Redis::sentinel(&dir, "sentinel", "main", &primary, 1, Some(REDIS_PASSWORD));
        wait_until(
            Duration::from_secs(20),
            "the Sentinel to see the master up and its replica",
            || sentinel.log_text(),
            || {
                let m = sentinel
                    .try_cli(&["SENTINEL", "MASTER", "main"])
                    .unwrap_or_default();
                let lines: Vec<&str> = m.lines().collect();
                let field = |k: &str| {
                    lines
                        .iter()
                        .position(|l| *l == k)
                        .and_then(|i| lines.get(i + 1).copied())
                };
                field("flags") == Some("master") && field("num-slaves") == Some("1")
            },
        );
        RedisSet {
            sentinel,
            replica,
            primary,
        }
    }
}
