//! The scrape collector against a real prometheus-node-exporter (Debian's, started
//! here on a free loopback port), saved real payloads served by axum (plain and
//! gzip), and targets that refuse, hang, send garbage or too much.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::routing::get;
use warden_engine::model::Sample;

use crate::testing::{self, labels, named, run, spec, value};

const NODE: &str = include_str!("../../tests/data/node_exporter-1.5.prom");
const TEXTFILE: &str = include_str!("../../tests/data/node_exporter-1.5-textfile.prom");

fn entry(url: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") {
        ""
    } else {
        "timeout = \"1s\"\n"
    };
    format!(
        "[[collector.scrape]]\nname = \"node-1\"\nurl = \"{url}\"\ninterval = \"2s\"\n{timeout}{extra}\n"
    )
}

async fn scrape(url: &str, extra: &str) -> Vec<Sample> {
    run(&mut spec(&entry(url, extra))).await
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn payloads() -> Router {
    Router::new()
        .route("/node", get(|| async { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], NODE) }))
        .route(
            "/node.gz",
            get(|| async { ([(CONTENT_TYPE, "text/plain; version=0.0.4"), (CONTENT_ENCODING, "gzip")], gzip(NODE)) }),
        )
        .route("/textfile", get(|| async { TEXTFILE }))
        .route(
            "/om",
            get(|| async {
                (
                    [(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    "# TYPE acme_http_router_request_seconds summary\n\
                     # UNIT acme_http_router_request_seconds seconds\n\
                     acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32 1520879607.789\n\
                     acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0 1520879607.789\n\
                     # TYPE foo counter\n\
                     foo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                     # EOF\n",
                )
            }),
        )
        .route("/clash", get(|| async { "x{instance=\"10.0.0.1:80\",job=\"theirs\",exported_job=\"old\"} 1\n" }))
        .route("/partial", get(|| async { "good 1\nbad{ 2\nalso_good 3\n" }))
        .route("/html", get(|| async { "<html>\n<body>Not Found</body>\n</html>\n" }))
        .route("/missing", get(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }))
        .route("/huge", get(|| async { "x 1\n".repeat(3_000_000) }))
        .route(
            "/binary",
            get(|| async {
                let mut b = b"a 1\nb{x=\"".to_vec();
                b.extend_from_slice(&[0xc3, 0x28]);
                b.extend_from_slice(b"\"} 2\nc 3\n");
                b
            }),
        )
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                ""
            }),
        )
}

fn own(s: &[Sample]) -> (f64, f64, f64) {
    (
        value(s, "up"),
        value(s, "scrape_samples_scraped"),
        value(s, "scrape_parse_errors"),
    )
}

#[tokio::test]
async fn a_saved_node_exporter_payload_plain_and_gzip() {
    let srv = testing::http_server(payloads()).await;
    for path in ["node", "node.gz"] {
        let s = scrape(&format!("http://{}/{path}", srv.addr), "").await;
        assert_eq!(own(&s), (1.0, 507.0, 0.0), "{path}");
        assert_eq!(value(&s, "scrape_samples_post_metric_relabeling"), 507.0);
        let load = labels(&s, "node_load1");
        assert_eq!(load.get("instance"), Some("node-1"));
        assert_eq!(load.get("job"), Some("node-1"), "job defaults to the name");
        assert_eq!(value(&s, "node_load1"), 3.02);
        assert!(value(&s, "scrape_duration_seconds") < 1.0);
        let cpu = named(&s, "node_cpu_seconds_total");
        assert_eq!(cpu.len(), 16, "2 CPUs × 8 modes");
    }
}

