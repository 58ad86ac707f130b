//! PgBouncer in front of a test PostgreSQL server, on a free loopback port.
//!
//! Users (SCRAM, plain passwords in the auth file): `postgres` (the clients
//! the tests make wait) and the stats user [`STATS_USER`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::pg::Pg;
use crate::proc::{Server, Workdir, find_binary, output_within, port_open, wait_until};

/// The monitoring user, listed in `stats_users`.
pub const STATS_USER: &str = "warden";
/// Its password.
pub const STATS_PASSWORD: &str = "stats-secret";
/// The password of `postgres` through PgBouncer.
pub const APP_PASSWORD: &str = "app-secret";

fn binary() -> PathBuf {
    find_binary(&["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"])
        .expect("pgbouncer is not installed (scripts/test installs it)")
}

/// One PgBouncer.
#[derive(Debug)]
pub struct Bouncer {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: Arc<Workdir>,
    server: Option<Server>,
}

impl Bouncer {
    /// A PgBouncer for database `postgres` of `pg`, with pools of `pool_size`
    /// server connections, started.
    pub fn start(pg: &Pg, pool_size: u32) -> Bouncer {
        let dir = Arc::new(Workdir::new("pgbouncer", "postgres"));
        let port = crate::free_port();
        dir.write(
            "userlist.txt",
            &format!("\"postgres\" \"{APP_PASSWORD}\"\n\"{STATS_USER}\" \"{STATS_PASSWORD}\"\n"),
        );
        dir.write(
            "pgbouncer.ini",
            &format!(
                "[databases]\npostgres = host=127.0.0.1 port={pgport} dbname=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {dir}/userlist.txt\n\
                 stats_users = {STATS_USER}\npool_mode = session\nmax_client_conn = 50\n\
                 default_pool_size = {pool_size}\nreserve_pool_size = 0\n\
                 pidfile = {dir}/pgbouncer.pid\n",
                pgport = pg.port,
                dir = dir.path().display(),
            ),
        );
        let mut b = Bouncer {
            port,
            dir,
            server: None,
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let mut cmd = self.dir.command(binary());
        cmd.arg(self.dir.path().join("pgbouncer.ini"));
        let log = self.dir.path().join("pgbouncer.log");
        self.server = Some(Server::start("pgbouncer", cmd, &log, libc::SIGINT));
        let port = self.port;
        wait_until(
            Duration::from_secs(20),
            "PgBouncer to listen",
            || self.log_text(),
            || port_open(port),
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Starts `psql` through PgBouncer as `postgres`, running `sql`; returns the
    /// running child (the tests hold it while it waits or works).
    pub fn client(&self, sql: &str) -> std::process::Child {
        let psql = crate::pg::bin_dir().expect("psql").join("psql");
        std::process::Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq", "-c", sql])
            .env("PGPASSWORD", APP_PASSWORD)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start psql")
    }

    /// Runs SQL through PgBouncer as `postgres` and returns its output.
    pub fn sql(&self, sql: &str) -> String {
        let psql = crate::pg::bin_dir().expect("psql").join("psql");
        let mut cmd = std::process::Command::new(psql);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-XAtq", "-c", sql])
            .env("PGPASSWORD", APP_PASSWORD);
        let out = output_within(&mut cmd, Duration::from_secs(20)).expect("psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A DSN of the admin console for the stats user (password separate).
    pub fn dsn(&self) -> String {
        format!("host=127.0.0.1 port={} user={STATS_USER}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(5));
        }
    }
}
