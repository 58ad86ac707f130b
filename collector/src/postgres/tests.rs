//! The postgres collector against real PostgreSQL servers started from the
//! installed binaries: one primary + streaming standby shared by the tests of
//! this binary, and a server of its own for the tests that stop it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use warden_testkit::Workdir;
use warden_testkit::pg::{MONITOR_PASSWORD, MONITOR_USER, Pg, PgPair};

use crate::testing::{self, named as find, problems, run, spec, value};

/// The shared pair, and a lock for the tests that pause replay on it.
async fn pair() -> tokio::sync::MutexGuard<'static, PgPair> {
    static PAIR: OnceLock<tokio::sync::Mutex<PgPair>> = OnceLock::new();
    PAIR.get_or_init(|| tokio::sync::Mutex::new(PgPair::start("pg-collector")))
        .lock()
        .await
}

fn entry(dsn: &str, extra: &str) -> String {
    format!(
        "[[collector.postgres]]\nname = \"pg\"\ndsn = \"{dsn}\"\ninterval = \"2s\"\ntimeout = \"1500ms\"\n\
         labels = {{ cluster = \"main\" }}\n{extra}\n"
    )
}

fn monitor(pg: &Pg) -> String {
    entry(
        &pg.dsn(MONITOR_USER),
        &format!("password = \"{MONITOR_PASSWORD}\""),
    )
}

