//! Notifications through the real daemon to emulated receivers: a receiver that is
//! down, a crash between the state change and the delivery, acknowledgements and
//! silences over the API.

use std::time::Duration;

use serde_json::Value;
use warden_integrations::testing::{self, Emulator};

use crate::harness::{Daemon, free_port, http, write};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn config(receivers: &str, notify: &str) -> String {
    format!(
        r#"
[store]
path = "w.db"
[rules]
paths = ["rules/"]
interval = "1s"
[[collector.host]]
interval = "1s"
[notify]
group_wait = "0s"
group_interval = "1s"
retry_initial = "100ms"
retry_max = "300ms"
{notify}
{receivers}
"#
    )
}

fn rule(threshold: &str) -> String {
    format!(
        r#"rule("HostUp", #{{ severity: "critical", summary: "{{{{instance}}}} is up",
            when: || series("host_uptime_seconds") > {threshold} }});"#
    )
}

fn notifications(d: &Daemon) -> Vec<Value> {
    d.json("/api/v1/notifications")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn statuses(sink: &Emulator) -> Vec<String> {
    sink.accepted()
        .iter()
        .map(|p| p["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_receiver_that_was_down_gets_everything_in_order_once() {
    let rt = runtime();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &config(
            &format!(
                "[[notifier.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
            ),
            "",
        ),
    );
    write(dir.path(), "rules/r.rhai", &rule("0"));
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "a failed attempt", || {
        let n = notifications(&d);
        Some(n.first()?["attempts"].as_i64()? >= 2 && n[0]["state"] == "pending")
    });
    write(dir.path(), "rules/r.rhai", &rule("1e15"));
    d.wait_for(Duration::from_secs(10), "the resolve queued", || {
        Some(notifications(&d).len() == 2)
    });
    let n = notifications(&d);
    assert_eq!(n[0]["reason"], "resolved");
    assert_eq!(n[1]["reason"], "first_notification");
    assert!(n[1]["last_error"].as_str().unwrap().contains("127.0.0.1"));

    let sink = rt.block_on(testing::webhook_sink_on(port));
    d.wait_for(Duration::from_secs(10), "both delivered", || {
        Some(sink.accepted().len() >= 2)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        statuses(&sink),
        vec!["firing", "resolved"],
        "in order, once each"
    );
    let n = notifications(&d);
    assert!(n.iter().all(|r| r["state"] == "delivered"), "{n:?}");
    assert_eq!(
        sink.accepted()[0]["alerts"][0]["labels"]["alertname"],
        "HostUp"
    );
    assert!(d.terminate().success());
}

#[test]
fn kill_9_before_delivery_delivers_once_after_restart() {
    let rt = runtime();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &config(
            &format!(
                "[[notifier.webhook]]\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
            ),
            "",
        ),
    );
    write(dir.path(), "rules/r.rhai", &rule("0"));
    let d = Daemon::start(dir.path(), &cfg, "first");
    d.wait_for(Duration::from_secs(10), "the notification queued", || {
        Some(!notifications(&d).is_empty())
    });
    d.kill9();

    let sink = rt.block_on(testing::webhook_sink_on(port));
    let d = Daemon::start(dir.path(), &cfg, "second");
    d.wait_for(
        Duration::from_secs(10),
        "delivered after the restart",
        || Some(!sink.accepted().is_empty()),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(statuses(&sink), vec!["firing"], "exactly once");
    let n = notifications(&d);
    assert_eq!(
        n.len(),
        1,
        "no second notification after the restart: {n:?}"
    );
    assert_eq!(n[0]["state"], "delivered");
    assert!(d.terminate().success());
}

#[test]
fn ack_sends_pagerduty_acknowledge_and_stops_repeats() {
    let rt = runtime();
    let pd = rt.block_on(testing::pagerduty());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &config(
            &format!(
                "[[notifier.pagerduty]]\nname = \"pd\"\nrouting_key_env = \"PD_KEY\"\nurl = \"{}/v2/enqueue\"\n",
                pd.url()
            ),
            "repeat_interval = \"2s\"",
        ),
    );
    write(dir.path(), "rules/r.rhai", &rule("0"));
    let d = Daemon::start_with_env(dir.path(), &cfg, "run", &[("PD_KEY", "R0UT1NG")]);
    let actions = |pd: &Emulator| -> Vec<String> {
        pd.accepted()
            .iter()
            .map(|e| e["event_action"].as_str().unwrap_or("").to_string())
            .collect()
    };
    d.wait_for(Duration::from_secs(10), "a trigger and a repeat", || {
        Some(actions(&pd).len() >= 2)
    });
    assert!(pd.rejected().is_empty(), "{:?}", pd.rejected());
    let ev = &pd.accepted()[0];
    assert_eq!(ev["routing_key"], "R0UT1NG");
    let alert = d.alert("HostUp").unwrap();
    let fp = alert["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(ev["dedup_key"], fp.as_str());
    assert!(alert["acknowledged"].is_null());

    let (status, body) = http(
        d.port,
        "POST",
        &format!("/api/v1/alerts/{fp}/ack"),
        Some(r#"{"by":"alice","comment":"looking"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    d.wait_for(Duration::from_secs(5), "acknowledge sent", || {
        Some(actions(&pd).last()? == "acknowledge")
    });
    let after_ack = actions(&pd).len();
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        actions(&pd).len(),
        after_ack,
        "no repeats after the ack: {:?}",
        actions(&pd)
    );
    let alert = d.alert("HostUp").unwrap();
    assert_eq!(alert["acknowledged"]["by"], "alice");
    let (status, body) = http(
        d.port,
        "POST",
        "/api/v1/alerts/0000000000000001/ack",
        Some(r#"{"by":"x"}"#),
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("error"));
    let (status, _) = http(
        d.port,
        "POST",
        &format!("/api/v1/alerts/{fp}/ack"),
        Some(r#"{"comment":"no by"}"#),
    )
    .unwrap();
    assert_eq!(status, 400);
    let rows = d.json(&format!("/api/v1/notifications?fingerprint={fp}"));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "acknowledged")
    );
    let (status, _) = http(d.port, "DELETE", &format!("/api/v1/alerts/{fp}/ack"), None).unwrap();
    assert_eq!(status, 200);
    assert!(d.alert("HostUp").unwrap()["acknowledged"].is_null());
    assert!(d.terminate().success());
}

#[test]
fn silences_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &config("[[notifier.console]]\nname = \"console\"\n", ""),
    );
    write(dir.path(), "rules/r.rhai", &rule("0"));
    let d = Daemon::start(dir.path(), &cfg, "run");
    let (status, body) = http(
        d.port,
        "POST",
        "/api/v1/silences",
        Some(r#"{"matchers":{"alertname":"HostUp","instance":{"op":"=~","value":".+"}},"duration":"1h","comment":"deploy","created_by":"bob"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["state"], "active");
    assert_eq!(s["matchers"]["alertname"], "HostUp");
    d.wait_for(Duration::from_secs(10), "HostUp firing", || {
        Some(d.alert("HostUp")?["state"] == "firing")
    });
    let a = d.alert("HostUp").unwrap();
    assert_eq!(a["silenced_by"][0], id.as_str());
    assert_eq!(a["flapping"], false);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!d.out().contains("HostUp"), "silenced: {}", d.out());
    for bad in [
        r#"{"matchers":{},"duration":"1h","created_by":"x"}"#,
        r#"{"matchers":{"a":"b"},"created_by":"x"}"#,
        r#"{"matchers":{"a":"b"},"duration":"1h"}"#,
        r#"{"matchers":{"a":{"op":"<","value":"1"}},"duration":"1h","created_by":"x"}"#,
        r#"not json"#,
    ] {
        let (status, body) = http(d.port, "POST", "/api/v1/silences", Some(bad)).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let list = d.json("/api/v1/silences");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, body) = http(d.port, "DELETE", &format!("/api/v1/silences/{id}"), None).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"expired\""), "{body}");
    d.wait_for(
        Duration::from_secs(5),
        "the alert is sent once unsilenced",
        || Some(d.out().contains("FIRING") && d.out().contains("HostUp")),
    );
    assert_eq!(
        http(d.port, "DELETE", "/api/v1/silences/nope", None)
            .unwrap()
            .0,
        404
    );
    assert!(d.terminate().success());
}

