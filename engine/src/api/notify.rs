//! The notification endpoints: silences, acknowledgements and the outbox /
//! delivery log, plus the notification state of each alert on `/api/v1/alerts`.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use crate::model::{Alert, Fingerprint, Timestamp, now_ms};
use crate::notify::dispatch::{AlertStatus, NewSilence, OpError};
use crate::notify::matchers::{self, ApiMatcherValue};
use crate::notify::outbox::{self, ListFilter, RowView};
use crate::notify::silence::SilenceView;
use crate::notify::{NotifyHandle, NotifyOpError};
use crate::ports::Acknowledgement;

/// An alert as `/api/v1/alerts` shows it: the alert plus its notification state.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// `{"by","comment","at","expires_at"}` or `null`.
    pub acknowledged: Option<Acknowledgement>,
    /// Ids of active silences matching it.
    pub silenced_by: Vec<String>,
    /// Inhibitions and dependencies muting it.
    pub inhibited_by: Vec<String>,
    /// Open maintenance windows matching it.
    pub maintenance: Vec<String>,
    /// True while it flaps.
    pub flapping: bool,
}

/// Adds the notification state to `alerts`.
pub fn views(notify: Option<&NotifyHandle>, alerts: &[Alert]) -> Vec<AlertView> {
    let status = match notify {
        Some(n) => n.status(alerts),
        None => vec![AlertStatus::default(); alerts.len()],
    };
    alerts
        .iter()
        .cloned()
        .zip(status)
        .map(|(alert, st)| AlertView {
            alert,
            acknowledged: st.acknowledged,
            silenced_by: st.silenced_by,
            inhibited_by: st.inhibited_by,
            maintenance: st.maintenance,
            flapping: st.flapping,
        })
        .collect()
}

fn handle(s: &ApiState) -> Result<&NotifyHandle, ApiError> {
    s.notify.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the notification pipeline is not running".into(),
        )
    })
}

fn op_error(e: NotifyOpError) -> ApiError {
    match e {
        NotifyOpError::Refused(OpError::NotFiring(m)) => ApiError(
            StatusCode::NOT_FOUND,
            format!("no firing alert has fingerprint '{m}'"),
        ),
        NotifyOpError::Refused(OpError::NoSilence(id)) => {
            ApiError(StatusCode::NOT_FOUND, format!("no silence has id '{id}'"))
        }
        NotifyOpError::Refused(OpError::Invalid(m)) => ApiError::bad_request(m),
        other => ApiError::internal(other.to_string()),
    }
}

/// A time on the API: unix milliseconds or an RFC 3339 string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ApiTime {
    /// Unix ms.
    Millis(i64),
    /// RFC 3339.
    Text(String),
}

impl ApiTime {
    fn millis(&self, field: &str) -> Result<Timestamp, ApiError> {
        match self {
            ApiTime::Millis(ms) => Ok(*ms),
            ApiTime::Text(t) => t
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "invalid '{field}' '{t}': use unix milliseconds or RFC 3339 such as '2026-11-22T10:00:00Z'"
                    ))
                }),
        }
    }
}

/// `POST /api/v1/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// label → value, or label → `{"op","value"}`.
    #[serde(default)]
    pub matchers: BTreeMap<String, ApiMatcherValue>,
    /// Start; default now.
    #[serde(default)]
    pub starts_at: Option<ApiTime>,
    /// End; or give `duration`.
    #[serde(default)]
    pub ends_at: Option<ApiTime>,
    /// Length from `starts_at`, e.g. `2h` (instead of `ends_at`).
    #[serde(default)]
    pub duration: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Who.
    #[serde(default)]
    pub created_by: String,
}

pub(super) async fn list_silences(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<SilenceView>>, ApiError> {
    let all = handle(&s)?.silences();
    let want = q.get("state").cloned();
    Ok(Json(
        all.into_iter()
            .filter(|v| want.as_deref().is_none_or(|w| w == v.state))
            .collect(),
    ))
}

pub(super) async fn get_silence(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    handle(&s)?
        .silences()
        .into_iter()
        .find(|v| v.id == id)
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no silence has id '{id}'")))
}

pub(super) async fn create_silence(
    State(s): State<ApiState>,
    body: Result<Json<SilenceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<SilenceView>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let h = handle(&s)?;
    let matchers = matchers::from_api(&req.matchers).map_err(ApiError::bad_request)?;
    let now = now_ms();
    let starts_at = match &req.starts_at {
        Some(t) => t.millis("starts_at")?,
        None => now,
    };
    let ends_at = match (&req.ends_at, &req.duration) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give 'ends_at' or 'duration', not both",
            ));
        }
        (Some(t), None) => t.millis("ends_at")?,
        (None, Some(d)) => {
            starts_at
                + crate::duration::parse(d)
                    .map_err(ApiError::bad_request)?
                    .as_millis() as i64
        }
        (None, None) => return Err(ApiError::bad_request("'ends_at' or 'duration' is required")),
    };
    let view = h
        .add_silence(NewSilence {
            matchers,
            starts_at,
            ends_at,
            comment: req.comment,
            created_by: req.created_by,
        })
        .await
        .map_err(op_error)?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn expire_silence(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    handle(&s)?
        .expire_silence(id)
        .await
        .map(Json)
        .map_err(op_error)
}

/// `POST /api/v1/alerts/{fingerprint}/ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Who.
    #[serde(default)]
    pub by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// When it lapses.
    #[serde(default)]
    pub expires_at: Option<ApiTime>,
}

fn fingerprint(fp: &str) -> Result<Fingerprint, ApiError> {
    fp.parse::<Fingerprint>().map_err(ApiError::bad_request)
}

pub(super) async fn ack(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
    body: Result<Json<AckRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Acknowledgement>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let fp = fingerprint(&fp)?;
    let expires_at = req
        .expires_at
        .as_ref()
        .map(|t| t.millis("expires_at"))
        .transpose()?;
    handle(&s)?
        .ack(fp, req.by, req.comment, expires_at)
        .await
        .map(Json)
        .map_err(op_error)
}

pub(super) async fn unack(
    State(s): State<ApiState>,
    Path(fp): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let fp = fingerprint(&fp)?;
    handle(&s)?.unack(fp).await.map_err(|e| match e {
        NotifyOpError::Refused(OpError::NotFiring(_)) => ApiError(
            StatusCode::NOT_FOUND,
            format!("alert '{fp}' is not acknowledged"),
        ),
        e => op_error(e),
    })?;
    Ok(Json(
        serde_json::json!({ "fingerprint": fp, "acknowledged": null }),
    ))
}

pub(super) async fn notifications(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<RowView>>, ApiError> {
    let limit = match q.get("limit") {
        None => 200,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("invalid limit '{l}': use 1 to 10000")))?,
    };
    if let Some(fp) = q.get("fingerprint") {
        fingerprint(fp)?;
    }
    if let Some(st) = q.get("state")
        && !["pending", "delivered", "failed", "dead"].contains(&st.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "invalid state '{st}': use pending, delivered, failed or dead"
        )));
    }
    let f = ListFilter {
        fingerprint: q.get("fingerprint").cloned(),
        receiver: q.get("receiver").cloned(),
        state: q.get("state").cloned(),
        limit,
    };
    let store = s.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.read(|c| outbox::list(c, &f)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(rows))
}
