//! The webhook notifier: POSTs the Alertmanager webhook payload (version "4"), so
//! receivers written for Alertmanager work unchanged, optionally signed with
//! HMAC-SHA256 (`X-Warden-Timestamp` + `X-Warden-Signature: sha256=HEX` over
//! `TIMESTAMP.BODY`). warden's extras ride in a `warden` object receivers may
//! ignore: the reason, the outbox id, and each alert's acknowledgement.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};
use warden_engine::model::{AlertState, Labels};
use warden_engine::ports::{BoxFuture, DeliveryMemo, Notification, Notifier, NotifyError};

use super::console::rfc3339;
use super::http;
use super::secret::{self, Secret};

/// `[[notifier.webhook]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver's name for routes.
    pub name: String,
    /// Where to POST (or `url_env` / `url_file` when the URL holds a token).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Secret for the HMAC signature header (or `hmac_secret_env` / `_file`).
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// Environment variable holding the HMAC secret.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// File holding the HMAC secret.
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Most alerts in one payload (the rest are counted in `truncatedAlerts`);
    /// 0 = all. Default 0.
    #[serde(default)]
    pub max_alerts: usize,
    /// Send resolved notifications. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// `externalURL` in the payload (a link back to warden). Default empty.
    #[serde(default)]
    pub external_url: String,
}

fn yes() -> bool {
    true
}

/// POSTs Alertmanager v4 payloads.
#[derive(Debug)]
pub struct WebhookNotifier {
    name: String,
    url: Secret,
    hmac: Option<Secret>,
    headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    max_alerts: usize,
    send_resolved: bool,
    external_url: String,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// Builds the notifier from its config.
    pub fn new(c: &WebhookConfig) -> Result<Self, String> {
        let url = secret::resolve(
            "url",
            c.url.as_ref(),
            c.url_env.as_ref(),
            c.url_file.as_ref(),
        )?
        .ok_or("a webhook needs 'url' (or 'url_env' / 'url_file')")?;
        let parsed =
            reqwest::Url::parse(url.expose()).map_err(|e| format!("invalid webhook url: {e}"))?;
        if !["http", "https"].contains(&parsed.scheme()) {
            return Err(format!(
                "webhook url must be http or https, not '{}'",
                parsed.scheme()
            ));
        }
        let hmac = secret::resolve(
            "hmac_secret",
            c.hmac_secret.as_ref(),
            c.hmac_secret_env.as_ref(),
            c.hmac_secret_file.as_ref(),
        )?;
        let mut headers = Vec::new();
        for (k, v) in &c.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name '{k}'"))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("invalid value for header '{k}'"))?;
            headers.push((name, value));
        }
        Ok(Self {
            name: c.name.clone(),
            url,
            hmac,
            headers,
            max_alerts: c.max_alerts,
            send_resolved: c.send_resolved,
            external_url: c.external_url.clone(),
            client: http::client()?,
        })
    }

    /// The payload for `n`.
    pub fn payload(&self, n: &Notification) -> Value {
        let common_labels = n.common_labels();
        let mut common_annotations: BTreeMap<String, String> = n
            .alerts
            .first()
            .map(|a| a.alert.annotations.clone())
            .unwrap_or_default();
        for a in &n.alerts {
            common_annotations.retain(|k, v| a.alert.annotations.get(k) == Some(v));
        }
        let total = n.alerts.len();
        let keep = if self.max_alerts == 0 {
            total
        } else {
            self.max_alerts.min(total)
        };
        let alerts: Vec<Value> = n.alerts[..keep]
            .iter()
            .map(|a| {
                let ends = match (a.status, a.ended_at) {
                    (AlertState::Resolved, Some(t)) => rfc3339(t),
                    _ => "0001-01-01T00:00:00Z".to_string(),
                };
                json!({
                    "status": a.status.as_str(),
                    "labels": a.alert.labels,
                    "annotations": a.alert.annotations,
                    "startsAt": rfc3339(a.alert.fired_at.unwrap_or(a.alert.since)),
                    "endsAt": ends,
                    "generatorURL": "",
                    "fingerprint": a.alert.fingerprint,
                    "value": a.alert.value.is_finite().then_some(a.alert.value),
                    "acknowledged": a.acknowledged,
                })
            })
            .collect();
        json!({
            "version": "4",
            "groupKey": n.group_key,
            "truncatedAlerts": total - keep,
            "status": n.status().as_str(),
            "receiver": n.receiver,
            "groupLabels": labels_or_empty(&n.group_labels),
            "commonLabels": common_labels,
            "commonAnnotations": common_annotations,
            "externalURL": self.external_url,
            "alerts": alerts,
            "warden": { "reason": n.reason.as_str(), "notification_id": n.id },
        })
    }
}

