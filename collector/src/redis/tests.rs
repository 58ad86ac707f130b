//! The redis and sentinel collectors against real `redis-server` and
//! `redis-sentinel` processes: one primary + replica + Sentinel shared by the
//! read-only tests, and sets of their own for failover and restarts.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use warden_engine::model::Sample;
use warden_testkit::Workdir;
use warden_testkit::redis::{REDIS_PASSWORD, Redis, RedisSet};

use crate::testing::{self, named, problems, run, spec, value};

fn shared() -> &'static RedisSet {
    static SET: OnceLock<RedisSet> = OnceLock::new();
    SET.get_or_init(|| RedisSet::start("redis-collector"))
}

fn entry(kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[[collector.{kind}]]\nname = \"r\"\nurl = \"{url}\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
         labels = {{ cluster = \"cache\" }}\n{extra}\n"
    )
}

fn with_password(kind: &str, r: &Redis) -> String {
    entry(kind, &r.url(), &format!("password = \"{REDIS_PASSWORD}\""))
}

fn reason(samples: &[Sample], metric: &str) -> String {
    testing::labels(samples, metric)
        .get("reason")
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_master_reports_its_replicas_and_their_lag() {
    let set = shared();
    let mut s = spec(&with_password("redis", &set.primary));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "redis_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "redis_is_master"), 1.0);
    assert_eq!(value(&samples, "redis_connected_replicas"), 1.0);
    let info = testing::labels(&samples, "redis_info");
    assert_eq!(info.get("role"), Some("master"));
    assert!(info.get("version").is_some_and(|v| v.contains('.')));
    assert_eq!(info.get("cluster"), Some("cache"));
    let replica = format!("127.0.0.1:{}", set.replica.port);
    assert_eq!(
        testing::labels(&samples, "redis_replica_online").get("replica"),
        Some(replica.as_str())
    );
    assert_eq!(value(&samples, "redis_replica_online"), 1.0);
    assert!(value(&samples, "redis_replication_lag_bytes") >= 0.0);
    assert!(value(&samples, "redis_replica_lag_seconds") >= 0.0);
    assert!(value(&samples, "redis_uptime_seconds") >= 0.0);
    assert!(value(&samples, "redis_connected_clients") >= 1.0);
    assert!(value(&samples, "redis_memory_used_bytes") > 0.0);
    assert!(named(&samples, "redis_master_link_up").is_empty());
}

#[tokio::test]
async fn a_replica_reports_its_link_to_the_master() {
    let set = shared();
    let mut s = spec(&with_password("redis", &set.replica));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "redis_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "redis_is_master"), 0.0);
    assert_eq!(value(&samples, "redis_master_link_up"), 1.0);
    let master = format!("127.0.0.1:{}", set.primary.port);
    assert_eq!(
        testing::labels(&samples, "redis_master_info").get("master"),
        Some(master.as_str())
    );
    assert!(value(&samples, "redis_master_last_io_seconds") < 10.0);
    assert_eq!(value(&samples, "redis_master_sync_in_progress"), 0.0);
    assert!(named(&samples, "redis_replication_lag_bytes").is_empty());
}

#[tokio::test]
async fn wrong_or_missing_password_is_redis_up_0_with_reason_auth() {
    let set = shared();
    for extra in ["password = \"wrong\"", ""] {
        let mut s = spec(&entry("redis", &set.primary.url(), extra));
        let samples = run(&mut s).await;
        assert_eq!(value(&samples, "redis_up"), 0.0, "{extra}: {samples:#?}");
        assert_eq!(
            reason(&samples, "redis_error_info"),
            "auth",
            "{extra}: {samples:#?}"
        );
        assert!(named(&samples, "redis_is_master").is_empty());
    }
}

#[tokio::test]
async fn nothing_listening_is_refused_and_a_silent_server_times_out() {
    let port = warden_testkit::free_port();
    let mut s = spec(&entry("redis", &format!("redis://127.0.0.1:{port}"), ""));
    let samples = run(&mut s).await;
    assert_eq!(
        reason(&samples, "redis_error_info"),
        "refused",
        "{samples:#?}"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            keep.lock().unwrap().push(sock);
        }
    });
    for kind in ["redis", "sentinel"] {
        let mut s = spec(&entry(kind, &format!("redis://127.0.0.1:{port}"), ""));
        let started = Instant::now();
        let samples = run(&mut s).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(value(&samples, &format!("{kind}_up")), 0.0);
        assert_eq!(reason(&samples, &format!("{kind}_error_info")), "timeout");
    }
    task.abort();
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let dir = Arc::new(Workdir::new("redis-restart", "redis"));
    let mut r = Redis::server(&dir, "alone", &[]);
    let mut s = spec(&entry("redis", &r.url(), ""));
    assert_eq!(value(&run(&mut s).await, "redis_up"), 1.0);
    r.stop();
    let down = run(&mut s).await;
    assert_eq!(value(&down, "redis_up"), 0.0);
    r.start();
    assert_eq!(value(&run(&mut s).await, "redis_up"), 1.0);
}

