//! Test doubles of the hosted services warden notifies, enforcing their rules as
//! WIRE-FORMATS.md records them, plus a webhook sink. Each serves on
//! `127.0.0.1:0`, records what it accepted, and can be told to misbehave (429
//! with `Retry-After`, 5xx, hang, be down) to test retries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failed step should fail the test

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// How the next requests are answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: SECONDS`.
    RateLimited(u64),
    /// The given 5xx status.
    ServerError(u16),
    /// Never answer (the client must time out).
    Hang,
}

#[derive(Default)]
struct Shared {
    faults: VecDeque<Fault>,
    accepted: Vec<Value>,
    rejected: Vec<(u16, String)>,
    requests: usize,
    headers: Vec<HeaderMap>,
}

/// A running emulator; stops when dropped.
pub struct Emulator {
    /// Its address.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Emulator {
    /// Answers the next `n` requests with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut s = self.shared.lock().unwrap();
        for _ in 0..n {
            s.faults.push_back(fault.clone());
        }
    }

    /// What it accepted, in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.shared.lock().unwrap().accepted.clone()
    }

    /// What it refused as invalid: (status, body).
    pub fn rejected(&self) -> Vec<(u16, String)> {
        self.shared.lock().unwrap().rejected.clone()
    }

    /// Requests received (accepted, refused or faulted).
    pub fn requests(&self) -> usize {
        self.shared.lock().unwrap().requests
    }

    /// Headers of every accepted request.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.shared.lock().unwrap().headers.clone()
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type Validate = fn(&Value) -> Result<Value, (u16, String)>;

async fn start(path: &'static str, validate: Validate, port: u16) -> Emulator {
    let limit = if path == "/v2/enqueue" {
        512 * 1024
    } else {
        64 * 1024 * 1024
    };
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let app = Router::new()
        .route(path, post(handle))
        .layer(axum::extract::DefaultBodyLimit::max(limit + 1024))
        .with_state((shared.clone(), validate, limit));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Emulator {
        addr,
        shared,
        stop: Some(tx),
    }
}

async fn handle(
    State((shared, validate, limit)): State<(Arc<Mutex<Shared>>, Validate, usize)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut s = shared.lock().unwrap();
        s.requests += 1;
        s.faults.pop_front()
    };
    match fault {
        Some(Fault::RateLimited(secs)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "rate limited",
            )
                .into_response();
        }
        Some(Fault::ServerError(code)) => {
            return (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "internal error",
            )
                .into_response();
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        None => {}
    }
    if body.len() > limit {
        let mut s = shared.lock().unwrap();
        s.rejected.push((413, "payload too large".into()));
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    }
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let v = match parsed {
        Ok(v) => v,
        Err(_) => {
            shared
                .lock()
                .unwrap()
                .rejected
                .push((400, "invalid json".into()));
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]})),
            )
                .into_response();
        }
    };
    match validate(&v) {
        Ok(answer) => {
            let mut s = shared.lock().unwrap();
            s.accepted.push(v);
            s.headers.push(headers);
            let status = answer
                .get("__status")
                .and_then(Value::as_u64)
                .unwrap_or(200) as u16;
            let body = answer.get("__body").cloned().unwrap_or(answer);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            match body {
                Value::String(text) => (status, text).into_response(),
                other => (status, axum::Json(other)).into_response(),
            }
        }
        Err((code, msg)) => {
            shared.lock().unwrap().rejected.push((code, msg.clone()));
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            (status, msg).into_response()
        }
    }
}

/// The PagerDuty Events API v2 (`POST /v2/enqueue`), validating as the real one:
/// `routing_key` and a known `event_action` required; `dedup_key` at most 255
/// characters and required for acknowledge/resolve; for triggers a `payload` with
/// `summary` (at most 1024), `source` and a known `severity`. Invalid → 400 with
/// PagerDuty's error body; valid → 202 `{"status":"success",…}`.
pub async fn pagerduty() -> Emulator {
    start("/v2/enqueue", validate_pagerduty, 0).await
}

/// The PagerDuty emulator on a given port (to restart it where a daemon expects it).
pub async fn pagerduty_on(port: u16) -> Emulator {
    start("/v2/enqueue", validate_pagerduty, port).await
}

