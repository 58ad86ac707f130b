//! The HTTP API (axum): health, warden's own metrics, alerts, history and queries;
//! [`actions`] adds the remediation endpoints.
//! Shapes are the contract in INTERFACES.md.
//!
//! - `notify`: silences, acknowledgements, the delivery log.
//! - [`actions`]: the remediation audit log, approvals, manual runs, the kill switch.

pub mod actions;
pub mod notify;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::lifecycle;
use crate::model::{Alert, AlertState, Fingerprint, Matcher, MetricName, Selector, now_ms};
use crate::notify::NotifyHandle;
use crate::notify::silence::SilenceView;
use crate::ports::Acknowledgement;
use crate::ports::SeriesQuery;
use crate::store::Store;
use crate::telemetry::Telemetry;

pub mod auth;
pub mod tls;

/// Most samples one query may return.
const MAX_QUERY_SAMPLES: usize = 2_000_000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Store,
    /// warden's own metrics.
    pub telemetry: Telemetry,
    /// The active alerts, as the rule evaluator last published them.
    pub alerts: watch::Receiver<Arc<Vec<Alert>>>,
    /// Live events for `/api/v1/events`.
    pub events: broadcast::Sender<ApiEvent>,
    /// The notification pipeline (silences, acks, delivery log), when running.
    pub notify: Option<NotifyHandle>,
}

/// One live event on `/api/v1/events`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// An alert changed state.
    Alert {
        /// The change: the alert, `from` and `to` states, when.
        #[serde(flatten)]
        change: lifecycle::Change,
    },
    /// A silence was made or expired.
    Silence {
        /// The silence, as `/api/v1/silences` shows it.
        silence: SilenceView,
    },
    /// An alert was acknowledged (`acknowledged` set) or its ack ended (`null`).
    Ack {
        /// The alert.
        fingerprint: Fingerprint,
        /// The ack, or `null`.
        acknowledged: Option<Acknowledgement>,
    },
    /// A remediation attempt was written or changed.
    Action {
        /// The attempt's audit row as it is now.
        #[serde(flatten)]
        entry: Box<crate::remediate::audit::AuditEntry>,
    },
}

/// An error answered as `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    /// A 400 with `reason`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, reason.into())
    }
    /// A 500 with `reason`.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, reason.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The router with every endpoint of this module.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/query", get(query))
        .route("/api/v1/events", get(events))
        .route(
            "/api/v1/silences",
            get(notify::list_silences).post(notify::create_silence),
        )
        .route(
            "/api/v1/silences/{id}",
            get(notify::get_silence).delete(notify::expire_silence),
        )
        .route(
            "/api/v1/alerts/{fingerprint}/ack",
            post(notify::ack).delete(notify::unack),
        )
        .route("/api/v1/notifications", get(notify::notifications))
        .with_state(state)
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.telemetry.encode(&s.store),
    )
        .into_response()
}

async fn alerts(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<notify::AlertView>>, ApiError> {
    let want = match q.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(st) => match st.parse::<AlertState>() {
            Ok(st @ (AlertState::Pending | AlertState::Firing)) => Some(st),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid state '{st}': use pending or firing"
                )));
            }
        },
    };
    let all = s.alerts.borrow().clone();
    let chosen: Vec<Alert> = all
        .iter()
        .filter(|a| want.is_none_or(|w| a.state == w))
        .cloned()
        .collect();
    Ok(Json(notify::views(s.notify.as_ref(), &chosen)))
}