#[tokio::test]
async fn histograms_summaries_and_escaped_values_from_the_exporter() {
    let srv = testing::http_server(payloads()).await;
    let s = scrape(
        &format!("http://{}/textfile", srv.addr),
        "job = \"node\"\nmetrics = ['app_.*']",
    )
    .await;
    assert_eq!(value(&s, "up"), 1.0);
    assert_eq!(value(&s, "scrape_samples_post_metric_relabeling"), 11.0);
    let buckets = named(&s, "app_request_duration_seconds_bucket");
    let les: Vec<&str> = buckets
        .iter()
        .map(|b| b.labels.get("le").unwrap())
        .collect();
    assert_eq!(les, ["0.005", "0.05", "0.5", "+Inf"]);
    assert_eq!(value(&s, "app_request_duration_seconds_count"), 60.0);
    assert_eq!(value(&s, "app_request_duration_seconds_sum"), 3.25);
    let q: Vec<f64> = named(&s, "app_replication_lag_seconds")
        .iter()
        .map(|x| x.value)
        .collect();
    assert_eq!(q, [0.012, 0.3]);
    let m = labels(&s, "app_mount_info");
    assert_eq!(m.get("device"), Some("srv:/export,x"));
    assert_eq!(m.get("mountpoint"), Some("/mnt/a=b"));
    assert_eq!(m.get("path"), Some("C:\\data"));
    assert_eq!(m.get("note"), Some("say \"hi\""));
    assert_eq!(m.get("text"), Some("two\nlines"));
    assert_eq!(m.get("re"), Some("a{1,3}}"));
    assert_eq!(m.get("job"), Some("node"));
}

#[tokio::test]
async fn openmetrics_timestamps_are_kept() {
    let srv = testing::http_server(payloads()).await;
    let s = scrape(&format!("http://{}/om", srv.addr), "").await;
    assert_eq!(own(&s), (1.0, 3.0, 0.0));
    let foo = named(&s, "foo_total")[0];
    assert_eq!(foo.value, 17.0);
    assert_eq!(foo.ts, 1_520_879_607_789);
    let up = named(&s, "up")[0];
    assert!(up.ts > foo.ts, "warden's own series are stamped now");
}

#[tokio::test]
async fn honor_labels_decides_clashes() {
    let srv = testing::http_server(payloads()).await;
    let url = format!("http://{}/clash", srv.addr);
    let s = scrape(&url, "job = \"web\"").await;
    let x = labels(&s, "x");
    assert_eq!(x.get("instance"), Some("node-1"));
    assert_eq!(x.get("job"), Some("web"));
    assert_eq!(x.get("exported_instance"), Some("10.0.0.1:80"));
    assert_eq!(x.get("exported_exported_job"), Some("theirs"));
    assert_eq!(x.get("exported_job"), Some("old"));

    let s = scrape(&url, "job = \"web\"\nhonor_labels = true").await;
    let x = labels(&s, "x");
    assert_eq!(x.get("instance"), Some("10.0.0.1:80"));
    assert_eq!(x.get("job"), Some("theirs"));
    // warden's own series keep the target's labels.
    assert_eq!(labels(&s, "up").get("instance"), Some("node-1"));
}

#[tokio::test]
async fn allow_and_deny_lists() {
    let srv = testing::http_server(payloads()).await;
    let url = format!("http://{}/node", srv.addr);
    let s = scrape(
        &url,
        "metrics = ['node_load.*', 'go_goroutines']\ndrop_metrics = ['node_load15']",
    )
    .await;
    let mut names: Vec<&str> = s
        .iter()
        .map(|x| x.name.as_str())
        .filter(|n| !n.starts_with("scrape_") && *n != "up")
        .collect();
    names.sort();
    assert_eq!(names, ["go_goroutines", "node_load1", "node_load5"]);
    assert_eq!(value(&s, "scrape_samples_scraped"), 507.0);
    assert_eq!(value(&s, "scrape_samples_post_metric_relabeling"), 3.0);
}

#[tokio::test]
async fn malformed_lines_are_counted_and_the_rest_kept() {
    let srv = testing::http_server(payloads()).await;
    let s = scrape(&format!("http://{}/partial", srv.addr), "").await;
    assert_eq!(own(&s), (1.0, 2.0, 1.0));
    assert_eq!(value(&s, "also_good"), 3.0);

    let s = scrape(&format!("http://{}/binary", srv.addr), "").await;
    assert_eq!(
        own(&s),
        (1.0, 2.0, 1.0),
        "invalid UTF-8 loses its line only"
    );
}

