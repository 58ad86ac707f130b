//! Titles and bodies: `{{placeholder}}` templates rendered per notification.
//!
//! Placeholders: `{{status}}` (`firing`/`resolved`), `{{STATUS}}`, `{{reason}}`,
//! `{{receiver}}`, `{{count}}`, `{{firing}}`, `{{resolved}}`, `{{severity}}` (the
//! highest), `{{group}}` (the group labels), `{{summary}}` (the first alert's),
//! `{{runbook}}`, `{{value}}`, and `{{LABEL}}` for any label all alerts share.
//! Unknown placeholders render empty.

use warden_engine::model::AlertState;
use warden_engine::ports::Notification;

/// The default title: `[FIRING:2] DiskFull {cluster="c1"}`.
pub const DEFAULT_TITLE: &str = "[{{STATUS}}:{{count}}] {{alertname}} {{group}}";

/// Renders a one-line `template` for `n` (runs of whitespace become one space).
pub fn render_line(template: &str, n: &Notification) -> String {
    render(template, n)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders `template` for `n`.
pub fn render(template: &str, n: &Notification) -> String {
    let common = n.common_labels();
    let firing = n.with_status(AlertState::Firing).count();
    let resolved = n.with_status(AlertState::Resolved).count();
    let first = n.alerts.first();
    let severity = n
        .alerts
        .iter()
        .map(|a| a.alert.severity)
        .max()
        .map(|s| s.as_str())
        .unwrap_or("");
    let lookup = |key: &str| -> String {
        match key {
            "status" => n.status().as_str().to_string(),
            "STATUS" => n.status().as_str().to_uppercase(),
            "reason" => n.reason.as_str().to_string(),
            "receiver" => n.receiver.clone(),
            "count" => (if firing > 0 { firing } else { resolved }).to_string(),
            "firing" => firing.to_string(),
            "resolved" => resolved.to_string(),
            "severity" => severity.to_string(),
            "group" => {
                let g = n.group_labels.without(&["alertname"]);
                if g.is_empty() {
                    String::new()
                } else {
                    g.to_string()
                }
            }
            "summary" | "description" | "runbook" => first
                .and_then(|a| a.alert.annotations.get(key).cloned())
                .unwrap_or_default(),
            "value" => first.map(|a| a.alert.value.to_string()).unwrap_or_default(),
            label => common.get(label).unwrap_or("").to_string(),
        }
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&lookup(after[..end].trim()));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
