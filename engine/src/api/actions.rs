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
