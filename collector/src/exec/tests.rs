//! The exec collector with Debian's real monitoring-plugins (`check_dummy`,
//! `check_tcp`, `check_http`, `check_disk`; `scripts/test` installs them), and
//! with commands that fail, hang, fork or flood their output.

use std::path::Path;
use std::time::{Duration, Instant};

use warden_engine::model::Sample;

use crate::testing::{self, labels, named, run, spec, value};

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn plugin(name: &str) -> String {
    let p = format!("{PLUGINS}/{name}");
    assert!(
        Path::new(&p).is_file(),
        "{p} is missing: install Debian's monitoring-plugins-basic (scripts/test does)"
    );
    p
}

fn entry(command: &[&str], extra: &str) -> String {
    let argv: Vec<String> = command
        .iter()
        .map(|a| toml::Value::String(a.to_string()).to_string())
        .collect();
    format!(
        "[[collector.exec]]\nname = \"check\"\ncommand = [{}]\ninterval = \"5s\"\ntimeout = \"2s\"\n{extra}\n",
        argv.join(", ")
    )
}

async fn check(command: &[&str], extra: &str) -> Vec<Sample> {
    run(&mut spec(&entry(command, extra))).await
}

fn output(s: &[Sample]) -> String {
    labels(s, "check_output_info")
        .get("output")
        .unwrap_or("")
        .to_string()
}

fn perf<'a>(s: &'a [Sample], name: &str, perf: &str) -> &'a Sample {
    named(s, name)
        .into_iter()
        .find(|x| x.labels.get("perf") == Some(perf))
        .unwrap_or_else(|| panic!("no {name}{{perf={perf}}} in {s:#?}"))
}

#[tokio::test]
async fn check_dummy_sets_every_status() {
    let dummy = plugin("check_dummy");
    for (code, word) in [(0, "OK"), (1, "WARNING"), (2, "CRITICAL"), (3, "UNKNOWN")] {
        let s = check(&[&dummy, &code.to_string(), "replica lag fine"], "").await;
        assert_eq!(value(&s, "check_status"), f64::from(code));
        assert_eq!(output(&s), format!("{word}: replica lag fine"));
        assert!(value(&s, "check_duration_seconds") < 2.0);
        assert_eq!(labels(&s, "check_status").get("instance"), Some("check"));
    }
}

#[tokio::test]
async fn check_tcp_perfdata_is_in_seconds() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let s = check(
        &[
            &plugin("check_tcp"),
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-w",
            "1",
            "-c",
            "2",
        ],
        "",
    )
    .await;
    assert_eq!(value(&s, "check_status"), 0.0, "{}", output(&s));
    assert!(output(&s).starts_with("TCP OK"), "{}", output(&s));
    let time = perf(&s, "check_perfdata", "time");
    assert_eq!(time.labels.get("unit"), Some("seconds"));
    assert!(time.value >= 0.0 && time.value < 1.0);
    assert_eq!(perf(&s, "check_perfdata_warn", "time").value, 1.0);
    assert_eq!(perf(&s, "check_perfdata_crit", "time").value, 2.0);
    accept.abort();

    // Nothing listens any more: CRITICAL.
    drop(accept);
    let s = check(&[&plugin("check_tcp"), "-H", "127.0.0.1", "-p", "1"], "").await;
    assert_eq!(value(&s, "check_status"), 2.0, "{}", output(&s));
}

#[tokio::test]
async fn check_http_against_a_local_server() {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "UP" }));
    let srv = testing::http_server(app).await;
    let s = check(
        &[
            &plugin("check_http"),
            "-H",
            "127.0.0.1",
            "-p",
            &srv.addr.port().to_string(),
            "-u",
            "/health",
            "-s",
            "UP",
        ],
        "",
    )
    .await;
    assert_eq!(value(&s, "check_status"), 0.0, "{}", output(&s));
    assert!(output(&s).starts_with("HTTP OK"), "{}", output(&s));
    assert_eq!(
        perf(&s, "check_perfdata", "size").labels.get("unit"),
        Some("bytes")
    );
    assert_eq!(
        perf(&s, "check_perfdata", "time").labels.get("unit"),
        Some("seconds")
    );
}

