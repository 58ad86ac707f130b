//! Alertmanager/Grafana webhook v4 payloads and the Alertmanager `POST /api/v2/alerts`
//! array (WIRE-FORMATS.md), normalized into [`InboundAlert`]s.
//!
//! Not wired to the HTTP API yet: the receiver that persists these and feeds the
//! alert lifecycle is still to be built.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Active.
    Firing,
    /// Over.
    Resolved,
}

/// One external alert, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundAlert {
    /// Labels as sent (must hold `alertname`).
    pub labels: BTreeMap<String, String>,
    /// Annotations as sent.
    pub annotations: BTreeMap<String, String>,
    /// Firing or resolved. For `/api/v2/alerts` this is derived from `endsAt`.
    pub status: Status,
    /// `startsAt`, unix ms, if sent.
    pub starts_at: Option<i64>,
    /// `endsAt`, unix ms, if sent (the zero time counts as not sent).
    pub ends_at: Option<i64>,
    /// The sender's fingerprint, if any.
    pub sender_fingerprint: Option<String>,
    /// Stable identity: SHA-256 over the sorted labels (hex, 16 chars), the same
    /// across re-sends of one alert.
    pub fingerprint: String,
    /// Idempotency key: `(groupKey, fingerprint, status)` for webhook payloads.
    pub idempotency_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    #[serde(default)]
    group_key: String,
    #[allow(dead_code)]
    status: Status,
    alerts: Vec<WireAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    #[serde(default)]
    status: Option<Status>,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Most alerts one payload may carry.
pub const MAX_ALERTS: usize = 1_000;

fn time(field: &str, i: usize, v: &Option<String>) -> Result<Option<i64>, String> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => {
            let t: jiff::Timestamp = s
                .parse()
                .map_err(|e| format!("alerts[{i}].{field}: invalid RFC 3339 time '{s}': {e}"))?;
            // Go's zero time means "not set".
            if t.as_second() <= -62_135_596_800 {
                Ok(None)
            } else {
                Ok(Some(t.as_millisecond()))
            }
        }
    }
}

