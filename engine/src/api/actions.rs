//! The remediation endpoints:
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /api/v1/actions` | the audit log, newest first; `?state=`, `?action=`, `?limit=` (default 200), `?before=ID` |
//! | `GET /api/v1/actions/{id}` | one attempt |
//! | `GET /api/v1/actions/status` | the kill switch, dry-run, running count and the configured actions |
//! | `POST /api/v1/actions/{id}/approve`, `/deny` | `{"by","comment"?}`: decide a `pending_approval` attempt |
//! | `POST /api/v1/actions/run` | `{"action","labels":{},"by","comment"?}`: a manual run under the same guardrails |
//! | `POST /api/v1/actions/pause`, `/resume` | `{"by","comment"?}`: the kill switch |
//!
//! `by` defaults to the API token's name; with a token and a different `by`, both
//! are recorded (`alice (token oncall)`).
//!
//! Errors are `{"error": "..."}`: 400 for a malformed request, 404 for an unknown
//! action or attempt, 409 when a guardrail or the attempt's state refuses (with the
//! attempt's row as `"attempt"` when one was written), 503 without a runner.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::auth::Caller;
use crate::model::Labels;
use crate::remediate::audit::{AttemptState, AuditEntry, Filter};
use crate::remediate::{Remediation, RemediationError, Status};

/// An error of these endpoints.
#[derive(Debug)]
pub struct ActionsError(StatusCode, String, Option<Box<AuditEntry>>);

impl IntoResponse for ActionsError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.1 });
        if let Some(e) = self.2 {
            body["attempt"] = serde_json::to_value(&e).unwrap_or_default();
        }
        (self.0, Json(body)).into_response()
    }
}

impl From<RemediationError> for ActionsError {
    fn from(e: RemediationError) -> Self {
        match e {
            RemediationError::NotFound(m) => Self(StatusCode::NOT_FOUND, m, None),
            RemediationError::Conflict(m, row) => Self(StatusCode::CONFLICT, m, row),
            RemediationError::Invalid(m) => Self(StatusCode::BAD_REQUEST, m, None),
            RemediationError::Unavailable(m) => Self(StatusCode::SERVICE_UNAVAILABLE, m, None),
        }
    }
}

fn bad(m: impl Into<String>) -> ActionsError {
    ActionsError(StatusCode::BAD_REQUEST, m.into(), None)
}

fn internal(m: impl ToString) -> ActionsError {
    ActionsError(StatusCode::INTERNAL_SERVER_ERROR, m.to_string(), None)
}

/// The body of approve, deny, pause and resume.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Who decides (default: the API token's name).
    #[serde(default)]
    pub by: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The body of a manual run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The action's name.
    pub action: String,
    /// The target's labels (e.g. `{"instance": "web-1"}`).
    #[serde(default)]
    pub labels: HashMap<String, String>,
    /// Who asks (default: the API token's name).
    #[serde(default)]
    pub by: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ActionsError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

/// Who asks: `by` as given, else the API token's name. With a token, the token
/// is recorded too when `by` names someone else (`alice (token oncall)`).
fn who(by: Option<&str>, caller: Option<&Caller>) -> Result<String, ActionsError> {
    let token = caller
        .map(|c| c.name.as_str())
        .filter(|n| *n != "anonymous");
    let by = match (by.map(str::trim).filter(|b| !b.is_empty()), token) {
        (Some(b), Some(t)) if b != t => format!("{b} (token {t})"),
        (Some(b), _) => b.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => {
            return Err(bad(
                "'by' must name who decides (1 to 200 printable characters)",
            ));
        }
    };
    if by.len() > 200 || by.chars().any(char::is_control) {
        return Err(bad(
            "'by' must name who decides (1 to 200 printable characters)",
        ));
    }
    Ok(by)
}

fn comment(c: Option<String>) -> Result<Option<String>, ActionsError> {
    match c {
        Some(c) if c.len() > 2_000 => Err(bad("'comment' is longer than 2000 bytes")),
        Some(c) if c.trim().is_empty() => Ok(None),
        c => Ok(c),
    }
}

/// The remediation routes, on `handle`.
pub fn router(handle: Remediation) -> Router {
    Router::new()
        .route("/api/v1/actions", get(list))
        .route("/api/v1/actions/status", get(status))
        .route("/api/v1/actions/run", post(run))
        .route("/api/v1/actions/pause", post(pause))
        .route("/api/v1/actions/resume", post(resume))
        .route("/api/v1/actions/{id}", get(one))
        .route("/api/v1/actions/{id}/approve", post(approve))
        .route("/api/v1/actions/{id}/deny", post(deny))
        .with_state(handle)
}

async fn list(
    State(h): State<Remediation>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<AuditEntry>>, ActionsError> {
    let state = match q.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(AttemptState::parse(s).ok_or_else(|| {
            bad(format!(
                "invalid state '{s}': use one of {}",
                AttemptState::ALL.map(AttemptState::as_str).join(", ")
            ))
        })?),
    };
    let limit = match q.get("limit") {
        None => 200,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| bad(format!("invalid limit '{l}': use 1 to 10000")))?,
    };
    let before = match q.get("before") {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| bad(format!("invalid before '{b}': use an attempt id")))?,
        ),
    };
    for k in q.keys() {
        if !["state", "limit", "before", "action"].contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown parameter '{k}': use state, action, limit or before"
            )));
        }
    }
    let f = Filter {
        state,
        action: q.get("action").filter(|a| !a.is_empty()).cloned(),
        before,
        limit,
    };
    let rows = tokio::task::spawn_blocking(move || h.list(&f))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    Ok(Json(rows))
}

async fn one(
    State(h): State<Remediation>,
    Path(id): Path<String>,
) -> Result<Json<AuditEntry>, ActionsError> {
    let id: i64 = id
        .parse()
        .map_err(|_| bad(format!("invalid attempt id '{id}'")))?;
    match h.get(id).map_err(internal)? {
        Some(e) => Ok(Json(e)),
        None => Err(ActionsError(
            StatusCode::NOT_FOUND,
            format!("no attempt with id {id}"),
            None,
        )),
    }
}

async fn status(State(h): State<Remediation>) -> Json<Status> {
    Json(h.status())
}

async fn decide(
    h: Remediation,
    id: String,
    body: &[u8],
    approve: bool,
    caller: Option<Caller>,
) -> Result<Json<AuditEntry>, ActionsError> {
    let id: i64 = id
        .parse()
        .map_err(|_| bad(format!("invalid attempt id '{id}'")))?;
    let d: Decision = parse_json(body)?;
    let by = who(d.by.as_deref(), caller.as_ref())?;
    let c = comment(d.comment)?;
    let e = if approve {
        h.approve(id, by, c).await?
    } else {
        h.deny(id, by, c).await?
    };
    Ok(Json(e))
}

async fn approve(
    State(h): State<Remediation>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<AuditEntry>, ActionsError> {
    decide(h, id, &body, true, caller.map(|c| c.0)).await
}

async fn deny(
    State(h): State<Remediation>,
    Path(id): Path<String>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<AuditEntry>, ActionsError> {
    decide(h, id, &body, false, caller.map(|c| c.0)).await
}

async fn run(
    State(h): State<Remediation>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AuditEntry>), ActionsError> {
    let r: RunRequest = parse_json(&body)?;
    let by = who(r.by.as_deref(), caller.as_ref().map(|c| &c.0))?;
    let c = comment(r.comment)?;
    if r.action.trim().is_empty() {
        return Err(bad("'action' must name a configured action"));
    }
    let labels = Labels::new(r.labels).map_err(|e| bad(format!("invalid labels: {e}")))?;
    let e = h.run(r.action, labels, by, c).await?;
    Ok((StatusCode::ACCEPTED, Json(e)))
}

async fn switch(
    h: Remediation,
    body: &[u8],
    paused: bool,
    caller: Option<Caller>,
) -> Result<Json<Status>, ActionsError> {
    let d: Decision = parse_json(body)?;
    let by = who(d.by.as_deref(), caller.as_ref())?;
    let c = comment(d.comment)?;
    Ok(Json(h.set_paused(paused, by, c).await?))
}

async fn pause(
    State(h): State<Remediation>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<Status>, ActionsError> {
    switch(h, &body, true, caller.map(|c| c.0)).await
}

async fn resume(
    State(h): State<Remediation>,
    caller: Option<Extension<Caller>>,
    body: axum::body::Bytes,
) -> Result<Json<Status>, ActionsError> {
    switch(h, &body, false, caller.map(|c| c.0)).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::api::{ApiState, router as api_router, serve};
    use crate::ports::{
        Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture, SingleNode,
    };
    use crate::remediate::config::Guardrails;
    use crate::remediate::{Setup, system_clock};
    use crate::store::{Store, StoreOptions};
    use crate::telemetry::Telemetry;

    struct Echo;

    impl Action for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn kind(&self) -> &'static str {
            "exec"
        }
        fn run<'a>(
            &'a self,
            req: &'a ActionRequest,
            _cx: &'a ActionContext,
        ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
            Box::pin(async move {
                Ok(ActionOutcome {
                    ok: true,
                    status: Some(0),
                    args: serde_json::json!(["echo", req.labels.get("instance")]),
                    output: "hi".into(),
                })
            })
        }
    }

    async fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn endpoints_answer_and_changes_stream_as_action_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
        let (events, _) = tokio::sync::broadcast::channel(64);
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let g = Guardrails {
            cooldown: Duration::from_secs(3600),
            ..Guardrails::default()
        };
        let handle = Remediation::spawn(
            Setup {
                actions: vec![(Arc::new(Echo) as Arc<dyn Action>, g)],
                ..Setup::default()
            },
            store.clone(),
            Telemetry::default(),
            events.clone(),
            Arc::new(SingleNode),
            system_clock(),
            &tracker,
            cancel.clone(),
        )
        .unwrap();
        handle.alerts(Vec::new(), true).await;
        let (_alerts_tx, alerts) = tokio::sync::watch::channel(Arc::new(Vec::new()));
        let state = ApiState {
            store: store.clone(),
            telemetry: Telemetry::default(),
            alerts,
            events,
            notify: None,
        };
        let app = api_router(state).merge(router(handle.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = cancel.clone();
        tokio::spawn(serve(listener, app, async move { stop.cancelled().await }));

        // The live stream, opened before anything happens.
        let mut sse = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        sse.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("event: snapshot") {
            let n = sse.read(&mut buf).await.unwrap();
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }

        let (s, b) = request(
            port,
            "POST",
            "/api/v1/actions/run",
            r#"{"action":"echo","labels":{"instance":"web-1"},"by":"ann"}"#,
        )
        .await;
        assert_eq!(s, 202, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["requested_by"], "ann");
        let id = v["id"].as_i64().unwrap();

        let found = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if seen.contains("event: action") && seen.contains("\"state\":\"succeeded\"") {
                    return;
                }
                let n = sse.read(&mut buf).await.unwrap();
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        assert!(found.is_ok(), "{seen}");
        assert!(seen.contains("\"type\":\"action\""), "{seen}");

        let (s, b) = request(port, "GET", &format!("/api/v1/actions/{id}"), "").await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = request(
            port,
            "GET",
            "/api/v1/actions?state=succeeded&action=echo",
            "",
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Guardrails answer 409 with the audited row; bad requests 400; unknowns 404.
        let (s, b) = request(
            port,
            "POST",
            "/api/v1/actions/run",
            r#"{"action":"echo","labels":{"instance":"web-1"},"by":"ann"}"#,
        )
        .await;
        assert_eq!(s, 409, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert!(v["error"].as_str().unwrap().starts_with("cooldown"), "{v}");
        assert_eq!(v["attempt"]["state"], "refused");
        assert_eq!(
            request(port, "POST", "/api/v1/actions/run", r#"{"action":"echo"}"#)
                .await
                .0,
            400
        );
        assert_eq!(
            request(port, "POST", "/api/v1/actions/run", "not json")
                .await
                .0,
            400
        );
        assert_eq!(
            request(
                port,
                "POST",
                "/api/v1/actions/run",
                r#"{"action":"nope","by":"x"}"#
            )
            .await
            .0,
            404
        );
        assert_eq!(request(port, "GET", "/api/v1/actions/999", "").await.0, 404);
        assert_eq!(request(port, "GET", "/api/v1/actions/abc", "").await.0, 400);
        assert_eq!(
            request(port, "GET", "/api/v1/actions?limit=0", "").await.0,
            400
        );
        assert_eq!(
            request(port, "GET", "/api/v1/actions?bogus=1", "").await.0,
            400
        );
        assert_eq!(
            request(
                port,
                "POST",
                &format!("/api/v1/actions/{id}/approve"),
                r#"{"by":"x"}"#
            )
            .await
            .0,
            409
        );
        let (s, b) = request(
            port,
            "POST",
            "/api/v1/actions/pause",
            r#"{"by":"ops","comment":"deploy"}"#,
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert!(b.contains("\"paused\":true"));
        let (s, b) = request(port, "GET", "/api/v1/actions/status", "").await;
        assert_eq!(s, 200);
        let st: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(st["paused_by"], "ops");
        assert_eq!(st["actions"][0]["name"], "echo");
        assert_eq!(st["actions"][0]["cooldown"], "1h");

        drop(sse);
        cancel.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracker.close();
        tracker.wait().await;
        drop(handle);
        store.close().await.unwrap();
    }
}
