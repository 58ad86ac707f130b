//! The mysql collector against a real MariaDB primary and GTID replica started
//! from the installed `mariadbd` (MySQL itself is not installable here).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use warden_engine::model::Sample;
use warden_testkit::mariadb::{MONITOR_PASSWORD, MONITOR_USER, Maria, MariaPair};

use super::gtid_positions;
use crate::testing::{self, named, problems, run, spec, value};

async fn pair() -> tokio::sync::MutexGuard<'static, MariaPair> {
    static PAIR: OnceLock<tokio::sync::Mutex<MariaPair>> = OnceLock::new();
    PAIR.get_or_init(|| tokio::sync::Mutex::new(MariaPair::start("mysql-collector")))
        .lock()
        .await
}

fn entry(url: &str, extra: &str) -> String {
    format!(
        "[[collector.mysql]]\nname = \"db\"\nurl = \"{url}\"\ninterval = \"3s\"\ntimeout = \"2s\"\n\
         labels = {{ cluster = \"shop\" }}\n{extra}\n"
    )
}

fn monitor(m: &Maria) -> String {
    entry(
        &m.url(MONITOR_USER),
        &format!("password = \"{MONITOR_PASSWORD}\""),
    )
}

fn reason(samples: &[Sample]) -> String {
    testing::labels(samples, "mysql_error_info")
        .get("reason")
        .unwrap_or_default()
        .to_string()
}

/// Runs until `pred` holds on a run's samples, at most 15 s.
async fn until(
    s: &mut warden_engine::scheduler::CollectorSpec,
    what: &str,
    pred: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let start = Instant::now();
    loop {
        let now = run(s).await;
        if pred(&now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: {now:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_primary_is_writable_with_binlog_and_gtids() {
    let p = pair().await;
    let mut s = spec(&monitor(&p.primary));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "mysql_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "mysql_is_primary"), 1.0);
    assert_eq!(value(&samples, "mysql_is_replica"), 0.0);
    assert_eq!(value(&samples, "mysql_read_only"), 0.0);
    assert_eq!(value(&samples, "mysql_binlog_enabled"), 1.0);
    assert_eq!(value(&samples, "mysql_server_id"), 1.0);
    assert_eq!(value(&samples, "mysql_max_connections"), 40.0);
    assert!(value(&samples, "mysql_connections") >= 1.0);
    assert!(value(&samples, "mysql_uptime_seconds") >= 0.0);
    assert_eq!(
        testing::labels(&samples, "mysql_gtid_position").get("domain"),
        Some("0")
    );
    assert!(value(&samples, "mysql_gtid_position") >= 1.0);
    assert!(
        testing::labels(&samples, "mysql_info")
            .get("version")
            .is_some_and(|v| v.contains("MariaDB"))
    );
    assert_eq!(
        testing::labels(&samples, "mysql_info").get("cluster"),
        Some("shop")
    );
    assert!(named(&samples, "mysql_replica_io_running").is_empty());
}

#[tokio::test]
async fn a_replica_reports_threads_lag_source_and_gtid_positions() {
    let p = pair().await;
    p.primary.sql("INSERT INTO app.ticks VALUES ()");
    let want = p.primary.sql("SELECT @@gtid_current_pos");
    let mut s = spec(&monitor(&p.replica));
    let samples = until(&mut s, "the replica applies the insert", |now| {
        value(now, "mysql_up") == 1.0
            && named(now, "mysql_gtid_position").first().is_some_and(|g| {
                gtid_positions(&want)
                    .first()
                    .is_some_and(|w| w.1 == g.value)
            })
    })
    .await;
    assert_eq!(value(&samples, "mysql_is_primary"), 0.0);
    assert_eq!(value(&samples, "mysql_is_replica"), 1.0);
    assert_eq!(value(&samples, "mysql_read_only"), 1.0);
    assert_eq!(value(&samples, "mysql_replica_io_running"), 1.0);
    assert_eq!(value(&samples, "mysql_replica_sql_running"), 1.0);
    assert_eq!(value(&samples, "mysql_replica_lag_seconds"), 0.0);
    assert_eq!(value(&samples, "mysql_replica_last_io_errno"), 0.0);
    assert_eq!(value(&samples, "mysql_replica_last_sql_errno"), 0.0);
    let info = testing::labels(&samples, "mysql_replica_info");
    let source = format!("127.0.0.1:{}", p.primary.port);
    assert_eq!(info.get("source"), Some(source.as_str()));
    assert_eq!(info.get("using_gtid"), Some("slave_pos"));
    assert_eq!(
        info.get("channel"),
        None,
        "the default connection has no name"
    );
    assert!(value(&samples, "mysql_replica_gtid_io_position") >= 1.0);
    assert!(named(&samples, "mysql_replica_error_info").is_empty());
}

/// `STOP SLAVE SQL_THREAD`: the applier is reported stopped and the lag
/// disappears (the server reports NULL); started again, both come back. A
/// conflicting row then breaks the applier with error 1062, which is reported
/// with its number and text.
#[tokio::test]
async fn a_stopped_or_failed_sql_thread_is_reported() {
    let p = pair().await;
    let mut s = spec(&monitor(&p.replica));
    p.replica.sql("STOP SLAVE SQL_THREAD");
    p.replica.wait_for_threads("Yes", "No");
    let stopped = run(&mut s).await;
    assert_eq!(value(&stopped, "mysql_up"), 1.0, "{stopped:#?}");
    assert_eq!(value(&stopped, "mysql_replica_sql_running"), 0.0);
    assert_eq!(value(&stopped, "mysql_replica_io_running"), 1.0);
    assert!(named(&stopped, "mysql_replica_lag_seconds").is_empty());
    p.replica.sql("START SLAVE SQL_THREAD");
    p.replica.wait_for_threads("Yes", "Yes");
    let running = run(&mut s).await;
    assert_eq!(value(&running, "mysql_replica_sql_running"), 1.0);

    p.replica
        .sql("SET sql_log_bin = 0; INSERT INTO app.ticks (id) VALUES (900001)");
    p.primary.sql("INSERT INTO app.ticks (id) VALUES (900001)");
    let failed = until(&mut s, "the applier to fail", |now| {
        value(now, "mysql_replica_sql_running") == 0.0
            && value(now, "mysql_replica_last_sql_errno") != 0.0
    })
    .await;
    assert_eq!(value(&failed, "mysql_replica_last_sql_errno"), 1062.0);
    let err = testing::labels(&failed, "mysql_replica_error_info");
    assert_eq!(err.get("thread"), Some("sql"));
    assert_eq!(err.get("errno"), Some("1062"));
    assert!(
        err.get("message").is_some_and(|m| m.contains("Duplicate")),
        "{err:?}"
    );

    p.replica
        .sql("SET sql_log_bin = 0; DELETE FROM app.ticks WHERE id = 900001");
    p.replica.sql("START SLAVE SQL_THREAD");
    p.replica.wait_for_threads("Yes", "Yes");
    until(&mut s, "the applier to recover", |now| {
        value(now, "mysql_replica_sql_running") == 1.0
            && value(now, "mysql_replica_last_sql_errno") == 0.0
    })
    .await;
}

#[tokio::test]
async fn credentials_and_grants_are_reported_as_auth_and_permission() {
    let p = pair().await;
    let mut s = spec(&entry(&p.primary.url(MONITOR_USER), "password = \"wrong\""));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "mysql_up"), 0.0);
    assert_eq!(reason(&samples), "auth", "{samples:#?}");

    p.primary
        .sql("CREATE USER IF NOT EXISTS 'nogrant'@'%' IDENTIFIED BY 'nogrant-secret'");
    let mut s = spec(&entry(
        &p.primary.url("nogrant"),
        "password = \"nogrant-secret\"",
    ));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "mysql_up"), 0.0);
    assert_eq!(reason(&samples), "permission", "{samples:#?}");
}