/// The PagerDuty Change Events API (`POST /v2/change/enqueue`), validating as the
/// real one: `routing_key` required; `payload` with `summary` (at most 1024
/// characters) and `source`; `timestamp` ISO 8601 when given; `custom_details` an
/// object; `links` objects with `href`. Valid → 202.
pub async fn pagerduty_changes() -> Emulator {
    start("/v2/change/enqueue", validate_pagerduty_change, 0).await
}

fn validate_pagerduty_change(v: &Value) -> Result<Value, (u16, String)> {
    if v.get("routing_key")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(pd_invalid("'routing_key' is missing or blank"));
    }
    if v.get("event_action").is_some() {
        return Err(pd_invalid("change events have no 'event_action'"));
    }
    let p = v
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| pd_invalid("'payload' is missing"))?;
    let summary = p
        .get("summary")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .ok_or_else(|| pd_invalid("'payload.summary' is missing"))?;
    if summary.chars().count() > 1024 {
        return Err(pd_invalid(
            "'payload.summary' is longer than 1024 characters",
        ));
    }
    if p.get("source")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(pd_invalid("'payload.source' is missing"));
    }
    if let Some(t) = p.get("timestamp") {
        let ok = t
            .as_str()
            .is_some_and(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).is_ok());
        if !ok {
            return Err(pd_invalid("'payload.timestamp' is not ISO 8601"));
        }
    }
    if p.get("custom_details").is_some_and(|c| !c.is_object()) {
        return Err(pd_invalid("'payload.custom_details' must be an object"));
    }
    if let Some(links) = v.get("links") {
        let ok = links.as_array().is_some_and(|l| {
            l.iter()
                .all(|x| x.get("href").and_then(Value::as_str).is_some())
        });
        if !ok {
            return Err(pd_invalid("'links' must be objects with 'href'"));
        }
    }
    Ok(json!({"__status": 202, "status": "success", "message": "Change event processed"}))
}

fn pd_invalid(msg: &str) -> (u16, String) {
    (
        400,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": [msg]})
            .to_string(),
    )
}

fn validate_pagerduty(v: &Value) -> Result<Value, (u16, String)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    if s("routing_key").is_none_or(str::is_empty) {
        return Err(pd_invalid("'routing_key' is missing or blank"));
    }
    let action = s("event_action").ok_or_else(|| pd_invalid("'event_action' is missing"))?;
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(pd_invalid("'event_action' is invalid"));
    }
    if let Some(k) = v.get("dedup_key") {
        let k = k
            .as_str()
            .ok_or_else(|| pd_invalid("'dedup_key' must be a string"))?;
        if k.chars().count() > 255 {
            return Err(pd_invalid("'dedup_key' is longer than 255 characters"));
        }
    } else if action != "trigger" {
        return Err(pd_invalid(
            "'dedup_key' is required for acknowledge and resolve",
        ));
    }
    if action == "trigger" {
        let p = v
            .get("payload")
            .filter(|p| p.is_object())
            .ok_or_else(|| pd_invalid("'payload' is missing"))?;
        let ps = |k: &str| p.get(k).and_then(Value::as_str);
        let summary = ps("summary")
            .filter(|x| !x.is_empty())
            .ok_or_else(|| pd_invalid("'payload.summary' is missing"))?;
        if summary.chars().count() > 1024 {
            return Err(pd_invalid(
                "'payload.summary' is longer than 1024 characters",
            ));
        }
        if ps("source").is_none_or(str::is_empty) {
            return Err(pd_invalid("'payload.source' is missing"));
        }
        if !ps("severity").is_some_and(|x| ["critical", "error", "warning", "info"].contains(&x)) {
            return Err(pd_invalid(
                "'payload.severity' must be critical, error, warning or info",
            ));
        }
        if let Some(cd) = p.get("custom_details")
            && !cd.is_object()
        {
            return Err(pd_invalid("'payload.custom_details' must be an object"));
        }
    }
    Ok(json!({
        "__status": 202,
        "__body": {"status": "success", "message": "Event processed", "dedup_key": v.get("dedup_key").cloned().unwrap_or(json!("generated"))},
    }))
}