/// The fingerprint of a label set: stable across re-sends and label order.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, v) in labels {
        ctx.update(k.as_bytes());
        ctx.update(&[0xff]);
        ctx.update(v.as_bytes());
        ctx.update(&[0xfe]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn normalize(
    i: usize,
    a: WireAlert,
    status: impl FnOnce(Option<i64>) -> Status,
    group_key: &str,
) -> Result<InboundAlert, String> {
    if !a.labels.contains_key("alertname") {
        return Err(format!("alerts[{i}].labels: missing 'alertname'"));
    }
    if let Some(k) = a.labels.keys().find(|k| !valid_label_name(k)) {
        return Err(format!("alerts[{i}].labels: invalid label name '{k}'"));
    }
    let starts_at = time("startsAt", i, &a.starts_at)?;
    let ends_at = time("endsAt", i, &a.ends_at)?;
    let status = match a.status {
        Some(s) => s,
        None => status(ends_at),
    };
    let fingerprint = fingerprint(&a.labels);
    let idempotency_key = format!(
        "{group_key}\u{1f}{fingerprint}\u{1f}{}",
        match status {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    );
    Ok(InboundAlert {
        labels: a.labels,
        annotations: a.annotations,
        status,
        starts_at,
        ends_at,
        sender_fingerprint: a.fingerprint,
        fingerprint,
        idempotency_key,
    })
}

fn valid_label_name(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses an Alertmanager/Grafana webhook (version "4") body.
pub fn parse_webhook(body: &[u8]) -> Result<Vec<InboundAlert>, String> {
    let w: Webhook = serde_json::from_slice(body).map_err(|e| format!("invalid payload: {e}"))?;
    if w.version != "4" {
        return Err(format!(
            "unsupported version '{}': expected \"4\"",
            w.version
        ));
    }
    if w.alerts.len() > MAX_ALERTS {
        return Err(format!(
            "{} alerts in one payload, more than {MAX_ALERTS}",
            w.alerts.len()
        ));
    }
    let gk = w.group_key.clone();
    w.alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.status.is_none() {
                return Err(format!("alerts[{i}]: missing 'status'"));
            }
            normalize(i, a, |_| Status::Firing, &gk)
        })
        .collect()
}

/// Parses a `POST /api/v2/alerts` body. An alert whose `endsAt` is in the past
/// (relative to `now_ms`) is resolved; otherwise firing.
pub fn parse_v2_alerts(body: &[u8], now_ms: i64) -> Result<Vec<InboundAlert>, String> {
    let alerts: Vec<WireAlert> =
        serde_json::from_slice(body).map_err(|e| format!("invalid payload: {e}"))?;
    if alerts.len() > MAX_ALERTS {
        return Err(format!(
            "{} alerts in one request, more than {MAX_ALERTS}",
            alerts.len()
        ));
    }
    alerts
        .into_iter()
        .enumerate()
        .map(|(i, mut a)| {
            a.status = None;
            normalize(
                i,
                a,
                |ends| match ends {
                    Some(e) if e <= now_ms => Status::Resolved,
                    _ => Status::Firing,
                },
                "",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "warden", "groupLabels": {"alertname": "DiskFull"},
      "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1"},
         "annotations": {"summary": "disk 97% full"}, "startsAt": "2026-11-22T05:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "abc"},
        {"status": "resolved", "labels": {"instance": "db2", "alertname": "DiskFull"},
         "startsAt": "2026-11-22T04:00:00Z", "endsAt": "2026-11-22T04:30:00Z",
         "orgId": 1, "values": {"A": 1}}
      ]
    }"#;

    #[test]
    fn a_grafana_style_webhook_parses() {
        let a = parse_webhook(SAMPLE.as_bytes()).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].status, Status::Firing);
        assert_eq!(a[0].ends_at, None);
        assert_eq!(a[0].starts_at, Some(1_795_323_600_000));
        assert_eq!(a[0].annotations["summary"], "disk 97% full");
        assert_eq!(a[1].status, Status::Resolved);
        assert_eq!(a[1].ends_at, Some(1_795_321_800_000));
        assert_ne!(a[0].fingerprint, a[1].fingerprint);
        assert_ne!(a[0].idempotency_key, a[1].idempotency_key);
    }

    #[test]
    fn bad_payloads_name_the_problem() {
        let cases = [
            ("{", "invalid payload"),
            (
                r#"{"version":"3","status":"firing","alerts":[]}"#,
                "unsupported version",
            ),
            (
                r#"{"version":"4","status":"firing"}"#,
                "missing field `alerts`",
            ),
            (
                r#"{"version":"4","status":"burning","alerts":[]}"#,
                "unknown variant `burning`",
            ),
            (
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"x":"1"}}]}"#,
                "alerts[0].labels: missing 'alertname'",
            ),
            (
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":"yesterday"}]}"#,
                "alerts[0].startsAt: invalid RFC 3339 time 'yesterday'",
            ),
            (
                r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":1}}]}"#,
                "invalid type: integer",
            ),
        ];
        for (body, want) in cases {
            let e = parse_webhook(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        assert!(
            parse_webhook(b"\xff\xfe")
                .unwrap_err()
                .contains("invalid payload")
        );
    }

    #[test]
    fn v2_alerts_resolve_by_ends_at() {
        let body = r#"[
          {"labels": {"alertname": "A"}, "endsAt": "2026-11-22T05:00:00Z"},
          {"labels": {"alertname": "B"}},
          {"labels": {"alertname": "C"}, "endsAt": "2026-11-22T07:00:00Z"}
        ]"#;
        let now = 1_795_327_200_000; // 06:00
        let a = parse_v2_alerts(body.as_bytes(), now).unwrap();
        assert_eq!(
            a.iter().map(|a| a.status).collect::<Vec<_>>(),
            [Status::Resolved, Status::Firing, Status::Firing]
        );
    }

    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[a-z_][a-z0-9_]{0,8}", ".{0,12}", 0..5).prop_map(
            |mut m| {
                m.insert("alertname".into(), "X".into());
                m
            },
        )
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_webhook(&b);
            let _ = parse_v2_alerts(&b, 0);
        }

        #[test]
        fn fingerprint_is_stable_across_resends(l in labels(), firing in any::<bool>()) {
            let status = if firing { "firing" } else { "resolved" };
            let body = serde_json::json!({
                "version": "4", "groupKey": "g", "status": status,
                "alerts": [{"status": status, "labels": l.clone()}],
            }).to_string();
            let a = parse_webhook(body.as_bytes()).unwrap();
            let b = parse_webhook(body.as_bytes()).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(&a[0].labels, &l);
            prop_assert_eq!(&a[0].fingerprint, &fingerprint(&l));
        }
    }
}
