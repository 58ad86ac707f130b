//! The console notifier: one line per alert state change on standard output,
//! human-readable or JSON (`--log-format json`).

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use warden_engine::model::{AlertState, Timestamp};
use warden_engine::ports::{
    BoxFuture, DeliveryMemo, Notification, NotifiedAlert, Notifier, NotifyError, NotifyReason,
};

/// `[[notifier.console]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The receiver's name for routes. Default `console`.
    #[serde(default)]
    pub name: Option<String>,
}

/// Writes alert changes to standard output.
#[derive(Debug)]
pub struct ConsoleNotifier {
    name: String,
    json: bool,
}

impl ConsoleNotifier {
    /// A console notifier called `name`; `json` selects JSON lines.
    pub fn new(name: impl Into<String>, json: bool) -> Self {
        Self {
            name: name.into(),
            json,
        }
    }

    /// The line for one alert of a notification.
    pub fn line(&self, a: &NotifiedAlert, at: Timestamp) -> String {
        let alert = &a.alert;
        if self.json {
            return serde_json::json!({
                "acknowledged": a.acknowledged,
                "ts": rfc3339(at),
                "event": "alert",
                "state": state_word(a.status),
                "alertname": alert.name,
                "severity": alert.severity,
                "labels": alert.labels,
                "annotations": alert.annotations,
                "value": alert.value,
                "fingerprint": alert.fingerprint,
                "since": rfc3339(alert.since),
            })
            .to_string();
        }
        let mut s = format!(
            "{} {:<8} {:<8} {} {} value={}",
            rfc3339(at),
            state_word(a.status).to_uppercase(),
            alert.severity.as_str(),
            alert.name,
            alert.labels.without(&["alertname", "severity"]),
            short(alert.value)
        );
        if let Some(summary) = alert.annotations.get("summary") {
            s.push_str(" — ");
            s.push_str(summary);
        }
        s
    }
}

/// A value for a log line: integers without decimals, tiny values in scientific
/// notation, others with at most four decimals.
fn short(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else if v.is_finite() {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        v.to_string()
    }
}

fn state_word(s: AlertState) -> &'static str {
    s.as_str()
}

/// Formats unix ms as RFC 3339 with milliseconds.
pub fn rfc3339(ms: Timestamp) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

impl Notifier for ConsoleNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "console"
    }

    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        _memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let now = warden_engine::model::now_ms();
            let mut out = std::io::stdout().lock();
            for a in &n.alerts {
                let at = a.ended_at.unwrap_or(now);
                let mut line = self.line(a, at);
                match (n.reason, &a.acknowledged) {
                    (NotifyReason::Acknowledged, Some(ack)) if !self.json => {
                        line = line.replacen("FIRING  ", "ACKED   ", 1);
                        line.push_str(&format!(" (acknowledged by {}: {})", ack.by, ack.comment));
                    }
                    (NotifyReason::Flapping, _) if !self.json => {
                        line = line
                            .replacen("FIRING  ", "FLAPPING", 1)
                            .replacen("RESOLVED", "FLAPPING", 1);
                    }
                    _ => {}
                }
                writeln!(out, "{line}").map_err(|e| NotifyError::Retryable {
                    reason: format!("stdout: {e}"),
                    retry_after: None,
                })?;
            }
            out.flush().map_err(|e| NotifyError::Retryable {
                reason: format!("stdout: {e}"),
                retry_after: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_engine::model::{Alert, Annotations, Fingerprint, Labels, Severity};

    fn alert() -> NotifiedAlert {
        let labels = Labels::new([
            ("alertname", "DiskFull"),
            ("severity", "critical"),
            ("instance", "db-1"),
        ])
        .unwrap();
        let mut annotations = Annotations::new();
        annotations.insert("summary".into(), "Disk / on db-1 is 97% full".into());
        NotifiedAlert {
            alert: Alert {
                name: "DiskFull".into(),
                state: AlertState::Firing,
                severity: Severity::Critical,
                fingerprint: Fingerprint::of("DiskFull", &labels),
                labels,
                annotations,
                value: 97.0,
                since: 0,
                fired_at: Some(0),
            },
            status: AlertState::Firing,
            ended_at: None,
            new: true,
            acknowledged: None,
        }
    }

    #[test]
    fn human_line() {
        let n = ConsoleNotifier::new("console", false);
        assert_eq!(
            n.line(&alert(), 1_000),
            "1970-01-01T00:00:01.000Z FIRING   critical DiskFull {instance=\"db-1\"} value=97 — Disk / on db-1 is 97% full"
        );
    }

    #[test]
    fn values_are_short() {
        assert_eq!(short(97.0), "97");
        assert_eq!(short(-157549682.68800354), "-157549682.688");
        assert_eq!(short(0.000012), "1.200e-5");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(f64::NAN), "NaN");
        assert_eq!(short(f64::INFINITY), "inf");
    }

    #[test]
    fn json_line() {
        let n = ConsoleNotifier::new("console", true);
        let v: serde_json::Value = serde_json::from_str(&n.line(&alert(), 1_000)).unwrap();
        assert_eq!(v["state"], "firing");
        assert_eq!(v["labels"]["instance"], "db-1");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["value"], 97.0);
    }
}
