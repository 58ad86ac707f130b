//! API access control through the real binary: bearer tokens and roles, the open
//! endpoints, the loopback rule without tokens, TLS, and secrets kept out of logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Daemon, free_port, warden_bin, write};

const READ: &str = "read-token-0123456789abcdef";
const OPERATE: &str = "operate-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// One HTTP/1.1 request with extra headers; `(status, head, body)`.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().unwrap_or_default().to_string()
}

fn tokens_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    write(dir, "admin.token", &format!("{ADMIN}\n"));
    write(
        dir,
        "warden.toml",
        &format!(
            r#"
[store]
path = "w.db"

[[server.token]]
name = "dash"
role = "read"
token_env = "E2E_READ_TOKEN"

[[server.token]]
name = "oncall"
role = "operate"
token_env = "E2E_OPERATE_TOKEN"

[[server.token]]
name = "root"
role = "admin"
token_file = "admin.token"
{extra}
"#
        ),
    )
}

const ENV: &[(&str, &str)] = &[("E2E_READ_TOKEN", READ), ("E2E_OPERATE_TOKEN", OPERATE)];

#[test]
fn tokens_and_roles_guard_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tokens_config(dir.path(), "");
    let d = Daemon::start_with_env(dir.path(), &cfg, "auth", ENV);
    let p = d.port;

    // Open endpoints.
    assert_eq!(request(p, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(request(p, "GET", "/metrics", &[], b"").0, 200);

    // Missing, unknown and malformed tokens: 401 with a JSON reason.
    let (st, head, body) = request(p, "GET", "/api/v1/alerts", &[], b"");
    assert_eq!(st, 401, "{body}");
    assert!(error_of(&body).contains("missing bearer token"), "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"warden\""),
        "{head}"
    );
    let (st, _, body) = request(
        p,
        "GET",
        "/api/v1/alerts",
        &[("Authorization", &bearer("not-a-token-at-all"))],
        b"",
    );
    assert_eq!(st, 401);
    assert!(error_of(&body).contains("unknown"), "{body}");
    let (st, _, body) = request(
        p,
        "GET",
        "/api/v1/events",
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        b"",
    );
    assert_eq!(st, 401);
    assert!(error_of(&body).contains("malformed"), "{body}");

    // Each role reads.
    for t in [READ, OPERATE, ADMIN] {
        let (st, _, body) = request(
            p,
            "GET",
            "/api/v1/alerts",
            &[("Authorization", &bearer(t))],
            b"",
        );
        assert_eq!(st, 200, "{body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap().is_array());
    }

    // A change nobody classified needs admin: read and operate get 403 naming the
    // token and the role needed; admin passes (and meets the router's 405).
    for t in [READ, OPERATE] {
        let (st, _, body) = request(
            p,
            "POST",
            "/api/v1/alerts",
            &[("Authorization", &bearer(t))],
            b"",
        );
        assert_eq!(st, 403, "{body}");
        assert!(error_of(&body).contains("needs 'admin'"), "{body}");
    }
    let (st, _, _) = request(
        p,
        "POST",
        "/api/v1/alerts",
        &[("Authorization", &bearer(ADMIN))],
        b"",
    );
    assert_eq!(st, 405);

    // The daemon is still healthy, and no token text reached the logs.
    assert_eq!(request(p, "GET", "/healthz", &[], b"").0, 200);
    let logs = format!("{}{}", d.out(), d.err());
    for t in [READ, OPERATE, ADMIN] {
        assert!(!logs.contains(t), "a token leaked into the logs:\n{logs}");
    }
    assert!(logs.contains("api_tokens"), "{logs}");
}

#[test]
fn metrics_can_require_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tokens_config(dir.path(), "");
    // metrics_auth belongs to [server]; put it before the token tables.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[store]", "[server]\nmetrics_auth = true\n\n[store]");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start_with_env(dir.path(), &cfg, "metrics", ENV);
    assert_eq!(request(d.port, "GET", "/metrics", &[], b"").0, 401);
    let (st, _, body) = request(
        d.port,
        "GET",
        "/metrics",
        &[("Authorization", &bearer(READ))],
        b"",
    );
    assert_eq!(st, 200);
    assert!(body.contains("# TYPE"), "{body}");
}

#[test]
fn an_open_api_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "warden.toml",
        "[server]\nlisten = \"0.0.0.0:9470\"\n\n[store]\npath = \"w.db\"\n",
    );
    let out = Command::new(warden_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warden.toml:2:10: listen address '0.0.0.0:9470' is not loopback and no [[server.token]] is configured"),
        "{err}"
    );
    let out = Command::new(warden_bin())
        .args(["config", "check"])
        .arg(&cfg)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // With tokens the same address is accepted by the checker.
    let cfg = tokens_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[store]", "[server]\nlisten = \"0.0.0.0:9470\"\n\n[store]");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(warden_bin())
        .args(["config", "check"])
        .arg(&cfg)
        .current_dir(dir.path())
        .envs(ENV.iter().copied())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let keygen = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let cfg = tokens_config(
        dir.path(),
        "\n[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    );
    // The harness waits on plain HTTP; start by hand and poll with curl.
    let port = free_port();
    let mut child = Command::new(warden_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .envs(ENV.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("tls.err")).unwrap())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let curl = |path: &str, token: Option<&str>| -> (String, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "5", "--cacert"])
            .arg(dir.path().join("cert.pem"))
            .args(["-w", "\n%{http_code}"]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = c
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.to_string())
    };
    let start = std::time::Instant::now();
    while curl("/healthz", None).0 != "200" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no HTTPS answer: {}",
            std::fs::read_to_string(dir.path().join("tls.err")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(curl("/api/v1/alerts", None).0, "401");
    let (code, body) = curl("/api/v1/alerts", Some(READ));
    assert_eq!(code, "200", "{body}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let (st, _, _) = request(port, "GET", "/healthz", &[], b"");
    assert_ne!(st, 200);
    assert_eq!(
        curl("/healthz", None).0,
        "200",
        "a failed handshake must not stop the listener"
    );
}
