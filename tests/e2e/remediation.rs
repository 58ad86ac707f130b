//! Auto-remediation end to end: a pool of real `warden-demo-service` processes,
//! a warden watching them, and actions that restart, scale and refuse.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, free_port, warden_bin, write};

fn demo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warden-demo-service")
}

/// Demo service instances `demo-1`… with pidfiles in `dir`; every process whose
/// pidfile is in `dir` (also those warden started) is killed on drop.
struct Pool {
    dir: PathBuf,
    ports: Vec<u16>,
}

impl Pool {
    fn start(dir: &Path, n: usize) -> Pool {
        let pool = Pool {
            dir: dir.to_path_buf(),
            ports: (0..n).map(|_| free_port()).collect(),
        };
        for i in 0..n {
            pool.launch(i, &[]);
        }
        pool
    }

    fn pidfile(&self, i: usize) -> PathBuf {
        self.dir.join(format!("demo-{}.pid", i + 1))
    }

    fn launch(&self, i: usize, extra: &[&str]) {
        let st = Command::new(demo_bin())
            .args(["--port", &self.ports[i].to_string(), "--pidfile"])
            .arg(self.pidfile(i))
            .arg("--detach")
            .args(extra)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.pidfile(i))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn kill9(&self, i: usize) -> i32 {
        let pid = self.pid(i).expect("a pid");
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        pid
    }

    fn answers(&self, i: usize) -> bool {
        crate::harness::http(self.ports[i], "GET", "/health", None)
            .map(|(s, _)| s == 200)
            .unwrap_or(false)
    }

    /// `[[collector.process]]` entries, one per instance, labelled with the port.
    fn collectors(&self) -> String {
        let mut s = String::new();
        for (i, port) in self.ports.iter().enumerate() {
            s.push_str(&format!(
                "[[collector.process]]\nname = \"demo-{}\"\npidfile = \"{}\"\ninterval = \"1s\"\nlabels = {{ service = \"demo\", port = \"{port}\" }}\n\n",
                i + 1,
                self.pidfile(i).display()
            ));
        }
        s
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pid")
                && let Some(pid) = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
            {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

const RULE: &str = r#"
rule("DemoDown", #{
    severity: "critical",
    summary: "{{instance}} is down",
    remediate: ["restart-demo"],
    when: || series("process_running", #{ service: "demo" }) == 0,
});
"#;

/// A config watching `pool` with a restart action (`guard`: extra keys).
fn config(dir: &Path, pool: &Pool, start_extra: &str, guard: &str) -> PathBuf {
    let text = format!(
        r#"
[store]
path = "w.db"

[rules]
paths = ["rules/"]
interval = "1s"

{collectors}
[[action.restart]]
name = "restart-demo"
start = ["{demo}", "--port", "{{{{port}}}}", "--pidfile", "{dir}/{{{{instance}}}}.pid", "--detach"{start_extra}]
health = {{ http = "http://127.0.0.1:{{{{port}}}}/health", timeout = "10s", interval = "50ms" }}
{guard}
"#,
        collectors = pool.collectors(),
        demo = demo_bin(),
        dir = dir.display(),
    );
    write(dir, "rules/demo.rhai", RULE);
    write(dir, "warden.toml", &text)
}

fn actions(d: &Daemon, query: &str) -> Vec<Value> {
    d.json(&format!("/api/v1/actions{query}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_rows(d: &Daemon, limit: Duration, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut rows = Vec::new();
    d.wait_for(limit, what, || {
        rows = actions(d, "");
        Some(f(&rows))
    });
    rows
}

fn state(r: &Value) -> &str {
    r["state"].as_str().unwrap_or("")
}

#[test]
fn a_killed_instance_is_restarted_verified_and_its_alert_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), 3);
    let cfg = config(
        dir.path(),
        &pool,
        "",
        "cooldown = \"0s\"\nmax_attempts = 3\nverify_within = \"20s\"",
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "the pool seen up", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s");
        Some(v.as_array()?.len() == 3)
    });
    let old = pool.kill9(1);
    let rows = wait_rows(&d, Duration::from_secs(20), "a verified restart", |r| {
        r.first().is_some_and(|r| r["verified"] == json!(true))
    });
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(state(r), "succeeded");
    assert_eq!(r["action"], "restart-demo");
    assert_eq!(r["kind"], "restart");
    assert_eq!(r["rule"], "DemoDown");
    assert_eq!(r["target"]["instance"], "demo-2");
    assert_eq!(r["labels"]["port"], pool.ports[1].to_string());
    assert_eq!(r["exit_status"], 0);
    assert!(
        r["output"].as_str().unwrap().contains("health: passed"),
        "{r:#}"
    );
    let argv = r["args"]["start"].as_array().unwrap();
    assert!(argv.contains(&json!(pool.ports[1].to_string())), "{r:#}");
    assert!(r["started_at"].as_i64() <= r["ended_at"].as_i64());
    assert!(pool.answers(1), "the instance answers again");
    assert_ne!(pool.pid(1), Some(old), "a new process");
    assert!(d.alert("DemoDown").is_none(), "the alert resolved");
    let history = d.json("/api/v1/alerts/history");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "DemoDown" && h["to"] == "resolved")
    );
    assert_eq!(actions(&d, "?state=succeeded").len(), 1);
    assert_eq!(d.get("/api/v1/actions?state=bogus").unwrap().0, 400);
    let metrics = d.get("/metrics").unwrap().1;
    assert!(
        metrics.contains(
            "warden_remediation_attempts_total{action=\"restart-demo\",state=\"succeeded\"} 1"
        ),
        "{metrics}"
    );
    assert!(d.terminate().success());
}