#[tokio::test]
async fn a_sentinel_reports_its_master_and_quorum() {
    let set = shared();
    let mut s = spec(&entry("sentinel", &set.sentinel.url(), ""));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "sentinel_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "sentinel_masters"), 1.0);
    let addr = testing::labels(&samples, "sentinel_master_address_info");
    assert_eq!(addr.get("master"), Some("main"));
    let primary = format!("127.0.0.1:{}", set.primary.port);
    assert_eq!(addr.get("address"), Some(primary.as_str()));
    assert_eq!(value(&samples, "sentinel_master_ok"), 1.0);
    assert_eq!(value(&samples, "sentinel_master_sdown"), 0.0);
    assert_eq!(value(&samples, "sentinel_master_odown"), 0.0);
    assert_eq!(value(&samples, "sentinel_master_failover_in_progress"), 0.0);
    assert_eq!(value(&samples, "sentinel_master_quorum"), 1.0);
    assert_eq!(value(&samples, "sentinel_master_sentinels"), 1.0);
    assert_eq!(value(&samples, "sentinel_master_quorum_ok"), 1.0);
    assert_eq!(value(&samples, "sentinel_master_config_epoch"), 0.0);
}

/// The master dies; the Sentinel sees it down, promotes the replica, and the
/// config epoch moves: the failover signal. The old master's `redis_up` is 0,
/// the replica's `redis_is_master` turns 1.
#[tokio::test]
async fn a_sentinel_failover_moves_the_address_and_the_config_epoch() {
    let mut set = RedisSet::start("redis-failover");
    let mut sentinel = spec(&entry("sentinel", &set.sentinel.url(), ""));
    let mut replica = spec(&with_password("redis", &set.replica));
    let before = run(&mut sentinel).await;
    assert_eq!(value(&before, "sentinel_master_config_epoch"), 0.0);
    assert_eq!(value(&run(&mut replica).await, "redis_is_master"), 0.0);

    set.primary.kill();
    let mut saw_down = false;
    let wait = Instant::now();
    let after = loop {
        let now = run(&mut sentinel).await;
        if value(&now, "sentinel_master_ok") == 0.0 {
            saw_down = true;
        }
        if value(&now, "sentinel_master_config_epoch") >= 1.0
            && value(&now, "sentinel_master_failover_in_progress") == 0.0
        {
            break now;
        }
        assert!(
            wait.elapsed() < Duration::from_secs(20),
            "{now:#?}\n{}",
            set.sentinel.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(saw_down, "the master was seen down before the failover");
    let promoted = format!("127.0.0.1:{}", set.replica.port);
    assert_eq!(
        testing::labels(&after, "sentinel_master_address_info").get("address"),
        Some(promoted.as_str())
    );
    // Sentinel closes the promoted server's client connections: the first run
    // may see that, the next one reconnects.
    let mut now = run(&mut replica).await;
    if value(&now, "redis_up") == 0.0 {
        now = run(&mut replica).await;
    }
    assert_eq!(value(&now, "redis_is_master"), 1.0, "{now:#?}");
}

#[test]
fn config_mistakes_are_reported() {
    let p = problems(&entry("redis", "http://h:6379", ""));
    assert!(
        p[0].contains("not a redis:// or redis+unix:// URL"),
        "{p:?}"
    );
    let p = problems(&entry("redis", "redis://:pw@h:6379", "password = \"x\""));
    assert!(p[0].contains("keep one"), "{p:?}");
    let p = problems(&entry(
        "sentinel",
        "redis://h:26379",
        "password = \"a\"\npassword_file = \"/b\"",
    ));
    assert!(p[0].contains("give only one of"), "{p:?}");
    let p = problems(
        "[[collector.redis]]\nname = \"r\"\nurl = \"redis://h:1\"\nlabels = { replica = \"x\" }\n",
    );
    assert!(p[0].contains("label 'replica'"), "{p:?}");
}
