//! The pgbouncer collector against a real PgBouncer in front of a real
//! PostgreSQL: pools, traffic, and clients that wait for a server connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_testkit::Workdir;
use warden_testkit::pg::Pg;
use warden_testkit::pgbouncer::{Bouncer, STATS_PASSWORD};

use crate::testing::{self, named, problems, run, spec, value};

fn entry(dsn: &str, extra: &str) -> String {
    format!(
        "[[collector.pgbouncer]]\nname = \"bouncer\"\ndsn = \"{dsn}\"\ninterval = \"2s\"\ntimeout = \"1s\"\n{extra}\n"
    )
}

/// One server connection, two clients that each hold it for a while: the
/// second waits, and the collector reports it waiting and for how long.
#[tokio::test]
async fn waiting_clients_pools_and_traffic() {
    let dir = Arc::new(Workdir::new("pgbouncer-pg", "postgres"));
    let pg = Pg::primary(&dir, "behind");
    let bouncer = Bouncer::start(&pg, 1);
    assert_eq!(bouncer.sql("SELECT 41 + 1"), "42");
    let mut s = spec(&entry(
        &bouncer.dsn(),
        &format!("password = \"{STATS_PASSWORD}\""),
    ));

    let idle = run(&mut s).await;
    assert_eq!(value(&idle, "pgbouncer_up"), 1.0, "{idle:#?}");
    let pool = testing::labels(&idle, "pgbouncer_pool_clients_waiting");
    assert_eq!(pool.get("database"), Some("postgres"));
    assert_eq!(pool.get("user"), Some("postgres"));
    assert_eq!(value(&idle, "pgbouncer_clients_waiting"), 0.0);
    assert_eq!(value(&idle, "pgbouncer_max_wait_seconds"), 0.0);
    assert_eq!(value(&idle, "pgbouncer_max_client_connections"), 50.0);
    assert!(value(&idle, "pgbouncer_queries_total") >= 1.0);
    assert!(value(&idle, "pgbouncer_received_bytes_total") > 0.0);
    assert!(value(&idle, "pgbouncer_client_connections") >= 1.0);
    assert!(
        named(&idle, "pgbouncer_pool_clients_active")
            .iter()
            .all(|s| s.labels.get("database") != Some("pgbouncer")),
        "the admin console's pool is left out"
    );

    let mut first = bouncer.client("SELECT pg_sleep(3)");
    std::thread::sleep(Duration::from_millis(300));
    let mut second = bouncer.client("SELECT pg_sleep(0.1)");
    let start = Instant::now();
    let waiting = loop {
        let now = run(&mut s).await;
        if value(&now, "pgbouncer_clients_waiting") >= 1.0
            && value(&now, "pgbouncer_max_wait_seconds") >= 0.5
        {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{now:#?}\n{}",
            bouncer.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value(&waiting, "pgbouncer_pool_clients_waiting"), 1.0);
    assert_eq!(value(&waiting, "pgbouncer_pool_servers_active"), 1.0);
    assert!(value(&waiting, "pgbouncer_pool_max_wait_seconds") >= 0.5);
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    let after = run(&mut s).await;
    assert_eq!(value(&after, "pgbouncer_clients_waiting"), 0.0);
    assert!(value(&after, "pgbouncer_wait_seconds_total") >= 0.5);
    assert!(value(&after, "pgbouncer_query_seconds_total") >= 3.0);

    // The wrong password is refused by PgBouncer itself.
    let mut bad = spec(&entry(&bouncer.dsn(), "password = \"wrong\""));
    let refused = run(&mut bad).await;
    assert_eq!(value(&refused, "pgbouncer_up"), 0.0);
    assert_eq!(
        testing::labels(&refused, "pgbouncer_error_info").get("reason"),
        Some("auth"),
        "{refused:#?}"
    );
}

#[test]
fn config_mistakes_are_reported() {
    let p = problems(&entry("host=h", ""));
    assert!(p[0].contains("names no user"), "{p:?}");
    let p = problems(&entry("postgres://u:pw@h/pgbouncer", "password = \"x\""));
    assert!(p[0].contains("keep one"), "{p:?}");
}
