//! Probes in a real daemon: an http check of a server this test runs; the server
//! goes down, `probe_success` drops to 0 with its reason, a rule on it fires, a
//! keepalived-style `consecutive_failures(…, 3)` rule fires only after three
//! failed checks in a row, and both resolve when the server is back.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::{Daemon, write};

/// A tiny HTTP/1.1 server on a fixed loopback port answering `200 ok`; stops
/// (closing the port) when dropped.
struct HealthServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    fn start(port: u16) -> HealthServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstatus=UP",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HealthServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const RULES: &str = r#"
rule("ApiProbeFailing", #{
    severity: "warning",
    summary: "{{instance}} health check fails",
    when: || series("probe_success") == 0,
});

rule("ApiDown", #{
    severity: "critical",
    summary: "{{instance}} failed 3 health checks in a row",
    when: || consecutive_failures(series("probe_success", #{ instance: "api" }), 3),
});
"#;

#[test]
fn a_down_server_fails_the_probe_and_fires_after_three_failures() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let config = write(
        dir.path(),
        "warden.toml",
        &format!(
            r#"
[store]
path = "w.db"

[rules]
paths = ["rules/"]
interval = "1s"

[[collector.http]]
name = "api"
url = "http://127.0.0.1:{port}/health"
interval = "1s"
timeout = "500ms"
body_contains = "status=UP"
labels = {{ service = "game" }}
"#
        ),
    );
    write(dir.path(), "rules/probes.rhai", RULES);
    let server = HealthServer::start(port);
    let d = Daemon::start(dir.path(), &config, "probes");

    let latest = |metric: &str| -> Option<serde_json::Value> {
        let q = d.json(&format!("/api/v1/query?metric={metric}&range=30s"));
        q.as_array()?.first().cloned()
    };
    d.wait_for(Duration::from_secs(10), "probe_success 1", || {
        let s = latest("probe_success")?;
        Some(s["samples"].as_array()?.last()?[1] == 1.0)
    });
    let series = latest("probe_success").unwrap();
    assert_eq!(series["labels"]["instance"], "api");
    assert_eq!(series["labels"]["service"], "game");
    assert!(d.alert("ApiProbeFailing").is_none());

    drop(server);
    d.wait_for(Duration::from_secs(10), "ApiProbeFailing", || {
        Some(d.alert("ApiProbeFailing").is_some())
    });
    assert!(
        d.alert("ApiDown").is_none(),
        "one failed check is not three in a row"
    );
    let err = latest("probe_error_info").unwrap();
    assert_eq!(err["labels"]["reason"], "refused");

    d.wait_for(Duration::from_secs(10), "ApiDown firing", || {
        Some(d.alert("ApiDown")?["state"] == "firing")
    });
    let down = d.alert("ApiDown").unwrap();
    assert_eq!(down["severity"], "critical");
    assert_eq!(down["labels"]["instance"], "api");
    assert_eq!(
        down["annotations"]["summary"],
        "api failed 3 health checks in a row"
    );
    let values: Vec<f64> = latest("probe_success").unwrap()["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    assert!(
        values.ends_with(&[0.0, 0.0, 0.0]),
        "fired after three zeros: {values:?}"
    );

    let _server = HealthServer::start(port);
    d.wait_for(Duration::from_secs(10), "both alerts resolved", || {
        Some(d.alert("ApiDown").is_none() && d.alert("ApiProbeFailing").is_none())
    });
    assert!(d.out().contains("RESOLVED"), "{}", d.out());
    assert!(
        d.err().contains("probe failed") && d.err().contains("probe recovered"),
        "{}",
        d.err()
    );
    assert!(d.terminate().success());
}
