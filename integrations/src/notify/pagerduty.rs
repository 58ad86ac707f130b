//! The PagerDuty notifier: Events API v2. One event per alert, `dedup_key` = the
//! alert's fingerprint, so PagerDuty opens one incident per alert and a repeated
//! or re-sent event updates it instead of opening another: firing → `trigger`,
//! resolved → `resolve`, acknowledged in warden → `acknowledge`.
//!
//! A notification about many alerts is several events; the number accepted is kept
//! in the receiver's memo, so a retry after a 429 in the middle resumes where it
//! stopped.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Value, json};
use warden_engine::model::{AlertState, Severity};
use warden_engine::ports::{
    ActionNote, BoxFuture, DeliveryMemo, Notification, NotifiedAlert, Notifier, NotifyError,
    NotifyReason,
};

use super::console::rfc3339;
use super::http;
use super::secret::{self, Secret};
use super::template;

/// The public Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[[notifier.pagerduty]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The receiver's name for routes.
    pub name: String,
    /// The integration (routing) key, or `routing_key_env` / `routing_key_file`.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Environment variable holding the routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// File holding the routing key.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// The Events API URL. Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Summary template. Default: the alert's `summary`, else
    /// `ALERTNAME LABELS`.
    #[serde(default)]
    pub summary: Option<String>,
    /// The label used as the event's `source`. Default `instance` (else `warden`).
    #[serde(default = "default_source")]
    pub source_label: String,
    /// The label used as `component`. Default `service`.
    #[serde(default = "default_component")]
    pub component_label: String,
    /// The label used as `group`. Default `cluster`.
    #[serde(default = "default_group")]
    pub group_label: String,
    /// Send resolves. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// `client_url` (a link back to warden). Default none.
    #[serde(default)]
    pub client_url: Option<String>,
    /// The Change Events URL, for remediation attempts. Default: `url` with
    /// `/v2/enqueue` replaced by `/v2/change/enqueue`.
    #[serde(default)]
    pub change_url: Option<String>,
}

fn default_url() -> String {
    DEFAULT_URL.into()
}
fn default_source() -> String {
    "instance".into()
}
fn default_component() -> String {
    "service".into()
}
fn default_group() -> String {
    "cluster".into()
}
fn yes() -> bool {
    true
}

/// Sends Events API v2 events.
#[derive(Debug)]
pub struct PagerDutyNotifier {
    cfg: PagerDutyConfig,
    key: Secret,
    client: reqwest::Client,
}

/// PagerDuty's limits.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

/// warden's severity as PagerDuty's (the same four levels).
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

impl PagerDutyNotifier {
    /// Builds the notifier from its config.
    pub fn new(cfg: &PagerDutyConfig) -> Result<Self, String> {
        let key = secret::resolve(
            "routing_key",
            cfg.routing_key.as_ref(),
            cfg.routing_key_env.as_ref(),
            cfg.routing_key_file.as_ref(),
        )?
        .ok_or("pagerduty needs 'routing_key' (or 'routing_key_env' / 'routing_key_file')")?;
        reqwest::Url::parse(&cfg.url).map_err(|e| format!("invalid pagerduty url: {e}"))?;
        Ok(Self {
            cfg: cfg.clone(),
            key,
            client: http::client()?,
        })
    }

    /// The events `n` becomes, in order.
    pub fn events(&self, n: &Notification) -> Vec<Value> {
        let mut out = Vec::new();
        for a in &n.alerts {
            let action = match (n.reason, a.status) {
                (NotifyReason::Acknowledged, AlertState::Firing) if a.acknowledged.is_some() => {
                    "acknowledge"
                }
                (_, AlertState::Resolved) => "resolve",
                (NotifyReason::Acknowledged, _) => continue,
                (reason, _) => {
                    let wanted = a.new
                        || matches!(
                            reason,
                            NotifyReason::RepeatInterval
                                | NotifyReason::Escalation
                                | NotifyReason::Flapping
                                | NotifyReason::Test
                        );
                    if !wanted || a.acknowledged.is_some() {
                        // Re-triggering an acknowledged incident adds noise and
                        // nothing else; a known alert needs no new trigger.
                        continue;
                    }
                    "trigger"
                }
            };
            out.push(self.event(n, a, action));
        }
        out
    }

