//! Alerts through their whole life in a real daemon.

use std::time::Duration;

use crate::harness::{Daemon, write};

const CONFIG: &str = r#"
[store]
path = "w.db"

[rules]
paths = ["rules/"]
interval = "1s"

[[collector.host]]
interval = "1s"
"#;

fn state_of(d: &Daemon, name: &str) -> Option<String> {
    d.alert(name)
        .map(|a| a["state"].as_str().unwrap_or("").to_string())
}

#[test]
fn a_host_rule_goes_pending_firing_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    let rule = |threshold: &str| {
        format!(
            r#"rule("HostIsUp", #{{
                severity: "warning",
                pending_for: "2s",
                labels: #{{ team: "ops" }},
                summary: "{{{{instance}}}} has been up {{{{value}}}} s",
                when: || series("host_uptime_seconds") > {threshold},
            }});"#
        )
    };
    write(dir.path(), "rules/up.rhai", &rule("0"));
    let d = Daemon::start(dir.path(), &config, "run");

    d.wait_for(Duration::from_secs(10), "HostIsUp pending", || {
        Some(state_of(&d, "HostIsUp")? == "pending")
    });
    let pending = d.alert("HostIsUp").unwrap();
    assert_eq!(pending["severity"], "warning");
    assert_eq!(pending["labels"]["team"], "ops");
    assert_eq!(pending["labels"]["alertname"], "HostIsUp");
    assert!(
        pending["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("has been up")
    );
    let since = pending["since"].as_i64().unwrap();

    d.wait_for(Duration::from_secs(10), "HostIsUp firing", || {
        Some(state_of(&d, "HostIsUp")? == "firing")
    });
    let firing = d.alert("HostIsUp").unwrap();
    assert_eq!(
        firing["since"].as_i64().unwrap(),
        since,
        "since never moves while active"
    );
    assert_eq!(firing["fingerprint"], pending["fingerprint"]);
    let only_firing = d.json("/api/v1/alerts?state=firing");
    assert_eq!(only_firing.as_array().unwrap().len(), 1);
    assert_eq!(d.get("/api/v1/alerts?state=bogus").unwrap().0, 400);

    // The rule file changes on disk: the watcher reloads it and the alert resolves.
    write(dir.path(), "rules/up.rhai", &rule("1e15"));
    d.wait_for(Duration::from_secs(10), "HostIsUp resolved", || {
        Some(d.alert("HostIsUp").is_none())
    });

    let out = d.out();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("HostIsUp")).collect();
    assert_eq!(lines.len(), 3, "one console line per change: {out}");
    assert!(lines[0].contains("PENDING"), "{out}");
    assert!(lines[1].contains("FIRING"), "{out}");
    assert!(lines[2].contains("RESOLVED"), "{out}");

    let history = d.json("/api/v1/alerts/history");
    let states: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "HostIsUp")
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        vec!["resolved", "firing", "pending"],
        "newest first"
    );

    // The samples behind it are queryable.
    let q = d.json("/api/v1/query?metric=host_uptime_seconds&range=1m");
    assert!(!q[0]["samples"].as_array().unwrap().is_empty());
    assert_eq!(q[0]["labels"]["__name__"], "host_uptime_seconds");
    assert_eq!(d.get("/api/v1/query?metric=9bad").unwrap().0, 400);
    let metrics = d.get("/metrics").unwrap().1;
    assert!(
        metrics.contains("warden_samples_ingested_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_rule_evaluations_total "),
        "{metrics}"
    );

    assert!(d.terminate().success());
}