#[test]
fn a_crash_loop_is_stopped_by_the_budget_and_escalates() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), 1);
    let cfg = config(
        dir.path(),
        &pool,
        ", \"--crash-after\", \"700\"",
        "cooldown = \"0s\"\nmax_attempts = 3\nwindow = \"10m\"\nverify_within = \"5s\"",
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "the instance seen up", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s");
        Some(!v.as_array()?.is_empty())
    });
    pool.kill9(0);
    let rows = wait_rows(&d, Duration::from_secs(40), "the budget refusal", |r| {
        r.first().is_some_and(|r| state(r) == "refused")
    });
    let ran: Vec<&Value> = rows.iter().filter(|r| state(r) != "refused").collect();
    assert_eq!(ran.len(), 3, "exactly max_attempts restarts: {rows:#?}");
    assert!(
        rows[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("budget spent: 3 of 3 attempts within 10m"),
        "{rows:#?}"
    );
    d.wait_for(
        Duration::from_secs(15),
        "WardenRemediationExhausted firing",
        || {
            let a = d.alert("WardenRemediationExhausted")?;
            Some(
                a["state"] == "firing"
                    && a["severity"] == "critical"
                    && a["labels"]["action"] == "restart-demo"
                    && a["labels"]["instance"] == "demo-1"
                    && a["labels"]["rule"] == "DemoDown",
            )
        },
    );
    // warden keeps watching: the original alert fires on, and nothing more runs.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.alert("DemoDown").unwrap()["state"], "firing");
    assert_eq!(
        actions(&d, "").len(),
        4,
        "one refusal row, no fourth restart"
    );
    assert!(!pool.answers(0));
    assert!(d.terminate().success());
}