    fn event(&self, n: &Notification, a: &NotifiedAlert, action: &str) -> Value {
        let dedup_key = http::truncate(&a.alert.fingerprint.to_string(), MAX_DEDUP_KEY);
        if action != "trigger" {
            return json!({
                "routing_key": self.key.expose(),
                "event_action": action,
                "dedup_key": dedup_key,
            });
        }
        let one = Notification {
            alerts: vec![a.clone()],
            ..n.clone()
        };
        let mut summary = match &self.cfg.summary {
            Some(t) => template::render_line(t, &one),
            None => a
                .alert
                .annotations
                .get("summary")
                .cloned()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        a.alert.name,
                        a.alert.labels.without(&["alertname", "severity"])
                    )
                }),
        };
        if n.reason == NotifyReason::Flapping {
            summary = format!("[flapping] {summary}");
        }
        if summary.trim().is_empty() {
            summary = a.alert.name.clone();
        }
        let label = |l: &str| a.alert.labels.get(l).map(str::to_string);
        let mut payload = json!({
            "summary": http::truncate(&summary, MAX_SUMMARY),
            "source": label(&self.cfg.source_label).unwrap_or_else(|| "warden".into()),
            "severity": severity(a.alert.severity),
            "timestamp": rfc3339(a.alert.fired_at.unwrap_or(a.alert.since)),
            "class": a.alert.name,
            "custom_details": {
                "labels": a.alert.labels,
                "annotations": a.alert.annotations,
                "value": a.alert.value.is_finite().then_some(a.alert.value),
                "firing_since": rfc3339(a.alert.fired_at.unwrap_or(a.alert.since)),
                "reason": n.reason.as_str(),
            },
        });
        if let Some(c) = label(&self.cfg.component_label) {
            payload["component"] = json!(c);
        }
        if let Some(g) = label(&self.cfg.group_label) {
            payload["group"] = json!(g);
        }
        let mut ev = json!({
            "routing_key": self.key.expose(),
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": payload,
            "client": "warden",
        });
        if let Some(u) = &self.cfg.client_url {
            ev["client_url"] = json!(u);
        }
        if let Some(rb) = a.alert.annotations.get("runbook").filter(|r| !r.is_empty()) {
            ev["links"] = json!([{ "href": rb, "text": "Runbook" }]);
        }
        ev
    }

    /// Where change events go.
    pub fn change_url(&self) -> String {
        match &self.cfg.change_url {
            Some(u) => u.clone(),
            None => match self.cfg.url.strip_suffix("/v2/enqueue") {
                Some(base) => format!("{base}/v2/change/enqueue"),
                None => "https://events.pagerduty.com/v2/change/enqueue".into(),
            },
        }
    }

    /// The change event recording a remediation attempt.
    pub fn change_event(&self, note: &ActionNote) -> Value {
        let source = note
            .labels
            .get(&self.cfg.source_label)
            .unwrap_or("warden")
            .to_string();
        let mut details = json!({
            "attempt": note.id,
            "action": note.action,
            "kind": note.kind,
            "state": note.state,
            "labels": note.labels,
        });
        if !note.rule.is_empty() {
            details["rule"] = json!(note.rule);
        }
        if let Some(r) = &note.reason {
            details["reason"] = json!(r);
        }
        if let Some(b) = &note.by {
            details["by"] = json!(b);
        }
        let summary: String = note.summary.chars().take(MAX_SUMMARY).collect();
        let mut ev = json!({
            "routing_key": self.key.expose(),
            "payload": {
                "summary": summary,
                "timestamp": rfc3339(note.at),
                "source": source,
                "custom_details": details,
            },
        });
        if let Some(u) = &self.cfg.client_url {
            ev["links"] = json!([{ "href": u, "text": "warden" }]);
        }
        ev
    }

    async fn send(&self, ev: &Value) -> Result<(), NotifyError> {
        self.send_to(&self.cfg.url, ev).await
    }

    async fn send_to(&self, url: &str, ev: &Value) -> Result<(), NotifyError> {
        let scrub = |s: &str| self.key.scrub(s);
        let resp = self
            .client
            .post(url)
            .json(ev)
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
    }
}

