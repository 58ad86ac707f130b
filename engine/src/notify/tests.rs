//! The pipeline end to end on a real store, with an explicit clock: every timer
//! (group_wait, group_interval, repeat, escalation, ack expiry, flapping) is
//! driven by the `now` each call is given, never by sleeping.

use std::time::Duration;

use super::config::{NotifyConfig, NotifyPlan, NotifySections, RouteConfig};
use super::dispatch::{NewSilence, OpError, ReceiverInfo};
use super::outbox::{self, ListFilter, RowView};
use super::*;
use crate::lifecycle::{Applied, Change};
use crate::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity, Timestamp};
use crate::store::{Store, StoreOptions};

const S: i64 = 1_000;
const M: i64 = 60 * S;

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    h: NotifyHandle,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    notify: Option<NotifyConfig>,
    #[serde(default)]
    route: Vec<toml::Spanned<RouteConfig>>,
    #[serde(default)]
    inhibit: Vec<toml::Spanned<super::config::InhibitConfig>>,
    #[serde(default)]
    dependency: Vec<toml::Spanned<super::config::DependencyConfig>>,
    #[serde(default)]
    maintenance: Vec<toml::Spanned<super::config::MaintenanceConfig>>,
}

fn plan(text: &str, receivers: &[&str]) -> NotifyPlan {
    let f: File = toml::from_str(text).unwrap();
    let names: Vec<String> = receivers.iter().map(|s| s.to_string()).collect();
    NotifySections {
        notify: f.notify.as_ref(),
        routes: &f.route,
        inhibits: &f.inhibit,
        dependencies: &f.dependency,
        maintenance: &f.maintenance,
    }
    .build(&names)
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn infos(receivers: &[&str]) -> Vec<ReceiverInfo> {
    receivers
        .iter()
        .map(|r| ReceiverInfo {
            name: r.to_string(),
            send_resolved: true,
        })
        .collect()
}

impl Harness {
    async fn new(config: &str, receivers: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
        let h = NotifyHandle::open(
            store.clone(),
            plan(config, receivers),
            infos(receivers),
            None,
        )
        .await
        .unwrap();
        Harness {
            _dir: dir,
            store,
            h,
        }
    }

    /// Opens the same store again, as a restart would.
    async fn restart(self, config: &str, receivers: &[&str]) -> Harness {
        let Harness { _dir, store, h } = self;
        drop(h);
        let path = store.path().to_path_buf();
        store.close().await.unwrap();
        let store = Store::open(&StoreOptions::new(path)).unwrap();
        let h = NotifyHandle::open(
            store.clone(),
            plan(config, receivers),
            infos(receivers),
            None,
        )
        .await
        .unwrap();
        Harness { _dir, store, h }
    }

    async fn fire(&self, a: &Alert, now: Timestamp) {
        let mut a = a.clone();
        a.state = AlertState::Firing;
        a.fired_at = Some(now);
        self.change(Change {
            alert: a,
            from: Some(AlertState::Pending),
            to: Some(AlertState::Firing),
            at: now,
        })
        .await;
    }

    async fn resolve(&self, a: &Alert, now: Timestamp) {
        let mut a = a.clone();
        a.state = AlertState::Resolved;
        self.change(Change {
            alert: a,
            from: Some(AlertState::Firing),
            to: Some(AlertState::Resolved),
            at: now,
        })
        .await;
    }

    async fn change(&self, c: Change) {
        let now = c.at;
        self.h
            .write(move |d, tx| {
                d.ingest(tx, &[c], now)
                    .map_err(|e| OpError::Invalid(e.to_string()))
            })
            .await
            .unwrap();
    }

    async fn tick(&self, now: Timestamp) {
        self.h
            .write(move |d, tx| d.tick(tx, now).map_err(|e| OpError::Invalid(e.to_string())))
            .await
            .unwrap();
    }

    /// Every outbox row, oldest first.
    fn rows(&self) -> Vec<RowView> {
        let mut v = self
            .store
            .read(|c| {
                outbox::list(
                    c,
                    &ListFilter {
                        limit: 10_000,
                        ..Default::default()
                    },
                )
            })
            .unwrap();
        v.reverse();
        v
    }

    fn summary(&self) -> Vec<String> {
        self.rows()
            .iter()
            .map(|r| {
                let mut names: Vec<String> = r
                    .alerts
                    .iter()
                    .map(|a| format!("{}:{}", label_of(a), a.status))
                    .collect();
                names.sort();
                format!("{} {} [{}]", r.receiver, r.reason, names.join(","))
            })
            .collect()
    }
}

fn label_of(a: &outbox::RowAlert) -> String {
    a.name.clone()
}

fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
    let mut labels = Labels::new([("alertname", name), ("severity", "critical")]).unwrap();
    for (k, v) in extra {
        labels.set(k, v).unwrap();
    }
    Alert {
        name: name.into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        fingerprint: Fingerprint::of(name, &labels),
        labels,
        annotations: Annotations::new(),
        value: 1.0,
        since: 0,
        fired_at: Some(0),
    }
}