async fn history(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<lifecycle::HistoryEntry>>, ApiError> {
    let limit = match q.get("limit") {
        None => 500,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| ApiError::bad_request(format!("invalid limit '{l}': use 1 to 10000")))?,
    };
    let fp = q.get("fingerprint").cloned();
    let store = s.store.clone();
    let rows = tokio::task::spawn_blocking(move || {
        store.read(|c| lifecycle::history(c, fp.as_deref(), limit))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(rows))
}

/// One series of a query answer.
#[derive(Debug, Serialize)]
pub struct QuerySeries {
    /// The series' labels, with `__name__`.
    pub labels: HashMap<String, String>,
    /// `[unix_ms, value]` pairs (non-finite values as strings, as Prometheus does).
    pub samples: Vec<(i64, serde_json::Value)>,
}

fn json_value(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else if v.is_nan() {
        serde_json::json!("NaN")
    } else if v > 0.0 {
        serde_json::json!("+Inf")
    } else {
        serde_json::json!("-Inf")
    }
}

async fn query(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<QuerySeries>>, ApiError> {
    let metric = q
        .get("metric")
        .ok_or_else(|| ApiError::bad_request("missing 'metric'"))?;
    let metric =
        MetricName::new(metric.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let range = match q.get("range") {
        Some(r) => crate::duration::parse(r).map_err(ApiError::bad_request)?,
        None => std::time::Duration::from_secs(3_600),
    };
    let end = match q.get("end") {
        Some(e) => e.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid end '{e}': use unix milliseconds"))
        })?,
        None => now_ms(),
    };
    let mut sel = Selector::metric(metric);
    for (k, v) in &q {
        if ["metric", "range", "end"].contains(&k.as_str()) {
            continue;
        }
        if crate::model::Labels::new([(k.as_str(), "x")]).is_err() {
            return Err(ApiError::bad_request(format!("invalid label name '{k}'")));
        }
        sel = sel.with(Matcher::eq(k.clone(), v.clone()));
    }
    let store = s.store.clone();
    let start = end - range.as_millis() as i64;
    let found = tokio::task::spawn_blocking(move || store.range(&sel, start, end))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let total: usize = found.iter().map(|r| r.samples.len()).sum();
    if total > MAX_QUERY_SAMPLES {
        return Err(ApiError::bad_request(format!(
            "the query selects {total} samples, more than {MAX_QUERY_SAMPLES}: narrow the range or add label matchers"
        )));
    }
    Ok(Json(
        found
            .into_iter()
            .map(|r| {
                let mut labels: HashMap<String, String> = r
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                labels.insert("__name__".into(), r.name.to_string());
                QuerySeries {
                    labels,
                    samples: r
                        .samples
                        .into_iter()
                        .map(|(t, v)| (t, json_value(v)))
                        .collect(),
                }
            })
            .collect(),
    ))
}

/// Server-sent events: first a `snapshot` event with the active alerts, then one
/// event per change (`alert`, …) as it happens; after a client falls behind, a new
/// `snapshot`. Comments every 15 s keep proxies from closing the stream.
async fn events(
    State(s): State<ApiState>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};

    fn snapshot(alerts: &watch::Receiver<Arc<Vec<Alert>>>, notify: Option<&NotifyHandle>) -> Event {
        let list = alerts.borrow().clone();
        let data =
            serde_json::to_string(&notify::views(notify, &list)).unwrap_or_else(|_| "[]".into());
        Event::default().event("snapshot").data(data)
    }

    let rx = s.events.subscribe();
    let first = snapshot(&s.alerts, s.notify.as_ref());
    let alerts = (s.alerts, s.notify);
    let stream = futures_util::stream::unfold(
        (Some(first), rx, alerts),
        |(first, mut rx, alerts)| async move {
            if let Some(ev) = first {
                return Some((Ok(ev), (None, rx, alerts)));
            }
            let ev = match rx.recv().await {
                Ok(e) => {
                    let name = match &e {
                        ApiEvent::Alert { .. } => "alert",
                        ApiEvent::Silence { .. } => "silence",
                        ApiEvent::Ack { .. } => "ack",
                        ApiEvent::Action { .. } => "action",
                    };
                    Event::default()
                        .event(name)
                        .data(serde_json::to_string(&e).unwrap_or_default())
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    snapshot(&alerts.0, alerts.1.as_ref())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(ev), (None, rx, alerts)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `router` over TLS on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, tls)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