/// A webhook receiver (`POST /hook`) that accepts any JSON object and answers 200.
pub async fn webhook_sink() -> Emulator {
    start("/hook", validate_webhook, 0).await
}

/// The webhook sink on a given port.
pub async fn webhook_sink_on(port: u16) -> Emulator {
    start("/hook", validate_webhook, port).await
}

fn validate_webhook(v: &Value) -> Result<Value, (u16, String)> {
    if !v.is_object() {
        return Err((400, "expected a JSON object".into()));
    }
    Ok(json!({"__status": 200, "__body": "ok"}))
}

/// What the Slack emulator holds.
#[derive(Default, Debug, Clone)]
pub struct SlackState {
    /// Incoming-webhook posts accepted.
    pub webhook_posts: Vec<Value>,
    /// Messages by ts (latest content after updates).
    pub messages: std::collections::BTreeMap<String, Value>,
    /// Thread replies: (thread_ts, message).
    pub replies: Vec<(String, Value)>,
    /// chat.postMessage calls accepted (top-level, not replies).
    pub posts: usize,
    /// chat.update calls accepted.
    pub updates: usize,
    /// Refusals: (status, error).
    pub rejected: Vec<(u16, String)>,
    faults: VecDeque<Fault>,
    next_ts: u64,
}

/// The Slack emulator: incoming webhooks at `/services/…` and the Web API at
/// `/api/chat.postMessage` and `/api/chat.update`, validating as Slack does.
pub struct SlackEmulator {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<Mutex<SlackState>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for SlackEmulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl SlackEmulator {
    /// A copy of its state.
    pub fn state(&self) -> SlackState {
        self.state.lock().unwrap().clone()
    }