#[test]
fn all_three_failing_are_restarted_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), 3);
    let cfg = config(
        dir.path(),
        &pool,
        ", \"--start-delay\", \"600\"",
        "cooldown = \"0s\"\ngroup_by = [\"service\"]\nmax_concurrent = 1\nverify_within = \"30s\"",
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "the pool seen up", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s");
        Some(v.as_array()?.len() == 3)
    });
    let mut most_running = 0;
    for i in 0..3 {
        pool.kill9(i);
    }
    let start = Instant::now();
    let mut rows = Vec::new();
    while start.elapsed() < Duration::from_secs(40) {
        rows = actions(&d, "");
        let running = rows.iter().filter(|r| state(r) == "running").count();
        most_running = most_running.max(running);
        if rows.len() == 3 && rows.iter().all(|r| state(r) == "succeeded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rows.len(), 3, "{rows:#?}\n{}", d.err());
    assert!(rows.iter().all(|r| state(r) == "succeeded"), "{rows:#?}");
    assert!(
        most_running <= 1,
        "at most one at a time, saw {most_running}"
    );
    let mut spans: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["started_at"].as_i64().unwrap(),
                r["ended_at"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "runs overlap: {spans:?}");
    }
    for i in 0..3 {
        assert!(pool.answers(i), "instance {i} is back");
    }
    assert!(d.terminate().success());
}

fn cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(warden_bin())
        .arg("actions")
        .args(["--url", &format!("http://127.0.0.1:{}", d.port)])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_approval_mode_action_waits_then_runs_on_approval() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), 2);
    let cfg = config(
        dir.path(),
        &pool,
        "",
        "cooldown = \"0s\"\napproval = true\napproval_expiry = \"10m\"",
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "the pool seen up", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s");
        Some(v.as_array()?.len() == 2)
    });
    pool.kill9(0);
    let rows = wait_rows(&d, Duration::from_secs(15), "pending approval", |r| {
        r.first().is_some_and(|r| state(r) == "pending_approval")
    });
    let id = rows[0]["id"].as_i64().unwrap();
    assert!(rows[0]["expires_at"].as_i64().is_some());
    assert!(
        rows[0]["args"]["start"].is_array(),
        "what would run is shown"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!pool.answers(0), "nothing runs before approval");
    let (ok, out, err) = cli(&d, &["list", "--state", "pending_approval"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pending_approval") && out.contains("restart-demo"),
        "{out}"
    );

    // A bad request is a 4xx with a reason.
    let (status, body) = d.post(&format!("/api/v1/actions/{id}/approve"), &json!({}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("by"), "{body}");
    assert_eq!(
        d.post("/api/v1/actions/99999/approve", &json!({"by": "x"}))
            .0,
        404
    );

    let (ok, out, err) = cli(
        &d,
        &[
            "approve",
            &id.to_string(),
            "--by",
            "alice",
            "--comment",
            "go ahead",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("approved_by") && out.contains("alice"),
        "{out}"
    );
    let rows = wait_rows(&d, Duration::from_secs(15), "the approved run", |r| {
        r.first().is_some_and(|r| state(r) == "succeeded")
    });
    assert_eq!(rows[0]["approved_by"], "alice");
    assert_eq!(rows[0]["comment"], "go ahead");
    assert!(pool.answers(0));
    let (ok, _, err) = cli(&d, &["approve", &id.to_string(), "--by", "bob"]);
    assert!(!ok && err.contains("409"), "{err}");

    // Denied: the second instance stays down, audited.
    pool.kill9(1);
    let rows = wait_rows(&d, Duration::from_secs(15), "second pending", |r| {
        r.first().is_some_and(|r| state(r) == "pending_approval")
    });
    let id2 = rows[0]["id"].as_i64().unwrap();
    let (status, body) = d.post(
        &format!("/api/v1/actions/{id2}/deny"),
        &json!({"by": "bob"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "denied");
    assert_eq!(body["denied_by"], "bob");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!pool.answers(1));

    // A manual run from the CLI, under the same guardrails, with who asked.
    let (ok, out, err) = cli(
        &d,
        &[
            "run",
            "restart-demo",
            "-l",
            "instance=demo-2",
            "-l",
            &format!("port={}", pool.ports[1]),
            "--by",
            "carol",
        ],
    );
    assert!(ok, "{out}{err}");
    let rows = wait_rows(&d, Duration::from_secs(15), "the manual run", |r| {
        r.first().is_some_and(|r| state(r) == "succeeded")
    });
    assert_eq!(rows[0]["requested_by"], "carol");
    assert!(pool.answers(1));
    let (ok, _, err) = cli(&d, &["run", "nope", "--by", "carol"]);
    assert!(!ok && err.contains("404"), "{err}");

    // The kill switch from the CLI.
    let (ok, out, _) = cli(&d, &["pause", "--by", "dave", "--comment", "maintenance"]);
    assert!(ok && out.contains("PAUSED by dave"), "{out}");
    d.wait_for(Duration::from_secs(10), "WardenRemediationPaused", || {
        Some(d.alert("WardenRemediationPaused")?["state"] == "firing")
    });
    let (ok, _, err) = cli(
        &d,
        &[
            "run",
            "restart-demo",
            "-l",
            "instance=demo-1",
            "--by",
            "carol",
        ],
    );
    assert!(!ok && err.contains("paused"), "{err}");
    let (ok, out, _) = cli(&d, &["resume", "--by", "dave"]);
    assert!(ok && out.contains("remediation: active"), "{out}");
    assert!(d.terminate().success());
}

#[test]
fn dry_run_runs_nothing_and_audits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), 1);
    let cfg = config(dir.path(), &pool, "", "cooldown = \"1h\"");
    let d = Daemon::start_with_args(dir.path(), &cfg, "run", &[], &["--dry-run"]);
    assert_eq!(d.json("/api/v1/actions/status")["dry_run"], true);
    d.wait_for(Duration::from_secs(10), "the instance seen up", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s");
        Some(!v.as_array()?.is_empty())
    });
    pool.kill9(0);
    let rows = wait_rows(&d, Duration::from_secs(15), "a dry run row", |r| {
        !r.is_empty()
    });
    assert_eq!(state(&rows[0]), "dry_run", "{rows:#?}");
    let argv = rows[0]["args"]["start"].as_array().unwrap();
    assert_eq!(argv[0], demo_bin());
    assert!(
        rows[0]["output"]
            .as_str()
            .unwrap()
            .starts_with("dry run: would run")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!pool.answers(0), "nothing ran");
    assert!(
        !pool.pidfile(0).exists()
            || pool
                .pid(0)
                .is_some_and(|p| unsafe { libc::kill(p, 0) } != 0)
    );
    assert_eq!(actions(&d, "").len(), 1, "the simulated cooldown holds");
    assert!(d.terminate().success());
}