fn reason(s: &[Sample]) -> String {
    labels(s, "scrape_error_info")
        .get("reason")
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn failing_targets_are_up_0_with_a_reason() {
    let srv = testing::http_server(payloads()).await;
    let base = format!("http://{}", srv.addr);
    for (path, extra, want) in [
        ("/html", "", "protocol"),
        ("/missing", "", "status"),
        ("/huge", "max_body_bytes = 1048576", "too_large"),
    ] {
        let s = scrape(&format!("{base}{path}"), extra).await;
        assert_eq!(value(&s, "up"), 0.0, "{path}");
        assert_eq!(reason(&s), want, "{path}");
        assert_eq!(value(&s, "scrape_samples_scraped"), 0.0);
        assert!(
            s.iter()
                .all(|x| x.name.as_str().starts_with("scrape_") || x.name.as_str() == "up")
        );
    }

    let started = Instant::now();
    let s = scrape(&format!("{base}/hang"), "").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(reason(&s), "timeout");

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = scrape(&format!("http://127.0.0.1:{port}/metrics"), "").await;
    assert_eq!(reason(&s), "refused");
}

/// A real prometheus-node-exporter on a free loopback port; killed and reaped on drop.
struct NodeExporter {
    child: Child,
    port: u16,
}

impl NodeExporter {
    fn start(textfile_dir: &Path) -> NodeExporter {
        let bin = "/usr/bin/prometheus-node-exporter";
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: install Debian's prometheus-node-exporter (scripts/test does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--collector.textfile.directory={}",
                textfile_dir.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter");
        let ne = NodeExporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node_exporter did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        ne
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_live_node_exporter() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/textfile/app.prom"),
        dir.path().join("app.prom"),
    )
    .unwrap();
    let ne = NodeExporter::start(dir.path());
    let url = format!("http://127.0.0.1:{}/metrics", ne.port);
    let mut spec = spec(&entry(&url, "job = \"node\"\ntimeout = \"2s\""));
    let s = run(&mut spec).await;
    assert_eq!(value(&s, "up"), 1.0);
    assert_eq!(value(&s, "scrape_parse_errors"), 0.0);
    assert!(value(&s, "scrape_samples_scraped") > 300.0);
    assert!(!named(&s, "node_cpu_seconds_total").is_empty());
    assert_eq!(named(&s, "app_request_duration_seconds_bucket").len(), 4);
    assert_eq!(labels(&s, "app_mount_info").get("text"), Some("two\nlines"));
    assert_eq!(labels(&s, "node_load1").get("job"), Some("node"));

    drop(ne);
    let s = run(&mut spec).await;
    assert_eq!(value(&s, "up"), 0.0, "the exporter is gone");
    assert_eq!(reason(&s), "refused");
}

#[test]
fn config_mistakes_are_reported() {
    let cases = [
        (
            "url = \"127.0.0.1:9100\"",
            "is not an http:// or https:// URL",
        ),
        (
            "url = \"http://x/\"\nmetrics = ['(']",
            "'metrics' '(' is not a valid regex",
        ),
        (
            "url = \"http://x/\"\ndrop_metrics = ['[']",
            "'drop_metrics' '[' is not a valid regex",
        ),
        ("url = \"http://x/\"\njob = \"\"", "'job' is empty"),
        (
            "url = \"http://x/\"\nlabels = { job = \"x\" }",
            "label 'job' is set by the scrape collector",
        ),
    ];
    for (keys, want) in cases {
        let got = testing::problems(&format!("[[collector.scrape]]\nname = \"s\"\n{keys}\n"));
        assert!(got.iter().any(|m| m.contains(want)), "{keys}: {got:?}");
    }
}
