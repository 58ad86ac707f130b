//! The command line: checks, usage errors, bad input at start.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Daemon, warden_bin, write};

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(warden_bin())
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
fn help_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["rules", "check", "--help"],
        &["config", "check", "--help"],
        &["rules", "test", "--help"],
    ] {
        let (code, out, _) = run(args, dir.path());
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
    assert_eq!(run(&["frobnicate"], dir.path()).0, 2);
    assert_eq!(run(&["rules", "check"], dir.path()).0, 2);
    assert_eq!(run(&["rules", "check", "missing.rhai"], dir.path()).0, 2);
    assert_eq!(run(&["rules", "test"], dir.path()).0, 2);
    assert_eq!(run(&["rules", "test", "missing.toml"], dir.path()).0, 2);
    assert_eq!(
        run(&["rules", "test", "--format", "xml", "."], dir.path()).0,
        2
    );
}

#[test]
fn checkers_speak_json() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/bad.rhai",
        "rule(\"Bad\", #{ severity: \"urgent\", remediate: [\"nope\"], when: || true });\n",
    );
    let cfg = write(
        dir.path(),
        "warden.toml",
        "[rules]\npaths = [\"rules/\"]\nintervall = \"1s\"\n\n[store]\nretention = \"soon\"\n",
    );
    let (code, out, _) = run(&["rules", "check", "--format", "json", "rules"], dir.path());
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["files"], 1);
    assert_eq!(doc["problems"][0]["file"], "rules/bad.rhai");
    assert_eq!(doc["problems"][0]["line"], 1);
    assert_eq!(doc["problems"][0]["rule"], "Bad");

    let (code, out, _) = run(
        &["config", "check", "--format", "json", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["valid"], false);
    let lines: Vec<u64> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 6], "every error, not the first: {doc}");

    // --config alone checks the config's rule paths against its actions.
    let (code, out, _) = run(&["rules", "check", "--config", "warden.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.contains("rules/bad.rhai:1:1: rule \"Bad\": invalid severity 'urgent'"),
        "{out}"
    );
}

#[test]
fn rules_test_passes_fails_and_speaks_json() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/up.rhai",
        r#"rule("Down", #{ severity: "critical", pending_for: "2m", when: || series("up") == 0 });"#,
    );
    let test = |exp: &str| {
        format!(
            r#"rule_files = ["../rules/up.rhai"]
[[tests]]
name = "down"
interval = "1m"
input_series = [{{ series = 'up{{instance="a"}}', values = "1 0x5" }}]
[[tests.alert_rule_test]]
eval_time = "3m"
alertname = "Down"
exp_alerts = [{{ exp_labels = {{ instance = "a" }}, state = "{exp}" }}]
"#
        )
    };
    write(dir.path(), "tests/ok.toml", &test("firing"));
    let (code, out, err) = run(&["rules", "test", "tests"], dir.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok     tests/ok.toml: 1 test(s) passed"),
        "{out}"
    );
    assert!(err.contains("1 rule test(s) passed, 0 failed"), "{err}");

    write(dir.path(), "tests/bad.toml", &test("pending"));
    let (code, out, _) = run(&["rules", "test", "tests"], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.contains("tests/bad.toml:8:13: alert \"Down\" at 3m: expected 1 alert(s), got 1"),
        "{out}"
    );
    assert!(out.contains(r#"- pending {instance="a"}"#), "{out}");
    assert!(out.contains(r#"+ firing {instance="a"}"#), "{out}");

    let (code, out, _) = run(
        &["rules", "test", "--format", "json", "tests/bad.toml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["failed"], 1);
    let failure = &doc["files"][0]["tests"][0]["failures"][0];
    assert_eq!(failure["line"], 8);
    assert_eq!(failure["got"][0], r#"firing {instance="a"}"#);

    // A directory without test files is a failure, not a silent pass.
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let (code, _, err) = run(&["rules", "test", "empty"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("no rule test files"), "{err}");
}

#[test]
fn config_check_reports_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[store]\npath = \"x.db\"\nretention = \"forever\"\n",
    );
    let (code, out, _) = run(&["config", "check", bad.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!(
            "{}:3:13: invalid duration 'forever'",
            bad.display()
        )),
        "{out}"
    );
    let good = write(
        dir.path(),
        "good.toml",
        "[[collector.host]]\ninterval = \"5s\"\n",
    );
    assert_eq!(
        run(&["config", "check", good.to_str().unwrap()], dir.path()).0,
        0
    );
}

#[test]
fn rules_check_reports_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/ok.rhai",
        r#"rule("Ok", #{ severity: "info", when: || true });"#,
    );
    assert_eq!(run(&["rules", "check", "rules"], dir.path()).0, 0);
    write(
        dir.path(),
        "rules/bad.rhai",
        "rule(\"Bad\", #{ severity: \"urgent\", when: || true });\n",
    );
    let (code, out, _) = run(&["rules", "check", "rules"], dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("rules/bad.rhai:1:1:"), "{out}");
    assert!(out.contains("urgent"), "{out}");
}

#[test]
fn a_bad_config_or_store_refuses_to_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[rules]\nintervall = \"5s\"\n");
    let (code, _, err) = run(&["run", "--config", bad.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml:2:1: unknown field `intervall`"),
        "{err}"
    );

    write(dir.path(), "garbage.db", &"not a database ".repeat(100));
    let cfg = write(dir.path(), "ok.toml", "[store]\npath = \"garbage.db\"\n");
    let (code, _, err) = run(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot open store") && err.contains("garbage.db"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_cleanly_and_the_embedded_default_runs() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default with only the store and port changed.
    let port = crate::harness::free_port();
    let child = Command::new(warden_bin())
        .args([
            "run",
            "--db",
            "default.db",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir.path())
        .stdout(std::fs::File::create(dir.path().join("o")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("e")).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        port,
        stdout: dir.path().join("o"),
        stderr: dir.path().join("e"),
    };
    d.wait_for(Duration::from_secs(20), "API up", || {
        d.get("/healthz").ok().map(|(s, _)| s == 200)
    });
    d.wait_for(Duration::from_secs(20), "host samples", || {
        let q = d.json("/api/v1/query?metric=host_memory_used_percent&range=1m");
        Some(!q.as_array()?.is_empty())
    });
    let q = d.json("/api/v1/query?metric=process_resident_memory_bytes&range=1m&instance=warden");
    assert!(
        !q.as_array().unwrap().is_empty(),
        "own-process collector runs"
    );
    let started = std::time::Instant::now();
    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(dir.path().join("default.db").exists());
}

#[test]
fn systemd_gets_ready_and_watchdog_pings() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = write(
        dir.path(),
        "w.toml",
        "[rules]\ninterval = \"1s\"\n[[collector.host]]\ninterval = \"1s\"\n",
    );
    let d = Daemon::start_with_env(
        dir.path(),
        &config,
        "run",
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !(got.iter().any(|m: &String| m.contains("READY=1"))
        && got.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    d.signal(libc::SIGHUP);
    let mut after = Vec::new();
    while !after.iter().any(|m: &String| m.contains("READY=1")) {
        let n = sock.recv(&mut buf).expect("READY again after reload");
        after.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(after.iter().any(|m| m.contains("RELOADING=1")), "{after:?}");
    assert!(d.terminate().success());
    // Watchdog pings may still be queued ahead of it.
    let mut last = String::new();
    while !last.contains("STOPPING=1") {
        let n = sock.recv(&mut buf).expect("STOPPING=1 at shutdown");
        last = String::from_utf8_lossy(&buf[..n]).to_string();
    }
}
