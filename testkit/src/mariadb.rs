//! MariaDB servers for tests: a primary with binary log and GTIDs and replicas
//! following it with `MASTER_USE_GTID = slave_pos`, on free loopback ports.
//! The tests' own SQL runs as `root` over the server's Unix socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::proc::{Server, Workdir, find_binary, output_within, port_open, wait_until};

fn binary(names: &[&str]) -> PathBuf {
    let paths: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("/usr/sbin/{n}"), format!("/usr/bin/{n}")])
        .collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    find_binary(&refs)
        .unwrap_or_else(|| panic!("{names:?} not installed (scripts/test installs mariadb-server)"))
}

/// True when a MariaDB server binary is installed.
pub fn available() -> bool {
    find_binary(&["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]).is_some()
}

/// One MariaDB server.
#[derive(Debug)]
pub struct Maria {
    /// Its name (data directory, socket and log names).
    pub name: String,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Its `server_id`.
    pub server_id: u32,
    dir: Arc<Workdir>,
    server: Option<Server>,
}

/// The monitoring user of a [`MariaPair`] (`REPLICATION CLIENT, SLAVE MONITOR`).
pub const MONITOR_USER: &str = "warden";
/// Its password.
pub const MONITOR_PASSWORD: &str = "warden-secret";

impl Maria {
    /// A new server with binary log and GTIDs, started.
    pub fn new(dir: &Arc<Workdir>, name: &str, server_id: u32) -> Maria {
        let data = dir.path().join(name);
        let mut cmd = dir.command(binary(&["mariadb-install-db", "mysql_install_db"]));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg("--user=mysql")
            .arg("--skip-name-resolve");
        dir.run(cmd, Duration::from_secs(120));
        let mut m = Maria {
            name: name.to_string(),
            port: crate::free_port(),
            server_id,
            dir: dir.clone(),
            server: None,
        };
        m.start();
        m
    }

    /// Starts it (again) and waits until it answers.
    pub fn start(&mut self) {
        if self.server.is_some() {
            return;
        }
        let dir = self.dir.path();
        let mut cmd = self.dir.command(binary(&["mariadbd", "mysqld"]));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join(&self.name).display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--pid-file={}",
                dir.join(format!("{}.pid", self.name)).display()
            ))
            .arg(format!("--server-id={}", self.server_id))
            .arg("--log-bin=binlog")
            .arg("--binlog-format=ROW")
            .arg("--gtid-strict-mode=1")
            .arg("--log-slave-updates=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-log-file-size=8M")
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--sync-binlog=0")
            .arg("--skip-innodb-doublewrite")
            .arg("--performance-schema=OFF")
            .arg("--max-connections=40")
            .arg("--user=mysql");
        // mariadbd writes its error log itself, as its own user.
        cmd.arg(format!(
            "--log-error={}",
            dir.join(format!("{}.log", self.name)).display()
        ));
        let log = dir.join(format!("{}.out", self.name));
        self.server = Some(Server::start(&self.name, cmd, &log, libc::SIGTERM));
        let port = self.port;
        wait_until(
            Duration::from_secs(60),
            &format!("MariaDB {} to answer", self.name),
            || self.log_text(),
            || port_open(port) && self.try_sql("SELECT 1").is_ok(),
        );
    }

    /// Stops it cleanly.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(30));
        }
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join(format!("{}.sock", self.name))
    }

    /// The error log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// Runs SQL as root over the socket; tab-separated rows without headers.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.client(sql, true)
    }

    /// `SHOW SLAVE STATUS` as `Column: value` lines.
    pub fn slave_status(&self) -> String {
        self.client("SHOW SLAVE STATUS\\G", false)
            .unwrap_or_default()
    }

    fn client(&self, sql: &str, bare: bool) -> Result<String, String> {
        let mut cmd = std::process::Command::new(binary(&["mariadb", "mysql"]));
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "-B"]);
        if bare {
            cmd.arg("-N");
        }
        cmd.args(["-e", sql]);
        let out = output_within(&mut cmd, Duration::from_secs(30)).map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Runs SQL as root, panicking on error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("{sql} on {}: {e}", self.name))
    }

    /// Makes this server a read-only GTID replica of `primary` and waits until
    /// both threads run.
    pub fn follow(&self, primary: &Maria) {
        self.sql(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
             MASTER_USER='repl', MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos, \
             MASTER_CONNECT_RETRY=1; SET GLOBAL read_only = ON; START SLAVE",
            primary.port
        ));
        self.wait_for_threads("Yes", "Yes");
    }

    /// Waits until SHOW SLAVE STATUS shows these IO and SQL thread states.
    pub fn wait_for_threads(&self, io: &str, sql: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("{} replica threads {io}/{sql}", self.name),
            || format!("{}\n{}", self.log_text(), self.slave_status()),
            || {
                let s = self.slave_status();
                s.contains(&format!("Slave_IO_Running: {io}"))
                    && s.contains(&format!("Slave_SQL_Running: {sql}"))
            },
        );
    }

    /// `mysql://USER@127.0.0.1:PORT`.
    pub fn url(&self, user: &str) -> String {
        format!("mysql://{user}@127.0.0.1:{}", self.port)
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A primary and one GTID replica, with the replication user and the
/// monitoring user [`MONITOR_USER`] created on the primary (and replicated).
#[derive(Debug)]
pub struct MariaPair {
    pub replica: Maria,
    pub primary: Maria,
}

impl MariaPair {
    /// Starts both in a new work dir; waits until the replica runs.
    pub fn start(prefix: &str) -> MariaPair {
        let dir = Arc::new(Workdir::new(prefix, "mysql"));
        let primary = Maria::new(&dir, "primary", 1);
        let replica = Maria::new(&dir, "replica", 2);
        primary.sql(&format!(
            "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-secret'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'; \
             CREATE USER '{MONITOR_USER}'@'%' IDENTIFIED BY '{MONITOR_PASSWORD}'; \
             GRANT REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '{MONITOR_USER}'@'%'; \
             CREATE DATABASE app; CREATE TABLE app.ticks (id INT AUTO_INCREMENT PRIMARY KEY)"
        ));
        // The replica starts from an empty GTID position and so replays the
        // users and the table.
        replica.follow(&primary);
        replica.sql("SET GLOBAL read_only = ON");
        MariaPair { replica, primary }
    }
}