fn reason(samples: &[warden_engine::model::Sample]) -> String {
    testing::labels(samples, "pg_error_info")
        .get("reason")
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_primary_reports_its_role_standbys_slots_and_connections() {
    let p = pair().await;
    let mut s = spec(&monitor(&p.primary));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "pg_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "pg_is_primary"), 1.0);
    assert_eq!(value(&samples, "pg_in_recovery"), 0.0);
    assert_eq!(value(&samples, "pg_timeline_id"), 1.0);
    assert!(value(&samples, "pg_server_version_num") >= 100_000.0);
    assert_eq!(value(&samples, "pg_max_connections"), 30.0);
    assert!(value(&samples, "pg_connections") >= 1.0);
    assert!(value(&samples, "pg_wal_position_bytes") > 0.0);
    assert_eq!(value(&samples, "pg_replicas"), 1.0);
    let info = testing::labels(&samples, "pg_replica_info");
    assert_eq!(info.get("application_name"), Some("standby"));
    assert_eq!(info.get("client_addr"), Some("127.0.0.1"));
    assert_eq!(info.get("state"), Some("streaming"));
    assert_eq!(info.get("sync_state"), Some("async"));
    assert_eq!(info.get("cluster"), Some("main"));
    assert_eq!(info.get("instance"), Some("pg"));
    assert_eq!(value(&samples, "pg_replica_streaming"), 1.0);
    assert_eq!(value(&samples, "pg_replica_sync"), 0.0);
    assert!(value(&samples, "pg_replica_lag_bytes") >= 0.0);
    assert!(value(&samples, "pg_replica_replay_lag_seconds") >= 0.0);
    let slot = testing::labels(&samples, "pg_replication_slot_active");
    assert_eq!(slot.get("slot_name"), Some("standby_slot"));
    assert_eq!(slot.get("slot_type"), Some("physical"));
    assert_eq!(value(&samples, "pg_replication_slot_active"), 1.0);
    assert!(value(&samples, "pg_replication_slot_retained_bytes") >= 0.0);
    assert_eq!(value(&samples, "pg_replication_slot_lost"), 0.0);
    // Standby-only series stay away from a primary.
    assert!(find(&samples, "pg_replication_lag_seconds").is_empty());
    assert!(find(&samples, "pg_wal_receiver_up").is_empty());
}

/// Replay paused on the standby while the primary writes: the delay grows;
/// resumed, it falls back to 0. Idle and caught up, it is 0 as well.
#[tokio::test]
async fn standby_lag_grows_while_replay_is_paused_and_falls_when_resumed() {
    let p = pair().await;
    let mut s = spec(&monitor(&p.standby));

    let idle = run(&mut s).await;
    assert_eq!(value(&idle, "pg_up"), 1.0, "{idle:#?}");
    assert_eq!(value(&idle, "pg_is_primary"), 0.0);
    assert_eq!(value(&idle, "pg_in_recovery"), 1.0);
    assert_eq!(value(&idle, "pg_wal_receiver_up"), 1.0);
    let rx = testing::labels(&idle, "pg_wal_receiver_info");
    assert_eq!(rx.get("status"), Some("streaming"));
    assert_eq!(rx.get("slot"), Some("standby_slot"));
    assert_eq!(
        rx.get("sender"),
        Some(format!("127.0.0.1:{}", p.primary.port).as_str())
    );
    assert_eq!(value(&idle, "pg_timeline_id"), 1.0);
    assert_eq!(value(&idle, "pg_replay_paused"), 0.0);
    assert!(value(&idle, "pg_wal_receiver_last_message_age_seconds") < 15.0);
    // Caught up: nothing received is waiting for replay.
    p.primary.sql("INSERT INTO ticks DEFAULT VALUES");
    let wait = Instant::now();
    loop {
        let now = run(&mut s).await;
        if value(&now, "pg_replication_lag_seconds") == 0.0 {
            assert_eq!(value(&now, "pg_replication_lag_bytes"), 0.0);
            break;
        }
        assert!(wait.elapsed() < Duration::from_secs(10), "{now:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    p.standby.sql("SELECT pg_wal_replay_pause()");
    p.primary.sql("INSERT INTO ticks DEFAULT VALUES");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    p.primary.sql("INSERT INTO ticks DEFAULT VALUES");
    p.primary.sql("SELECT pg_switch_wal()");
    let mut lagging = Vec::new();
    let wait = Instant::now();
    while lagging.len() < 2 {
        let now = run(&mut s).await;
        if value(&now, "pg_replication_lag_bytes") > 0.0 {
            lagging.push(value(&now, "pg_replication_lag_seconds"));
            assert_eq!(value(&now, "pg_replay_paused"), 1.0);
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        assert!(wait.elapsed() < Duration::from_secs(15), "{now:#?}");
    }
    assert!(lagging[0] > 0.5, "{lagging:?}");
    assert!(
        lagging[1] > lagging[0],
        "the delay grows while paused: {lagging:?}"
    );

    p.standby.sql("SELECT pg_wal_replay_resume()");
    let wait = Instant::now();
    loop {
        let now = run(&mut s).await;
        if value(&now, "pg_replication_lag_seconds") == 0.0 {
            assert_eq!(value(&now, "pg_replay_paused"), 0.0);
            break;
        }
        assert!(wait.elapsed() < Duration::from_secs(10), "{now:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn wrong_password_is_pg_up_0_with_reason_auth() {
    let text = {
        let p = pair().await;
        entry(&p.primary.dsn(MONITOR_USER), "password = \"wrong\"")
    };
    let mut s = spec(&text);
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "pg_up"), 0.0);
    assert_eq!(reason(&samples), "auth", "{samples:#?}");
    assert!(
        find(&samples, "pg_is_primary").is_empty(),
        "no stale metrics"
    );
}

#[tokio::test]
async fn a_role_without_pg_monitor_works_and_sees_less() {
    let text = {
        let p = pair().await;
        p.primary.create_role("plain", "plain-secret", &[]);
        entry(
            &p.primary.dsn("plain"),
            "password_env = \"WARDEN_TEST_PG_PLAIN\"",
        )
    };
    // SAFETY: tests of this binary read this variable only here.
    unsafe { std::env::set_var("WARDEN_TEST_PG_PLAIN", "plain-secret") };
    let mut s = spec(&text);
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "pg_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "pg_is_primary"), 1.0);
    // Without pg_read_all_stats the standby's state and lags are hidden (an
    // empty label is no label).
    let info = testing::labels(&samples, "pg_replica_info");
    assert_eq!(info.get("state"), None, "{info:?}");
}

#[tokio::test]
async fn nothing_listening_is_refused_and_a_silent_server_times_out() {
    let port = warden_testkit::free_port();
    let mut s = spec(&entry(
        &format!("host=127.0.0.1 port={port} user=x dbname=postgres"),
        "",
    ));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "pg_up"), 0.0);
    assert_eq!(reason(&samples), "refused", "{samples:#?}");

    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            keep.lock().unwrap().push(sock);
        }
    });
    let mut s = spec(&entry(
        &format!("host=127.0.0.1 port={} user=x dbname=postgres", addr.port()),
        "",
    ));
    let started = Instant::now();
    let samples = run(&mut s).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(value(&samples, "pg_up"), 0.0);
    assert_eq!(reason(&samples), "timeout", "{samples:#?}");
    task.abort();
}