const GROUPED: &str = r#"
[notify]
group_by = ["cluster"]
group_wait = "30s"
group_interval = "1m"
repeat_interval = "1h"
"#;

#[tokio::test]
async fn group_wait_interval_and_repeat() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    let b = alert("B", &[("cluster", "c1")]);
    let c = alert("C", &[("cluster", "c1")]);
    t.fire(&a, 0).await;
    t.fire(&b, 5 * S).await;
    t.tick(29 * S).await;
    assert!(
        t.rows().is_empty(),
        "group_wait holds the first notification"
    );
    t.tick(30 * S).await;
    assert_eq!(
        t.summary(),
        vec!["pd first_notification [A:firing,B:firing]"]
    );

    t.fire(&c, 40 * S).await;
    t.tick(89 * S).await;
    assert_eq!(t.rows().len(), 1, "a new alert waits for group_interval");
    t.tick(90 * S).await;
    assert_eq!(
        t.summary()[1],
        "pd new_alerts_in_group [A:firing,B:firing,C:firing]"
    );
    let rows = t.rows();
    let n: crate::ports::Notification = t
        .store
        .read(|conn| {
            conn.query_row(
                "SELECT payload FROM outbox WHERE id = ?1",
                [rows[1].id],
                |r| r.get::<_, String>(0),
            )
        })
        .map(|p| serde_json::from_str(&p).unwrap())
        .unwrap();
    let new: Vec<bool> = n.alerts.iter().map(|a| a.new).collect();
    assert_eq!(new.iter().filter(|x| **x).count(), 1, "only C is new");

    // Nothing changes: nothing is sent until the repeat interval.
    for m in 2..60 {
        t.tick(90 * S + m * M).await;
    }
    assert_eq!(t.rows().len(), 2);
    t.tick(90 * S + 60 * M).await;
    assert_eq!(
        t.summary()[2],
        "pd repeat_interval [A:firing,B:firing,C:firing]"
    );

    t.tick(91 * M).await;
    t.resolve(&a, 91 * M + 10 * S).await;
    t.tick(91 * M + 30 * S).await;
    assert_eq!(t.rows().len(), 3, "a resolve waits for group_interval too");
    t.tick(92 * M).await;
    assert_eq!(t.summary()[3], "pd resolved [A:resolved,B:firing,C:firing]");
    t.tick(93 * M).await;
    t.resolve(&b, 93 * M + S).await;
    t.resolve(&c, 93 * M + S).await;
    t.tick(94 * M).await;
    assert_eq!(t.summary()[4], "pd resolved [B:resolved,C:resolved]");
    assert_eq!(t.h.lock().group_count(), 0, "an empty group is gone");
}

#[tokio::test]
async fn zero_group_wait_writes_the_row_in_the_same_transaction() {
    let t = Harness::new("[notify]\ngroup_wait = \"0s\"\n", &["pd"]).await;
    t.fire(&alert("A", &[]), 0).await;
    assert_eq!(t.summary(), vec!["pd first_notification [A:firing]"]);
}

