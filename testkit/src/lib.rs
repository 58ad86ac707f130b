//! Real servers for warden's tests, started from the installed binaries on free
//! loopback ports in temporary directories; never the system's own services.
//!
//! # Layout
//! - [`mariadb`]: MariaDB primaries and GTID replicas.
//! - [`pgbouncer`]: PgBouncer in front of a test PostgreSQL.
//! - [`etcd`]: a one-member etcd.
//! - [`patroni`]: Patroni nodes on etcd, each with its PostgreSQL.
//! - [`redis`]: Redis primaries, replicas and Sentinels.
//! - [`proc`]: starting server processes (as the service's user when the tests
//!   run as root), waiting for them, stopping them when dropped, and at the latest
//!   when the test process exits (`PR_SET_PDEATHSIG`); free ports; work dirs.
//! - [`pg`]: PostgreSQL primaries and streaming standbys (`initdb`,
//!   `pg_basebackup` with a slot), and `psql` for the tests' own SQL.
//!
//! Every helper panics on failure with the server's log attached: they are for
//! tests, where a failed step should fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed step fails the test

pub mod etcd;
pub mod mariadb;
pub mod patroni;
pub mod pg;
pub mod pgbouncer;
pub mod proc;
pub mod redis;

pub use proc::{Server, Workdir, free_port};
