//! Replication and failover through the real daemon, against real servers the
//! test kit starts: a PostgreSQL primary + streaming standby, a MariaDB GTID
//! replica, and a Patroni cluster on etcd. The rules are the example packs'
//! own files (`examples/postgres-patroni`, `examples/redis-mariadb`); only
//! waits longer than a test should take are shortened.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_testkit::mariadb::{self, MariaPair};
use warden_testkit::patroni::PatroniCluster;
use warden_testkit::pg::{self, PgPair};

use crate::harness::{Daemon, write};

/// A rule file of an example pack, with `pending_for` values replaced as
/// given (so a test need not wait 30 s for a rule that is right after 2 s).
fn pack_rules(file: &str, replace: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from} in {}", path.display());
        text = text.replace(from, to);
    }
    text
}

const HEAD: &str = r#"
[store]
path = "w.db"
[rules]
paths = ["rules/"]
interval = "1s"
"#;

/// The active alerts named `name`.
fn alerts(d: &Daemon, name: &str) -> Vec<Value> {
    d.json("/api/v1/alerts")
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == name)
        .cloned()
        .collect()
}

fn firing(d: &Daemon, name: &str, label: &str, value: &str) -> bool {
    alerts(d, name)
        .iter()
        .any(|a| a["state"] == "firing" && a["labels"][label] == value)
}

/// The newest value of `metric{instance}` in the store, over the API.
fn latest(d: &Daemon, metric: &str, instance: &str) -> Option<f64> {
    let v = d.json(&format!(
        "/api/v1/query?metric={metric}&range=10s&instance={instance}"
    ));
    let series = v.as_array()?.first()?;
    series["samples"].as_array()?.last()?[1].as_f64()
}

/// Replay paused on the standby while the primary writes: the lag seen through
/// warden's API grows and a lag rule fires; resumed, the lag falls to 0 and the
/// alert resolves. Then the standby is promoted while the primary still runs:
/// two primaries in cluster `main` fire the pack's split-brain rule; the old
/// primary is killed: split brain resolves and the failover rule fires for the
/// promoted server.
#[test]
fn postgres_lag_split_brain_and_failover() {
    let mut pair = PgPair::start("e2e-pg");
    let dir = tempfile::tempdir().unwrap();
    let collector = |name: &str, port: u16| {
        format!(
            "[[collector.postgres]]\nname = \"{name}\"\n\
             dsn = \"host=127.0.0.1 port={port} user={} dbname=postgres\"\n\
             password_env = \"E2E_PG_PASSWORD\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
             labels = {{ cluster = \"main\" }}\n",
            pg::MONITOR_USER
        )
    };
    let config = write(
        dir.path(),
        "warden.toml",
        &format!(
            "{HEAD}{}{}",
            collector("primary", pair.primary.port),
            collector("standby", pair.standby.port)
        ),
    );
    write(
        dir.path(),
        "rules/postgres.rhai",
        &pack_rules("postgres-patroni/rules/postgres.rhai", &[]),
    );
    // The pack waits a minute above 30 s; here 2 s for a second is enough.
    write(
        dir.path(),
        "rules/lag.rhai",
        r#"rule("TestReplicaLagging", #{
            severity: "warning",
            pending_for: "1s",
            summary: "Standby {{instance}} is {{value}} s behind",
            when: || series("pg_replication_lag_seconds") > 2,
        });"#,
    );
    let d = Daemon::start_with_env(
        dir.path(),
        &config,
        "run",
        &[("E2E_PG_PASSWORD", pg::MONITOR_PASSWORD)],
    );
    d.wait_for(Duration::from_secs(15), "both servers up", || {
        Some(latest(&d, "pg_up", "primary")? == 1.0 && latest(&d, "pg_up", "standby")? == 1.0)
    });
    assert_eq!(latest(&d, "pg_is_primary", "primary"), Some(1.0));
    assert_eq!(latest(&d, "pg_is_primary", "standby"), Some(0.0));
    assert_eq!(
        latest(&d, "pg_replication_lag_seconds", "standby"),
        Some(0.0)
    );

    pair.standby.sql("SELECT pg_wal_replay_pause()");
    let mut seen = Vec::new();
    d.wait_for(
        Duration::from_secs(20),
        "the lag to pass 2 s and fire",
        || {
            pair.primary.sql("INSERT INTO ticks DEFAULT VALUES");
            if let Some(lag) = latest(&d, "pg_replication_lag_seconds", "standby") {
                seen.push(lag);
            }
            Some(firing(&d, "TestReplicaLagging", "instance", "standby"))
        },
    );
    assert!(
        seen.windows(2).any(|w| w[1] > w[0]) && seen.iter().any(|l| *l > 2.0),
        "the lag grows while replay is paused: {seen:?}"
    );
    pair.standby.sql("SELECT pg_wal_replay_resume()");
    d.wait_for(
        Duration::from_secs(15),
        "the lag back to 0 and resolved",
        || {
            Some(
                latest(&d, "pg_replication_lag_seconds", "standby")? == 0.0
                    && alerts(&d, "TestReplicaLagging").is_empty(),
            )
        },
    );

    pair.standby.sql("SELECT pg_promote()");
    d.wait_for(
        Duration::from_secs(15),
        "split brain in cluster main",
        || Some(firing(&d, "PostgresSplitBrain", "cluster", "main")),
    );
    let split = alerts(&d, "PostgresSplitBrain");
    assert_eq!(split[0]["value"].as_f64(), Some(2.0));
    assert_eq!(split[0]["severity"], "critical");
    assert!(firing(&d, "PostgresFailover", "instance", "standby"));

    pair.primary.kill();
    d.wait_for(
        Duration::from_secs(20),
        "the split brain to resolve",
        || Some(alerts(&d, "PostgresSplitBrain").is_empty()),
    );
    assert!(firing(&d, "PostgresFailover", "instance", "standby"));
    assert_eq!(latest(&d, "pg_up", "primary"), Some(0.0));
    assert_eq!(latest(&d, "pg_timeline_id", "standby"), Some(2.0));
    d.terminate();
}