#[tokio::test]
async fn nothing_listening_is_refused_and_a_silent_server_times_out() {
    let port = warden_testkit::free_port();
    let mut s = spec(&entry(&format!("mysql://x@127.0.0.1:{port}"), ""));
    let samples = run(&mut s).await;
    assert_eq!(reason(&samples), "refused", "{samples:#?}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            keep.lock().unwrap().push(sock);
        }
    });
    let mut s = spec(&entry(&format!("mysql://x@127.0.0.1:{port}"), ""));
    let started = Instant::now();
    let samples = run(&mut s).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(reason(&samples), "timeout", "{samples:#?}");
    task.abort();
}

#[test]
fn gtid_positions_of_mariadb_and_mysql() {
    assert_eq!(
        gtid_positions("0-1-123,1-2-44"),
        vec![("0".to_string(), 123.0), ("1".to_string(), 44.0)]
    );
    assert_eq!(
        gtid_positions("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-77:80,\n1e2a-b:5"),
        vec![
            ("3E11FA47-71CA-11E1-9E33-C80AA9429562".to_string(), 80.0),
            ("1e2a-b".to_string(), 5.0)
        ]
    );
    assert!(gtid_positions("").is_empty());
}

#[test]
fn config_mistakes_are_reported() {
    let p = problems(&entry("postgres://x@h", ""));
    assert!(p[0].contains("is not a MySQL URL"), "{p:?}");
    let p = problems(&entry("mysql://h:3306", ""));
    assert!(p[0].contains("names no user"), "{p:?}");
    let p = problems(&entry("mysql://u:pw@h:3306", "password = \"x\""));
    assert!(p[0].contains("keep one"), "{p:?}");
}
