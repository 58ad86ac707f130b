//! An alert storm through the real daemon: 5,000 alerts fire in one evaluation and
//! reach a webhook receiver as a handful of grouped notifications, none lost.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use warden_integrations::testing;

use crate::harness::{Daemon, write};

/// Serves the same exposition text to every request, on a thread.
fn serve_metrics(body: String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_storm_of_5000_alerts_becomes_five_grouped_notifications() {
    const N: usize = 5000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sink = rt.block_on(testing::webhook_sink());
    let mut body = String::from("# TYPE storm_node_down gauge\n");
    for i in 0..N {
        body.push_str(&format!(
            "storm_node_down{{cluster=\"c{}\",node=\"n{i}\"}} 1\n",
            i % 5
        ));
    }
    let port = serve_metrics(body);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        &format!(
            r#"
[store]
path = "w.db"
[rules]
paths = ["rules/"]
interval = "1s"
[[collector.scrape]]
name = "storm"
url = "http://127.0.0.1:{port}/metrics"
interval = "1s"
[notify]
group_by = ["cluster"]
group_wait = "0s"
group_interval = "1m"
[[notifier.webhook]]
name = "hook"
url = "{}/hook"
"#,
            sink.url()
        ),
    );
    write(
        dir.path(),
        "rules/storm.rhai",
        r#"rule("NodeDown", #{ severity: "critical", summary: "{{node}} in {{cluster}} is down",
            when: || series("storm_node_down") > 0 });"#,
    );
    let started = Instant::now();
    let d = Daemon::start(dir.path(), &cfg, "run");
    d.wait_for(Duration::from_secs(60), "the storm delivered", || {
        let got: usize = sink
            .accepted()
            .iter()
            .map(|p| p["alerts"].as_array().map_or(0, Vec::len))
            .sum();
        Some(got >= N)
    });
    let elapsed = started.elapsed();
    let first_fired = d
        .json("/api/v1/notifications?limit=10")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| Some(r["done_at"].as_i64()? - r["created_at"].as_i64()?))
        .max()
        .unwrap_or(0);
    let rss = peak_rss_kb(d.child.id());
    std::thread::sleep(Duration::from_millis(1500));
    let payloads = sink.accepted();
    assert_eq!(payloads.len(), 5, "one notification per cluster");
    let mut fps: Vec<String> = payloads
        .iter()
        .flat_map(|p| {
            p["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["fingerprint"].as_str().unwrap().to_string())
        })
        .collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), N, "every alert, once");
    for p in &payloads {
        assert_eq!(p["alerts"].as_array().unwrap().len(), N / 5);
        assert_eq!(p["truncatedAlerts"], 0);
    }
    assert_eq!(
        d.json("/api/v1/alerts?state=firing")
            .as_array()
            .unwrap()
            .len(),
        N
    );
    eprintln!(
        "storm: {N} alerts → {} notifications; daemon start to all delivered {elapsed:?}; outbox row to delivered ≤ {first_fired} ms; peak RSS {} MB",
        payloads.len(),
        rss / 1024
    );
    assert!(d.terminate().success());
}