/// `STOP SLAVE SQL_THREAD` on the replica fires the pack's
/// replication-stopped rule with `thread="sql"`; started again, it resolves.
#[test]
fn mariadb_stopped_sql_thread_fires_replication_stopped() {
    let pair = MariaPair::start("e2e-mariadb");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "warden.toml",
        &format!(
            "{HEAD}[[collector.mysql]]\nname = \"replica\"\nurl = \"{}\"\npassword = \"{}\"\n\
             interval = \"1s\"\ntimeout = \"900ms\"\nlabels = {{ cluster = \"shop\" }}\n",
            pair.replica.url(mariadb::MONITOR_USER),
            mariadb::MONITOR_PASSWORD
        ),
    );
    write(
        dir.path(),
        "rules/mariadb.rhai",
        &pack_rules(
            "redis-mariadb/rules/mariadb.rhai",
            &[("pending_for: \"30s\"", "pending_for: \"2s\"")],
        ),
    );
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(15), "the replica's threads", || {
        Some(latest(&d, "mysql_replica_sql_running", "replica")? == 1.0)
    });
    pair.replica.sql("STOP SLAVE SQL_THREAD");
    d.wait_for(Duration::from_secs(15), "MysqlReplicationStopped", || {
        Some(firing(&d, "MysqlReplicationStopped", "thread", "sql"))
    });
    let a = &alerts(&d, "MysqlReplicationStopped")[0];
    assert_eq!(a["labels"]["cluster"], "shop");
    assert_eq!(a["labels"]["instance"], "replica");
    assert_eq!(
        a["annotations"]["summary"],
        "The replication sql thread of replica is stopped"
    );
    pair.replica.sql("START SLAVE SQL_THREAD");
    d.wait_for(Duration::from_secs(15), "the alert to resolve", || {
        Some(alerts(&d, "MysqlReplicationStopped").is_empty())
    });
    d.terminate();
}

/// The Patroni leader's machine crashes (Patroni and PostgreSQL killed): the
/// leader lock expires after its ttl, the replica takes it and is promoted,
/// and the pack's failover rule fires for it; the DCS never shows two leaders.
#[test]
fn patroni_leader_crash_fails_over_to_the_replica() {
    let mut cluster = PatroniCluster::start("e2e-patroni");
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(HEAD);
    for n in &cluster.nodes {
        text.push_str(&format!(
            "[[collector.patroni]]\nname = \"{}\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
             labels = {{ cluster = \"main\" }}\n",
            n.name,
            n.url()
        ));
    }
    text.push_str(&format!(
        "[[collector.etcd]]\nname = \"etcd\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         labels = {{ cluster = \"dcs\" }}\n",
        cluster.etcd.url()
    ));
    let config = write(dir.path(), "warden.toml", &text);
    write(
        dir.path(),
        "rules/patroni.rhai",
        &pack_rules("postgres-patroni/rules/patroni.rhai", &[]),
    );
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(15), "pg1 leading", || {
        Some(
            latest(&d, "patroni_is_primary", "pg1")? == 1.0
                && latest(&d, "patroni_cluster_leaders", "pg2")? == 1.0
                && latest(&d, "etcd_healthy", "etcd")? == 1.0,
        )
    });

    cluster.nodes[0].crash();
    let mut max_leaders: f64 = 0.0;
    d.wait_for(
        Duration::from_secs(45),
        "pg2 promoted and PatroniFailover",
        || {
            if let Some(l) = latest(&d, "patroni_cluster_leaders", "pg2") {
                max_leaders = max_leaders.max(l);
            }
            Some(
                latest(&d, "patroni_is_primary", "pg2")? == 1.0
                    && firing(&d, "PatroniFailover", "member", "pg2"),
            )
        },
    );
    assert_eq!(max_leaders, 1.0, "never two leaders in the DCS");
    assert_eq!(latest(&d, "patroni_up", "pg1"), Some(0.0));
    assert_eq!(latest(&d, "patroni_timeline", "pg2"), Some(2.0));
    assert!(alerts(&d, "PatroniSplitBrain").is_empty());
    d.terminate();
}
