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
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let app = Router::new()
        .route(path, post(handle))
        .with_state((shared.clone(), validate));
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
    State((shared, validate)): State<(Arc<Mutex<Shared>>, Validate)>,
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
    if body.len() > 512 * 1024 {
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