#[tokio::test]
async fn routes_send_to_their_receivers_and_groups_are_per_route() {
    let cfg = r#"
    [notify]
    receivers = ["default"]
    group_wait = "0s"
    [[route]]
    match = { team = "db" }
    receivers = ["db"]
    continue = true
    [[route]]
    match = { severity = "critical" }
    receivers = ["pager"]
    "#;
    let t = Harness::new(cfg, &["default", "db", "pager"]).await;
    t.fire(&alert("PgDown", &[("team", "db")]), 0).await;
    t.fire(&alert("Disk", &[("severity", "warning")]), 0).await;
    let mut s = t.summary();
    s.sort();
    assert_eq!(
        s,
        vec![
            "db first_notification [PgDown:firing]",
            "default first_notification [Disk:firing]",
            "pager first_notification [PgDown:firing]",
        ]
    );
}

#[tokio::test]
async fn a_silenced_alert_that_resolves_still_sends_its_resolve() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    t.fire(&a, 0).await;
    t.tick(30 * S).await;
    assert_eq!(t.rows().len(), 1);
    let m = matchers::Matchers(vec![crate::model::Matcher::eq("alertname", "A")]);
    t.h.write(move |d, tx| {
        d.add_silence(
            tx,
            NewSilence {
                matchers: m,
                starts_at: 31 * S,
                ends_at: 10 * 60 * M,
                comment: "maintenance".into(),
                created_by: "ops".into(),
            },
            31 * S,
        )
    })
    .await
    .unwrap();
    let st = t.h.lock().status(std::slice::from_ref(&a), 32 * S);
    assert_eq!(st[0].silenced_by.len(), 1);
    // Silenced: no repeat.
    t.tick(30 * S + 61 * M).await;
    assert_eq!(t.rows().len(), 1, "silenced alerts are not repeated");
    t.resolve(&a, 62 * M).await;
    t.tick(63 * M).await;
    assert_eq!(t.summary()[1], "pd resolved [A:resolved]");

    // A new alert under the silence is never sent, nor its resolve.
    let a2 = alert("A", &[("cluster", "c2")]);
    t.fire(&a2, 64 * M).await;
    t.tick(70 * M).await;
    t.resolve(&a2, 71 * M).await;
    t.tick(75 * M).await;
    assert_eq!(t.rows().len(), 2);
}

#[tokio::test]
async fn an_expired_silence_lets_the_alert_through() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    let m = matchers::Matchers(vec![crate::model::Matcher::eq("alertname", "A")]);
    let view =
        t.h.write(move |d, tx| {
            d.add_silence(
                tx,
                NewSilence {
                    matchers: m,
                    starts_at: 0,
                    ends_at: 60 * M,
                    comment: "".into(),
                    created_by: "ops".into(),
                },
                0,
            )
        })
        .await
        .unwrap();
    t.fire(&a, 0).await;
    t.tick(30 * S).await;
    assert!(t.rows().is_empty());
    let id = view.id.clone();
    t.h.write(move |d, tx| d.expire_silence(tx, &id, 2 * M))
        .await
        .unwrap();
    t.tick(2 * M).await;
    assert_eq!(t.summary(), vec!["pd first_notification [A:firing]"]);
}

#[tokio::test]
async fn ack_is_sent_stops_repeats_and_ends_on_resolve() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    t.fire(&a, 0).await;
    t.tick(30 * S).await;
    let fp = a.fingerprint;
    t.h.write(move |d, tx| d.ack(tx, fp, "alice".into(), "on it".into(), None, M))
        .await
        .unwrap();
    assert_eq!(t.summary()[1], "pd acknowledged [A:firing]");
    for m in 2..200 {
        t.tick(m * M).await;
    }
    assert_eq!(t.rows().len(), 2, "no repeat while acknowledged");
    assert_eq!(
        t.h.write(move |d, tx| d.ack(tx, Fingerprint(1), "x".into(), "".into(), None, M))
            .await
            .unwrap_err()
            .to_string(),
        "no firing alert has fingerprint '0000000000000001'"
    );
    t.resolve(&a, 201 * M).await;
    assert!(
        t.h.lock().ack_of(&fp).is_none(),
        "an ack ends when the alert resolves"
    );
    t.tick(202 * M).await;
    assert_eq!(t.summary()[2], "pd resolved [A:resolved]");
}