#[test]
fn a_broken_rule_file_keeps_the_old_rules_and_fires_rule_file_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    let good =
        r#"rule("AlwaysUp", #{ severity: "info", when: || series("host_uptime_seconds") > 0 });"#;
    write(dir.path(), "rules/a.rhai", good);
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(10), "AlwaysUp firing", || {
        Some(state_of(&d, "AlwaysUp")? == "firing")
    });

    write(
        dir.path(),
        "rules/a.rhai",
        "rule(\"AlwaysUp\", #{ severity: \"info\",\n  when: || series(\"host_uptime_seconds\") > ,\n});",
    );
    d.wait_for(
        Duration::from_secs(10),
        "WardenRuleFileInvalid firing",
        || Some(state_of(&d, "WardenRuleFileInvalid")? == "firing"),
    );
    let invalid = d.alert("WardenRuleFileInvalid").unwrap();
    assert!(
        invalid["labels"]["file"]
            .as_str()
            .unwrap()
            .ends_with("a.rhai"),
        "{invalid}"
    );
    assert!(
        d.err().contains("a.rhai:2:"),
        "the compile error names file:line:col\n{}",
        d.err()
    );
    // The previous version keeps running.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state_of(&d, "AlwaysUp").as_deref(), Some("firing"));

    write(dir.path(), "rules/a.rhai", good);
    d.wait_for(
        Duration::from_secs(10),
        "WardenRuleFileInvalid resolved",
        || Some(d.alert("WardenRuleFileInvalid").is_none()),
    );
    assert_eq!(state_of(&d, "AlwaysUp").as_deref(), Some("firing"));
    assert_eq!(
        d.out().lines().filter(|l| l.contains("AlwaysUp")).count(),
        1,
        "never re-announced:\n{}",
        d.out()
    );
}