impl Notifier for PagerDutyNotifier {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let events = self.events(n);
            let progress_key = format!("row:{}:sent", n.id);
            let resume = if events.len() > 1 && n.id != 0 {
                memo.get(&progress_key)
                    .await
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            } else {
                0
            };
            for (i, ev) in events.iter().enumerate().skip(resume) {
                self.send(ev).await?;
                if events.len() > 1 && n.id != 0 && i + 1 < events.len() {
                    let _ = memo.put(&progress_key, &(i + 1).to_string()).await;
                }
            }
            Ok(())
        })
    }

    fn action_note<'a>(&'a self, note: &'a ActionNote) -> BoxFuture<'a, Result<bool, NotifyError>> {
        Box::pin(async move {
            let ev = self.change_event(note);
            self.send_to(&self.change_url(), &ev).await?;
            Ok(true)
        })
    }

    fn preview(&self, n: &Notification) -> String {
        let events: Vec<Value> = self
            .events(n)
            .into_iter()
            .map(|mut e| {
                e["routing_key"] = json!("***");
                e
            })
            .collect();
        format!(
            "POST {}\n\n{}",
            self.cfg.url,
            serde_json::to_string_pretty(&events).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::test_support::{MemMemo, alert, note};
    use crate::testing::{self, Fault};
    use warden_engine::ports::NoMemo;

    fn notifier(url: &str, key: &str) -> PagerDutyNotifier {
        let cfg: PagerDutyConfig = toml::from_str(&format!(
            "name = \"pd\"\nrouting_key = \"{key}\"\nurl = \"{url}/v2/enqueue\"\n"
        ))
        .unwrap();
        PagerDutyNotifier::new(&cfg).unwrap()
    }

    #[tokio::test]
    async fn trigger_acknowledge_resolve_are_valid_events() {
        let pd = testing::pagerduty().await;
        let n = notifier(&pd.url(), "R0UT1NGKEY");
        let a = alert("DiskFull", "db-1");
        n.notify(
            &note(
                1,
                NotifyReason::FirstNotification,
                vec![(a.clone(), AlertState::Firing, false)],
            ),
            &NoMemo,
        )
        .await
        .unwrap();
        n.notify(
            &note(
                2,
                NotifyReason::Acknowledged,
                vec![(a.clone(), AlertState::Firing, true)],
            ),
            &NoMemo,
        )
        .await
        .unwrap();
        n.notify(
            &note(
                3,
                NotifyReason::Resolved,
                vec![(a.clone(), AlertState::Resolved, false)],
            ),
            &NoMemo,
        )
        .await
        .unwrap();
        assert!(pd.rejected().is_empty(), "{:?}", pd.rejected());
        let ev = pd.accepted();
        let actions: Vec<&str> = ev
            .iter()
            .map(|e| e["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, vec!["trigger", "acknowledge", "resolve"]);
        for e in &ev {
            assert_eq!(e["dedup_key"], a.fingerprint.to_string());
            assert_eq!(e["routing_key"], "R0UT1NGKEY");
        }
        let p = &ev[0]["payload"];
        assert_eq!(p["summary"], "DiskFull on db-1");
        assert_eq!(p["source"], "db-1");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["group"], "c1");
        assert_eq!(p["custom_details"]["labels"]["instance"], "db-1");
        assert_eq!(p["custom_details"]["value"], 97.5);
        assert_eq!(ev[0]["links"][0]["href"], "https://example.org/rb");
    }

    #[tokio::test]
    async fn known_and_acknowledged_alerts_are_not_triggered_again() {
        let pd = testing::pagerduty().await;
        let n = notifier(&pd.url(), "k");
        let a = alert("A", "1");
        let b = alert("B", "2");
        let mut nt = note(
            1,
            NotifyReason::NewAlertsInGroup,
            vec![
                (a.clone(), AlertState::Firing, false),
                (b.clone(), AlertState::Firing, true),
            ],
        );
        nt.alerts[0].new = false;
        nt.alerts[1].new = true;
        assert!(n.events(&nt).is_empty(), "a known alert and an acked one");
        nt.reason = NotifyReason::RepeatInterval;
        assert_eq!(
            n.events(&nt).len(),
            1,
            "repeat re-triggers the unacked one only"
        );
        let _ = pd;
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retryable_bad_events_are_not() {
        let pd = testing::pagerduty().await;
        let n = notifier(&pd.url(), "SECRETKEY99");
        let one = note(
            1,
            NotifyReason::FirstNotification,
            vec![(alert("A", "1"), AlertState::Firing, false)],
        );
        pd.fail_next(1, Fault::RateLimited(7));
        match n.notify(&one, &NoMemo).await {
            Err(NotifyError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)))
            }
            r => panic!("{r:?}"),
        }
        pd.fail_next(1, Fault::ServerError(503));
        assert!(matches!(
            n.notify(&one, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
        // A summary the service refuses: an event with an empty routing key.
        let bad = notifier(&pd.url(), "");
        match bad.notify(&one, &NoMemo).await {
            Err(NotifyError::Permanent { reason }) => assert!(reason.contains("400"), "{reason}"),
            r => panic!("{r:?}"),
        }
        // Network errors are retryable and never show the key.
        let down = notifier("http://127.0.0.1:9", "SECRETKEY99");
        match down.notify(&one, &NoMemo).await {
            Err(NotifyError::Retryable { reason, .. }) => assert!(!reason.contains("SECRETKEY99")),
            r => panic!("{r:?}"),
        }
    }

    #[tokio::test]
    async fn a_retry_resumes_after_the_accepted_events() {
        let pd = testing::pagerduty().await;
        let n = notifier(&pd.url(), "k");
        let nt = note(
            42,
            NotifyReason::FirstNotification,
            vec![
                (alert("A", "1"), AlertState::Firing, false),
                (alert("A", "2"), AlertState::Firing, false),
                (alert("A", "3"), AlertState::Firing, false),
            ],
        );
        let memo = MemMemo::default();
        let ev = n.events(&nt);
        assert_eq!(ev.len(), 3);
        // The first event is accepted, the second rate limited.
        n.send(&ev[0]).await.unwrap();
        memo.put("row:42:sent", "1").await.unwrap();
        pd.fail_next(1, Fault::RateLimited(1));
        assert!(n.notify(&nt, &memo).await.is_err());
        n.notify(&nt, &memo).await.unwrap();
        let sources: Vec<String> = pd
            .accepted()
            .iter()
            .map(|e| e["payload"]["source"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(sources, vec!["1", "2", "3"], "nothing sent twice");
    }

    #[test]
    fn long_summaries_are_cut_to_the_limit() {
        let n = PagerDutyNotifier {
            cfg: toml::from_str("name = \"pd\"\nrouting_key = \"k\"\n").unwrap(),
            key: Secret::new("k"),
            client: crate::notify::http::client().unwrap(),
        };
        let mut a = alert("A", "1");
        a.annotations.insert("summary".into(), "x".repeat(5000));
        let ev = n.events(&note(
            1,
            NotifyReason::FirstNotification,
            vec![(a, AlertState::Firing, false)],
        ));
        assert_eq!(
            ev[0]["payload"]["summary"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            1024
        );
        assert!(
            n.preview(&note(
                1,
                NotifyReason::FirstNotification,
                vec![(alert("A", "1"), AlertState::Firing, false)]
            ))
            .contains("\"***\"")
        );
    }

    #[tokio::test]
    async fn a_remediation_attempt_is_a_change_event() {
        let pd = testing::pagerduty_changes().await;
        let n = notifier(&pd.url(), "CHANGEKEY1");
        assert_eq!(n.change_url(), format!("{}/v2/change/enqueue", pd.url()));
        let note = ActionNote {
            id: 7,
            action: "restart-web".into(),
            kind: "restart".into(),
            state: "succeeded".into(),
            rule: "WebDown".into(),
            labels: warden_engine::model::Labels::new([("instance", "web-2"), ("service", "web")])
                .unwrap(),
            summary: "warden restart restart-web on {instance=\"web-2\"}: succeeded (status 0)"
                .into(),
            reason: None,
            by: None,
            at: 1_700_000_000_000,
        };
        assert!(n.action_note(&note).await.unwrap(), "sent");
        let got = pd.accepted();
        assert_eq!(got.len(), 1, "{:?}", pd.rejected());
        assert_eq!(got[0]["routing_key"], "CHANGEKEY1");
        assert_eq!(got[0]["payload"]["source"], "web-2");
        assert_eq!(got[0]["payload"]["custom_details"]["state"], "succeeded");
        assert_eq!(got[0]["payload"]["custom_details"]["rule"], "WebDown");
        assert!(
            got[0]["payload"]["timestamp"]
                .as_str()
                .unwrap()
                .starts_with("2023-11-14T")
        );
    }
}