#[tokio::test]
async fn an_ack_that_expires_lets_repeats_resume() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    t.fire(&a, 0).await;
    t.tick(30 * S).await;
    let fp = a.fingerprint;
    t.h.write(move |d, tx| d.ack(tx, fp, "bob".into(), "".into(), Some(10 * M), M))
        .await
        .unwrap();
    assert_eq!(t.h.next_due().map(|d| d <= 10 * M), Some(true));
    t.tick(10 * M).await;
    assert!(t.h.lock().ack_of(&fp).is_none());
    t.tick(30 * S + 60 * M).await;
    assert_eq!(t.summary()[2], "pd repeat_interval [A:firing]");
    t.h.write(move |d, tx| d.ack(tx, fp, "bob".into(), "".into(), None, 61 * M))
        .await
        .unwrap();
    t.h.write(move |d, tx| d.unack(tx, fp)).await.unwrap();
    t.tick(30 * S + 120 * M).await;
    assert_eq!(
        t.summary()[4],
        "pd repeat_interval [A:firing]",
        "un-ack resumes repeats"
    );
}

#[tokio::test]
async fn escalation_tiers_fire_when_unacknowledged() {
    let cfg = r#"
    [notify]
    receivers = ["oncall"]
    group_by = ["severity"]
    group_wait = "0s"
    group_interval = "1m"
    repeat_interval = "1d"
    [[route]]
    match = { severity = "critical" }
    escalate = [ { after = "10m", receivers = ["lead"] }, { after = "30m", receivers = ["boss"] } ]
    "#;
    let t = Harness::new(cfg, &["oncall", "lead", "boss"]).await;
    let a = alert("A", &[]);
    let b = alert("B", &[]);
    t.fire(&a, 0).await;
    t.fire(&b, 0).await;
    assert_eq!(t.rows().len(), 1, "{:?}", t.summary());
    assert!(t.h.next_due().unwrap() <= M);
    t.tick(9 * M).await;
    assert_eq!(
        t.summary()[1],
        "oncall new_alerts_in_group [A:firing,B:firing]"
    );
    let fp = b.fingerprint;
    t.h.write(move |d, tx| d.ack(tx, fp, "carol".into(), "".into(), None, 5 * M))
        .await
        .unwrap();
    t.tick(10 * M).await;
    let s = t.summary();
    assert_eq!(s.last().unwrap(), "lead escalation [A:firing]", "{s:?}");
    t.fire(&alert("C", &[]), 11 * M).await;
    t.tick(31 * M).await;
    let s = t.summary();
    assert!(
        s.contains(&"boss escalation [A:firing]".to_string()),
        "{s:?}"
    );
    t.resolve(&a, 32 * M).await;
    t.tick(33 * M).await;
    let s = t.summary();
    for r in ["oncall", "lead", "boss"] {
        assert!(
            s.iter()
                .any(|l| l.starts_with(r) && l.contains("A:resolved")),
            "{r} saw it fire, so it hears it resolve: {s:?}"
        );
    }
}

