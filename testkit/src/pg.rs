//! PostgreSQL servers for tests: a primary made with `initdb`, streaming
//! standbys made with `pg_basebackup -R` and a replication slot, `psql` for SQL.
//!
//! Each server listens on its own free loopback port with its socket in the
//! work dir. Authentication: the superuser `postgres` is trusted on loopback
//! (the tests' own SQL and replication); every other role needs its password
//! (SCRAM), so credential tests are real.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::proc::{Server, Workdir, port_open, wait_until};

/// The newest installed PostgreSQL's `bin` directory, if any.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn bin(name: &str) -> PathBuf {
    bin_dir()
        .expect("PostgreSQL is not installed (scripts/test installs it)")
        .join(name)
}

/// One PostgreSQL server.
#[derive(Debug)]
pub struct Pg {
    /// Its name (the data directory's name and `cluster_name`).
    pub name: String,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The data directory.
    pub data: PathBuf,
    dir: Arc<Workdir>,
    server: Option<Server>,
}

/// Settings every test server runs with: small, fast, chatty replication.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "16MB"),
    ("max_connections", "30"),
    ("wal_level", "replica"),
    ("max_wal_senders", "8"),
    ("max_replication_slots", "8"),
    ("hot_standby", "on"),
    ("wal_receiver_status_interval", "1s"),
    ("wal_sender_timeout", "10s"),
    ("wal_keep_size", "64MB"),
    ("logging_collector", "off"),
    ("log_min_messages", "warning"),
];

impl Pg {
    /// A new primary in `dir`, started.
    pub fn primary(dir: &Arc<Workdir>, name: &str) -> Pg {
        let data = dir.path().join(name);
        let mut cmd = dir.command(bin("initdb"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C"]);
        dir.run(cmd, Duration::from_secs(60));
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        dir.own(&data.join("pg_hba.conf"));
        let mut pg = Pg {
            name: name.to_string(),
            port: crate::free_port(),
            data,
            dir: dir.clone(),
            server: None,
        };
        pg.start();
        pg
    }

    /// A streaming standby of `primary`, replicating through the physical slot
    /// `slot` (created by `pg_basebackup`), started.
    pub fn standby(primary: &Pg, name: &str, slot: &str) -> Pg {
        let dir = primary.dir.clone();
        let data = dir.path().join(name);
        let mut cmd = dir.command(bin("pg_basebackup"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-X", "stream", "-R", "-C", "-S", slot])
            .args(["--no-sync", "-c", "fast"]);
        dir.run(cmd, Duration::from_secs(60));
        // -R wrote primary_conninfo; name the standby so the primary's
        // pg_stat_replication shows which one it is.
        let auto = data.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap();
        let text = text.replace(
            "primary_conninfo = '",
            &format!("primary_conninfo = 'application_name={name} "),
        );
        std::fs::write(&auto, text).unwrap();
        let mut pg = Pg {
            name: name.to_string(),
            port: crate::free_port(),
            data,
            dir,
            server: None,
        };
        pg.start();
        pg
    }

    /// Starts the server (again) and waits until it accepts queries.
    pub fn start(&mut self) {
        if self.server.is_some() {
            return;
        }
        let mut cmd = self.dir.command(bin("postgres"));
        cmd.arg("-D").arg(&self.data);
        cmd.args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path());
        cmd.args(["-c", &format!("cluster_name={}", self.name)]);
        for (k, v) in SETTINGS {
            cmd.args(["-c", &format!("{k}={v}")]);
        }
        let log = self.dir.path().join(format!("{}.log", self.name));
        self.server = Some(Server::start(&self.name, cmd, &log, libc::SIGINT));
        let port = self.port;
        wait_until(
            Duration::from_secs(30),
            &format!("PostgreSQL {} to accept queries", self.name),
            || self.log_text(),
            || port_open(port) && self.try_sql("SELECT 1").is_ok(),
        );
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(20));
        }
    }

    /// Kills the postmaster with SIGKILL, as a crash would. Its backends notice
    /// and exit on their own.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// Runs SQL as `postgres`; the unaligned, tuples-only output, trimmed.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = self.dir.command(bin("psql"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-c", sql]);
        let out = crate::proc::output_within(&mut cmd, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Runs SQL as `postgres`, panicking on error.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", sql, self.name))
    }

    /// Creates a login role with a password and extra SQL after `IN ROLE`-less
    /// creation (e.g. `GRANT pg_monitor TO name`).
    pub fn create_role(&self, name: &str, password: &str, grants: &[&str]) {
        self.sql(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN \
             CREATE ROLE {name} LOGIN PASSWORD '{password}'; END IF; END $$"
        ));
        for g in grants {
            self.sql(&format!("GRANT {g} TO {name}"));
        }
    }

    /// A DSN for `user` (password given separately).
    pub fn dsn(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }

    /// Waits until `sql` returns `want`.
    pub fn wait_for(&self, sql: &str, want: &str, limit: Duration) {
        wait_until(
            limit,
            &format!("'{sql}' = '{want}' on {}", self.name),
            || self.log_text(),
            || self.try_sql(sql).is_ok_and(|v| v == want),
        );
    }

    /// The work directory (logs, sockets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // Fast shutdown; the work dir goes when its last user drops it.
        self.stop();
    }
}

/// A primary and one streaming standby (slot `standby_slot`), with the role
/// `warden` (password `warden-secret`, `pg_monitor`) on both.
#[derive(Debug)]
pub struct PgPair {
    /// Streaming standbys go after the primary in drop order.
    pub standby: Pg,
    pub primary: Pg,
}

/// The monitoring role's name and password in [`PgPair`].
pub const MONITOR_USER: &str = "warden";
/// The monitoring role's password.
pub const MONITOR_PASSWORD: &str = "warden-secret";

impl PgPair {
    /// Starts a primary and a standby in a new work dir; waits until the standby
    /// streams.
    pub fn start(prefix: &str) -> PgPair {
        let dir = Arc::new(Workdir::new(prefix, "postgres"));
        let primary = Pg::primary(&dir, "primary");
        primary.create_role(MONITOR_USER, MONITOR_PASSWORD, &["pg_monitor"]);
        primary.sql("CREATE TABLE IF NOT EXISTS ticks (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
        let standby = Pg::standby(&primary, "standby", "standby_slot");
        primary.wait_for(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE state = 'streaming' AND replay_lsn IS NOT NULL",
            "1",
            Duration::from_secs(30),
        );
        // One replayed transaction, so the standby has a replay timestamp.
        primary.sql("INSERT INTO ticks DEFAULT VALUES");
        standby.wait_for("SELECT count(*) FROM ticks", "1", Duration::from_secs(30));
        PgPair { standby, primary }
    }
}
