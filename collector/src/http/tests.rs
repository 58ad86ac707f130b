//! The http collector against real servers on 127.0.0.1: axum for HTTP, rustls +
//! hyper for HTTPS with certificates made at test time, and raw sockets for
//! targets that refuse, hang, reset or send garbage.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt;

use crate::testing::{self, Ca, labels, named, run, spec, value};

fn app() -> Router {
    Router::new()
        .route(
            "/health",
            get(|| async { r#"{"status":"UP","checks":[{"name":"db","status":"UP","lag":0}]}"# }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/redirect",
            get(|| async { Redirect::temporary("/health") }),
        )
        .route("/big", get(|| async { vec![b'x'; 10 * 1024 * 1024] }))
        .route("/binary", get(|| async { vec![0xffu8, 0xfe, b'O', b'K'] }))
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let token = headers.get("x-token").and_then(|v| v.to_str().ok());
                if token == Some("secret") && body == "ping" {
                    (StatusCode::OK, "pong").into_response()
                } else {
                    (StatusCode::FORBIDDEN, "no").into_response()
                }
            }),
        )
        .route(
            "/hang",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
}

fn entry(url: &str, extra: &str) -> String {
    format!(
        "[[collector.http]]\nname = \"api\"\nurl = \"{url}\"\ninterval = \"2s\"\ntimeout = \"1s\"\n{extra}\n"
    )
}

async fn probe(url: &str, extra: &str) -> Vec<warden_engine::model::Sample> {
    let mut s = spec(&entry(url, extra));
    run(&mut s).await
}

fn reason(samples: &[warden_engine::model::Sample]) -> String {
    labels(samples, "probe_error_info")
        .get("reason")
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn a_healthy_endpoint_succeeds() {
    let srv = testing::http_server(app()).await;
    let s = probe(
        &format!("http://{}/health", srv.addr),
        "labels = { team = \"web\" }",
    )
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    assert_eq!(value(&s, "probe_http_status_code"), 200.0);
    let d = value(&s, "probe_duration_seconds");
    assert!(d > 0.0 && d < 1.0, "{d}");
    assert!(named(&s, "probe_error_info").is_empty());
    assert!(
        named(&s, "tls_cert_days_left").is_empty(),
        "plain http has no certificate"
    );
    let l = labels(&s, "probe_success");
    assert_eq!(l.get("instance"), Some("api"));
    assert_eq!(l.get("team"), Some("web"));
}

#[tokio::test]
async fn an_unexpected_status_fails_with_reason_status() {
    let srv = testing::http_server(app()).await;
    let s = probe(&format!("http://{}/fail", srv.addr), "").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(value(&s, "probe_http_status_code"), 503.0);
    assert_eq!(reason(&s), "status");
    let msg = labels(&s, "probe_error_info")
        .get("message")
        .unwrap()
        .to_string();
    assert!(msg.contains("503"), "{msg}");

    // Listed statuses are success.
    let s = probe(
        &format!("http://{}/fail", srv.addr),
        "valid_status_codes = [503]",
    )
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
}

#[tokio::test]
async fn body_checks_substring_regex_and_json_pointer() {
    let srv = testing::http_server(app()).await;
    let url = format!("http://{}/health", srv.addr);
    let cases = [
        ("body_contains = '\"status\":\"UP\"'", 1.0),
        ("body_contains = 'DOWN'", 0.0),
        ("body_regex = '\"checks\":\\s*\\[\\{\"name\":\"db\"'", 1.0),
        ("body_regex = '^DOWN'", 0.0),
        ("json_pointer = '/checks/0/status'\njson_value = 'UP'", 1.0),
        ("json_pointer = '/checks/0/lag'\njson_value = 0.0", 1.0),
        (
            "json_pointer = '/checks/0/status'\njson_value = 'DOWN'",
            0.0,
        ),
        ("json_pointer = '/checks/5'", 0.0),
        ("json_pointer = '/status'", 1.0),
    ];
    for (extra, want) in cases {
        let s = probe(&url, extra).await;
        assert_eq!(value(&s, "probe_success"), want, "{extra}");
        if want == 0.0 {
            assert_eq!(reason(&s), "mismatch", "{extra}");
        }
    }
    // A body that is not JSON (and not UTF-8) fails the pointer check, not the daemon.
    let s = probe(
        &format!("http://{}/binary", srv.addr),
        "json_pointer = '/x'",
    )
    .await;
    assert_eq!(reason(&s), "mismatch");
    let s = probe(
        &format!("http://{}/binary", srv.addr),
        "body_contains = 'OK'",
    )
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
}

#[tokio::test]
async fn redirects_are_followed_unless_told_not_to() {
    let srv = testing::http_server(app()).await;
    let url = format!("http://{}/redirect", srv.addr);
    let s = probe(&url, "").await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    assert_eq!(value(&s, "probe_http_status_code"), 200.0);

    let s = probe(&url, "follow_redirects = false").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(value(&s, "probe_http_status_code"), 307.0);
    let s = probe(&url, "follow_redirects = false\nvalid_status_codes = [307]").await;
    assert_eq!(value(&s, "probe_success"), 1.0);
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    let srv = testing::http_server(app()).await;
    let url = format!("http://{}/echo", srv.addr);
    let s = probe(
        &url,
        "method = \"post\"\nheaders = { X-Token = \"secret\" }\nbody = \"ping\"\nbody_contains = \"pong\"",
    )
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    let s = probe(&url, "method = \"POST\"\nbody = \"ping\"").await;
    assert_eq!(value(&s, "probe_http_status_code"), 403.0);
}

#[tokio::test]
async fn a_refused_connection_fails_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let s = probe(&format!("http://127.0.0.1:{port}/"), "").await;
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(value(&s, "probe_http_status_code"), 0.0);
    assert_eq!(reason(&s), "refused");
}

