//! Notifiers: one file per kind; [`NotifiersConfig`] picks them from the config.
//!
//! - `console`: lines on standard output.
//! - `email`: one mail per notification over SMTP (plain, STARTTLS, implicit TLS).
//! - `pagerduty`: Events API v2.
//! - `slack`: incoming webhooks or the Web API, Block Kit, updates on resolve/ack.
//! - `webhook`: the Alertmanager webhook payload, optionally signed.
//! - `http`, `secret`, `template`: what the notifiers share.

pub mod console;
pub mod email;
pub mod http;
pub mod pagerduty;
pub mod secret;
pub mod slack;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod webhook;

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::ports::Notifier;

/// The `[notifier]` table: `[[notifier.KIND]]` arrays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifiersConfig {
    /// `[[notifier.console]]`: lines on standard output.
    #[serde(default)]
    pub console: Vec<Spanned<console::ConsoleConfig>>,
    /// `[[notifier.email]]`: mail over SMTP.
    #[serde(default)]
    pub email: Vec<Spanned<email::EmailConfig>>,
    /// `[[notifier.pagerduty]]`: PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Vec<Spanned<pagerduty::PagerDutyConfig>>,
    /// `[[notifier.slack]]`: Slack incoming webhooks or the Web API.
    #[serde(default)]
    pub slack: Vec<Spanned<slack::SlackConfig>>,
    /// `[[notifier.webhook]]`: Alertmanager-compatible webhooks.
    #[serde(default)]
    pub webhook: Vec<Spanned<webhook::WebhookConfig>>,
}

impl NotifiersConfig {
    /// True when no notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.console.is_empty()
            && self.pagerduty.is_empty()
            && self.webhook.is_empty()
            && self.slack.is_empty()
            && self.email.is_empty()
    }

    /// Builds every configured notifier; `json` selects JSON lines for the console.
    pub fn build(&self, json: bool) -> Result<Vec<Arc<dyn Notifier>>, Vec<Problem>> {
        let mut out: Vec<Arc<dyn Notifier>> = Vec::new();
        let mut problems = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut add = |name: String,
                       span: std::ops::Range<usize>,
                       kind: &str,
                       built: Result<Arc<dyn Notifier>, String>,
                       problems: &mut Vec<Problem>| {
            if name.trim().is_empty() {
                problems.push(Problem::at(
                    span,
                    format!("[[notifier.{kind}]] needs a 'name'"),
                ));
                return;
            }
            if names.contains(&name) {
                problems.push(Problem::at(
                    span,
                    format!("notifier name '{name}' is used twice: give each a unique 'name'"),
                ));
                return;
            }
            names.push(name.clone());
            match built {
                Ok(n) => out.push(n),
                Err(e) => problems.push(Problem::at(span, format!("notifier '{name}': {e}"))),
            }
        };
        for c in &self.console {
            let name = c.get_ref().name.clone().unwrap_or_else(|| "console".into());
            let n: Arc<dyn Notifier> = Arc::new(console::ConsoleNotifier::new(name.clone(), json));
            add(name, c.span(), "console", Ok(n), &mut problems);
        }
        for c in &self.pagerduty {
            let built = pagerduty::PagerDutyNotifier::new(c.get_ref())
                .map(|n| Arc::new(n) as Arc<dyn Notifier>);
            add(
                c.get_ref().name.clone(),
                c.span(),
                "pagerduty",
                built,
                &mut problems,
            );
        }
        for c in &self.email {
            let built =
                email::EmailNotifier::new(c.get_ref()).map(|n| Arc::new(n) as Arc<dyn Notifier>);
            add(
                c.get_ref().name.clone(),
                c.span(),
                "email",
                built,
                &mut problems,
            );
        }
        for c in &self.slack {
            let built =
                slack::SlackNotifier::new(c.get_ref()).map(|n| Arc::new(n) as Arc<dyn Notifier>);
            add(
                c.get_ref().name.clone(),
                c.span(),
                "slack",
                built,
                &mut problems,
            );
        }
        for c in &self.webhook {
            let built = webhook::WebhookNotifier::new(c.get_ref())
                .map(|n| Arc::new(n) as Arc<dyn Notifier>);
            add(
                c.get_ref().name.clone(),
                c.span(),
                "webhook",
                built,
                &mut problems,
            );
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}