#[test]
fn malicious_label_values_never_reach_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let got = dir.path().join("got.txt");
    let evil = format!(
        "; touch {} $(touch {}) `touch {}`",
        marker.display(),
        marker.display(),
        marker.display()
    );
    let cfg = format!(
        r#"
[store]
path = "w.db"

[rules]
paths = ["rules/"]
interval = "1s"

[[action.exec]]
name = "as-argument"
command = ["/bin/echo", "{{{{evil}}}}"]

[[action.exec]]
name = "as-environment"
command = ["/bin/sh", "-c", "printf '%s' \"$WARDEN_LABEL_EVIL\" > '{got}'"]
"#,
        got = got.display()
    );
    let cfg = write(dir.path(), "warden.toml", &cfg);
    write(
        dir.path(),
        "rules/evil.rhai",
        &format!(
            "rule(\"Evil\", #{{ severity: \"warning\", labels: #{{ evil: {evil:?} }}, remediate: [\"as-argument\", \"as-environment\"], when: || true }});"
        ),
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    let rows = wait_rows(&d, Duration::from_secs(15), "both attempts ended", |r| {
        r.len() == 2
            && r.iter()
                .all(|r| state(r) != "running" && state(r) != "queued")
    });
    let by = |name: &str| rows.iter().find(|r| r["action"] == name).unwrap().clone();
    let arg = by("as-argument");
    assert_eq!(state(&arg), "refused", "{arg:#}");
    assert!(
        arg["reason"]
            .as_str()
            .unwrap()
            .contains("not safe as an argument"),
        "{arg:#}"
    );
    let env = by("as-environment");
    assert_eq!(state(&env), "succeeded", "{env:#}");
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        evil,
        "passed as data, verbatim"
    );
    assert!(!marker.exists(), "no shell ever interpreted the value");
    assert!(d.terminate().success());
}