#[tokio::test]
async fn a_hanging_server_times_out_within_the_timeout() {
    let srv = testing::http_server(app()).await;
    let started = Instant::now();
    let s = probe(&format!("http://{}/hang", srv.addr), "").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(850) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(reason(&s), "timeout");
    assert!(value(&s, "probe_duration_seconds") < 1.0);
}

/// A raw TCP server that does `act` with each connection.
async fn raw_server<F, Fut>(act: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(act(s));
        }
    });
    (addr, task)
}

#[tokio::test]
async fn resets_and_garbage_are_failures_with_a_reason() {
    let (reset, t1) = raw_server(|mut s| async move {
        // Closing with the rest of the request unread makes the kernel send RST.
        let mut first = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut s, &mut first).await;
        drop(s);
    })
    .await;
    let s = probe(&format!("http://{reset}/"), "").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    let r = reason(&s);
    assert!(r == "reset" || r == "protocol", "{r}");

    let (garbage, t2) = raw_server(|mut s| async move {
        let _ = s
            .write_all(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            .await;
    })
    .await;
    let s = probe(&format!("http://{garbage}/"), "").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(reason(&s), "protocol");
    t1.abort();
    t2.abort();
}

#[tokio::test]
async fn a_10mb_body_is_refused_past_the_limit() {
    let srv = testing::http_server(app()).await;
    let url = format!("http://{}/big", srv.addr);
    let s = probe(&url, "").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(reason(&s), "too_large");
    assert_eq!(value(&s, "probe_http_status_code"), 200.0);
    let s = probe(&url, "max_body_bytes = 20_000_000").await;
    assert_eq!(value(&s, "probe_success"), 1.0);
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

#[tokio::test]
async fn https_reports_the_served_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let srv = testing::tls_server(&ca.leaf(&["localhost"], days(20)), Some(app()), None).await;
    let url = format!("https://localhost:{}/health", srv.addr.port());
    let s = probe(&url, &format!("ca_file = '{ca_file}'")).await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    let left = named(&s, "tls_cert_days_left");
    assert_eq!(left.len(), 2, "leaf and the CA after it");
    let leaf = left
        .iter()
        .find(|x| x.labels.get("chain") == Some("leaf"))
        .unwrap();
    assert!((19.9..20.1).contains(&leaf.value), "{}", leaf.value);
    assert_eq!(leaf.labels.get("subject"), Some("CN=localhost"));
    assert_eq!(leaf.labels.get("issuer"), Some("CN=warden test CA"));
    assert!(leaf.labels.get("serial").is_some());
    assert!(left.iter().any(|x| x.labels.get("chain") == Some("root")));
    assert_eq!(value(&s, "tls_cert_valid"), 1.0);
    assert!(named(&s, "tls_cert_verify_error_info").is_empty());

    // Against the system roots the private CA is unknown: the probe fails as TLS,
    // and the certificate is still reported.
    let s = probe(&url, "").await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(reason(&s), "tls");
    assert_eq!(value(&s, "tls_cert_valid"), 0.0);
    assert_eq!(
        labels(&s, "tls_cert_verify_error_info").get("reason"),
        Some("unknown issuer")
    );
    assert_eq!(named(&s, "tls_cert_days_left").len(), 2);
}