/// One connection is reused while it works; a restart breaks it, the run
/// reports it, and the next run connects again.
#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let dir = Arc::new(Workdir::new("pg-restart", "postgres"));
    let mut pg = Pg::primary(&dir, "alone");
    pg.create_role(MONITOR_USER, MONITOR_PASSWORD, &["pg_monitor"]);
    let mut s = spec(&monitor(&pg));
    assert_eq!(value(&run(&mut s).await, "pg_up"), 1.0);
    let backends =
        |pg: &Pg| pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'warden'");
    assert_eq!(backends(&pg), "1");
    assert_eq!(value(&run(&mut s).await, "pg_up"), 1.0);
    assert_eq!(backends(&pg), "1", "the connection is reused");

    pg.stop();
    let down = run(&mut s).await;
    assert_eq!(value(&down, "pg_up"), 0.0);
    let r = reason(&down);
    assert!(
        ["refused", "reset", "unavailable"].contains(&r.as_str()),
        "{down:#?}"
    );
    pg.start();
    assert_eq!(value(&run(&mut s).await, "pg_up"), 1.0);
    assert_eq!(backends(&pg), "1");
}

#[test]
fn config_mistakes_are_reported() {
    let p = problems(&entry("host=127.0.0.1 dbname=postgres", ""));
    assert!(p[0].contains("names no user"), "{p:?}");
    let p = problems(&entry("user=x", ""));
    assert!(p[0].contains("names no host"), "{p:?}");
    let p = problems(&entry("host=h user=x sslmode=sometimes", ""));
    assert!(p[0].contains("not a PostgreSQL connection string"), "{p:?}");
    let p = problems(&entry(
        "host=h user=x",
        "password = \"a\"\npassword_env = \"B\"",
    ));
    assert!(p[0].contains("only one of 'password'"), "{p:?}");
    let p = problems(&entry("host=h user=x", "password_env = \"\""));
    assert!(p[0].contains("'password_env' is empty"), "{p:?}");
    let p = problems(&entry("postgres://x:pw@h/db", "password = \"a\""));
    assert!(p[0].contains("keep one"), "{p:?}");
    let p = problems(
        "[[collector.postgres]]\nname = \"pg\"\ndsn = \"host=h user=x\"\nlabels = { state = \"x\" }\n",
    );
    assert!(
        p[0].contains("label 'state' is set by the postgres collector"),
        "{p:?}"
    );
}

/// Secrets are read when connecting: an unset variable or a missing file is
/// `pg_up 0` with `reason="auth"` naming it, and the config still checks.
#[tokio::test]
async fn a_missing_password_variable_or_file_is_reported_at_connect() {
    for (extra, says) in [
        (
            "password_env = \"WARDEN_TEST_UNSET_VAR\"",
            "'WARDEN_TEST_UNSET_VAR' is not set",
        ),
        (
            "password_file = \"/nonexistent/pw\"",
            "cannot read '/nonexistent/pw'",
        ),
    ] {
        let mut s = spec(&entry("host=127.0.0.1 port=1 user=x", extra));
        let samples = run(&mut s).await;
        assert_eq!(value(&samples, "pg_up"), 0.0);
        let info = testing::labels(&samples, "pg_error_info");
        assert_eq!(info.get("reason"), Some("auth"));
        assert!(
            info.get("message").is_some_and(|m| m.contains(says)),
            "{info:?}"
        );
    }
}

#[test]
fn url_dsns_and_verify_modes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pw = testing::write(dir.path(), "pw", "s3cret\n");
    let s = spec(&entry(
        "postgres://warden@db-1:5433/postgres?sslmode=verify-full",
        &format!("password_file = \"{pw}\""),
    ));
    assert_eq!(s.kind, "postgres");
    assert_eq!(s.instance, "pg");
    assert_eq!(s.timeout, Duration::from_millis(1500));
}