    /// Answers the next `n` requests with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            s.faults.push_back(fault.clone());
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the Slack emulator.
pub async fn slack() -> SlackEmulator {
    let state: Arc<Mutex<SlackState>> = Arc::default();
    let app = Router::new()
        .route("/services/{*path}", post(slack_webhook))
        .route("/api/{method}", post(slack_api))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    SlackEmulator {
        addr,
        state,
        stop: Some(tx),
    }
}

fn slack_fault(state: &Mutex<SlackState>) -> Option<Response> {
    let f = state.lock().unwrap().faults.pop_front()?;
    Some(match f {
        Fault::RateLimited(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "ratelimited",
        )
            .into_response(),
        Fault::ServerError(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "internal_error",
        )
            .into_response(),
        Fault::Hang => StatusCode::GATEWAY_TIMEOUT.into_response(),
    })
}

/// Slack's checks of message content: some text, and sections within limits.
fn slack_content_error(v: &Value) -> Option<&'static str> {
    let has = |k: &str| match v.get(k) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if !has("text") && !has("blocks") && !has("attachments") {
        return Some("no_text");
    }
    let mut blocks: Vec<&Value> = v
        .get("blocks")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for att in v
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.extend(
            att.get("blocks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    if blocks.len() > 50 {
        return Some("invalid_blocks");
    }
    for b in blocks {
        let t = b.get("type").and_then(Value::as_str).unwrap_or("");
        if ![
            "section",
            "context",
            "header",
            "divider",
            "actions",
            "image",
            "rich_text",
        ]
        .contains(&t)
        {
            return Some("invalid_blocks");
        }
        if t == "section"
            && b.pointer("/text/text")
                .and_then(Value::as_str)
                .is_some_and(|s| s.chars().count() > 3000)
        {
            return Some("invalid_blocks");
        }
    }
    if v.get("text")
        .and_then(Value::as_str)
        .is_some_and(|s| s.chars().count() > 40_000)
    {
        return Some("msg_too_long");
    }
    None
}

async fn slack_webhook(
    State(state): State<Arc<Mutex<SlackState>>>,
    axum::extract::Path(path): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = slack_fault(&state) {
        return r;
    }
    let mut s = state.lock().unwrap();
    if path.ends_with("/gone") {
        s.rejected.push((404, "channel_not_found".into()));
        return (StatusCode::NOT_FOUND, "channel_not_found").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        s.rejected.push((400, "invalid_payload".into()));
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    if let Some(e) = slack_content_error(&v) {
        s.rejected.push((400, e.into()));
        return (StatusCode::BAD_REQUEST, e).into_response();
    }
    s.webhook_posts.push(v);
    (StatusCode::OK, "ok").into_response()
}

async fn slack_api(
    State(state): State<Arc<Mutex<SlackState>>>,
    axum::extract::Path(method): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = slack_fault(&state) {
        return r;
    }
    let mut s = state.lock().unwrap();
    let fail = |s: &mut SlackState, e: &str| {
        s.rejected.push((200, e.to_string()));
        axum::Json(json!({"ok": false, "error": e})).into_response()
    };
    match headers.get("authorization").and_then(|h| h.to_str().ok()) {
        None => return fail(&mut s, "not_authed"),
        Some(h) if !h.starts_with("Bearer xoxb-") => return fail(&mut s, "invalid_auth"),
        _ => {}
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return fail(&mut s, "invalid_json");
    };
    let channel = v.get("channel").and_then(Value::as_str).unwrap_or("");
    if channel.is_empty() || channel == "#gone" {
        return fail(&mut s, "channel_not_found");
    }
    if let Some(e) = slack_content_error(&v) {
        return fail(&mut s, e);
    }
    match method.as_str() {
        "chat.postMessage" => {
            s.next_ts += 1;
            let ts = format!("1700000000.{:06}", s.next_ts);
            match v.get("thread_ts").and_then(Value::as_str) {
                Some(parent) => {
                    if !s.messages.contains_key(parent) {
                        return fail(&mut s, "thread_not_found");
                    }
                    s.replies.push((parent.to_string(), v.clone()));
                }
                None => {
                    s.posts += 1;
                    s.messages.insert(ts.clone(), v.clone());
                }
            }
            axum::Json(json!({"ok": true, "channel": "C0WARDEN", "ts": ts, "message": v}))
                .into_response()
        }
        "chat.update" => {
            let ts = v
                .get("ts")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if channel != "C0WARDEN" || !s.messages.contains_key(&ts) {
                return fail(&mut s, "message_not_found");
            }
            s.updates += 1;
            s.messages.insert(ts.clone(), v.clone());
            axum::Json(json!({"ok": true, "channel": channel, "ts": ts})).into_response()
        }
        _ => fail(&mut s, "unknown_method"),
    }
}

/// How the test SMTP server talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// Plain SMTP, no AUTH.
    Plain,
    /// STARTTLS required, AUTH (user `warden`, password `s3cret`) required.
    StartTls,
    /// Implicit TLS, AUTH required.
    Implicit,
}

/// A real SMTP server on loopback: Python's aiosmtpd (Debian `python3-aiosmtpd`),
/// saving each mail it accepts as a file. Killed when dropped.
pub struct SmtpServer {
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

const SMTP_SERVER: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Save:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        tmp = os.path.join(out, "%04d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(("X-Envelope-To: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, "%04d.eml" % n))
        return "250 OK"

def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"warden" and data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)

kw = dict(hostname="127.0.0.1", port=port)
if mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(out, "cert.pem"), os.path.join(out, "key.pem"))
    kw.update(authenticator=auth, auth_required=True)
    if mode == "starttls":
        kw.update(tls_context=ctx, require_starttls=True)
    else:
        kw.update(ssl_context=ctx, auth_require_tls=False)
c = Controller(Save(), **kw)
c.start()
print("ready", flush=True)
try:
    while True:
        time.sleep(3600)
finally:
    c.stop()
"#;

impl SmtpServer {
    /// Starts a server in `mode` on a free port and waits until it accepts.
    pub fn start(mode: SmtpMode) -> SmtpServer {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mode_arg = match mode {
            SmtpMode::Plain => "plain",
            SmtpMode::StartTls => "starttls",
            SmtpMode::Implicit => "implicit",
        };
        // Debian's interpreter, where python3-aiosmtpd installs.
        let python = if std::path::Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut child = std::process::Command::new(python)
            .arg(&script)
            .arg(mode_arg)
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start python3 (install python3-aiosmtpd: scripts/test does)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP server did not start (is python3-aiosmtpd installed?)"
        );
        SmtpServer { port, dir, child }
    }

    /// Every mail accepted so far, raw, in order.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