fn labels_or_empty(l: &Labels) -> Value {
    serde_json::to_value(l).unwrap_or_else(|_| json!({}))
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `TIMESTAMP.BODY`).
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        _memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body =
                serde_json::to_vec(&self.payload(n)).map_err(|e| NotifyError::Permanent {
                    reason: format!("cannot encode the payload: {e}"),
                })?;
            let mut req = self
                .client
                .post(self.url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            for (k, v) in &self.headers {
                req = req.header(k.clone(), v.clone());
            }
            if let Some(secret) = &self.hmac {
                let ts = (warden_engine::model::now_ms() / 1000).to_string();
                req = req
                    .header("X-Warden-Timestamp", &ts)
                    .header("X-Warden-Signature", signature(secret.expose(), &ts, &body));
            }
            let scrub = |s: &str| self.url.scrub(s);
            let resp = req
                .body(body)
                .send()
                .await
                .map_err(|e| http::network_error(&e, scrub))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let headers = resp.headers().clone();
            let text = resp.text().await.unwrap_or_default();
            Err(match http::status_error(status, &headers, &text) {
                NotifyError::Retryable {
                    reason,
                    retry_after,
                } => NotifyError::Retryable {
                    reason: scrub(&reason),
                    retry_after,
                },
                NotifyError::Permanent { reason } => NotifyError::Permanent {
                    reason: scrub(&reason),
                },
                e => e,
            })
        })
    }

    fn preview(&self, n: &Notification) -> String {
        let url = http::redact_urls(self.url.expose());
        format!(
            "POST {url}\nContent-Type: application/json\n\n{}",
            serde_json::to_string_pretty(&self.payload(n)).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::test_support::{alert, note};
    use crate::testing::{self, Fault};
    use warden_engine::ports::{NoMemo, NotifyReason};

    fn notifier(url: &str, extra: &str) -> WebhookNotifier {
        let cfg: WebhookConfig =
            toml::from_str(&format!("name = \"hook\"\nurl = \"{url}\"\n{extra}")).unwrap();
        WebhookNotifier::new(&cfg).unwrap()
    }

    #[tokio::test]
    async fn sends_the_alertmanager_v4_payload_signed() {
        let sink = testing::webhook_sink().await;
        let n = notifier(
            &format!("{}/hook", sink.url()),
            "hmac_secret = \"topsecret\"\n",
        );
        let nt = note(
            7,
            NotifyReason::Resolved,
            vec![
                (alert("DiskFull", "db-1"), AlertState::Firing, true),
                (alert("DiskFull", "db-2"), AlertState::Resolved, false),
            ],
        );
        n.notify(&nt, &NoMemo).await.unwrap();
        let got = &sink.accepted()[0];
        assert_eq!(got["version"], "4");
        assert_eq!(got["status"], "firing");
        assert_eq!(got["groupKey"], "g");
        assert_eq!(got["truncatedAlerts"], 0);
        assert_eq!(got["groupLabels"]["cluster"], "c1");
        assert_eq!(got["commonLabels"]["alertname"], "DiskFull");
        assert!(got["commonLabels"].get("instance").is_none());
        assert_eq!(got["alerts"][0]["status"], "firing");
        assert_eq!(got["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(got["alerts"][0]["startsAt"], "1970-01-01T00:00:02.000Z");
        assert_eq!(got["alerts"][0]["acknowledged"]["by"], "alice");
        assert_eq!(got["alerts"][1]["status"], "resolved");
        assert_eq!(got["alerts"][1]["endsAt"], "1970-01-01T00:00:09.000Z");
        assert_eq!(got["warden"]["reason"], "resolved");
        assert_eq!(got["warden"]["notification_id"], 7);
        let h = &sink.headers()[0];
        let ts = h["x-warden-timestamp"].to_str().unwrap();
        let sig = h["x-warden-signature"].to_str().unwrap();
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(ts.parse::<i64>().is_ok(), "{ts}");
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // HMAC-SHA256(key = "key", message = "1.{}"), computed with Python's hmac.
        assert_eq!(
            signature("key", "1", b"{}"),
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }

    #[tokio::test]
    async fn failures_are_classified_and_urls_redacted() {
        let sink = testing::webhook_sink().await;
        let n = notifier(&format!("{}/hook", sink.url()), "");
        let nt = note(
            1,
            NotifyReason::FirstNotification,
            vec![(alert("A", "1"), AlertState::Firing, false)],
        );
        sink.fail_next(1, Fault::ServerError(503));
        assert!(matches!(
            n.notify(&nt, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
        let wrong = notifier(&format!("{}/nope", sink.url()), "");
        assert!(matches!(
            wrong.notify(&nt, &NoMemo).await,
            Err(NotifyError::Permanent { .. })
        ));
        let down = notifier("http://127.0.0.1:9/services/T0/B0/supersecrettoken", "");
        match down.notify(&nt, &NoMemo).await {
            Err(NotifyError::Retryable { reason, .. }) => {
                assert!(!reason.contains("supersecrettoken"), "{reason}")
            }
            r => panic!("{r:?}"),
        }
        assert!(!down.preview(&nt).contains("supersecrettoken"));
    }

    #[test]
    fn truncates_to_max_alerts() {
        let n = notifier("http://127.0.0.1:1/hook", "max_alerts = 1\n");
        let nt = note(
            1,
            NotifyReason::FirstNotification,
            vec![
                (alert("A", "1"), AlertState::Firing, false),
                (alert("A", "2"), AlertState::Firing, false),
            ],
        );
        let p = n.payload(&nt);
        assert_eq!(p["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(p["truncatedAlerts"], 1);
    }
}