#[tokio::test]
async fn inhibition_and_dependencies_hold_child_alerts() {
    let cfg = r#"
    [notify]
    group_by = ["..."]
    group_wait = "0s"
    group_interval = "1m"
    [[inhibit]]
    source = { severity = "critical" }
    target = { severity = "warning" }
    equal = ["instance"]
    [[dependency]]
    name = "patroni-needs-etcd"
    parent = { service = "etcd" }
    child = { service = "patroni" }
    equal = ["cluster"]
    [[dependency]]
    name = "pgbouncer-needs-patroni"
    parent = { service = "patroni" }
    child = { service = "pgbouncer" }
    equal = ["cluster"]
    "#;
    let t = Harness::new(cfg, &["pd"]).await;
    let etcd = alert("EtcdDown", &[("service", "etcd"), ("cluster", "c1")]);
    let patroni = alert(
        "PatroniNoLeader",
        &[("service", "patroni"), ("cluster", "c1")],
    );
    let bouncer = alert(
        "PgBouncerDown",
        &[("service", "pgbouncer"), ("cluster", "c1")],
    );
    let other = alert(
        "PgBouncerDown",
        &[("service", "pgbouncer"), ("cluster", "c2")],
    );
    t.fire(&etcd, 0).await;
    t.fire(&patroni, 0).await;
    t.fire(&bouncer, 0).await;
    t.fire(&other, 0).await;
    let mut s = t.summary();
    s.sort();
    assert_eq!(
        s,
        vec![
            "pd first_notification [EtcdDown:firing]",
            "pd first_notification [PgBouncerDown:firing]",
        ],
        "the chain below etcd in c1 is held; c2 is not"
    );
    let st = t.h.lock().status(&[patroni.clone(), bouncer.clone()], 1);
    assert_eq!(st[0].inhibited_by, vec!["patroni-needs-etcd"]);
    assert_eq!(st[1].inhibited_by, vec!["pgbouncer-needs-patroni"]);

    let warn = alert("HighLoad", &[("severity", "warning"), ("instance", "db-1")]);
    let crit = alert(
        "HostDown",
        &[("severity", "critical"), ("instance", "db-1")],
    );
    t.fire(&crit, M).await;
    t.fire(&warn, M).await;
    assert!(!t.summary().iter().any(|l| l.contains("HighLoad")));

    // The parent resolves: the children are sent at their next flush.
    t.resolve(&etcd, 2 * M).await;
    t.tick(3 * M).await;
    let s = t.summary();
    assert!(
        s.iter().any(|l| l.contains("PatroniNoLeader:firing")),
        "{s:?}"
    );
    assert!(
        !s.iter()
            .any(|l| l.contains("PgBouncerDown:firing") && l.contains("new")),
        "pgbouncer c1 is still held by patroni"
    );
}

#[tokio::test]
async fn maintenance_windows_mute_while_open() {
    let cfg = r#"
    [notify]
    group_wait = "0s"
    [[maintenance]]
    name = "backup"
    match = { service = "backup" }
    start = "00:00"
    end = "01:00"
    time_zone = "UTC"
    "#;
    let t = Harness::new(cfg, &["pd"]).await;
    t.fire(&alert("BackupSlow", &[("service", "backup")]), 30 * M)
        .await;
    assert!(
        t.rows().is_empty(),
        "00:30 UTC on 1970-01-01 is inside the window"
    );
    let st =
        t.h.lock()
            .status(&[alert("BackupSlow", &[("service", "backup")])], 30 * M);
    assert_eq!(st[0].maintenance, vec!["backup"]);
    t.tick(61 * M).await;
    assert_eq!(
        t.summary(),
        vec!["pd first_notification [BackupSlow:firing]"]
    );
}

