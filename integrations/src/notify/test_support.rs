//! Shared pieces of the notifier tests: sample alerts and an in-memory memo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Mutex;

use warden_engine::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity};
use warden_engine::ports::{
    Acknowledgement, BoxFuture, DeliveryMemo, Notification, NotifiedAlert, NotifyReason,
};

/// A memo kept in memory.
#[derive(Default)]
pub struct MemMemo(pub Mutex<HashMap<String, String>>);

impl DeliveryMemo for MemMemo {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.0.lock().unwrap().get(key).cloned() })
    }
    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0.lock().unwrap().insert(key.into(), value.into());
            Ok(())
        })
    }
}

/// A firing alert `name` on `instance`.
pub fn alert(name: &str, instance: &str) -> Alert {
    let labels = Labels::new([
        ("alertname", name),
        ("severity", "critical"),
        ("instance", instance),
        ("cluster", "c1"),
    ])
    .unwrap();
    let mut annotations = Annotations::new();
    annotations.insert("summary".into(), format!("{name} on {instance}"));
    annotations.insert("runbook".into(), "https://example.org/rb".into());
    Alert {
        name: name.into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        fingerprint: Fingerprint::of(name, &labels),
        labels,
        annotations,
        value: 97.5,
        since: 1_000,
        fired_at: Some(2_000),
    }
}

/// A notification about `alerts` (status, acknowledged?).
pub fn note(id: i64, reason: NotifyReason, alerts: Vec<(Alert, AlertState, bool)>) -> Notification {
    Notification {
        id,
        receiver: "r".into(),
        reason,
        group_key: "g".into(),
        group_labels: Labels::new([("cluster", "c1")]).unwrap(),
        alerts: alerts
            .into_iter()
            .map(|(a, st, acked)| NotifiedAlert {
                alert: a,
                status: st,
                ended_at: (st == AlertState::Resolved).then_some(9_000),
                new: st == AlertState::Firing,
                acknowledged: acked.then(|| Acknowledgement {
                    by: "alice".into(),
                    comment: "on it".into(),
                    at: 5_000,
                    expires_at: None,
                }),
            })
            .collect(),
        created_at: 3_000,
    }
}