#[tokio::test]
async fn check_disk_reports_bytes_with_thresholds_and_bounds() {
    let s = check(
        &[&plugin("check_disk"), "-w", "1%", "-c", "1%", "-p", "/"],
        "env = { LC_ALL = \"C\" }",
    )
    .await;
    let status = value(&s, "check_status");
    assert!(status <= 2.0, "{}", output(&s));
    let used = perf(&s, "check_perfdata", "/");
    assert_eq!(used.labels.get("unit"), Some("bytes"));
    let max = perf(&s, "check_perfdata_max", "/").value;
    assert!(
        used.value > 0.0 && used.value <= max,
        "{} of {max}",
        used.value
    );
    assert_eq!(perf(&s, "check_perfdata_min", "/").value, 0.0);
    assert!(perf(&s, "check_perfdata_warn", "/").value > 0.0);
    assert!(perf(&s, "check_perfdata_crit", "/").value > 0.0);
    // MB in check_disk's perfdata are MiB: the size is a whole number of them.
    assert_eq!(max % (1024.0 * 1024.0), 0.0);
}

#[tokio::test]
async fn a_plugin_that_never_exits_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let started = Instant::now();
    let s = check(&["/bin/sh", "-c", &script], "").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(value(&s, "check_status"), 3.0);
    assert!(
        output(&s).starts_with("timed out after 1s800ms"),
        "{}",
        output(&s)
    );

    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    // The grandchild got SIGKILL too: gone, or a zombie waiting for its new parent.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| st.rsplit(')').next().map(|r| r.trim().chars().next()))
            .flatten();
        if matches!(state, None | Some('Z') | Some('X')) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child {pid} still running: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn odd_exits_are_unknown_and_stderr_is_the_text_when_stdout_is_empty() {
    let s = check(&["/bin/sh", "-c", "echo 'weird exit | a=1'; exit 7"], "").await;
    assert_eq!(value(&s, "check_status"), 3.0);
    assert_eq!(output(&s), "weird exit");
    assert_eq!(perf(&s, "check_perfdata", "a").value, 1.0);

    let s = check(&["/bin/sh", "-c", "echo 'no such mount' >&2; exit 2"], "").await;
    assert_eq!(value(&s, "check_status"), 2.0);
    assert_eq!(output(&s), "no such mount");

    let s = check(&["/bin/sh", "-c", "kill -9 $$"], "").await;
    assert_eq!(value(&s, "check_status"), 3.0, "killed by a signal");
}

#[tokio::test]
async fn a_command_that_cannot_start_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let not_exec = testing::write(dir.path(), "plugin", "#!/bin/sh\necho hi\n");
    let s = check(&[&not_exec], "").await;
    assert_eq!(value(&s, "check_status"), 3.0);
    assert!(output(&s).starts_with("cannot run"), "{}", output(&s));
    let s = check(&["no-such-plugin-anywhere"], "").await;
    assert_eq!(value(&s, "check_status"), 3.0);
}

#[tokio::test]
async fn a_flood_of_output_is_bounded() {
    let s = check(
        &[
            "/bin/sh",
            "-c",
            "echo 'OK - flood | n=1'; head -c 20000000 /dev/zero | tr '\\0' x",
        ],
        "",
    )
    .await;
    assert_eq!(value(&s, "check_status"), 0.0);
    assert_eq!(output(&s), "OK - flood");
    let long = check(&["/bin/sh", "-c", "printf 'OK %0300d\\n' 0"], "").await;
    assert_eq!(output(&long).chars().count(), 200);
}

#[tokio::test]
async fn env_and_working_dir_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let s = check(
        &["/bin/sh", "-c", "echo \"OK $GREETING in $(pwd)\""],
        &format!("env = {{ GREETING = \"hello\" }}\nworking_dir = '{d}'"),
    )
    .await;
    assert_eq!(output(&s), format!("OK hello in {d}"));
}

#[test]
fn config_mistakes_are_reported() {
    let cases = [
        ("command = []", "'command' is empty"),
        ("command = ['/nonexistent/check_x']", "which is not a file"),
        (
            "command = ['/bin/true']\nworking_dir = 'tmp'",
            "'working_dir' 'tmp' is relative",
        ),
        (
            "command = ['/bin/true']\nlabels = { output = \"x\" }",
            "label 'output' is set by the exec collector",
        ),
    ];
    for (keys, want) in cases {
        let got = testing::problems(&format!("[[collector.exec]]\nname = \"e\"\n{keys}\n"));
        assert!(got.iter().any(|m| m.contains(want)), "{keys}: {got:?}");
    }
}