#[test]
fn a_load_above_target_scales_out_and_respects_max() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port();
    let pool_dir = dir.path().join("pool");
    let load = dir.path().join("load");
    std::fs::write(&load, "20").unwrap();
    let pool = Pool {
        dir: pool_dir.clone(),
        ports: vec![],
    };
    let st = Command::new(demo_bin())
        .args([
            "pool",
            "--replicas",
            "1",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(&pool_dir)
        .arg("--load-file")
        .arg(&load)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let cfg = format!(
        r#"
[store]
path = "w.db"

[rules]
paths = ["rules/"]
interval = "1s"

[[collector.process]]
name = "pool"
cmdline = 'warden-demo-service .*--pool-member'
interval = "1s"
labels = {{ service = "pool" }}

[[collector.scrape]]
name = "pool-0"
url = "http://127.0.0.1:{base}/metrics"
interval = "1s"
labels = {{ service = "pool" }}

[[action.exec]]
name = "set-pool-size"
command = ["{demo}", "pool", "--replicas", "{{{{replicas}}}}", "--base-port", "{base}", "--dir", "{pool_dir}", "--load-file", "{load}"]

[[action.scale]]
name = "scale-pool"
via = "set-pool-size"
current = "process_running"
current_labels = ["service"]
min = 1
max = 2
step = 1
cooldown = "1s"
verify_within = "3s"
"#,
        demo = demo_bin(),
        pool_dir = pool_dir.display(),
        load = load.display(),
    );
    let cfg = write(dir.path(), "warden.toml", &cfg);
    write(
        dir.path(),
        "rules/load.rhai",
        r#"rule("PoolOverloaded", #{ severity: "warning", remediate: ["scale-pool"],
            when: || series("demo_load_percent", #{ service: "pool" }) > 50 });"#,
    );
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(10), "the pool counted", || {
        let v = d.json("/api/v1/query?metric=process_running&range=10s&instance=pool");
        Some(v.as_array()?.first()?["samples"].as_array()?.last()?[1] == json!(1.0))
    });
    std::fs::write(&load, "90").unwrap();
    let rows = wait_rows(&d, Duration::from_secs(20), "a scale-out", |r| {
        r.iter()
            .any(|r| state(r) == "succeeded" && r["args"]["desired"] == json!(2))
    });
    let out = rows
        .iter()
        .find(|r| r["args"]["desired"] == json!(2))
        .unwrap();
    assert_eq!(out["args"]["current"], 1);
    assert_eq!(out["args"]["call"]["argv"][3], "2", "{out:#}");
    assert!(crate::harness::http(base + 1, "GET", "/health", None).is_ok_and(|(s, _)| s == 200));
    // Still overloaded: the next attempts find the pool at max and change nothing.
    let rows = wait_rows(&d, Duration::from_secs(20), "an attempt at max", |r| {
        r.iter()
            .any(|r| r["output"].as_str().is_some_and(|o| o.contains("at max 2")))
    });
    assert!(
        rows.iter()
            .all(|r| r["args"]["desired"].as_i64().unwrap_or(0) <= 2)
    );
    assert!(
        crate::harness::http(base + 2, "GET", "/health", None).is_err(),
        "no third instance"
    );
    let running = std::fs::read_dir(&pool_dir).unwrap().filter(|e| {
        e.as_ref()
            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pid"))
    });
    assert_eq!(running.count(), 2);
    drop(pool);
    assert!(d.terminate().success());
}

#[test]
fn with_api_tokens_only_operators_act_and_the_token_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let cfg = format!(
        r#"
[store]
path = "w.db"

[[server.token]]
name = "dashboard"
role = "read"
token_env = "T_READ"

[[server.token]]
name = "oncall"
role = "operate"
token_env = "T_OPERATE"

[[action.exec]]
name = "touch"
command = ["/usr/bin/touch", "{}"]
target_by = []
"#,
        marker.display()
    );
    let cfg = write(dir.path(), "warden.toml", &cfg);
    let read = "r".repeat(24);
    let operate = "o".repeat(24);
    let d = Daemon::start_with_env(
        dir.path(),
        &cfg,
        "run",
        &[("T_READ", read.as_str()), ("T_OPERATE", operate.as_str())],
    );
    let run = |token: &str, args: &[&str]| {
        Command::new(warden_bin())
            .args([
                "actions",
                "--url",
                &format!("http://127.0.0.1:{}", d.port),
                "--token",
                token,
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&read, &["run", "touch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
    assert!(!marker.exists());
    let out = run(&read, &["list", "--json"]);
    assert!(out.status.success(), "{out:?}");

    let (status, body) = {
        let (s, t) = crate::harness::http_with(
            d.port,
            "POST",
            "/api/v1/actions/run",
            Some(r#"{"action":"touch"}"#),
            &[("Authorization", &format!("Bearer {operate}"))],
        )
        .unwrap();
        (s, serde_json::from_str::<Value>(&t).unwrap())
    };
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["requested_by"], "oncall", "no 'by': the token's name");
    d.wait_for(Duration::from_secs(10), "the command ran", || {
        Some(marker.exists())
    });
    assert!(d.terminate().success());
}