#[test]
fn kill_9_keeps_pending_and_firing_state_without_a_second_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    write(
        dir.path(),
        "rules/r.rhai",
        r#"
        rule("FiresSoon", #{ severity: "critical", pending_for: "1s", when: || series("host_uptime_seconds") > 0 });
        rule("PendsLong", #{ severity: "warning", pending_for: "1h", when: || series("host_uptime_seconds") > 0 });
        "#,
    );
    let d = Daemon::start(dir.path(), &config, "first");
    d.wait_for(Duration::from_secs(10), "FiresSoon firing", || {
        Some(state_of(&d, "FiresSoon")? == "firing")
    });
    d.wait_for(Duration::from_secs(10), "PendsLong pending", || {
        Some(state_of(&d, "PendsLong")? == "pending")
    });
    let fires = d.alert("FiresSoon").unwrap();
    let pends = d.alert("PendsLong").unwrap();
    // Let at least one more evaluation persist its state, then crash.
    std::thread::sleep(Duration::from_millis(1200));
    d.kill9();

    let d = Daemon::start(dir.path(), &config, "second");
    std::thread::sleep(Duration::from_millis(2500));
    let fires2 = d.alert("FiresSoon").expect("FiresSoon still active");
    let pends2 = d.alert("PendsLong").expect("PendsLong still active");
    assert_eq!(fires2["state"], "firing");
    assert_eq!(fires2["since"], fires["since"]);
    assert_eq!(pends2["state"], "pending");
    assert_eq!(
        pends2["since"], pends["since"],
        "pending keeps its pending-since time"
    );
    let out = d.out();
    assert!(
        !out.contains("FiresSoon"),
        "announced again after restart:\n{out}"
    );
    assert!(
        !out.contains("PendsLong"),
        "announced again after restart:\n{out}"
    );
    assert!(d.terminate().success());
}

#[test]
fn a_watched_process_that_dies_fires_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let pidfile = write(dir.path(), "sleeper.pid", &child.id().to_string());
    let config = write(
        dir.path(),
        "warden.toml",
        &format!(
            r#"
[store]
path = "w.db"
[rules]
paths = ["rules/"]
interval = "10s"
[[collector.process]]
name = "sleeper"
pidfile = "{}"
interval = "10s"
"#,
            pidfile.display()
        ),
    );
    write(
        dir.path(),
        "rules/p.rhai",
        r#"rule("SleeperDown", #{ severity: "critical", summary: "{{instance}} is not running",
            when: || series("process_running", #{instance: "sleeper"}) == 0 });"#,
    );
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(10), "process_running 1", || {
        let q = d.json("/api/v1/query?metric=process_running&range=1m&instance=sleeper");
        Some(q[0]["samples"].as_array()?.last()?[1].as_f64()? == 1.0)
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::time::Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    // The collector polls every 10 s: only the pidfd can make this fast.
    d.wait_for(Duration::from_secs(3), "SleeperDown firing", || {
        Some(state_of(&d, "SleeperDown")? == "firing")
    });
    eprintln!(
        "process death to firing alert (API poll every 50 ms): {:?}",
        killed.elapsed()
    );
    assert!(
        d.out().contains("FIRING   critical SleeperDown"),
        "{}",
        d.out()
    );
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    write(
        dir.path(),
        "rules/a.rhai",
        r#"rule("First", #{ severity: "info", when: || series("host_uptime_seconds") > 0 });"#,
    );
    write(
        dir.path(),
        "more/b.rhai",
        r#"rule("Second", #{ severity: "info", when: || series("host_load1") >= 0 });"#,
    );
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(10), "First firing", || {
        Some(state_of(&d, "First")? == "firing")
    });

    // A broken config is refused; the running one stays.
    write(
        dir.path(),
        "warden.toml",
        "[rules]\npaths = [\"rules/\"]\ninterval = \"often\"\n",
    );
    d.signal(libc::SIGHUP);
    d.wait_for(Duration::from_secs(10), "the refusal in the log", || {
        Some(
            d.err()
                .contains("warden.toml:3:12: invalid duration 'often'")
                && d.err().contains("new config refused"),
        )
    });
    assert_eq!(state_of(&d, "First").as_deref(), Some("firing"));

    // A good one takes effect: a second rule directory.
    write(
        dir.path(),
        "warden.toml",
        &CONFIG.replace(r#"paths = ["rules/"]"#, r#"paths = ["rules/", "more/"]"#),
    );
    d.signal(libc::SIGHUP);
    d.wait_for(Duration::from_secs(10), "Second firing", || {
        Some(state_of(&d, "Second")? == "firing")
    });
    assert_eq!(state_of(&d, "First").as_deref(), Some("firing"));
    assert!(d.terminate().success());
}

#[test]
fn a_rule_that_fails_at_run_time_fires_warden_rule_failing_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    write(
        dir.path(),
        "rules/r.rhai",
        r#"
        rule("Broken", #{ severity: "warning", when: || series("host_uptime_seconds") + "text" });
        rule("Runaway", #{ severity: "warning", when: || { let x = 0; loop { x += 1; } } });
        rule("Fine", #{ severity: "info", when: || series("host_uptime_seconds") > 0 });
        "#,
    );
    let d = Daemon::start(dir.path(), &config, "run");
    d.wait_for(Duration::from_secs(10), "Fine firing", || {
        Some(state_of(&d, "Fine")? == "firing")
    });
    d.wait_for(
        Duration::from_secs(10),
        "WardenRuleFailing for both broken rules",
        || {
            let v = d.json("/api/v1/alerts");
            let failing: Vec<String> = v
                .as_array()?
                .iter()
                .filter(|a| a["name"] == "WardenRuleFailing")
                .filter_map(|a| a["labels"]["rule"].as_str().map(String::from))
                .collect();
            Some(
                failing.contains(&"Broken".to_string()) && failing.contains(&"Runaway".to_string()),
            )
        },
    );
    let metrics = d.get("/metrics").unwrap().1;
    assert!(
        metrics.contains("warden_rule_errors_total{rule=\"Broken\"}"),
        "{metrics}"
    );
    assert!(
        d.err().contains("r.rhai:2:"),
        "runtime errors name file:line:col\n{}",
        d.err()
    );
}

#[test]
fn the_event_stream_sends_a_snapshot_then_each_change() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "warden.toml", CONFIG);
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let d = Daemon::start(dir.path(), &config, "run");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut next_event = || {
        let mut name = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "stream closed");
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return (
                    name.clone(),
                    serde_json::from_str::<serde_json::Value>(data).unwrap(),
                );
            }
        }
    };
    let (name, data) = next_event();
    assert_eq!(name, "snapshot");
    assert!(data.is_array());
    // A rule appears: its changes arrive as they happen.
    write(
        dir.path(),
        "rules/n.rhai",
        r#"rule("Streamed", #{ severity: "info", pending_for: "1s", when: || series("host_uptime_seconds") > 0 });"#,
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (name, data) = next_event();
        if name == "alert" && data["alert"]["name"] == "Streamed" {
            seen.push(data["to"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(seen, vec!["pending", "firing"]);
    // Its value is a series too.
    d.wait_for(Duration::from_secs(5), "warden_alert_value", || {
        let q = d.json("/api/v1/query?metric=warden_alert_value&range=1m&alertname=Streamed");
        Some(!q.as_array()?.is_empty())
    });
}