#[tokio::test]
async fn flapping_sends_one_notice_then_the_settled_state() {
    let cfg = r#"
    [notify]
    group_wait = "0s"
    group_interval = "10s"
    [notify.flapping]
    enabled = true
    window = 10
    high = 30
    low = 10
    "#;
    let t = Harness::new(cfg, &["pd"]).await;
    let a = alert("Flappy", &[]);
    let mut now = 0;
    let mut firing = false;
    for i in 0..20 {
        now = i * 10 * S;
        firing = !firing;
        let mut al = a.clone();
        al.state = if firing {
            AlertState::Firing
        } else {
            AlertState::Resolved
        };
        let applied = Applied {
            rule: "Flappy".into(),
            changes: vec![Change {
                alert: al.clone(),
                from: Some(if firing {
                    AlertState::Pending
                } else {
                    AlertState::Firing
                }),
                to: Some(al.state),
                at: now,
            }],
            active: if firing {
                vec![(al.clone(), now, now)]
            } else {
                vec![]
            },
            gone: vec![],
        };
        t.h.write(move |d, tx| {
            d.apply(tx, &[applied], now)
                .map_err(|e| OpError::Invalid(e.to_string()))
        })
        .await
        .unwrap();
    }
    let s = t.summary();
    let flaps = s.iter().filter(|l| l.contains("flapping")).count();
    assert_eq!(flaps, 1, "{s:?}");
    assert!(s.len() <= 6, "not a storm: {s:?}");
    assert!(t.h.lock().status(std::slice::from_ref(&a), now)[0].flapping);
    let before = s.len();
    // It settles (stays resolved): flapping ends and the resolve goes out once.
    for i in 0..15 {
        let now2 = now + (i + 1) * 10 * S;
        let applied = Applied {
            rule: "Flappy".into(),
            ..Default::default()
        };
        t.h.write(move |d, tx| {
            d.apply(tx, &[applied], now2)
                .map_err(|e| OpError::Invalid(e.to_string()))
        })
        .await
        .unwrap();
    }
    let s = t.summary();
    assert!(!t.h.lock().status(std::slice::from_ref(&a), now)[0].flapping);
    assert!(s.len() <= before + 1, "{s:?}");
    if firing {
        panic!("the loop should end resolved");
    }
}

#[tokio::test]
async fn a_restart_resumes_timers_and_repeats_nothing() {
    let t = Harness::new(GROUPED, &["pd"]).await;
    let a = alert("A", &[("cluster", "c1")]);
    t.fire(&a, 0).await;
    // Persist the alert as firing, as the evaluator would, so reconcile keeps it.
    persist_firing(&t.store, &a).await;
    let t = t.restart(GROUPED, &["pd"]).await;
    t.tick(crate::model::now_ms() + 31 * S).await;
    assert_eq!(
        t.rows().len(),
        1,
        "the pending group flushed after the restart"
    );
    let t = t.restart(GROUPED, &["pd"]).await;
    t.tick(crate::model::now_ms() + 2 * M).await;
    assert_eq!(t.rows().len(), 1, "nothing sent twice after a restart");
}

async fn persist_firing(store: &Store, a: &Alert) {
    let mut a = a.clone();
    a.since = crate::model::now_ms();
    let applied = Applied {
        rule: a.name.clone(),
        active: vec![(a.clone(), a.since, a.since)],
        ..Default::default()
    };
    store
        .write(move |tx| crate::lifecycle::persist(tx, &applied))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_failure_alert_never_goes_to_the_failing_receiver() {
    let cfg = r#"
    [notify]
    group_wait = "0s"
    fallback_receivers = ["mail"]
    "#;
    let t = Harness::new(cfg, &["pd", "mail"]).await;
    let f = alert(dispatch::NOTIFICATION_FAILED, &[("receiver", "pd")]);
    t.fire(&f, 0).await;
    assert_eq!(
        t.summary(),
        vec!["mail first_notification [WardenNotificationFailed:firing]"]
    );
}

#[tokio::test]
async fn a_storm_is_grouped() {
    let t = Harness::new(
        "[notify]\ngroup_by = [\"cluster\"]\ngroup_wait = \"0s\"\n",
        &["hook"],
    )
    .await;
    let changes: Vec<Change> = (0..5000)
        .map(|i| {
            let cluster = format!("c{}", i % 5);
            let inst = format!("i{i}");
            let mut a = alert("Storm", &[("cluster", &cluster), ("instance", &inst)]);
            a.fired_at = Some(0);
            Change {
                alert: a,
                from: Some(AlertState::Pending),
                to: Some(AlertState::Firing),
                at: 0,
            }
        })
        .collect();
    let started = std::time::Instant::now();
    t.h.write(move |d, tx| {
        d.ingest(tx, &changes, 0)
            .map_err(|e| OpError::Invalid(e.to_string()))
    })
    .await
    .unwrap();
    let rows = t.rows();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows.iter().map(|r| r.alerts.len()).sum::<usize>(), 5000);
    eprintln!("5000 alerts grouped into 5 rows in {:?}", started.elapsed());
    let _ = Duration::ZERO;
}