fn warden(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = std::process::Command::new(crate::harness::warden_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_command_line_tests_routes_sends_tests_silences_and_acks() {
    let rt = runtime();
    let pd = rt.block_on(testing::pagerduty());
    let dir = tempfile::tempdir().unwrap();
    let receivers = format!(
        "[[notifier.pagerduty]]\nname = \"pd\"\nrouting_key = \"k\"\nurl = \"{}/v2/enqueue\"\n\
         [[notifier.console]]\nname = \"console\"\n\
         [[route]]\nmatch = {{ severity = \"critical\" }}\nreceivers = [\"pd\"]\ncontinue = true\n\
         [[route]]\nmatchers = ['team=~\"db|ops\"']\nreceivers = [\"console\"]\n",
        pd.url()
    );
    let cfg = write(
        dir.path(),
        "warden.toml",
        &config(&receivers, "receivers = [\"console\"]"),
    );
    write(dir.path(), "rules/r.rhai", &rule("0"));
    let c = cfg.to_str().unwrap();
    let (code, out, err) = warden(
        &[
            "routes",
            "test",
            "--config",
            c,
            "severity=critical",
            "team=db",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["pd", "console"],
        "{err}"
    );
    let (_, out, _) = warden(
        &["routes", "test", "--config", c, "severity=info"],
        dir.path(),
    );
    assert_eq!(out.trim(), "console");
    assert_eq!(
        warden(&["routes", "test", "--config", c, "nolabel"], dir.path()).0,
        2
    );

    let (code, out, err) = warden(&["notify", "preview", "--config", c, "pd"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"event_action\": \"trigger\"") && out.contains("\"***\""),
        "{out}"
    );
    assert!(pd.accepted().is_empty(), "preview sends nothing");
    let (code, out, err) = warden(&["notify", "test", "--config", c, "pd"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let actions: Vec<String> = pd
        .accepted()
        .iter()
        .map(|e| e["event_action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        vec!["trigger", "resolve"],
        "a test opens nothing that stays open"
    );
    assert_eq!(
        warden(&["notify", "test", "--config", c, "nope"], dir.path()).0,
        1
    );

    let d = Daemon::start(dir.path(), &cfg, "run");
    let url = format!("http://127.0.0.1:{}", d.port);
    let (code, out, err) = warden(
        &[
            "silence",
            "add",
            "alertname=HostUp",
            "instance=~.+",
            "--duration",
            "2h",
            "--comment",
            "deploy",
            "--by",
            "bob",
            "--url",
            &url,
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    let (_, out, _) = warden(&["silence", "list", "--url", &url], dir.path());
    assert!(
        out.contains(&id) && out.contains("active") && out.contains("deploy"),
        "{out}"
    );
    let (code, _, _) = warden(&["silence", "expire", &id, "--url", &url], dir.path());
    assert_eq!(code, 0);
    let (_, out, _) = warden(&["silence", "list", "--url", &url], dir.path());
    assert!(
        !out.contains(&id),
        "expired silences are listed only with --all"
    );
    d.wait_for(Duration::from_secs(10), "HostUp firing", || {
        Some(d.alert("HostUp")?["state"] == "firing")
    });
    let fp = d.alert("HostUp").unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = warden(
        &[
            "ack",
            &fp,
            "--by",
            "carol",
            "--comment",
            "on it",
            "--url",
            &url,
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("acknowledged"), "{out}");
    assert_eq!(d.alert("HostUp").unwrap()["acknowledged"]["by"], "carol");
    assert_eq!(warden(&["unack", &fp, "--url", &url], dir.path()).0, 0);
    let (code, _, err) = warden(&["unack", &fp, "--url", &url], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");
    assert!(d.terminate().success());
}

#[test]
fn the_heartbeat_calls_while_healthy_and_the_watchdog_always_fires() {
    let rt = runtime();
    let beats = rt.block_on(testing::webhook_sink());
    let hook = rt.block_on(testing::webhook_sink());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &format!(
            r#"
[store]
path = "w.db"
[rules]
interval = "1s"
watchdog = true
[notify]
group_wait = "0s"
[[notifier.webhook]]
name = "deadman"
url = "{}/hook"
[[heartbeat]]
url = "{}/hook"
method = "POST"
interval = "200ms"
"#,
            hook.url(),
            beats.url()
        ),
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(
        Duration::from_secs(10),
        "heartbeats and the Watchdog alert",
        || Some(beats.accepted().len() >= 3 && !hook.accepted().is_empty()),
    );
    assert_eq!(beats.accepted()[0]["status"], "ok");
    assert_eq!(
        hook.accepted()[0]["alerts"][0]["labels"]["alertname"],
        "Watchdog"
    );
    assert_eq!(d.alert("Watchdog").unwrap()["state"], "firing");
    let d_pid = d.child.id();
    // A hung warden (stopped) sends nothing.
    unsafe {
        libc::kill(d_pid as i32, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = beats.accepted().len();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        beats.accepted().len() <= n + 1,
        "no heartbeat from a stopped process"
    );
    unsafe {
        libc::kill(d_pid as i32, libc::SIGCONT);
    }
    assert!(d.terminate().success());
}