#[tokio::test]
async fn an_expired_certificate_is_data_and_verify_off_lets_the_probe_pass() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let srv = testing::tls_server(&ca.leaf(&["localhost"], days(-3)), Some(app()), None).await;
    let url = format!("https://localhost:{}/health", srv.addr.port());

    let s = probe(&url, &format!("ca_file = '{ca_file}'")).await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(reason(&s), "tls");
    let leaf: Vec<_> = named(&s, "tls_cert_days_left")
        .into_iter()
        .filter(|x| x.labels.get("chain") == Some("leaf"))
        .collect();
    assert!((-3.1..-2.9).contains(&leaf[0].value), "{}", leaf[0].value);
    assert_eq!(value(&s, "tls_cert_valid"), 0.0);
    assert_eq!(
        labels(&s, "tls_cert_verify_error_info").get("reason"),
        Some("expired")
    );

    let s = probe(&url, &format!("ca_file = '{ca_file}'\ntls_verify = false")).await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    assert_eq!(
        value(&s, "tls_cert_valid"),
        0.0,
        "the verdict is still reported"
    );
}

#[tokio::test]
async fn a_client_certificate_is_presented() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let client = ca.leaf(&["warden-client"], days(30));
    let cert = testing::write(dir.path(), "client.pem", &client.cert_pem);
    let key = testing::write(dir.path(), "client.key", &client.key_pem);
    let srv = testing::tls_server(&ca.leaf(&["localhost"], days(90)), Some(app()), Some(&ca)).await;
    let url = format!("https://localhost:{}/health", srv.addr.port());

    let s = probe(&url, &format!("ca_file = '{ca_file}'")).await;
    assert_eq!(
        value(&s, "probe_success"),
        0.0,
        "the server wants a client certificate"
    );
    let s = probe(
        &url,
        &format!("ca_file = '{ca_file}'\nclient_cert = '{cert}'\nclient_key = '{key}'"),
    )
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
}

#[test]
fn config_mistakes_are_reported() {
    let cases = [
        (
            "url = \"ftp://x/\"",
            "'url' 'ftp://x/' is not an http:// or https:// URL",
        ),
        (
            "url = \"http://x/\"\nmethod = \"G E T\"",
            "'method' 'G E T' is not an HTTP method",
        ),
        (
            "url = \"http://x/\"\nbody_regex = \"(\"",
            "'body_regex' '(' is not a valid regex",
        ),
        (
            "url = \"http://x/\"\njson_value = 1",
            "'json_value' needs 'json_pointer'",
        ),
        (
            "url = \"http://x/\"\njson_pointer = \"status\"",
            "must start with '/'",
        ),
        (
            "url = \"http://x/\"\nvalid_status_codes = [99]",
            "not an HTTP status",
        ),
        (
            "url = \"http://x/\"\nclient_cert = \"/nonexistent.pem\"",
            "'client_cert' needs 'client_key'",
        ),
        (
            "url = \"http://x/\"\nca_file = \"/nonexistent.pem\"",
            "'ca_file': cannot read '/nonexistent.pem'",
        ),
        (
            "url = \"http://x/\"\nmax_body_bytes = 0",
            "'max_body_bytes' must be more than 0",
        ),
        (
            "url = \"http://x/\"\nlabels = { reason = \"x\" }",
            "label 'reason' is set by the http collector",
        ),
    ];
    for (keys, want) in cases {
        let got = testing::problems(&format!("[[collector.http]]\nname = \"a\"\n{keys}\n"));
        assert!(got.iter().any(|m| m.contains(want)), "{keys}: {got:?}");
    }
}
